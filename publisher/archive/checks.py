"""Archive readiness: what Zenodo would refuse at publish, found before any deposition exists.

``faaspub validate`` shows these next to the manifest problems; the release flow refuses to open a
draft while any is left, so a bad CITATION.cff never leaves a half-made record behind.
"""

from __future__ import annotations

import json
import re
from functools import cache

from publisher.citation.cff import SCHEMA_FILE, Citation
from publisher.manifest.model import Manifest
from publisher.manifest.problems import Problem

VERSION_PATTERN = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_ORCID = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")


@cache
def spdx_ids() -> frozenset[str]:
    """The SPDX license ids the bundled CFF 1.2.0 schema knows."""
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return frozenset(schema["definitions"]["license-enum"]["enum"])


def orcid_checksum_ok(orcid: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of a bare ORCID iD (Zenodo rejects a wrong one)."""
    if not _ORCID.match(orcid):
        return False
    digits = orcid.replace("-", "")
    total = 0
    for char in digits[:-1]:
        total = (total + int(char)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


def archive_problems(citation: Citation, manifest: Manifest, version: str | None = None) -> list[Problem]:
    """Every reason Zenodo would refuse this release; empty when it can be archived."""
    file = manifest.citation
    problems: list[Problem] = []
    if not citation.title.strip():
        problems.append(Problem(file, "title", "title is empty", hint="the title is the record's name"))
    if not citation.licenses:
        problems.append(
            Problem(
                file,
                "license",
                "no license: Zenodo requires one for open software",
                hint="add e.g. 'license: MIT' (an SPDX identifier)",
            )
        )
    for lic in citation.licenses:
        if lic not in spdx_ids():
            problems.append(
                Problem(
                    file,
                    "license",
                    f"{lic!r} is not an SPDX license identifier",
                    hint="use an SPDX identifier such as MIT, Apache-2.0 or BSD-3-Clause",
                )
            )
    if not citation.authors:
        problems.append(Problem(file, "authors", "no authors", hint="list at least one author"))
    for index, author in enumerate(citation.authors):
        where = f"authors.{index}"
        if not (author.family_names or "").strip() and not (author.name or "").strip():
            problems.append(
                Problem(
                    file,
                    where,
                    "author has no name",
                    hint="family-names and given-names for a person, name for an entity",
                )
            )
        elif "," in (author.family_names or "") + (author.given_names or ""):
            problems.append(
                Problem(
                    file,
                    where,
                    "author name contains a comma",
                    hint="put the family name in family-names and the rest in given-names",
                )
            )
        if author.orcid and not orcid_checksum_ok(author.orcid_id or ""):
            problems.append(
                Problem(
                    file,
                    f"{where}.orcid",
                    f"ORCID {author.orcid} has a wrong check digit",
                    hint="copy the ORCID iD from orcid.org",
                )
            )
    if version is not None and not VERSION_PATTERN.match(version):
        problems.append(
            Problem(
                "git tag",
                "version",
                f"version {version!r} is not X.Y.Z",
                hint="tag releases as vX.Y.Z, e.g. v1.2.0",
            )
        )
    return problems
