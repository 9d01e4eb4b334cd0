"""A small client for Zenodo's legacy deposit API, on the archive transport (:mod:`publisher.archive.http`).

A publish that ends in a 5xx or a timeout is checked by reading the deposition's state before
anything is retried (Zenodo may have published anyway). The client follows the ``links.*`` the
server returns instead of building URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from publisher.archive.http import ArchiveError, ArchiveHttp, md5_of

log = logging.getLogger(__name__)

__all__ = ["Deposition", "ZenodoClient", "ZenodoError", "md5_of"]


class ZenodoError(ArchiveError):
    """Zenodo refused a request; ``status`` is the HTTP status (0 when it never answered)."""


@dataclass(frozen=True)
class Deposition:
    """The parts of a deposition the release flow reads."""

    id: int
    conceptrecid: str
    state: str
    submitted: bool
    metadata: dict[str, Any]
    files: list[dict[str, Any]]
    links: dict[str, str]
    doi: str | None = None
    conceptdoi: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Deposition:
        return cls(
            id=int(data["id"]),
            conceptrecid=str(data.get("conceptrecid") or ""),
            state=str(data.get("state", "")),
            submitted=bool(data.get("submitted", False)),
            metadata=dict(data.get("metadata") or {}),
            files=list(data.get("files") or []),
            links=dict(data.get("links") or {}),
            doi=data.get("doi") or None,
            conceptdoi=data.get("conceptdoi") or None,
        )

    @property
    def published(self) -> bool:
        return self.submitted and self.state in ("done", "inprogress")

    @property
    def prereserved_recid(self) -> int:
        """The record id behind the pre-reserved DOI (its prefix may be wrong on the sandbox)."""
        reserved = self.metadata.get("prereserve_doi") or {}
        return int(reserved.get("recid") or self.id) if isinstance(reserved, dict) else self.id


class ZenodoClient(ArchiveHttp):
    """The deposit API calls the release flow needs; ``url`` is the API base (``…/api``)."""

    service = "Zenodo"
    error = ZenodoError

    # -- deposit API -----------------------------------------------------------------------------

    def create(self, metadata: Mapping[str, Any]) -> Deposition:
        response = self.request("POST", "deposit/depositions", json={"metadata": dict(metadata)})
        return Deposition.from_json(response.json())

    def get(self, deposition_id: int) -> Deposition | None:
        """The deposition, or ``None`` when Zenodo no longer has it (deleted draft)."""
        response = self.request("GET", f"deposit/depositions/{deposition_id}", expect=(200, 404, 410))
        return Deposition.from_json(response.json()) if response.status_code == 200 else None

    def drafts(self) -> list[Deposition]:
        """Own unpublished depositions (to find a draft a crashed run left behind)."""
        response = self.request(
            "GET", "deposit/depositions", params={"status": "draft", "sort": "mostrecent", "size": 100}
        )
        return [Deposition.from_json(item) for item in response.json()]

    def update(self, deposition: Deposition, metadata: Mapping[str, Any]) -> Deposition:
        """Replace the whole metadata object (Zenodo's PUT drops whatever is not re-sent)."""
        url = deposition.links.get("self") or f"deposit/depositions/{deposition.id}"
        response = self.request("PUT", url, json={"metadata": dict(metadata)})
        return Deposition.from_json(response.json())

    def new_version(self, latest_id: int) -> Deposition:
        """A new draft under the concept of ``latest_id`` (which must be the latest published version).

        Zenodo-RDM answers with the new draft, the documented API with the old record; both carry the
        new draft in ``links.latest_draft``, so that is what is read.
        """
        response = self.request("POST", f"deposit/depositions/{latest_id}/actions/newversion")
        link = str(response.json()["links"]["latest_draft"])
        new_id = int(link.rstrip("/").rsplit("/", 1)[1])
        draft = self.get(new_id)
        if draft is None:
            raise ZenodoError(f"Zenodo new version draft {new_id} vanished right after it was created")
        return draft

    def latest_record_id(self, record_id: int) -> int:
        """The id of the latest published version of ``record_id``'s concept (records API)."""
        response = self.request("GET", f"records/{record_id}/versions/latest")
        return int(response.json()["id"])

    def delete_file(self, deposition: Deposition, file: Mapping[str, Any]) -> None:
        url = (file.get("links") or {}).get(
            "self"
        ) or f"deposit/depositions/{deposition.id}/files/{file['id']}"
        self.request("DELETE", url, expect=(200, 204, 404))

    def upload(self, deposition: Deposition, name: str, path: Path) -> dict[str, Any]:
        """Stream ``path`` into the draft's bucket as ``name`` and verify Zenodo's md5 of it."""
        bucket = deposition.links.get("bucket")
        if not bucket:
            raise ZenodoError(
                f"Zenodo deposition {deposition.id} has no bucket link",
                hint="Zenodo sometimes omits links.bucket right after a migration; retry the release",
            )
        expected = md5_of(path)
        with path.open("rb") as body:
            response = self.request(
                "PUT",
                f"{bucket}/{quote(name)}",
                data=body,
                headers={"Content-Type": "application/octet-stream"},
            )
        got = str(response.json().get("checksum", "")).removeprefix("md5:")
        if got != expected:
            raise ZenodoError(
                f"Zenodo stored {name} with checksum md5:{got}, expected md5:{expected}",
                hint="the upload was corrupted in transit; the release is retried from a clean draft",
            )
        return dict(response.json())

    def publish(self, deposition: Deposition) -> Deposition:
        """Publish; after a 5xx or a timeout read the state first, since Zenodo may have published."""
        url = deposition.links.get("publish") or f"deposit/depositions/{deposition.id}/actions/publish"

        def current() -> Deposition | None:
            found = self.get(deposition.id)
            return found if found is not None and found.published else None

        return self.publish_checked(url, (202,), lambda r: Deposition.from_json(r.json()), current)

    def record_file(self, record_id: int, name: str) -> bytes | None:
        """The content of file ``name`` of the published record (records API), if it has one."""
        response = self.request("GET", f"records/{record_id}", expect=(200, 404, 410))
        if response.status_code != 200:
            return None
        for file in response.json().get("files") or []:
            if file.get("key") == name and (file.get("links") or {}).get("self"):
                return self.request("GET", file["links"]["self"]).content
        return None

    def delete(self, deposition_id: int) -> None:
        """Delete an unpublished draft; a draft that is already gone is fine."""
        self.request("DELETE", f"deposit/depositions/{deposition_id}", expect=(201, 204, 404, 410))
