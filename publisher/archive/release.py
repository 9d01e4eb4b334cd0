"""The release flow on an archive: reserve a DOI at the start, publish after build and tests, else discard.

The same flow runs on Zenodo's legacy deposit API and on InvenioRDM's records API (each behind
:class:`~publisher.archive.records.Records`). First release of a function: a new draft (and with it
the concept record). Later releases: a new version of the latest published record, with the files
the archive carries over deleted. Every
remote step is preceded by a durable note in :class:`~publisher.archive.store.ArchiveStore`, so a
run that dies anywhere can be resumed: the next run finds its draft (by id, or by listing drafts
when the process died before the id was stored) and never opens a second concept record or leaves
a stray draft.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from publisher.archive.checks import archive_problems
from publisher.archive.http import ArchiveError, md5_of
from publisher.archive.records import Description, Draft, Records
from publisher.archive.store import OPEN_STATES, ArchiveStore, Entry
from publisher.archive.zenodo import ZenodoClient
from publisher.archive.zenodo_records import ZenodoRecords
from publisher.citation.cff import Citation, load_citation
from publisher.citation.crosswalk import codemeta
from publisher.core.parts import Progress
from publisher.core.types import FunctionSource, Release, Reservation
from publisher.errors import FaaspubError
from publisher.manifest.problems import ProblemsError

log = logging.getLogger(__name__)

SANDBOX_PREFIX = "10.5072"


def doi_prefix_for(url: str) -> str | None:
    """Zenodo's sandbox registers 10.5072 DOIs although drafts show a pre-reserved 10.5281 one."""
    return SANDBOX_PREFIX if "sandbox.zenodo.org" in url else None


def marker(namespace: str, function: str, version: str) -> str:
    """The line in a draft's notes that ties it to one release (how a lost draft is found again)."""
    return f"faaspub release {namespace}/{function} {version}"


