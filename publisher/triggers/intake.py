"""The sink every source writes to: store the event and its deliveries durably, in one transaction.

An event whose key was already accepted is dropped here (resumed streams, rescans and repeated
notifications all produce such duplicates). An event no function is bound to is counted and
dropped: a later ``faaspub events replay`` can still pick the file up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from publisher.core.parts import EventSink
from publisher.core.types import StorageEvent
from publisher.triggers import metrics
from publisher.triggers.bindings import Binding, BindingCache, match
from publisher.triggers.store import DeliveryRow, EventRow, cause_for, insert_ignore, key_hash, write_lock

log = logging.getLogger(__name__)

BATCH = 200


def _event_values(event: StorageEvent, now: datetime) -> dict[str, Any]:
    return {
        "key_hash": key_hash(event.key()),
        "key": event.key(),
        "source": event.source,
        "path": event.path,
        "kind": event.kind,
        "size": event.size,
        "checksum": event.checksum,
        "event_id": event.event_id,
        "url": event.url,
        "time": event.time,
        "received": now,
    }


def add_events(session: Session, events: Sequence[StorageEvent]) -> dict[str, int]:
    """Insert ``events`` into the inbox; returns key hash -> row id of those that were new."""
    now = datetime.now(UTC)
    inserted = insert_ignore(session, EventRow, [_event_values(e, now) for e in events], ["key_hash"])
    return {digest: row_id for row_id, digest in inserted}


def event_row_id(session: Session, event: StorageEvent) -> int:
    """The inbox row of ``event``, inserted if it is not there yet."""
    new = add_events(session, [event])
    digest = key_hash(event.key())
    return new.get(digest) or session.scalars(select(EventRow.id).where(EventRow.key_hash == digest)).one()


def add_deliveries(
    session: Session, event_id: int, event_key: str, targets: Iterable[Binding], origin: str = "live"
) -> list[int]:
    """Outbox rows for one inbox event to each target version; an existing (event, version) is kept."""
    return add_many_deliveries(session, [(event_id, event_key, list(targets))], origin)


def add_many_deliveries(
    session: Session, items: Iterable[tuple[int, str, list[Binding]]], origin: str = "live"
) -> list[int]:
    """Outbox rows for several (inbox event id, event key, targets) in one statement."""
    now = datetime.now(UTC)
    rows = [
        {
            "event_id": event_id,
            "cause": cause_for(event_key, t.namespace, t.function, t.digest),
            "namespace": t.namespace,
            "function": t.function,
            "version": t.version,
            "digest": t.digest,
            "origin": origin,
            "status": "pending",
            "attempts": 0,
            "next_at": now,
            "created": now,
            "updated": now,
        }
        for event_id, event_key, targets in items
        for t in targets
    ]
    return [row_id for row_id, _cause in insert_ignore(session, DeliveryRow, rows, ["cause"])]


class Intake:
    """Accepts events from sources (callable as an :data:`~publisher.core.parts.EventSink`)."""

    def __init__(self, sessions: sessionmaker[Session], bindings: BindingCache) -> None:
        self._sessions = sessions
        self.bindings = bindings
        # Deliverers in this process wait on this instead of polling the database.
        self.wakeup = threading.Event()
        self._missed: dict[str, threading.Event] = {}
        self._missed_lock = threading.Lock()

    def missed(self, source: str) -> threading.Event:
        """Set when events of ``source`` may have been lost on the way in (a notification refused
        or not stored): that source's reconciler lists again soon."""
        with self._missed_lock:
            return self._missed.setdefault(source, threading.Event())

    def __call__(self, event: StorageEvent) -> None:
        self.accept([event])

    def accept(self, events: Sequence[StorageEvent]) -> int:
        """Store ``events``; returns how many deliveries were queued. Durable when it returns."""
        with write_lock(self._sessions), self._sessions() as session, session.begin():
            queued = self.accept_in(session, events)
        self.notify(queued)
        return queued

    def accept_in(self, session: Session, events: Sequence[StorageEvent]) -> int:
        """Like :meth:`accept`, inside the caller's transaction (call :meth:`notify` after commit)."""
        bindings = self.bindings.current()
        bound: dict[str, tuple[StorageEvent, list[Binding]]] = {}
        matched = 0
        for event in events:
            metrics.RECEIVED.labels(source=event.source).inc()
            targets = match(event, bindings)
            if not targets:
                log.debug("no function is bound to %s event %s", event.source, event.path)
                metrics.reject("unbound")
                continue
            matched += 1
            bound.setdefault(key_hash(event.key()), (event, targets))
        new = add_events(session, [event for event, _ in bound.values()])
        if matched > len(new):
            metrics.reject("duplicate", matched - len(new))
        items = [(row_id, bound[digest][0].key(), bound[digest][1]) for digest, row_id in new.items()]
        return len(add_many_deliveries(session, items))

    def unseen(self, events: Sequence[StorageEvent]) -> list[StorageEvent]:
        """Those of ``events`` some function is bound to and the inbox does not hold yet.

        Only reads: a listing reports every object again at each reconcile, and filtering them
        here keeps it from taking the database's write lock for objects it already has.
        """
        bindings = self.bindings.current()
        bound = {key_hash(e.key()): e for e in events if match(e, bindings)}
        if not bound:
            return []
        with self._sessions() as session:
            known = set(session.scalars(select(EventRow.key_hash).where(EventRow.key_hash.in_(bound))))
        return [event for digest, event in bound.items() if digest not in known]

    def notify(self, queued: int) -> None:
        """Wake this process's deliverers once new deliveries are committed."""
        if queued:
            self.wakeup.set()


def store_with_retry(sink: EventSink, events: Sequence[StorageEvent], stop: Callable[[], bool]) -> None:
    """Hand ``events`` to ``sink``, waiting out a database outage rather than dropping them.

    A sink with ``accept`` (the :class:`Intake`) takes them in batches: one transaction per batch.
    """
    accept: Callable[[Sequence[StorageEvent]], int] | None = getattr(sink, "accept", None)
    batches = (
        [events[i : i + BATCH] for i in range(0, len(events), BATCH)] if accept else [[e] for e in events]
    )
    for batch in batches:
        delay = 0.1
        while not stop():
            try:
                if accept is not None:
                    accept(batch)
                else:
                    sink(batch[0])
                break
            except Exception:
                log.exception("could not store %d %s event(s); retrying", len(batch), batch[0].source)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
