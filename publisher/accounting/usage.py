"""Usage figures computed from the activation records, by day or in total.

GB-seconds are OpenWhisk's and Lambda's measure: the version's memory limit in GB (MB / 1024) times
the run's duration in seconds. Bytes read are the sizes of the files whose storage events triggered
the runs. Every figure is a sum over finished activations (``pending`` ones are left out), so it can
be checked against the activations it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from publisher.catalogue.queries import aware
from publisher.db.models import ActivationRecord

FAILED = ("application_error", "developer_error", "system_error", "timeout")
MB_PER_GB = 1024
STORAGE_CREATED = "storage.object.created"


@dataclass(frozen=True)
class Usage:
    """The figures of one namespace and function (on one ``day``, or in total when ``day`` is None)."""

    namespace: str
    function: str
    day: date | None
    runs: int
    failures: int
    gb_seconds: float
    bytes_read: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat() if self.day else None}


def gb_seconds(memory_mb: int | None, duration_ms: float) -> float:
    """One run's GB-seconds (0 when its memory limit is unknown)."""
    return (memory_mb or 0) / MB_PER_GB * duration_ms / 1000


def bytes_of(payload: Mapping[str, Any]) -> int | None:
    """The file size a ``storage.object.created`` CloudEvent names (``None`` for other payloads)."""
    event = payload.get("event") if "specversion" not in payload else payload
    if not isinstance(event, Mapping) or event.get("type") != STORAGE_CREATED:
        return None
    data = event.get("data")
    size = data.get("size") if isinstance(data, Mapping) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None


def _day(session: Session) -> ColumnElement[Any]:
    """The UTC day of ``start`` as ``YYYY-MM-DD`` text (times are stored in UTC)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", ActivationRecord.start), "YYYY-MM-DD")
    return func.date(ActivationRecord.start)


def usage(
    session: Session,
    *,
    namespace: str | None = None,
    function: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by_day: bool = True,
) -> list[Usage]:
    """Figures per namespace and function (and day), ordered by day, namespace and function."""
    a = ActivationRecord
    keys: list[Any] = [a.namespace, a.function]
    if by_day:
        keys.insert(0, _day(session).label("day"))
    query = (
        select(
            *keys,
            func.count(),
            func.sum(case((a.status.in_(FAILED), 1), else_=0)),
            func.sum(func.coalesce(a.memory_mb, 0) * a.duration_ms),
            func.sum(func.coalesce(a.bytes_read, 0)),
        )
        .where(a.status != "pending")
        .group_by(*keys)
        .order_by(*keys)
    )
    if namespace is not None:
        query = query.where(a.namespace == namespace)
    if function is not None:
        query = query.where(a.function == function)
    # Bound in UTC: SQLite compares the stored (UTC) text and ignores zones.
    if since is not None:
        query = query.where(a.start >= aware(since).astimezone(UTC))  # type: ignore[union-attr]
    if until is not None:
        query = query.where(a.start < aware(until).astimezone(UTC))  # type: ignore[union-attr]
    out = []
    for row in session.execute(query).all():
        day = date.fromisoformat(str(row[0])) if by_day else None
        ns, fn, runs, failures, mb_ms, read = row[-6:]
        out.append(
            Usage(
                namespace=ns,
                function=fn,
                day=day,
                runs=int(runs),
                failures=int(failures or 0),
                gb_seconds=float(mb_ms or 0) / MB_PER_GB / 1000,
                bytes_read=int(read or 0),
            )
        )
    return out
