"""Crosswalks from a validated ``CITATION.cff`` to Zenodo metadata, CodeMeta 3.0, BibTeX and APA.

Pure functions of a :class:`~publisher.citation.cff.Citation`: no I/O, no clock (dates are passed
in). Name particles and suffixes (``van der``, ``Jr.``) come from the raw CFF document, which keeps
every field the typed model does not carry.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from publisher.citation.cff import Author, Citation

CODEMETA_CONTEXT = "https://w3id.org/codemeta/3.0"


@dataclass(frozen=True)
class Person:
    """One author, with the name parts every output format needs."""

    family: str | None
    given: str | None
    particle: str | None
    suffix: str | None
    entity: str | None
    orcid: str | None
    affiliation: str | None
    email: str | None

    @property
    def family_full(self) -> str:
        """Family name with its particle and suffix: ``van der Berg Jr.``."""
        return " ".join(p for p in (self.particle, self.family, self.suffix) if p)

    @property
    def inverted(self) -> str:
        """``Family, Given`` (Zenodo's creator format); the name for entities."""
        if self.entity is not None:
            return self.entity
        return f"{self.family_full}, {self.given}" if self.given else self.family_full


def people(citation: Citation) -> list[Person]:
    """The authors in order, completed with particle and suffix from the raw document."""
    raw_authors = citation.raw.get("authors") or []
    result = []
    for index, author in enumerate(citation.authors):
        raw = raw_authors[index] if index < len(raw_authors) and isinstance(raw_authors[index], dict) else {}
        result.append(_person(author, raw))
    return result


def _person(author: Author, raw: Mapping[str, Any]) -> Person:
    is_entity = not author.family_names and not author.given_names
    return Person(
        family=_clean(author.family_names),
        given=_clean(author.given_names),
        particle=_clean(raw.get("name-particle")),
        suffix=_clean(raw.get("name-suffix")),
        entity=(_clean(author.name) or "") if is_entity else None,
        orcid=author.orcid_id,
        affiliation=_clean(author.affiliation),
        email=author.email,
    )


def _clean(value: Any) -> str | None:
    """Collapse whitespace (YAML folding leaves newlines); empty becomes ``None``."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def spdx_license(citation: Citation) -> str | None:
    """The first SPDX id of the citation (Zenodo takes one license per record)."""
    return citation.licenses[0] if citation.licenses else None


# -- Zenodo (legacy deposit metadata) --------------------------------------------------------------


def zenodo_metadata(
    citation: Citation,
    *,
    version: str,
    publication_date: date,
    details: Sequence[str] = (),
    communities: Iterable[str] = (),
    related: Iterable[Mapping[str, str]] = (),
    notes: str | None = None,
) -> dict[str, Any]:
    """The complete ``metadata`` object for ``PUT /deposit/depositions/:id``.

    ``version`` is the release tag's version, not the CFF ``version`` (which may lag behind).
    ``details`` are plain-text paragraphs appended to the description; they are HTML-escaped.
    """
    creators = []
    for person in people(citation):
        creator: dict[str, str] = {"name": person.inverted}
        if person.affiliation:
            creator["affiliation"] = person.affiliation
        if person.orcid:
            creator["orcid"] = person.orcid
        creators.append(creator)
    metadata: dict[str, Any] = {
        "upload_type": "software",
        "title": _clean(citation.title) or citation.title,
        "creators": creators,
        "description": _description(citation, details),
        "access_right": "open",
        "version": version,
        "publication_date": publication_date.isoformat(),
        "prereserve_doi": True,
    }
    license_id = spdx_license(citation)
    if license_id:
        metadata["license"] = license_id.lower()
    keywords = _keywords(citation)
    if keywords:
        metadata["keywords"] = keywords
    community_list = [{"identifier": c} for c in dict.fromkeys(communities)]
    if community_list:
        metadata["communities"] = community_list
    related_list = [dict(r) for r in related]
    if related_list:
        metadata["related_identifiers"] = related_list
    if notes:
        metadata["notes"] = notes
    return metadata


def _description(citation: Citation, details: Sequence[str]) -> str:
    """The abstract (else the title) and ``details`` as HTML paragraphs, each escaped."""
    paragraphs = [_clean(citation.abstract) or citation.title, *details]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)


def _keywords(citation: Citation) -> list[str]:
    return list(dict.fromkeys(k for k in (_clean(k) for k in citation.keywords) if k))


# -- InvenioRDM (native records API) ---------------------------------------------------------------

_DOI = re.compile(r"^10\.\d{4,9}/\S+$")


def rdm_metadata(
    citation: Citation,
    *,
    version: str,
    publication_date: date,
    details: Sequence[str] = (),
    related: Iterable[Mapping[str, str]] = (),
    notes: str | None = None,
) -> dict[str, Any]:
    """The ``metadata`` object of an InvenioRDM draft (DataCite-like: ``person_or_org``, ``rights``,
    ``subjects``, typed ``related_identifiers``); the notes go into ``additional_descriptions``."""
    creators = []
    for person in people(citation):
        if person.entity is not None:
            entity: dict[str, Any] = {"type": "organizational", "name": person.entity}
        else:
            entity = {"type": "personal", "family_name": person.family_full, "given_name": person.given or ""}
        if person.orcid:
            entity["identifiers"] = [{"scheme": "orcid", "identifier": person.orcid}]
        creator: dict[str, Any] = {"person_or_org": entity}
        if person.affiliation:
            creator["affiliations"] = [{"name": person.affiliation}]
        creators.append(creator)
    metadata: dict[str, Any] = {
        "resource_type": {"id": "software"},
        "title": _clean(citation.title) or citation.title,
        "creators": creators,
        "description": _description(citation, details),
        "publication_date": publication_date.isoformat(),
        "version": version,
    }
    license_id = spdx_license(citation)
    if license_id:
        metadata["rights"] = [{"id": license_id.lower()}]
    keywords = _keywords(citation)
    if keywords:
        metadata["subjects"] = [{"subject": k} for k in keywords]
    related_list = [
        {
            "identifier": r["identifier"],
            "scheme": "doi" if _DOI.match(r["identifier"]) else "url",
            "relation_type": {"id": r["relation"].lower()},
            "resource_type": {"id": r.get("resource_type", "software")},
        }
        for r in related
    ]
    if related_list:
        metadata["related_identifiers"] = related_list
    if notes:
        metadata["additional_descriptions"] = [{"description": notes, "type": {"id": "other"}}]
    return metadata


# -- CodeMeta 3.0 ----------------------------------------------------------------------------------


def codemeta(
    citation: Citation,
    *,
    version: str | None = None,
    doi: str | None = None,
    date_published: date | None = None,
    runtime: str | None = None,
) -> dict[str, Any]:
    """A CodeMeta 3.0 ``SoftwareSourceCode`` document (``codemeta.json``)."""
    doc: dict[str, Any] = {
        "@context": CODEMETA_CONTEXT,
        "@type": "SoftwareSourceCode",
        "name": _clean(citation.title),
        "author": [_codemeta_agent(p) for p in people(citation)],
    }
    optional: dict[str, Any] = {
        "description": _clean(citation.abstract),
        "version": version or citation.version,
        "codeRepository": citation.repository_code,
        "license": [f"https://spdx.org/licenses/{lic}" for lic in citation.licenses] or None,
        "keywords": list(citation.keywords) or None,
        "identifier": _doi_url(doi or citation.doi),
        "datePublished": (date_published or citation.date_released or None),
        "runtimePlatform": runtime,
    }
    for key, value in optional.items():
        if value:
            doc[key] = value.isoformat() if isinstance(value, date) else value
    if isinstance(doc.get("license"), list) and len(doc["license"]) == 1:
        doc["license"] = doc["license"][0]
    return doc


def _codemeta_agent(person: Person) -> dict[str, Any]:
    if person.entity is not None:
        return {"@type": "Organization", "name": person.entity}
    agent: dict[str, Any] = {"@type": "Person"}
    if person.orcid:
        agent["@id"] = f"https://orcid.org/{person.orcid}"
    if person.given:
        agent["givenName"] = person.given
    agent["familyName"] = person.family_full
    if person.affiliation:
        agent["affiliation"] = {"@type": "Organization", "name": person.affiliation}
    if person.email:
        agent["email"] = person.email
    return agent


def _doi_url(doi: str | None) -> str | None:
    return f"https://doi.org/{doi}" if doi else None


# -- BibTeX ----------------------------------------------------------------------------------------

_BIBTEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "{": r"\{",
    "}": r"\}",
    "#": r"\#",
    "$": r"\$",
    "%": r"\%",
    "&": r"\&",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_BIBTEX_RE = re.compile("|".join(re.escape(c) for c in _BIBTEX_SPECIAL))


def bibtex_escape(text: str) -> str:
    """Escape BibTeX/LaTeX specials; non-ASCII letters stay as UTF-8 (biber and bibtex8 read them)."""
    return _BIBTEX_RE.sub(lambda m: _BIBTEX_SPECIAL[m.group(0)], text)


def bibtex(
    citation: Citation,
    *,
    version: str | None = None,
    doi: str | None = None,
    year: int | None = None,
    url: str | None = None,
    key: str | None = None,
) -> str:
    """A ``@software`` entry (biblatex); the title is braced so its capitalisation is kept."""
    persons = people(citation)
    year = year or (citation.date_released.year if citation.date_released else None)
    version = version or citation.version
    doi = doi or citation.doi
    fields: list[tuple[str, str]] = [
        ("author", " and ".join(_bibtex_name(p) for p in persons)),
        ("title", "{" + bibtex_escape(_clean(citation.title) or "") + "}"),
    ]
    if year:
        fields.append(("year", str(year)))
    if version:
        fields.append(("version", bibtex_escape(version)))
    if doi:
        fields.append(("doi", bibtex_escape(doi)))
    link = url or _doi_url(doi) or citation.repository_code
    if link:
        fields.append(("url", link.replace("%", r"\%").replace("#", r"\#")))
    if citation.licenses:
        fields.append(("license", bibtex_escape(", ".join(citation.licenses))))
    if citation.repository_code and citation.repository_code != link:
        fields.append(("repository", citation.repository_code))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@software{{{key or bibtex_key(citation, year, version)},\n{body}\n}}\n"


def _bibtex_name(person: Person) -> str:
    if person.entity is not None:
        return "{" + bibtex_escape(person.entity) + "}"  # braced: an organisation is not Last, First
    family = " ".join(p for p in (person.particle, person.family) if p)
    parts = [bibtex_escape(family)]
    if person.suffix:
        parts.append(bibtex_escape(person.suffix))
    if person.given:
        parts.append(bibtex_escape(person.given))
    return ", ".join(parts)


def bibtex_key(citation: Citation, year: int | None, version: str | None) -> str:
    """``familyYEARtitleword`` in ASCII letters and digits, e.g. ``muller2026thumbnailer``."""
    first = people(citation)[0] if citation.authors else None
    name = (first.family or first.entity or "") if first else ""
    title_word = next(iter((_clean(citation.title) or "").split()), "")
    base = _ascii_slug(name) + (str(year) if year else "") + _ascii_slug(title_word)
    if version and not year:
        base += _ascii_slug(version)
    return base or "software"


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]", "", folded).lower()


# -- APA 7 -----------------------------------------------------------------------------------------


def apa(
    citation: Citation,
    *,
    version: str | None = None,
    doi: str | None = None,
    year: int | None = None,
    publisher: str | None = "Zenodo",
) -> str:
    """An APA 7 reference: ``Doe, J., & Roe, R. (2026). Title (Version 1.2.0) [Computer software]. …``."""
    year = year or (citation.date_released.year if citation.date_released else None)
    version = version or citation.version
    doi = doi or citation.doi
    title = _clean(citation.title) or ""
    text = f"{_apa_authors(people(citation))} ({year or 'n.d.'}). {title}"
    if version:
        text += f" (Version {version})"
    text += " [Computer software]."
    if publisher and doi:
        text += f" {publisher}."
    link = _doi_url(doi) or citation.repository_code
    if link:
        text += f" {link}"
    return text


def _apa_authors(persons: Sequence[Person]) -> str:
    names = [_apa_name(p) for p in persons]
    if len(names) == 1:
        return names[0]
    if len(names) <= 20:
        return ", ".join(names[:-1]) + ", & " + names[-1]
    return ", ".join(names[:19]) + ", . . . " + names[-1]


def _apa_name(person: Person) -> str:
    if person.entity is not None:
        return person.entity
    initials = " ".join(_initials(word) for word in (person.given or "").split())
    return f"{person.family_full}, {initials}" if initials else person.family_full


def _initials(word: str) -> str:
    """``Jean-Paul`` -> ``J.-P.``; works for any script's first letter."""
    return "-".join(f"{part[0]}." for part in word.split("-") if part)
