"""Tables of the storage-event bridge: inbox (events), outbox (deliveries), ledger and source cursors.

* ``storage_events`` — every accepted event, once per event key (a duplicate from a resumed stream,
  a rescan or a second notification is dropped here).
* ``event_deliveries`` — one row per (event, function version) to deliver; leased by deliverers,
  retried with backoff, ``dead`` after too many attempts (the dead-letter state).
* ``event_ledger`` — the idempotency ledger: one row per (event key, function, version digest) that
  completed; the unique constraint is what makes a completed event never run that version again.
* ``trigger_cursors`` — per-source state that must survive restarts (dCache channel URL, last id).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from publisher.core.types import StorageEvent
from publisher.db.models import Base, utcnow

_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def write_lock(sessions: sessionmaker[Session]) -> AbstractContextManager[object]:
    """One writer at a time per SQLite database in this process (no-op on PostgreSQL).

    SQLite allows one writer; threads that queue on a lock wait microseconds, while threads that
    collide inside SQLite back off in its busy handler for milliseconds.
    """
    engine = sessions.kw.get("bind")
    if not isinstance(engine, Engine) or engine.dialect.name != "sqlite":
        return nullcontext()
    with _LOCKS_LOCK:
        return _WRITE_LOCKS.setdefault(engine, threading.Lock())


def insert_ignore(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    conflict: list[str],
    returning: bool = True,
) -> list[Any]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING id, <conflict columns>``: the rows actually added.

    Used instead of savepoints: with the pysqlite driver a savepoint opened before any write starts
    (and its release commits) a transaction of its own, which would split what must commit together.
    ``returning=False`` returns nothing and lets the driver loop over the rows (cheaper).
    """
    if not rows:
        return []
    table = cast(Table, model.__table__)
    dialect = session.get_bind().dialect.name
    insert: Any = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}[dialect]
    statement = insert(table).on_conflict_do_nothing(index_elements=conflict)
    if not returning:
        session.execute(statement, rows)
        return []
    statement = statement.returning(table.c.id, *(table.c[name] for name in conflict))
    # executemany form: one cached statement, sent as multi-row INSERTs by SQLAlchemy ("insertmanyvalues").
    return list(session.execute(statement, rows).all())


def key_hash(key: str) -> str:
    """Fixed-length form of :meth:`StorageEvent.key` for unique indexes (paths can be long)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def cause_for(event_key: str, namespace: str, function: str, digest: str) -> str:
    """Deterministic delivery identity, used as CloudEvent ``id`` and activation ``cause``.

    Being deterministic lets a deliverer that restarts after a crash ask the backend whether the
    run already happened instead of running it again.
    """
    raw = "\n".join((event_key, namespace, function, digest)).encode("utf-8")
    return "storage:" + hashlib.sha256(raw).hexdigest()[:40]


class EventRow(Base):
    """An accepted storage event (the inbox)."""

    __tablename__ = "storage_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), index=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    url: Mapped[str | None] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column()
    received: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    def to_event(self) -> StorageEvent:
        return StorageEvent(
            source=self.source,  # type: ignore[arg-type]
            path=self.path,
            kind=self.kind,  # type: ignore[arg-type]
            time=_aware(self.time),
            size=self.size,
            checksum=self.checksum,
            event_id=self.event_id,
            url=self.url,
        )


class DeliveryRow(Base):
    """One event to deliver to one function version (the outbox)."""

    __tablename__ = "event_deliveries"
    __table_args__ = (Index("ix_event_deliveries_due", "status", "next_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("storage_events.id", ondelete="CASCADE"), index=True)
    cause: Mapped[str] = mapped_column(String(64), unique=True)
    namespace: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(80))
    origin: Mapped[str] = mapped_column(String(16), default="live")  # live | replay
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|inflight|done|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    claim: Mapped[str | None] = mapped_column(String(36), index=True)
    lease_until: Mapped[datetime | None] = mapped_column()
    activation_id: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerRow(Base):
    """A completed (event, function version): the idempotency ledger."""

    __tablename__ = "event_ledger"
    __table_args__ = (
        UniqueConstraint("key_hash", "digest", "namespace", "function", name="uq_event_ledger_key_digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(80))
    namespace: Mapped[str] = mapped_column(String(255))
    function: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(64))
    cause: Mapped[str] = mapped_column(String(64))
    activation_id: Mapped[str | None] = mapped_column(String(64))
    completed: Mapped[datetime] = mapped_column(default=utcnow)


class CursorRow(Base):
    """Per-source state kept across restarts (a dCache channel URL and its last event id)."""

    __tablename__ = "trigger_cursors"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    channel_url: Mapped[str | None] = mapped_column(Text)
    last_event_id: Mapped[str | None] = mapped_column(String(64))
    updated: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that gave up after its last attempt; kept until redriven."""

    id: int
    namespace: str
    function: str
    version: str
    path: str
    kind: str
    source: str
    attempts: int
    last_error: str | None
    updated: datetime

    def as_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["updated"] = self.updated.isoformat()
        return data


def dead_letters(session: Session, function: str | None = None, limit: int = 50) -> list[DeadLetter]:
    """Deliveries in the dead-letter state, newest first (what the catalogue API shows)."""
    query = (
        select(DeliveryRow, EventRow)
        .join(EventRow, EventRow.id == DeliveryRow.event_id)
        .where(DeliveryRow.status == "dead")
        .order_by(DeliveryRow.updated.desc(), DeliveryRow.id.desc())
        .limit(limit)
    )
    if function:
        query = query.where(DeliveryRow.function == function)
    return [
        DeadLetter(
            id=d.id,
            namespace=d.namespace,
            function=d.function,
            version=d.version,
            path=e.path,
            kind=e.kind,
            source=e.source,
            attempts=d.attempts,
            last_error=d.last_error,
            updated=_aware(d.updated),
        )
        for d, e in session.execute(query).all()
    ]


def redrive(session: Session, ids: list[int]) -> int:
    """Put dead deliveries back in the queue with fresh attempts; returns how many."""
    result = session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(ids), DeliveryRow.status == "dead")
        .values(status="pending", attempts=0, next_at=datetime.now(UTC), claim=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def load_cursor(session: Session, name: str) -> CursorRow | None:
    return session.get(CursorRow, name)


def save_cursor(session: Session, name: str, channel_url: str | None, last_event_id: str | None) -> None:
    row = session.get(CursorRow, name)
    if row is None:
        session.add(CursorRow(name=name, channel_url=channel_url, last_event_id=last_event_id))
    else:
        row.channel_url = channel_url
        row.last_event_id = last_event_id


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns; everything here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
