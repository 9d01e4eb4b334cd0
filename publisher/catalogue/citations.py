"""Citation exports of a catalogue version (BibTeX, APA, CodeMeta, CFF) from its stored CITATION.cff data.

``Version.citation`` holds the :class:`~publisher.citation.cff.Citation` model dump taken at release
time; the exports carry the version's own DOI and number, not whatever the CFF said then. A version's
citation never changes, so the exports are kept (by content) instead of rebuilt for every page view.
"""

from __future__ import annotations

import io
import json
from datetime import date
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML

from publisher.citation.cff import Citation
from publisher.citation.crosswalk import apa, bibtex, codemeta


def exports(
    data: dict[str, Any], version: str, doi: str | None, runtime: str | None, released: date | None = None
) -> dict[str, Any] | None:
    """``{"bibtex", "apa", "cff", "codemeta"}`` for a stored citation, ``None`` when there is none.

    ``released`` (the version's publication date) supplies the year when the CFF has no
    ``date-released``, so the reference does not read "n.d.".
    """
    if not data:
        return None
    cached = _exports(json.dumps(data, sort_keys=True, default=str), version, doi, runtime, released)
    # A copy: the cached documents are shared by every caller.
    return json.loads(cached) if cached is not None else None


@lru_cache(maxsize=1024)
def _exports(
    data: str, version: str, doi: str | None, runtime: str | None, released: date | None
) -> str | None:
    try:
        citation = Citation.model_validate_json(data)
    except ValidationError:
        return None  # a row written by an older release format: show the version without citation
    if citation.date_released is None and released is not None:
        citation = citation.model_copy(update={"date_released": released})
    documents = {
        "bibtex": bibtex(citation, version=version, doi=doi),
        "apa": apa(citation, version=version, doi=doi),
        "cff": cff_text(citation, version, doi),
        "codemeta": codemeta(citation, version=version, doi=doi, runtime=runtime),
    }
    return json.dumps(documents)


def cff_text(citation: Citation, version: str, doi: str | None) -> str:
    """A ``CITATION.cff`` for this exact version (the version and DOI filled in)."""
    authors = []
    for author in citation.authors:
        entry = {
            "family-names": author.family_names,
            "given-names": author.given_names,
            "name": author.name,
            "orcid": author.orcid,
            "affiliation": author.affiliation,
        }
        authors.append({k: v for k, v in entry.items() if v})
    document: dict[str, Any] = {
        "cff-version": "1.2.0",
        "message": citation.message,
        "type": "software",
        "title": citation.title,
        "abstract": citation.abstract,
        "authors": authors,
        "version": version,
        "doi": doi or citation.doi,
        "license": citation.license,
        "repository-code": citation.repository_code,
        "date-released": citation.date_released.isoformat() if citation.date_released else None,
        "keywords": list(citation.keywords) or None,
    }
    yaml = YAML()  # round-trip mode keeps the CFF key order (safe mode sorts keys)
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump({k: v for k, v in document.items() if v}, buffer)
    return buffer.getvalue()
