"""What the release flow needs from an archive's record API, whatever the API (Zenodo's legacy
deposit API, InvenioRDM's records API): drafts with files, versions of a concept, publish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from publisher.citation.cff import Citation


@dataclass(frozen=True)
class RemoteFile:
    """A file of a draft: its name, its MD5 as the archive computed it, and what deleting it needs."""

    name: str
    md5: str
    handle: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Draft:
    """A draft (or a published record) as the release flow reads it.

    ``doi`` is the registered DOI once published, the reserved one before; ``concept`` groups every
    version of one function (Zenodo's ``conceptrecid``, InvenioRDM's ``parent.id``).
    """

    id: str
    concept: str
    published: bool
    files: tuple[RemoteFile, ...] = ()
    notes: str = ""
    doi: str | None = None
    concept_doi: str | None = None
    url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Description:
    """What a release's record says, before an API's crosswalk shapes it."""

    citation: Citation
    version: str
    publication_date: date
    details: Sequence[str] = ()
    communities: Iterable[str] = ()
    related: Iterable[Mapping[str, str]] = ()
    notes: str = ""


class Records(Protocol):
    """One archive's record API, with one namespace's credentials."""

    def create(self, metadata: Mapping[str, Any]) -> Draft:
        """Open the first draft of a new concept (with a reserved DOI)."""
        ...

    def get(self, record_id: str) -> Draft | None:
        """The draft or record, ``None`` when the archive no longer has it."""
        ...

    def drafts(self) -> list[Draft]:
        """Own unpublished drafts (to find one a crashed run left behind)."""
        ...

    def update(self, draft: Draft, metadata: Mapping[str, Any]) -> Draft: ...

    def new_version(self, latest_id: str) -> Draft:
        """A new draft in the concept of the latest published version ``latest_id`` (DOI reserved)."""
        ...

    def latest_record_id(self, record_id: str) -> str:
        """The latest published version of ``record_id``'s concept."""
        ...

    def delete_file(self, draft: Draft, file: RemoteFile) -> None: ...

    def upload(self, draft: Draft, name: str, path: Path) -> None:
        """Store ``path`` as ``name`` in the draft, checking the archive's checksum of it."""
        ...

    def publish(self, draft: Draft) -> Draft: ...

    def delete(self, record_id: str) -> None:
        """Delete an unpublished draft; one already gone is fine."""
        ...

    def record_file(self, record_id: str, name: str) -> bytes | None:
        """The content of file ``name`` of the published record, ``None`` when there is none."""
        ...

    def find(self, doi: str) -> str | None:
        """The id of the published record with ``doi``, ``None`` when the archive has none."""
        ...

    def metadata(self, about: Description) -> dict[str, Any]:
        """The complete metadata document this API takes for a draft of one release."""
        ...
