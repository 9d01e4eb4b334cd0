"""One CITATION.cff at the root of a repository with several functions describes all of them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from publisher.manifest.load import load_function
from publisher.manifest.validate import validate_folder
from publisher.scaffold.init import scaffold


def test_functions_without_their_own_citation_use_the_repositorys(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("alpha", "beta"):
        scaffold(name, tmp_path / name)
    shutil.move(tmp_path / "alpha" / "CITATION.cff", tmp_path / "CITATION.cff")
    (tmp_path / "beta" / "CITATION.cff").unlink()
    for name in ("alpha", "beta"):
        _manifest, citation, problems = validate_folder(tmp_path / name)
        assert problems == [] and citation is not None and citation.title == "alpha"
        assert load_function(tmp_path / name).citation_file == tmp_path / "CITATION.cff"


def test_a_function_with_its_own_citation_keeps_it(tmp_path: Path) -> None:
    scaffold("gamma", tmp_path / "gamma")
    (tmp_path / "CITATION.cff").write_text("not: used\n")
    assert load_function(tmp_path / "gamma").citation_file == tmp_path / "gamma" / "CITATION.cff"
