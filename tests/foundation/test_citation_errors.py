"""Malformed CITATION.cff files are explained with the field, line and a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.citation.cff import load_citation
from publisher.manifest.problems import ProblemsError

GOOD = """cff-version: 1.2.0
message: "Please cite"
title: "fn"
authors:
  - family-names: Doe
    given-names: Jane
    orcid: "https://orcid.org/0000-0002-1825-0097"
    affiliation: DESY
license: MIT
keywords: [a, b]
version: "1.0.0"
"""

CASES = [
    ("empty", "", "", "file is empty"),
    ("no-authors", GOOD.split("authors:")[0] + "license: MIT\n", "", "'authors' is a required property"),
    ("no-title", GOOD.replace('title: "fn"\n', ""), "", "'title' is a required property"),
    ("no-message", GOOD.replace('message: "Please cite"\n', ""), "", "'message' is a required property"),
    ("bad-version", GOOD.replace("cff-version: 1.2.0", "cff-version: 9.9"), "cff-version", "string"),
    ("license-not-spdx", GOOD.replace("license: MIT", "license: My Own Licence"), "license", "SPDX"),
    (
        "author-without-name",
        GOOD.replace(
            "  - family-names: Doe\n    given-names: Jane\n", "  - affiliation: X\n    alias: y\n"
        ).replace('    orcid: "https://orcid.org/0000-0002-1825-0097"\n    affiliation: DESY\n', ""),
        "authors.0",
        "author has no name",
    ),
    (
        "orcid-bare",
        GOOD.replace('"https://orcid.org/0000-0002-1825-0097"', '"0000-0002-1825-0097"'),
        "authors.0.orcid",
        "ORCID as a URL",
    ),
    ("authors-not-list", GOOD.split("authors:")[0] + "authors: Jane Doe\n", "authors", "array"),
    ("keywords-not-list", GOOD.replace("keywords: [a, b]", "keywords: a"), "keywords", "array"),
    ("yaml-error", GOOD.replace('title: "fn"', 'title: "fn'), "", "YAML syntax error"),
    ("unknown-key", GOOD + "titel: x\n", "", "Additional properties"),
]


@pytest.mark.parametrize(("text", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_citation_is_explained(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = tmp_path / "CITATION.cff"
    path.write_text(text)
    with pytest.raises(ProblemsError) as info:
        load_citation(path)
    problems = info.value.problems
    hits = [p for p in problems if p.field == field and words in p.message + " " + (p.hint or "")]
    assert hits, [str(p) for p in problems]


def test_good_citation_maps_authors(tmp_path: Path) -> None:
    path = tmp_path / "CITATION.cff"
    path.write_text(GOOD)
    citation = load_citation(path)
    assert citation.authors[0].display == "Doe, Jane"
    assert citation.authors[0].orcid_id == "0000-0002-1825-0097"
    assert citation.licenses == ["MIT"] and citation.keywords == ["a", "b"] and citation.version == "1.0.0"


def test_line_of_a_nested_problem(tmp_path: Path) -> None:
    path = tmp_path / "CITATION.cff"
    path.write_text(GOOD.replace('"https://orcid.org/0000-0002-1825-0097"', '"nope"'))
    with pytest.raises(ProblemsError) as info:
        load_citation(path)
    assert info.value.problems[0].line == 7
