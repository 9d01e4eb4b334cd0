"""Zenodo's legacy deposit API as :class:`~publisher.archive.records.Records` for the release flow."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from publisher.archive.records import Description, Draft, RemoteFile
from publisher.archive.zenodo import Deposition, ZenodoClient
from publisher.citation.crosswalk import zenodo_metadata

_ZENODO_DOI = re.compile(r"^10\.\d{4,9}/zenodo\.(\d+)$")


class ZenodoRecords:
    """Adapts a :class:`ZenodoClient` (one namespace's token).

    ``doi_prefix`` overrides the prefix of pre-reserved DOIs: Zenodo's sandbox registers 10.5072
    DOIs although its drafts show a 10.5281 one.
    """

    def __init__(self, client: ZenodoClient, doi_prefix: str | None = None) -> None:
        self.client = client
        self.doi_prefix = doi_prefix

    def __repr__(self) -> str:
        return f"ZenodoRecords({self.client!r})"

    def draft(self, dep: Deposition) -> Draft:
        if dep.published and dep.doi:
            doi, concept_doi = dep.doi, dep.conceptdoi or None
        else:
            reserved = dep.metadata.get("prereserve_doi")
            shown = str(reserved.get("doi", "")) if isinstance(reserved, dict) else ""
            prefix = self.doi_prefix or shown.split("/", 1)[0] or "10.5281"
            doi = f"{prefix}/zenodo.{dep.prereserved_recid}"
            concept_doi = f"{prefix}/zenodo.{dep.conceptrecid}" if dep.conceptrecid else None
        files = tuple(
            RemoteFile(
                str(f.get("filename") or f.get("key") or ""),
                str(f.get("checksum", "")).removeprefix("md5:"),
                f,
            )
            for f in dep.files
        )
        return Draft(
            id=str(dep.id),
            concept=dep.conceptrecid,
            published=dep.published,
            files=files,
            notes=str(dep.metadata.get("notes", "")),
            doi=doi,
            concept_doi=concept_doi,
            url=dep.links.get("html"),
            raw={"id": dep.id, "links": dep.links},
        )

    @staticmethod
    def _deposition(draft: Draft) -> Deposition:
        return Deposition.from_json(draft.raw)

    def create(self, metadata: Mapping[str, Any]) -> Draft:
        return self.draft(self.client.create(metadata))

    def get(self, record_id: str) -> Draft | None:
        found = self.client.get(int(record_id))
        return self.draft(found) if found is not None else None

    def drafts(self) -> list[Draft]:
        return [self.draft(d) for d in self.client.drafts()]

    def update(self, draft: Draft, metadata: Mapping[str, Any]) -> Draft:
        return self.draft(self.client.update(self._deposition(draft), metadata))

    def new_version(self, latest_id: str) -> Draft:
        return self.draft(self.client.new_version(int(latest_id)))

    def latest_record_id(self, record_id: str) -> str:
        return str(self.client.latest_record_id(int(record_id)))

    def delete_file(self, draft: Draft, file: RemoteFile) -> None:
        self.client.delete_file(self._deposition(draft), file.handle)

    def upload(self, draft: Draft, name: str, path: Path) -> None:
        self.client.upload(self._deposition(draft), name, path)

    def publish(self, draft: Draft) -> Draft:
        return self.draft(self.client.publish(self._deposition(draft)))

    def delete(self, record_id: str) -> None:
        self.client.delete(int(record_id))

    def record_file(self, record_id: str, name: str) -> bytes | None:
        return self.client.record_file(int(record_id), name)

    def find(self, doi: str) -> str | None:
        """The record id behind a Zenodo DOI (``10.5281/zenodo.123`` -> ``123``)."""
        match = _ZENODO_DOI.match(doi)
        return match.group(1) if match else None

    def metadata(self, about: Description) -> dict[str, Any]:
        return zenodo_metadata(
            about.citation,
            version=about.version,
            publication_date=about.publication_date,
            details=about.details,
            communities=about.communities,
            related=about.related,
            notes=about.notes,
        )
