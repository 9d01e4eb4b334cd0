"""Replay / backfill: reprocess files that already exist with one function version.

Files are listed (local: a directory walk; dCache: the namespace API), turned into the same events
a live source would produce (same keys), and queued for that version only. The idempotency ledger
decides: a file that version already processed is skipped, so replaying twice is harmless and
replaying with a new version reprocesses everything.

The path is one the function's namespace may use (:func:`~publisher.triggers.bindings.namespace_path`),
checked before anything is listed; a local path must also stay inside the storage root once
symbolic links are followed.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher.core.context import Context
from publisher.core.types import StorageEvent
from publisher.db.models import Function, Version
from publisher.errors import FaaspubError
from publisher.triggers.bindings import Binding, load_bindings, matches, namespace_path, under
from publisher.triggers.dcache import created_event
from publisher.triggers.dcache_api import DcacheClient, auth_from_settings
from publisher.triggers.delivery import Deliverer, outstanding
from publisher.triggers.intake import add_deliveries, event_row_id
from publisher.triggers.local import LocalDirectorySource, file_state
from publisher.triggers.s3_api import S3Api
from publisher.triggers.store import DeliveryRow, LedgerRow, key_hash

BATCH = 500


@dataclass
class ReplayReport:
    """What a replay found and queued."""

    function: str
    version: str
    digest: str
    source: str
    path: str
    scanned: int = 0
    queued: int = 0
    skipped: int = 0
    delivered: int = 0
    dead: int = 0
    deliveries: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        data = dataclasses.asdict(self)
        del data["deliveries"]
        return data


def _target(session: Session, namespace: str, function: str, version: str | None) -> Version:
    fn = session.scalar(select(Function).where(Function.namespace == namespace, Function.name == function))
    if fn is None:
        raise FaaspubError(f"function {function!r} is not published in namespace {namespace!r}")
    wanted = version or fn.alias_version
    row = session.scalar(select(Version).where(Version.function_id == fn.id, Version.version == wanted))
    if row is None:
        known = ", ".join(sorted(v.version for v in fn.versions)) or "none"
        raise FaaspubError(f"function {function!r} has no version {wanted!r} (known: {known})")
    return row


def _filters(session: Session, namespace: str, function: str, source: str | None, path: str) -> list[Binding]:
    """The function's bindings that reach into ``path`` (its match globs apply to the replay too)."""
    own = [b for b in load_bindings(session) if (b.namespace, b.function) == (namespace, function)]
    if source:
        own = [b for b in own if b.source == source]
    return [b for b in own if under(path + "/x", b.path) or under(b.path + "/x", path)]


def local_files(context: Context, path: str) -> Iterator[tuple[StorageEvent, float]]:
    source = LocalDirectorySource(context.settings.storage.local.root)
    top = source.root / path.lstrip("/")
    if not top.resolve().is_relative_to(source.root.resolve()):
        raise FaaspubError(f"replay path {path!r} leads out of the local storage (a symbolic link)")
    for file in source.files(top):
        st = file_state(file)
        if st is not None:
            yield source.created(file, st), st.st_mtime


def dcache_files(context: Context, path: str) -> Iterator[tuple[StorageEvent, float]]:
    settings = context.settings.storage.dcache
    if not settings.url:
        raise FaaspubError("replay from dCache needs storage.dcache.url in the configuration")
    client = DcacheClient(settings.url, auth_from_settings(settings), verify=settings.verify_tls)
    try:
        pending = [path]
        while pending:
            directory = pending.pop()
            for entry in client.children(directory):
                child = posixpath.join(directory, entry.get("fileName", ""))
                if entry.get("fileType") == "DIR":
                    pending.append(child)
                else:
                    event = created_event(child, entry, settings.webdav_url)
                    yield event, event.time.timestamp()
    finally:
        client.close()


LISTERS = {"local": local_files, "dcache": dcache_files}


def replay(
    context: Context,
    function: str,
    path: str,
    version: str | None = None,
    since: datetime | None = None,
    source: str | None = None,
    namespace: str | None = None,
) -> ReplayReport:
    """Queue every file under ``path`` (modified at or after ``since``) for one function version."""
    namespace = namespace or context.settings.namespace
    path = namespace_path(namespace, path, context.settings, "replay path")
    with context.sessions() as session:
        target = _target(session, namespace, function, version)
        filters = _filters(session, namespace, function, source, path)
    source = source or (filters[0].source if filters else "local")
    if source not in LISTERS:
        raise FaaspubError(f"replay supports sources local and dcache, not {source!r}")
    if not filters:  # no binding reaches there: every file under the path
        filters = [Binding(namespace, function, "", "", source, path, recursive=True)]
    filters = [dataclasses.replace(b, version=target.version, digest=target.digest) for b in filters]
    report = ReplayReport(function, target.version, target.digest, source, path)
    cutoff = since.timestamp() if since else None
    batch: list[StorageEvent] = []
    for event, mtime in LISTERS[source](context, path):
        report.scanned += 1
        if (cutoff is None or mtime >= cutoff) and any(matches(event, b) for b in filters):
            batch.append(event)
        if len(batch) >= BATCH:
            _queue(context, batch, filters[0], report)
            batch = []
    _queue(context, batch, filters[0], report)
    return report


def _queue(context: Context, events: list[StorageEvent], target: Binding, report: ReplayReport) -> None:
    if not events:
        return
    with context.sessions() as session, session.begin():
        for event in events:
            digest = key_hash(event.key())
            done = session.scalar(
                select(LedgerRow.id).where(
                    LedgerRow.key_hash == digest,
                    LedgerRow.digest == target.digest,
                    LedgerRow.namespace == target.namespace,
                    LedgerRow.function == target.function,
                )
            )
            if done is not None:
                report.skipped += 1
                continue
            added = add_deliveries(session, event_row_id(session, event), event.key(), [target], "replay")
            report.deliveries.extend(added)
            report.queued += len(added)


def drain(context: Context, report: ReplayReport, timeout_s: float = 600.0) -> ReplayReport:
    """Deliver the replay's events in this process (a running service would share the work)."""
    s3 = S3Api(context.settings.storage.s3)
    deliverer = Deliverer(context.sessions, context.backend, url_for=s3.url_for)
    deadline = time.monotonic() + timeout_s
    ids = report.deliveries
    while ids and time.monotonic() < deadline:
        if not deliverer.run_once():
            with context.sessions() as session:
                if not outstanding(session, ids):
                    break
            time.sleep(0.2)
    with context.sessions() as session:
        rows = session.execute(select(DeliveryRow.status).where(DeliveryRow.id.in_(ids))).scalars().all()
    report.delivered = sum(1 for s in rows if s == "done")
    report.dead = sum(1 for s in rows if s == "dead")
    return report
