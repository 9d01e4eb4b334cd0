"""InvenioRDM's native records API (``/api/records``) as :class:`~publisher.archive.records.Records`.

What differs from Zenodo's legacy API (reference: zenodo.md §2): drafts live at
``/records/{id}/draft``; a DOI is reserved with ``POST …/draft/pids/doi``; files take three calls
(declare the key, PUT the content, commit; the commit answers the MD5, which is checked); a new
version (``POST /records/{id}/versions``) starts without files and without a DOI; ids are strings
(``4d0ns-ntd89``) and the concept is the record's ``parent``. Links the server returns are followed
where it gives them. Facility repositories (institutional InvenioRDM instances) take releases this way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from publisher.archive.http import ArchiveError, ArchiveHttp, md5_of
from publisher.archive.records import Description, Draft, RemoteFile
from publisher.citation.crosswalk import rdm_metadata

ACCEPT = "application/vnd.inveniordm.v1+json"


class InvenioError(ArchiveError):
    """InvenioRDM refused a request; ``status`` is the HTTP status (0 when it never answered)."""


class InvenioClient(ArchiveHttp):
    """One InvenioRDM instance (``url`` is its API base, ``https://HOST/api``) with one token."""

    service = "InvenioRDM"
    error = InvenioError

    def __init__(self, url: str, token: str | None, **options: Any) -> None:
        super().__init__(url, token, **options)
        # Zenodo answers its own "Zenodo-JSON" unless asked for InvenioRDM's; other instances ignore it.
        self._session.headers["Accept"] = f"{ACCEPT}, application/json"

    # -- reading ---------------------------------------------------------------------------------

    def _files(self, doc: Mapping[str, Any]) -> tuple[RemoteFile, ...]:
        link = (doc.get("links") or {}).get("files")
        if not link:
            return ()
        entries = self.request("GET", link).json().get("entries") or []
        if isinstance(entries, dict):  # a published record's listing is keyed by file name
            entries = list(entries.values())
        return tuple(
            RemoteFile(str(e.get("key", "")), str(e.get("checksum") or "").removeprefix("md5:"), e)
            for e in entries
            if isinstance(e, dict)
        )

    def _draft(self, doc: Mapping[str, Any]) -> Draft:
        parent = doc.get("parent") or {}
        notes = "\n".join(
            str(d.get("description", ""))
            for d in (doc.get("metadata") or {}).get("additional_descriptions") or []
        )
        return Draft(
            id=str(doc["id"]),
            concept=str(parent.get("id") or ""),
            published=bool(doc.get("is_published")) and not doc.get("is_draft"),
            files=self._files(doc),
            notes=notes,
            doi=((doc.get("pids") or {}).get("doi") or {}).get("identifier"),
            concept_doi=((parent.get("pids") or {}).get("doi") or {}).get("identifier"),
            url=(doc.get("links") or {}).get("self_html"),
            raw={"id": doc["id"], "links": dict(doc.get("links") or {}), "pids": doc.get("pids") or {}},
        )

    def _link(self, draft: Draft, name: str, default: str) -> str:
        return str((draft.raw.get("links") or {}).get(name) or default)

    def get(self, record_id: str) -> Draft | None:
        """The published record, else the draft, ``None`` when neither exists (deleted draft)."""
        for path in (f"records/{quote(record_id)}", f"records/{quote(record_id)}/draft"):
            response = self.request("GET", path, expect=(200, 404, 410))
            if response.status_code == 200:
                return self._draft(response.json())
        return None

    def drafts(self) -> list[Draft]:
        response = self.request(
            "GET", "user/records", params={"q": "is_published:false", "sort": "newest", "size": 100}
        )
        return [self._draft(hit) for hit in response.json().get("hits", {}).get("hits", [])]

    def latest_record_id(self, record_id: str) -> str:
        # The server answers with a redirect to the latest version, which requests follows.
        return str(self.request("GET", f"records/{quote(record_id)}/versions/latest").json()["id"])

    def record_file(self, record_id: str, name: str) -> bytes | None:
        response = self.request(
            "GET", f"records/{quote(record_id)}/files/{quote(name)}/content", expect=(200, 404, 410)
        )
        return response.content if response.status_code == 200 else None

    def find(self, doi: str) -> str | None:
        response = self.request("GET", "records", params={"q": f'pids.doi.identifier:"{doi}"', "size": 1})
        hits = response.json().get("hits", {}).get("hits", [])
        return str(hits[0]["id"]) if hits else None

    # -- writing ---------------------------------------------------------------------------------

    def create(self, metadata: Mapping[str, Any]) -> Draft:
        response = self.request("POST", "records", json=dict(metadata), expect=(201,))
        return self._with_doi(response.json())

    def update(self, draft: Draft, metadata: Mapping[str, Any]) -> Draft:
        url = self._link(draft, "self", f"records/{quote(draft.id)}/draft")
        return self._with_doi(self.request("PUT", url, json=dict(metadata)).json())

    def new_version(self, latest_id: str) -> Draft:
        """A draft of the next version: no files, no version number, no DOI yet (reserved here)."""
        response = self.request("POST", f"records/{quote(latest_id)}/versions", expect=(200, 201))
        return self._with_doi(response.json())

    def _with_doi(self, doc: Mapping[str, Any]) -> Draft:
        """The draft with a reserved DOI (reserving one when it has none: a crash may have come first)."""
        if ((doc.get("pids") or {}).get("doi") or {}).get("identifier"):
            return self._draft(doc)
        url = (doc.get("links") or {}).get("reserve_doi") or f"records/{quote(str(doc['id']))}/draft/pids/doi"
        return self._draft(self.request("POST", url, expect=(200, 201)).json())

    def delete_file(self, draft: Draft, file: RemoteFile) -> None:
        url = (file.handle.get("links") or {}).get("self") or (
            f"records/{quote(draft.id)}/draft/files/{quote(file.name)}"
        )
        self.request("DELETE", url, expect=(200, 204, 404))

    def upload(self, draft: Draft, name: str, path: Path) -> None:
        """Declare, upload and commit ``path`` as ``name``; the committed MD5 must be ours."""
        files = f"records/{quote(draft.id)}/draft/files"
        declared = self.request("POST", files, json=[{"key": name}], expect=(201,)).json()
        entry: dict[str, Any] = next((e for e in declared.get("entries") or [] if e.get("key") == name), {})
        links = entry.get("links") or {}
        expected = md5_of(path)
        with path.open("rb") as body:
            self.request(
                "PUT",
                links.get("content") or f"{files}/{quote(name)}/content",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        committed = self.request("POST", links.get("commit") or f"{files}/{quote(name)}/commit").json()
        got = str(committed.get("checksum", "")).removeprefix("md5:")
        if got != expected:
            raise InvenioError(
                f"InvenioRDM stored {name} with checksum md5:{got}, expected md5:{expected}",
                hint="the upload was corrupted in transit; the release is retried from a clean draft",
            )

    def publish(self, draft: Draft) -> Draft:
        url = self._link(draft, "publish", f"records/{quote(draft.id)}/draft/actions/publish")

        def current() -> Draft | None:
            found = self.get(draft.id)
            return found if found is not None and found.published else None

        def answer(response: requests.Response) -> Draft:
            return self._draft(response.json())

        return self.publish_checked(url, (202,), answer, current)

    def delete(self, record_id: str) -> None:
        self.request("DELETE", f"records/{quote(record_id)}/draft", expect=(204, 404, 410))

    def metadata(self, about: Description) -> dict[str, Any]:
        """The whole draft body: public record and files, and the RDM metadata.

        Communities are not sent: an InvenioRDM community takes a record through a review request,
        not a metadata field.
        """
        return {
            "access": {"record": "public", "files": "public"},
            "files": {"enabled": True},
            "metadata": rdm_metadata(
                about.citation,
                version=about.version,
                publication_date=about.publication_date,
                details=about.details,
                related=about.related,
                notes=about.notes,
            ),
        }
