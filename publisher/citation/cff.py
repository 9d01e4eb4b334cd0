"""Read and validate ``CITATION.cff`` against the official Citation File Format 1.2.0 schema.

The schema file ``cff-schema-1.2.0.json`` is the one published by the citation-file-format project
(CC-BY-4.0). We validate with ``jsonschema`` rather than ``cffconvert`` because cffconvert pins an old
jsonschema that conflicts with the rest of our dependencies.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from pydantic import BaseModel, Field

from publisher.manifest.problems import Problem, ProblemsError
from publisher.manifest.yamlfile import line_of, plain, read_yaml

SCHEMA_FILE = Path(__file__).with_name("cff-schema-1.2.0.json")


class Author(BaseModel):
    """A person (given/family names) or an entity (name)."""

    given_names: str | None = None
    family_names: str | None = None
    name: str | None = None
    orcid: str | None = None
    affiliation: str | None = None
    email: str | None = None

    @property
    def display(self) -> str:
        """``Family, Given`` for persons (Zenodo, BibTeX), the name for entities."""
        if self.family_names:
            return f"{self.family_names}, {self.given_names}" if self.given_names else self.family_names
        return self.name or ""

    @property
    def orcid_id(self) -> str | None:
        """The bare ORCID iD (``0000-0002-1825-0097``) without the URL prefix."""
        return self.orcid.rstrip("/").rsplit("/", 1)[-1] if self.orcid else None


class Citation(BaseModel):
    """The citation fields faaspub uses (the full CFF document is kept in ``raw``)."""

    title: str
    message: str
    authors: list[Author]
    version: str | None = None
    license: str | list[str] | None = None
    keywords: list[str] = Field(default_factory=list)
    abstract: str | None = None
    doi: str | None = None
    repository_code: str | None = None
    date_released: date | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def licenses(self) -> list[str]:
        if self.license is None:
            return []
        return [self.license] if isinstance(self.license, str) else list(self.license)


@cache
def _validator() -> Draft7Validator:
    return Draft7Validator(
        json.loads(SCHEMA_FILE.read_text(encoding="utf-8")), format_checker=FormatChecker()
    )


def _hint(error: Any) -> str | None:
    field = ".".join(str(p) for p in error.absolute_path)
    if field == "license" or field.startswith("license."):
        return "use an SPDX identifier such as MIT, Apache-2.0 or BSD-3-Clause"
    if field.endswith("orcid"):
        return "write the ORCID as a URL: https://orcid.org/0000-0002-1825-0097"
    if field.startswith("authors"):
        return "each author needs family-names and given-names, or name for an organisation"
    if error.validator == "required":
        return "cff-version, message, title and authors are required"
    return None


def _most_relevant(error: Any) -> Any:
    """For anyOf/oneOf, the error of the branch that came closest (fewest errors, then deepest)."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return error
    branches: dict[Any, list[Any]] = {}
    for sub in error.context:
        branches.setdefault(sub.schema_path[0], []).append(sub)
    closest = min(branches.values(), key=lambda errs: (len(errs), -max(len(e.path) for e in errs)))
    return _most_relevant(max(closest, key=lambda e: len(e.path)))


def _message(error: Any) -> str:
    if error.validator == "enum":
        return f"{error.instance!r} is not an allowed value"
    return str(error.message)


def _author_problems(document: dict[str, Any], data: Any, file: str) -> list[Problem]:
    """The schema lets a person have no name at all; a citation needs one."""
    problems = []
    for i, author in enumerate(document.get("authors") or []):
        if isinstance(author, dict) and not (author.get("family-names") or author.get("name")):
            problems.append(
                Problem(
                    file,
                    f"authors.{i}",
                    "author has no name",
                    line_of(data, ("authors", i)),
                    "give family-names and given-names, or name for an organisation",
                )
            )
    return problems


def parse_citation(data: Any, file: str = "CITATION.cff") -> Citation:
    """Validate parsed CFF (with line info) and map it to :class:`Citation`."""
    document = plain(data)
    for value in ("date-released",):
        if isinstance(document.get(value), date):
            document[value] = document[value].isoformat()
    errors = [_most_relevant(e) for e in _validator().iter_errors(document)]
    problems = [
        Problem(
            file,
            ".".join(str(p) for p in e.absolute_path),
            _message(e),
            line_of(data, tuple(e.absolute_path)),
            _hint(e),
        )
        for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    ]
    if not problems:
        problems = _author_problems(document, data, file)
    if problems:
        raise ProblemsError(problems)
    authors = [
        Author(**{k.replace("-", "_"): v for k, v in a.items() if k.replace("-", "_") in Author.model_fields})
        for a in document["authors"]
    ]
    return Citation(
        title=document["title"],
        message=document["message"],
        authors=authors,
        version=str(document["version"]) if document.get("version") is not None else None,
        license=document.get("license"),
        keywords=[str(k) for k in document.get("keywords", [])],
        abstract=document.get("abstract"),
        doi=document.get("doi"),
        repository_code=document.get("repository-code"),
        date_released=document.get("date-released"),
        raw=document,
    )


def find_citation(folder: Path, name: str = "CITATION.cff") -> Path:
    """The citation file of a function folder: its own, else the repository's (a repository with
    several functions may keep one CITATION.cff at its root). Without either, the folder's own path."""
    own = Path(folder) / name
    if own.is_file() or Path(name).name != name:
        return own
    for parent in Path(folder).resolve().parents:
        if (parent / name).is_file():
            return parent / name
        if (parent / ".git").exists():
            break
    return own


def load_citation(path: Path) -> Citation:
    """Read and validate a CITATION.cff file, raising :class:`ProblemsError` with every problem."""
    return parse_citation(read_yaml(Path(path), what="CITATION.cff"), Path(path).name)
