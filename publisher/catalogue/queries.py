"""Read queries behind the catalogue API and pages: search, versions, activations, deliveries.

Listings use keyset pagination (see :mod:`publisher.catalogue.cursor`) and return plain dicts shaped
like the response models in :mod:`publisher.catalogue.schemas`, so pages and API share one query.
Webhook deliveries come from :func:`publisher.gitlab.deliveries.list_deliveries`; storage-event
deliveries and dead letters are read from the trigger tables here, because
:func:`publisher.triggers.store.dead_letters` has no cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, exists, func, literal, or_, select
from sqlalchemy.orm import Session, defer, joinedload, selectinload

from publisher.backends.catalogue import version_key
from publisher.catalogue import cursor as cursors
from publisher.catalogue.citations import exports
from publisher.db.models import ActivationRecord, Function, TriggerBinding, Version
from publisher.errors import FaaspubError
from publisher.gitlab.deliveries import list_deliveries
from publisher.triggers.store import DeliveryRow, EventRow

FAILED = ("application_error", "developer_error", "system_error", "timeout")


class NotFound(FaaspubError):
    """The named function, version or activation does not exist (HTTP 404)."""


class Ambiguous(FaaspubError):
    """A bare function name that several namespaces publish (HTTP 409)."""


@dataclass(frozen=True)
class Listing:
    """One page of items plus the cursor of the next page (``None`` on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without a zone; every stored time is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _page(rows: Sequence[Any], limit: int, key: Any, kind: str) -> tuple[list[Any], str | None]:
    """Cut the ``limit + 1`` rows fetched into a page and the cursor after its last row."""
    more = len(rows) > limit
    page = list(rows[:limit])
    return page, (cursors.encode(kind, *key(page[-1])) if more and page else None)


# -- functions ---------------------------------------------------------------------------------------


def list_functions(
    session: Session,
    *,
    q: str | None = None,
    keyword: str | None = None,
    namespace: str | None = None,
    trigger_path: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Listing:
    """Functions sorted by name; ``q`` matches name or description, ``trigger_path`` a storage path
    a trigger watches (the path itself, a folder under it, or a folder above it)."""
    limit = cursors.clamp(limit)
    # Each function with its live version only (joined): loading every version of every listed
    # function to pick one doubled the cost of a search.
    live = and_(Version.function_id == Function.id, Version.version == Function.alias_version)
    query = (
        select(Function, Version)
        .outerjoin(Version, live)
        .order_by(Function.name, Function.id)
        .limit(limit + 1)
    )
    if q:
        pattern = _like(q.lower())
        query = query.where(
            or_(
                func.lower(Function.name).like(pattern, escape="\\"),
                func.lower(func.coalesce(Function.description, "")).like(pattern, escape="\\"),
            )
        )
    if keyword:
        # Keywords are a JSON list; its text form holds each keyword as "…" on every database.
        text = func.lower(cast(Function.keywords, String))
        query = query.where(text.like(_like(f'"{keyword.lower()}"'), escape="\\"))
    if namespace:
        query = query.where(Function.namespace == namespace)
    if trigger_path:
        path = "/" + trigger_path.strip("/")
        below = path.rstrip("/") + "/"
        query = query.where(
            exists().where(
                TriggerBinding.function_id == Function.id,
                or_(
                    TriggerBinding.path == path,
                    TriggerBinding.path.like(_like(below)[1:], escape="\\"),
                    literal(below).like(func.rtrim(TriggerBinding.path, "/") + "/%"),
                ),
            )
        )
    if cursor:
        name, ident = cursors.decode("functions", cursor, (str, int))
        query = query.where(or_(Function.name > name, and_(Function.name == name, Function.id > ident)))
    rows, next_cursor = _page(
        session.execute(query).all(), limit, lambda r: (r[0].name, r[0].id), "functions"
    )
    return Listing([function_summary(f, current) for f, current in rows], next_cursor)


def find_function(session: Session, name: str, namespace: str | None = None) -> Function:
    """The function ``name`` (``ns/name`` works too); without a namespace the name must be unique."""
    if namespace is None and "/" in name:
        namespace, name = name.rsplit("/", 1)
    query = (
        select(Function)
        .where(Function.name == name)
        # A function has a handful of triggers: joined to its row, they cost no query of their own
        # (two select-in loads took twice the time of one).
        .options(selectinload(Function.versions), joinedload(Function.triggers))
    )
    if namespace:
        query = query.where(Function.namespace == namespace)
    found = list(session.scalars(query).unique())
    where = f" in namespace {namespace}" if namespace else ""
    if not found:
        raise NotFound(f"function {name} does not exist{where}", hint="search with GET /api/v1/functions?q=")
    if len(found) > 1:
        spaces = ", ".join(sorted(f.namespace for f in found))
        raise Ambiguous(
            f"function {name} exists in several namespaces: {spaces}",
            hint="pass ?namespace= or use the form namespace/name",
        )
    return found[0]


def live_version(fn: Function) -> Version | None:
    return next((v for v in fn.versions if v.version == fn.alias_version), None)


def function_summary(fn: Function, current: Version | None) -> dict[str, Any]:
    """The function as listed: with the live version's (``current``) image, digest and DOI, and a
    description (the manifest's, else the CITATION.cff abstract or title of the live version)."""
    citation = current.citation if current is not None else {}
    return {
        "namespace": fn.namespace,
        "name": fn.name,
        "description": fn.description or citation.get("abstract") or citation.get("title"),
        "keywords": list(fn.keywords or []),
        "alias_version": fn.alias_version,
        "image": current.image if current else None,
        "digest": current.digest if current else None,
        "doi": current.doi if current else None,
        "concept_doi": fn.concept_doi,
        "project": fn.project,
        "updated": aware(fn.updated),
    }


def version_citation(version: Version) -> dict[str, Any] | None:
    """BibTeX, APA, CFF and CodeMeta of one version (its own number and DOI filled in)."""
    created = aware(version.created)
    return exports(
        version.citation, version.version, version.doi, version.runtime, created.date() if created else None
    )


def function_detail(fn: Function) -> dict[str, Any]:
    """The function with its triggers and the citation of its alias version."""
    current = live_version(fn)
    return {
        **function_summary(fn, current),
        "source_url": fn.source_url,
        "created": aware(fn.created),
        "triggers": [trigger(t) for t in fn.triggers],
        "citation": version_citation(current) if current is not None else None,
    }


def trigger(binding: TriggerBinding) -> dict[str, Any]:
    return {
        "kind": binding.kind,
        "source": binding.source,
        "path": binding.path,
        "recursive": binding.recursive,
        "events": list(binding.events or []),
        "match": binding.match,
        "public": binding.public,
    }


# -- versions ----------------------------------------------------------------------------------------


def version_item(fn: Function, version: Version) -> dict[str, Any]:
    return {
        "namespace": fn.namespace,
        "function": fn.name,
        "version": version.version,
        "doi": version.doi,
        "image": version.image,
        "digest": version.digest,
        "commit": version.commit,
        "runtime": version.runtime,
        "test_summary": dict(version.test_summary or {}),
        "state": version.state,
        "created": aware(version.created),
        "current": version.version == fn.alias_version,
        "provenance": provenance_summary(version.provenance),
        "sbom_components": len(version.sbom) if version.sbom is not None else None,
    }


def provenance_summary(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """Verified or not, by which key, for which DOI, and why not (from the release's check)."""
    if not check:
        return None
    failed = [f"{c['name']}: {c['detail']}" for c in check.get("checks", []) if not c.get("ok")]
    return {
        "verified": bool(check.get("verified")),
        "key_id": check.get("key_id"),
        "doi": check.get("doi"),
        "reason": "; ".join(failed) or None,
    }


def version_detail(fn: Function, version: Version) -> dict[str, Any]:
    """One version with its SBOM components, its provenance check and its citation exports."""
    return {
        **version_item(fn, version),
        "components": list(version.sbom or []),
        "checks": list((version.provenance or {}).get("checks", [])),
        "citation": version_citation(version),
    }


def find_version(fn: Function, number: str) -> Version:
    found = next((v for v in fn.versions if v.version == number), None)
    if found is None:
        raise NotFound(f"function {fn.name} has no version {number}")
    return found


def list_versions(
    session: Session,
    *,
    fn: Function | None = None,
    doi: str | None = None,
    namespace: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Listing:
    """Versions newest first, of one function or (by ``doi``) across the catalogue."""
    limit = cursors.clamp(limit)
    query = (
        select(Version, Function)
        .join(Function, Function.id == Version.function_id)
        .order_by(Version.id.desc())
        .limit(limit + 1)
    )
    if fn is not None:
        query = query.where(Version.function_id == fn.id)
    if doi:
        query = query.where(func.lower(Version.doi) == doi.lower().removeprefix("https://doi.org/"))
    if namespace:
        query = query.where(Function.namespace == namespace)
    if cursor:
        (ident,) = cursors.decode("versions", cursor, (int,))
        query = query.where(Version.id < ident)
    rows, next_cursor = _page(session.execute(query).all(), limit, lambda r: (r[0].id,), "versions")
    return Listing([version_item(f, v) for v, f in rows], next_cursor)


def sorted_versions(fn: Function) -> list[Version]:
    """The function's versions, highest version number first (for pages)."""
    return sorted(fn.versions, key=lambda v: version_key(v.version), reverse=True)


# -- activations -------------------------------------------------------------------------------------


def activation_item(row: ActivationRecord, details: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "namespace": row.namespace,
        "function": row.function,
        "version": row.version,
        "digest": row.digest,
        "start": aware(row.start),
        "duration_ms": row.duration_ms,
        "status": row.status,
        "cause": row.cause,
        "memory_mb": row.memory_mb,
        "bytes_read": row.bytes_read,
    }
    if details:
        item["result"] = row.result
        item["logs"] = list(row.logs or [])
    return item


def list_activations(
    session: Session,
    *,
    namespace: str | None = None,
    function: str | None = None,
    version: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int | None = None,
    logs: bool = False,
) -> Listing:
    """Activations newest first; ``status="failed"`` selects every kind of failure."""
    limit = cursors.clamp(limit)
    query = (
        select(ActivationRecord)
        .order_by(ActivationRecord.start.desc(), ActivationRecord.id.desc())
        .limit(limit + 1)
    )
    if not logs:
        # Results and logs are the large columns; a listing without them need not read or parse them.
        query = query.options(defer(ActivationRecord.result), defer(ActivationRecord.logs))
    if namespace:
        query = query.where(ActivationRecord.namespace == namespace)
    if function:
        query = query.where(ActivationRecord.function == function)
    if version:
        query = query.where(ActivationRecord.version == version)
    if status == "failed":
        query = query.where(ActivationRecord.status.in_(FAILED))
    elif status:
        query = query.where(ActivationRecord.status == status)
    if since:
        query = query.where(ActivationRecord.start >= _utc(since))
    if until:
        query = query.where(ActivationRecord.start < _utc(until))
    if cursor:
        start, ident = cursors.decode("activations", cursor, (datetime, str))
        start = _utc(start)
        query = query.where(
            or_(
                ActivationRecord.start < start,
                and_(ActivationRecord.start == start, ActivationRecord.id < ident),
            )
        )
    rows, next_cursor = _page(
        list(session.scalars(query)), limit, lambda a: (aware(a.start), a.id), "activations"
    )
    return Listing([activation_item(a, logs) for a in rows], next_cursor)


def _utc(value: datetime) -> datetime:
    """Bind parameters in UTC: SQLite compares the stored (UTC) text, ignoring zones."""
    aware_value = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware_value.astimezone(UTC)


def get_activation(session: Session, activation_id: str) -> ActivationRecord:
    row = session.get(ActivationRecord, activation_id)
    if row is None:
        raise NotFound(f"activation {activation_id} does not exist")
    return row


@dataclass(frozen=True)
class Bucket:
    """Activations that started in ``[start, start + width)``."""

    start: datetime
    total: int
    failed: int


def activity(
    session: Session, namespace: str, function: str, *, now: datetime, hours: int = 24, buckets: int = 24
) -> list[Bucket]:
    """Counts of runs and failures per time bucket over the last ``hours``, oldest first.

    The database counts (one range scan of the function's start index, grouped by bucket): a busy
    function has thousands of runs a day, and loading each row to count it took tens of ms.
    """
    width = timedelta(hours=hours) / buckets
    start = now - timedelta(hours=hours)
    edges = [start + width * i for i in range(1, buckets)]
    # Bucket index by comparisons with bound times: the same SQL on SQLite and PostgreSQL.
    index = case(
        *((ActivationRecord.start < _utc(edge), i) for i, edge in enumerate(edges)), else_=buckets - 1
    ).label("bucket")
    failed = func.sum(case((ActivationRecord.status.in_(FAILED), 1), else_=0))
    rows = session.execute(
        select(index, func.count(), failed)
        .where(
            ActivationRecord.namespace == namespace,
            ActivationRecord.function == function,
            ActivationRecord.start >= _utc(start),
            ActivationRecord.start < _utc(now),
        )
        .group_by(index)
    ).all()
    counts = {int(i): (int(total), int(fails or 0)) for i, total, fails in rows}
    return [Bucket(start + width * i, *counts.get(i, (0, 0))) for i in range(buckets)]


# -- storage events and webhook deliveries -----------------------------------------------------------


def list_event_deliveries(
    session: Session,
    *,
    status: str | None = None,
    namespace: str | None = None,
    function: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Listing:
    """Storage-event deliveries newest first; ``status="dead"`` lists the dead letters."""
    limit = cursors.clamp(limit)
    kind = f"events:{status or ''}"
    query = (
        select(DeliveryRow, EventRow)
        .join(EventRow, EventRow.id == DeliveryRow.event_id)
        .order_by(DeliveryRow.id.desc())
        .limit(limit + 1)
    )
    if status:
        query = query.where(DeliveryRow.status == status)
    if namespace:
        query = query.where(DeliveryRow.namespace == namespace)
    if function:
        query = query.where(DeliveryRow.function == function)
    if cursor:
        (ident,) = cursors.decode(kind, cursor, (int,))
        query = query.where(DeliveryRow.id < ident)
    rows, next_cursor = _page(session.execute(query).all(), limit, lambda r: (r[0].id,), kind)
    return Listing([_event_item(d, e) for d, e in rows], next_cursor)


def _event_item(d: DeliveryRow, e: EventRow) -> dict[str, Any]:
    return {
        "id": d.id,
        "namespace": d.namespace,
        "function": d.function,
        "version": d.version,
        "digest": d.digest,
        "origin": d.origin,
        "status": d.status,
        "attempts": d.attempts,
        "activation_id": d.activation_id,
        "last_error": d.last_error,
        "path": e.path,
        "kind": e.kind,
        "source": e.source,
        "size": e.size,
        "created": aware(d.created),
        "updated": aware(d.updated),
    }


def list_webhook_deliveries(
    session: Session,
    *,
    outcome: str | None = None,
    source: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Listing:
    """Received webhook deliveries newest first (bodies are never listed)."""
    limit = cursors.clamp(limit)
    before = cursors.decode("deliveries", cursor, (int,))[0] if cursor else None
    page = list_deliveries(session, cursor=before, limit=limit, outcome=outcome, source=source)
    items = []
    for item in page.items:
        received = item["received"]
        items.append({**item, "received": aware(datetime.fromisoformat(received)) if received else None})
    next_cursor = cursors.encode("deliveries", page.next_cursor) if page.next_cursor is not None else None
    return Listing(items, next_cursor)
