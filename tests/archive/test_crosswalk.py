"""Crosswalks CFF -> Zenodo, CodeMeta, BibTeX, APA; and the archive-readiness check."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from publisher.archive.checks import archive_problems, orcid_checksum_ok
from publisher.citation.cff import Author, Citation, parse_citation
from publisher.citation.crosswalk import apa, bibtex, bibtex_escape, codemeta, zenodo_metadata
from publisher.manifest.model import Manifest
from tests.fakes.zenodo_server import ZenodoFake

BASE: dict[str, Any] = {
    "cff-version": "1.2.0",
    "message": "Cite me.",
    "title": "Peak finder: 100% {fast} & #1_tool",
    "authors": [
        {
            "family-names": "Müller",
            "given-names": "Jean-Paul",
            "name-particle": "von",
            "name-suffix": "Jr.",
            "orcid": "https://orcid.org/0000-0002-1825-0097",
            "affiliation": "XFEL",
        },
        {"family-names": "Ōsaka", "given-names": "Hana"},
        {"name": "DESY & Co"},
    ],
    "license": "Apache-2.0",
    "keywords": ["faas", "hdf5", " faas "],
    "abstract": "Finds <peaks>.",
    "repository-code": "https://gitlab.example.org/g/peaks",
    "date-released": "2026-05-19",
    "version": "0.9.0",
}


def citation(**changes: Any) -> Citation:
    return parse_citation({**BASE, **changes})


MANIFEST = Manifest(name="peaks", runtime="python:3.12", handler="main:handle")


def test_zenodo_metadata_is_accepted_by_the_fake_validator() -> None:
    md = zenodo_metadata(
        citation(),
        version="1.2.0",
        publication_date=date(2026, 5, 20),
        details=["Image: a & b"],
        communities=["c1", "c1"],
        related=[{"identifier": "10.5281/zenodo.1", "relation": "isNewVersionOf"}],
        notes="n",
    )
    assert md["version"] == "1.2.0"  # the tag, not CFF's 0.9.0
    assert md["publication_date"] == "2026-05-20"
    assert md["license"] == "apache-2.0"
    assert md["creators"][0] == {
        "name": "von Müller Jr., Jean-Paul",
        "affiliation": "XFEL",
        "orcid": "0000-0002-1825-0097",
    }
    assert md["creators"][2] == {"name": "DESY & Co"}
    assert md["description"] == "<p>Finds &lt;peaks&gt;.</p><p>Image: a &amp; b</p>"
    assert md["keywords"] == ["faas", "hdf5"]
    assert md["communities"] == [{"identifier": "c1"}]
    assert "doi" not in md and md["prereserve_doi"] is True
    cleaned = ZenodoFake().clean_metadata(dict(md))
    assert cleaned["related_identifiers"][0]["relation"] == "isNewVersionOf"


def test_codemeta_3() -> None:
    doc = codemeta(citation(), version="1.2.0", doi="10.5281/zenodo.7", runtime="python:3.12")
    assert doc["@context"] == "https://w3id.org/codemeta/3.0"
    assert doc["@type"] == "SoftwareSourceCode"
    assert doc["version"] == "1.2.0"
    assert doc["identifier"] == "https://doi.org/10.5281/zenodo.7"
    assert doc["license"] == "https://spdx.org/licenses/Apache-2.0"
    assert doc["datePublished"] == "2026-05-19"
    assert doc["author"][0] == {
        "@type": "Person",
        "@id": "https://orcid.org/0000-0002-1825-0097",
        "givenName": "Jean-Paul",
        "familyName": "von Müller Jr.",
        "affiliation": {"@type": "Organization", "name": "XFEL"},
    }
    assert doc["author"][2] == {"@type": "Organization", "name": "DESY & Co"}
    assert doc["codeRepository"] == "https://gitlab.example.org/g/peaks"


def test_bibtex_escapes_and_keeps_unicode() -> None:
    entry = bibtex(citation(), version="1.2.0", doi="10.5281/zenodo.7")
    assert entry.startswith("@software{muller2026peak,\n")
    assert r"title = {{Peak finder: 100\% \{fast\} \& \#1\_tool}}" in entry
    assert r"author = {von Müller, Jr., Jean-Paul and Ōsaka, Hana and {DESY \& Co}}" in entry
    assert "year = {2026}" in entry and "version = {1.2.0}" in entry
    assert "doi = {10.5281/zenodo.7}" in entry and "url = {https://doi.org/10.5281/zenodo.7}" in entry
    assert entry.count("{") == entry.count("}") - entry.count(r"\}") + entry.count(r"\{")


def test_apa_reference() -> None:
    text = apa(citation(), version="1.2.0", doi="10.5281/zenodo.7")
    assert text == (
        "von Müller Jr., J.-P., Ōsaka, H., & DESY & Co (2026). Peak finder: 100% {fast} & #1_tool "
        "(Version 1.2.0) [Computer software]. Zenodo. https://doi.org/10.5281/zenodo.7"
    )
    single = citation(authors=[{"family-names": "Doe", "given-names": "Jane Mary"}])
    assert apa(single, doi=None).startswith("Doe, J. M. (2026). ")
    assert apa(single, doi=None).endswith("[Computer software]. https://gitlab.example.org/g/peaks")


def test_apa_with_many_authors_elides() -> None:
    many = citation(authors=[{"family-names": f"A{i}", "given-names": "B"} for i in range(25)])
    text = apa(many)
    assert "A18, B., . . . A24, B." in text and "A19" not in text


@given(st.text(min_size=1, max_size=40))
def test_bibtex_escape_leaves_no_bare_specials(text: str) -> None:
    escaped = bibtex_escape(text)
    # Remove the escape sequences we produce; what is left must not contain a bare special.
    rest = re.sub(r"\\textbackslash\{\}|\\textasciitilde\{\}|\\textasciicircum\{\}|\\[{}#$%&_]", "", escaped)
    assert not set(rest) & set("\\{}#$%&_~^")
    # Everything else, unicode included, passes through unchanged.
    assert set(rest) == set(text) - set("\\{}#$%&_~^")


@given(
    st.text(alphabet=st.characters(categories=["L", "M", "Zs", "Pd"]), min_size=1, max_size=20).filter(
        lambda s: s.strip()
    )
)
def test_unicode_names_survive_every_format(name: str) -> None:
    cit = citation(authors=[{"family-names": name, "given-names": "Ana"}])
    cleaned = " ".join(name.split())
    md = zenodo_metadata(cit, version="1.0.0", publication_date=date(2026, 1, 1))
    assert md["creators"][0]["name"] == f"{cleaned}, Ana"
    assert cleaned in bibtex(cit)
    assert cleaned in apa(cit)
    assert re.fullmatch(r"@software\{[a-z0-9]+,", bibtex(cit).splitlines()[0])


def test_archive_problems_accepts_a_good_citation() -> None:
    assert archive_problems(citation(), MANIFEST, "1.2.0") == []


def test_archive_problems_lists_every_issue() -> None:
    # Built directly: parse_citation already refuses a nameless author, a Citation model does not.
    bad = citation().model_copy(
        update={
            "authors": [
                Author(affiliation="Nowhere"),
                Author(family_names="Doe, Jane"),
                Author(family_names="X", orcid="https://orcid.org/0000-0002-1825-0098"),
            ],
            "license": "GPL-3.0-or-later-ish",
        }
    )
    problems = archive_problems(bad, MANIFEST, "v1.2")
    found = {(p.field, p.message.split(" ")[0]) for p in problems}
    assert ("authors.0", "author") in found
    assert ("authors.1", "author") in found
    assert ("authors.2.orcid", "ORCID") in found
    assert ("version", "version") in found
    assert ("license", "'GPL-3.0-or-later-ish'") in found
    assert all(p.hint for p in problems)
    no_license = parse_citation({k: v for k, v in BASE.items() if k != "license"})
    assert [p.field for p in archive_problems(no_license, MANIFEST)] == ["license"]


def test_orcid_checksum() -> None:
    assert orcid_checksum_ok("0000-0002-1825-0097")
    assert orcid_checksum_ok("0000-0002-1694-233X")
    assert not orcid_checksum_ok("0000-0002-1825-0098")
    assert not orcid_checksum_ok("0000-0002-1825")


def test_crosswalk_reads_nothing_from_disk(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert zenodo_metadata(citation(), version="1.0.0", publication_date=date(2026, 1, 1))["title"]
