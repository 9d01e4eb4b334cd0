"""The function repositories of the end-to-end story, as a scientist's git checkout, and their data."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import yaml

from tests.ci.githttp import git
from tests.e2e.stack import REPO_ROOT

CXI_METADATA = REPO_ROOT / "examples" / "cxi-metadata"
CHAIN_INDEX = REPO_ROOT / "examples" / "chain" / "chain-index"
IGNORED = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".faaspub", "*.pyc")


def copy_function(source: Path, dest: Path, **changes: object) -> Path:
    """Copy an example to ``dest`` with top-level ``function.yaml`` keys replaced by ``changes``."""
    shutil.copytree(source, dest, ignore=IGNORED)
    if changes:
        manifest = yaml.safe_load((dest / "function.yaml").read_text())
        manifest.update(changes)
        (dest / "function.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return dest


def commit_and_tag(work_tree: Path, tag: str, remote: str | None = None) -> str:
    """``git init`` + one commit + ``tag``; returns the commit SHA (``faaspub publish`` reads the tag)."""
    git("init", "--quiet", "--initial-branch=main", ".", cwd=work_tree)
    git("add", "-A", cwd=work_tree)
    git("commit", "--quiet", "-m", "release", cwd=work_tree)
    git("tag", tag, cwd=work_tree)
    if remote:
        git("remote", "add", "origin", remote, cwd=work_tree)
        # gitlab-ci-local reads the default branch from the remote's HEAD.
        git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=work_tree)
        git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main", cwd=work_tree)
    return git("rev-parse", "HEAD", cwd=work_tree)


def tracked_files(work_tree: Path) -> dict[str, str]:
    """The committed tree as ``path -> text`` (what GitLab's repository archive holds)."""
    names = git("ls-files", cwd=work_tree).splitlines()
    return {name: (work_tree / name).read_text() for name in names}


def _cxi_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("e2e_cxi_metadata", CXI_METADATA / "cxi_metadata.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_cxi(path: Path, frames: int = 3, energy_ev: float = 12400.0) -> Path:
    """A real CXI (HDF5) file made with h5py, by the example's own writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written: Path = _cxi_module().write_cxi(path, frames=frames, shape=(8, 8), energy_ev=energy_ev)
    return written