class RecordArchive:
    """The :class:`~publisher.core.parts.Archive` on an archive's record API.

    ``clients`` gives the :class:`Records` of a namespace (each namespace has its own token, so
    records belong to that organisation). ``progress`` hears every step name before it runs.
    """

    def __init__(
        self,
        clients: Callable[[str], Records],
        store: ArchiveStore,
        *,
        communities: Iterable[str] = (),
        progress: Progress | None = None,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._clients = clients
        self._store = store
        self._communities = list(communities)
        self._progress = progress or (lambda step: None)
        self._today = today

    # -- Archive interface -----------------------------------------------------------------------

    def reserve(self, fn: FunctionSource, version: str) -> Reservation:
        citation = self._citation(fn, version)
        client = self._clients(fn.namespace)
        draft = self._draft(client, fn, version, citation)
        if draft.published:
            return self._reservation(draft)
        try:
            self._step("metadata")
            draft = client.update(draft, self._metadata(client, fn, version, citation, None))
        except Exception:
            self._abandon_after_failure(client, fn, version)
            raise
        return self._reservation(draft)

    def publish(self, release: Release, files: Mapping[str, Path]) -> Reservation:
        fn, version = release.source, release.version
        citation = self._citation(fn, version)
        client = self._clients(fn.namespace)
        draft = self._draft(client, fn, version, citation)
        if draft.published:
            return self._reservation(draft)
        try:
            with tempfile.TemporaryDirectory(prefix="faaspub-archive-") as tmp:
                wanted = self._release_files(release, citation, draft, files, Path(tmp))
                self._step("files")
                draft = self._sync_files(client, draft, wanted)
            self._step("metadata")
            draft = client.update(draft, self._metadata(client, fn, version, citation, release))
            self._save(fn, version, state="publishing")
            self._step("publish")
            published = client.publish(draft)
        except Exception:
            self._abandon_after_failure(client, fn, version)
            raise
        self._step("published")
        return self._record_published(fn, version, published)

    def discard(self, fn: FunctionSource, version: str) -> None:
        self._abandon(self._clients(fn.namespace), fn, version)

    def released_digest(self, namespace: str, doi: str) -> str | None:
        client = self._clients(namespace)
        entry = self._store.by_doi(namespace, doi)
        record_id = entry.record_id if entry and entry.state == "published" else client.find(doi)
        content = client.record_file(record_id, "release.json") if record_id else None
        if content is None:
            return None
        try:
            digest = json.loads(content).get("digest")
        except (ValueError, AttributeError):
            return None
        return digest if isinstance(digest, str) else None

    # -- finding or creating the draft -----------------------------------------------------------

    def _draft(self, client: Records, fn: FunctionSource, version: str, citation: Citation) -> Draft:
        """The draft of this release (or its published record): resumed when one exists, else created."""
        entry = self._store.get(fn.namespace, fn.name, version)
        if entry and entry.record_id is not None:
            current = client.get(entry.record_id)
            if current is not None and current.published:
                self._record_published(fn, version, current)
                return current
            if current is not None:
                return current
            if entry.state != "discarded":
                log.warning(
                    "archive draft %s of %s %s is gone; opening a new one",
                    entry.record_id,
                    fn.name,
                    version,
                )
        elif entry and entry.state in OPEN_STATES:
            orphan = self._find_orphan(client, fn, version)
            if orphan is not None:
                return self._adopt(fn, version, orphan)
        self._supersede_abandoned(client, fn, version)
        self._save(fn, version, state="creating", deposition_id=None, record_id=None)
        self._step("create")
        concept = self._store.concept(fn.namespace, fn.name)
        if concept is None:
            draft = client.create(self._metadata(client, fn, version, citation, None))
        else:
            draft = self._new_version(client, fn, version)
        self._step("created")
        return self._adopt(fn, version, draft)

    def _new_version(self, client: Records, fn: FunctionSource, version: str) -> Draft:
        latest_known = self._store.published(fn.namespace, fn.name)[-1]
        assert latest_known.record_id is not None
        latest = client.latest_record_id(latest_known.record_id)
        try:
            return client.new_version(latest)
        except ArchiveError as exc:
            # Only one open new-version draft per concept: a lost one of ours is the reason.
            orphan = self._find_orphan(client, fn, version) if exc.status == 400 else None
            if orphan is None:
                raise
            return orphan

    def _find_orphan(self, client: Records, fn: FunctionSource, version: str) -> Draft | None:
        """A draft a crashed run created but did not record: in our concept, or carrying our marker."""
        concept = self._store.concept(fn.namespace, fn.name)
        tag = marker(fn.namespace, fn.name, version)
        claimed = {
            e.record_id for e in self._store.open_entries(fn.namespace, fn.name) if e.version != version
        }
        for draft in client.drafts():
            if draft.id in claimed:
                continue
            ours = concept is not None and draft.concept == concept
            if ours or tag in draft.notes.splitlines():
                log.info("resuming archive draft %s of %s %s", draft.id, fn.name, version)
                return draft
        return None

    def _supersede_abandoned(self, client: Records, fn: FunctionSource, version: str) -> None:
        """Drafts of other versions left by crashed runs would block the new version: remove them."""
        for entry in self._store.open_entries(fn.namespace, fn.name):
            if entry.version != version:
                log.warning("discarding the abandoned archive draft of %s %s", fn.name, entry.version)
                self._abandon(client, fn, entry.version)

    def _adopt(self, fn: FunctionSource, version: str, draft: Draft) -> Draft:
        self._record(fn, version, "draft", draft)
        return draft

    def _abandon(self, client: Records, fn: FunctionSource, version: str) -> None:
        """Delete the unpublished draft of the release (found by id or marker); published stays."""
        entry = self._store.get(fn.namespace, fn.name, version)
        if entry is None or entry.state in ("published", "discarded"):
            return
        draft = client.get(entry.record_id) if entry.record_id is not None else None
        if draft is None and entry.record_id is None:
            draft = self._find_orphan(client, fn, version)
        if draft is not None and draft.published:
            self._record_published(fn, version, draft)
            return
        if draft is not None:
            self._step("discard")
            client.delete(draft.id)
        self._save(fn, version, state="discarded")

    def _abandon_after_failure(self, client: Records, fn: FunctionSource, version: str) -> None:
        """Discard after a failed step without hiding that step's error behind a cleanup error."""
        try:
            self._abandon(client, fn, version)
        except Exception as exc:
            log.warning("could not discard the archive draft of %s %s: %s", fn.name, version, exc)

    # -- content -----------------------------------------------------------------------------------

    def _citation(self, fn: FunctionSource, version: str) -> Citation:
        """Load and check CITATION.cff; every problem stops the release before any deposition exists."""
        self._step("validate")
        path = fn.citation_file
        if not path.is_file():
            raise FaaspubError(
                f"{path}: missing; every archived release needs citation metadata",
                hint="create it with 'faaspub init' or from https://citation-file-format.github.io/",
            )
        citation = load_citation(path)
        problems = archive_problems(citation, fn.manifest, version)
        if problems:
            raise ProblemsError(problems)
        return citation

    def _metadata(
        self, client: Records, fn: FunctionSource, version: str, citation: Citation, release: Release | None
    ) -> dict[str, Any]:
        related: list[dict[str, str]] = []
        if fn.source_url and fn.source_url.startswith(("https://", "http://")):
            tree = f"{fn.source_url.rstrip('/')}/-/tree/v{version}"
            related.append({"identifier": tree, "relation": "isIdenticalTo", "resource_type": "software"})
        details = [f"Function {fn.namespace}/{fn.name} version {version}, runtime {fn.manifest.runtime}."]
        if release is not None:
            image_url = registry_url(release.image.repository, release.image.digest)
            if image_url:
                related.append(
                    {"identifier": image_url, "relation": "isSourceOf", "resource_type": "software"}
                )
            details.append(f"Container image: {release.image.pinned}.")
            if release.test is not None:
                summary = ", ".join(f"{k} {v}" for k, v in release.test.summary().items())
                details.append(f"Tests: {summary}.")
        if fn.commit:
            details.append(f"Source commit: {fn.commit}.")
        previous = [e for e in self._store.published(fn.namespace, fn.name) if e.version != version]
        if previous and previous[-1].doi:
            related.append(
                {"identifier": previous[-1].doi, "relation": "isNewVersionOf", "resource_type": "software"}
            )
        return client.metadata(
            Description(
                citation,
                version,
                self._today(),
                details if fn.manifest.description is None else [fn.manifest.description, *details],
                self._communities,
                related,
                marker(fn.namespace, fn.name, version),
            )
        )

    def _release_files(
        self, release: Release, citation: Citation, draft: Draft, files: Mapping[str, Path], tmp: Path
    ) -> dict[str, Path]:
        """release.json, CITATION.cff and codemeta.json, then the caller's files (the source archive)."""
        fn, version = release.source, release.version
        reserved = self._reservation(draft)
        provenance = {**release.provenance(), "doi": reserved.doi, "concept_doi": reserved.concept_doi}
        (tmp / "release.json").write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        meta = codemeta(
            citation,
            version=version,
            doi=reserved.doi,
            date_published=self._today(),
            runtime=fn.manifest.runtime,
        )
        (tmp / "codemeta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        wanted = {
            "release.json": tmp / "release.json",
            "codemeta.json": tmp / "codemeta.json",
            "CITATION.cff": fn.citation_file,
        }
        wanted.update(files)
        return wanted

    def _sync_files(self, client: Records, draft: Draft, wanted: Mapping[str, Path]) -> Draft:
        """Make the draft hold exactly ``wanted``: carried-over and stale files go, missing ones come."""
        sums = {name: md5_of(path) for name, path in wanted.items()}
        present = set()
        for file in draft.files:
            if sums.get(file.name) == file.md5:
                present.add(file.name)
            else:
                client.delete_file(draft, file)
        for name, path in wanted.items():
            if name not in present:
                client.upload(draft, name, path)
        refreshed = client.get(draft.id)
        if refreshed is None:
            raise ArchiveError(f"archive draft {draft.id} vanished while its files were uploaded")
        return refreshed

    # -- bookkeeping -------------------------------------------------------------------------------

    @staticmethod
    def _reservation(draft: Draft) -> Reservation:
        return Reservation(doi=draft.doi, concept_doi=draft.concept_doi, record_id=draft.id, url=draft.url)

    def _record_published(self, fn: FunctionSource, version: str, dep: Draft) -> Reservation:
        reservation = self._reservation(dep)
        entry = self._store.get(fn.namespace, fn.name, version)
        if entry and entry.doi and entry.doi != reservation.doi:
            log.warning(
                "the archive registered %s for %s %s, not the reserved %s",
                reservation.doi,
                fn.name,
                version,
                entry.doi,
            )
        return self._record(fn, version, "published", dep)

    def _record(self, fn: FunctionSource, version: str, state: str, dep: Draft) -> Reservation:
        """Save what the archive says of ``dep`` (ids, DOIs, address) as the release's ``state``."""
        reservation = self._reservation(dep)
        self._save(
            fn,
            version,
            state=state,
            record_id=dep.id,
            # Zenodo's numeric ids also order the versions (InvenioRDM's ids do not).
            deposition_id=int(dep.id) if dep.id.isdigit() else None,
            concept_recid=dep.concept,
            doi=reservation.doi,
            concept_doi=reservation.concept_doi,
            url=reservation.url,
        )
        return reservation

    def _save(self, fn: FunctionSource, version: str, **values: object) -> Entry:
        return self._store.save(fn.namespace, fn.name, version, **values)

    def _step(self, name: str) -> None:
        self._progress(f"archive: {name}")


class ZenodoArchive(RecordArchive):
    """The release flow on Zenodo's legacy deposit API; ``clients`` gives a namespace's client."""

    def __init__(
        self,
        clients: Callable[[str], ZenodoClient],
        store: ArchiveStore,
        *,
        doi_prefix: str | None = None,
        communities: Iterable[str] = (),
        progress: Progress | None = None,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        super().__init__(
            lambda namespace: ZenodoRecords(clients(namespace), doi_prefix),
            store,
            communities=communities,
            progress=progress,
            today=today,
        )


def registry_url(repository: str, digest: str) -> str | None:
    """``host[:port]/repo`` + digest -> the manifest URL (Zenodo only accepts URL-like identifiers)."""
    if not digest or repository.startswith("oci:") or "/" not in repository:
        return None
    host, path = repository.split("/", 1)
    if "." not in host and ":" not in host and host != "localhost":
        return None  # a Docker Hub short name has no registry host to point at
    return f"https://{host}/v2/{path}/manifests/{digest}"
