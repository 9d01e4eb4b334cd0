"""Deliver outbox rows to the bound function versions: at least once, and never twice once completed.

Each deliverer loop leases a batch of due rows, skips those the ledger (or an activation with the
same deterministic ``cause``) shows as already run, hands the rest to the backend as CloudEvents
(concurrently, on a bounded pool of sender threads shared by the loops, because a fire is mostly
waiting for the platform), then records the whole batch in one transaction: ledger entry +
activation id + ``done`` for successes, backoff or the dead-letter state for failures. A process
killed at any point leaves leases that expire, and the next deliverer finishes the work; see
``docs/decisions/triggers-delivery-guarantees.md``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from publisher.core.types import StorageEvent
from publisher.db.models import ActivationRecord
from publisher.db.queue import backoff_s
from publisher.triggers import metrics
from publisher.triggers.cloudevents import storage_cloudevent
from publisher.triggers.store import DeliveryRow, EventRow, LedgerRow, insert_ignore, write_lock

log = logging.getLogger(__name__)

# Backend calls in flight per deliverer: fires mostly wait for the platform's answer.
CONCURRENCY = 32


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with the event it carries."""

    id: int
    cause: str
    namespace: str
    function: str
    version: str
    digest: str
    attempts: int
    key_hash: str
    event: StorageEvent
    claim: str


@dataclass(frozen=True)
class Outcome:
    claimed: Claimed
    activation_id: str | None = None
    error: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Fires(Protocol):
    """The part of :class:`~publisher.core.parts.Backend` the deliverer needs."""

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str | None: ...


UrlFor = Callable[[StorageEvent], str | None]


class NotDelivered(Exception):
    """The backend took the event but nothing will run it (no active rule): try again later."""


def send(backend: Fires, claimed: Claimed, url_for: UrlFor | None = None) -> str:
    """Hand one event to the function through the backend (OpenWhisk: fire its trigger; local:
    invoke it); returns the activation id.

    The CloudEvent ``id`` is the delivery's deterministic ``cause``, which backends record on the
    activation: that is how a deliverer restarted after a crash finds a run that already happened.
    ``url_for`` gives the URL the function reads the file from (a presigned S3 URL, made now so
    that it is fresh whenever the delivery happens); by default the event's own.
    """
    url = url_for(claimed.event) if url_for else claimed.event.url
    activation = backend.fire(
        claimed.namespace, claimed.function, storage_cloudevent(claimed.event, claimed.cause, url)
    )
    if activation is None:
        raise NotDelivered(f"no active rule runs {claimed.function} for storage events")
    return activation


class Deliverer:
    """Runs ``threads`` delivery loops against the outbox until ``stop()`` is true.

    The loops lease and record batches; up to ``concurrency`` backend calls run at once on sender
    threads shared by all loops (a batch of one is sent by its loop directly, saving a hand-off).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        backend: Fires,
        *,
        threads: int = 2,
        batch: int = 128,
        concurrency: int = CONCURRENCY,
        max_attempts: int = 8,
        lease_s: float = 300.0,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 300.0,
        poll_s: float = 0.2,
        wakeup: threading.Event | None = None,
        url_for: UrlFor | None = None,
    ) -> None:
        self._sessions = sessions
        self._backend = backend
        self._url_for = url_for
        self.threads = threads
        self.batch = batch
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.lease_s = lease_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.poll_s = poll_s
        self.wakeup = wakeup or threading.Event()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._senders: ThreadPoolExecutor | None = None
        self._senders_lock = threading.Lock()

    def run(self, stop: Callable[[], bool]) -> None:
        """Block, delivering with ``threads`` loops, until ``stop()``."""
        loops = [
            threading.Thread(target=self._loop, args=(stop,), name=f"deliverer-{i}", daemon=True)
            for i in range(self.threads)
        ]
        try:
            for loop in loops:
                loop.start()
            for loop in loops:
                loop.join()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the sender threads (after the sends they are running)."""
        with self._senders_lock:
            senders, self._senders = self._senders, None
        if senders is not None:
            senders.shutdown(wait=True, cancel_futures=True)

    def _pool(self) -> ThreadPoolExecutor:
        with self._senders_lock:
            if self._senders is None:
                self._senders = ThreadPoolExecutor(self.concurrency, thread_name_prefix="deliverer-send")
            return self._senders

    def _loop(self, stop: Callable[[], bool]) -> None:
        while not stop():
            self.wakeup.clear()
            try:
                worked = self.run_once()
            except Exception:  # a database hiccup must not end delivery; the lease protects the rows
                log.exception("delivery round failed; retrying")
                worked = 0
            if not worked:
                self.wakeup.wait(self.poll_s)

    def run_once(self) -> int:
        """Lease, deliver and record one batch; returns how many rows it handled."""
        claimed = self._claim()
        if not claimed:
            return 0
        done = self._already_done(claimed)
        outcomes = [Outcome(c, activation_id=done[c.id]) for c in claimed if c.id in done]
        pending = [c for c in claimed if c.id not in done]
        outcomes += self._send(pending)
        self._finish(outcomes)
        return len(claimed)

    def _send(self, pending: Sequence[Claimed]) -> list[Outcome]:
        """Deliver ``pending`` concurrently, renewing the lease while sends are still running.

        If the lease ran out meanwhile (others may have taken the rows), sends not started yet are
        dropped; what did run is still recorded, guarded by the claim token in :meth:`_finish`.
        """
        if len(pending) <= 1:
            return [self._deliver(c) for c in pending]
        pool = self._pool()
        futures: dict[Future[Outcome], Claimed] = {pool.submit(self._deliver, c): c for c in pending}
        running = set(futures)
        renewed = time.monotonic()
        while running:
            _, running = wait(running, timeout=max(0.0, renewed + self.lease_s / 3 - time.monotonic()))
            if running and time.monotonic() - renewed >= self.lease_s / 3:
                # A slow batch keeps its lease, so no other deliverer starts the same rows meanwhile.
                if not self._renew([futures[f] for f in running]):
                    for future in running:
                        future.cancel()
                    wait(running)
                    break
                renewed = time.monotonic()
        return [f.result() for f in futures if not f.cancelled()]

    def _renew(self, rows: Sequence[Claimed]) -> bool:
        """Extend the lease of ``rows``; False when it had already run out and others took them."""
        until = _now() + timedelta(seconds=self.lease_s)
        with write_lock(self._sessions), self._sessions() as session, session.begin():
            result = session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id.in_([c.id for c in rows]), DeliveryRow.claim == rows[0].claim)
                .values(lease_until=until)
                .execution_options(synchronize_session=False)
            )
        renewed = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if renewed != len(rows):
            log.warning(
                "lease of %d deliveries ran out before they were sent; leaving them to others", len(rows)
            )
        return renewed == len(rows)

    def _deliver(self, claimed: Claimed) -> Outcome:
        metrics.LAG.observe(max(0.0, time.time() - claimed.event.time.timestamp()))
        try:
            return Outcome(claimed, activation_id=send(self._backend, claimed, self._url_for))
        except Exception as exc:  # any backend failure is retried; the message is kept for operators
            log.warning("delivery of %s to %s failed: %s", claimed.event.path, claimed.function, exc)
            return Outcome(claimed, error=f"{type(exc).__name__}: {exc}"[:2000])

    def _claim(self) -> list[Claimed]:
        now = _now()
        token = uuid.uuid4().hex
        lease = {
            "status": "inflight",
            "claim": token,
            "lease_until": now + timedelta(seconds=self.lease_s),
            "attempts": DeliveryRow.attempts + 1,
            "updated": now,
        }
        # Leases that ran out first (a killed deliverer's rows), then due rows, oldest first. Each
        # condition alone walks the (status, next_at) index in order; the two OR-ed in one query made
        # SQLite sort every due row on each claim, so claims slowed down as the backlog grew.
        expired = (DeliveryRow.status == "inflight") & (DeliveryRow.lease_until < now)
        pending = (DeliveryRow.status == "pending") & (DeliveryRow.next_at <= now)
        with write_lock(self._sessions), self._sessions() as session, session.begin():
            postgresql = session.get_bind().dialect.name == "postgresql"
            taken = 0
            for due in (expired, pending):
                candidates = select(DeliveryRow.id).where(due).order_by(DeliveryRow.next_at, DeliveryRow.id)
                candidates = candidates.limit(self.batch - taken)
                # One UPDATE statement per claim, so SQLite takes the write lock up front and runs
                # the subquery under it: two claimers never share rows. PostgreSQL locks the rows
                # (SKIP LOCKED) and re-checks ``due``; on SQLite that re-check would make the
                # planner walk every due row instead of the chosen ids.
                if postgresql:
                    candidates = candidates.with_for_update(skip_locked=True)
                chosen: ColumnElement[bool] = DeliveryRow.id.in_(candidates.scalar_subquery())
                if postgresql:
                    chosen = chosen & due
                result = session.execute(
                    update(DeliveryRow)
                    .where(chosen)
                    .values(**lease)
                    .execution_options(synchronize_session=False)
                )
                taken += int(result.rowcount or 0)  # type: ignore[attr-defined]
                if taken >= self.batch:
                    break
            # Plain columns rather than ORM entities: building objects was a third of a claim's CPU.
            rows = session.execute(
                select(
                    DeliveryRow.id,
                    DeliveryRow.cause,
                    DeliveryRow.namespace,
                    DeliveryRow.function,
                    DeliveryRow.version,
                    DeliveryRow.digest,
                    DeliveryRow.attempts,
                    EventRow.key_hash,
                    EventRow.source,
                    EventRow.path,
                    EventRow.kind,
                    EventRow.time,
                    EventRow.size,
                    EventRow.checksum,
                    EventRow.event_id,
                    EventRow.url,
                )
                .join(EventRow, EventRow.id == DeliveryRow.event_id)
                .where(DeliveryRow.claim == token)
                .order_by(DeliveryRow.id)
            ).all()
        return [
            Claimed(
                id=r.id,
                cause=r.cause,
                namespace=r.namespace,
                function=r.function,
                version=r.version,
                digest=r.digest,
                attempts=r.attempts,
                key_hash=r.key_hash,
                event=StorageEvent(
                    source=r.source,
                    path=r.path,
                    kind=r.kind,
                    # SQLite hands back naive datetimes; everything stored is UTC.
                    time=r.time if r.time.tzinfo else r.time.replace(tzinfo=UTC),
                    size=r.size,
                    checksum=r.checksum,
                    event_id=r.event_id,
                    url=r.url,
                ),
                claim=token,
            )
            for r in rows
        ]

    def _already_done(self, claimed: Sequence[Claimed]) -> dict[int, str | None]:
        """Rows whose version already ran: in the ledger, or (after a crash) with an activation."""
        causes = {c.cause: c.id for c in claimed}
        ids = {(c.key_hash, c.digest, c.namespace, c.function): c.id for c in claimed}
        with self._sessions() as session:
            # By the ledger's unique key (its index), not by cause, which has none: a lookup that
            # scanned the whole ledger made every batch slower as the ledger grew.
            rows = session.execute(
                select(
                    LedgerRow.key_hash,
                    LedgerRow.digest,
                    LedgerRow.namespace,
                    LedgerRow.function,
                    LedgerRow.activation_id,
                ).where(LedgerRow.key_hash.in_({c.key_hash for c in claimed}))
            )
            found: dict[int, str | None] = {}
            for key_hash, digest, namespace, function, activation in rows:
                row_id = ids.get((key_hash, digest, namespace, function))
                if row_id is not None:
                    found[row_id] = activation
            retried = [c.cause for c in claimed if c.attempts > 1 and c.id not in found]
            if retried:
                for cause, activation in session.execute(
                    select(ActivationRecord.cause, ActivationRecord.id).where(
                        ActivationRecord.cause.in_(retried)
                    )
                ):
                    found[causes[str(cause)]] = activation
        return found

    def _finish(self, outcomes: Sequence[Outcome]) -> None:
        now = _now()
        params: list[dict[str, Any]] = []
        ledger: list[dict[str, Any]] = []
        delivered = retried = dead = 0
        for outcome in outcomes:
            c = outcome.claimed
            row = {"b_id": c.id, "b_claim": c.claim, "b_activation": outcome.activation_id, "b_next": now}
            if outcome.error is None:
                ledger.append(self._ledger_row(c, outcome.activation_id))
                row.update(b_status="done", b_error=None)
                delivered += 1
            elif c.attempts >= self.max_attempts:
                row.update(b_status="dead", b_error=outcome.error)
                dead += 1
                log.error("giving up on %s for %s after %d attempts", c.event.path, c.function, c.attempts)
            else:
                delay = backoff_s(c.attempts, self.backoff_base_s, self.backoff_cap_s)
                row.update(b_status="pending", b_error=outcome.error, b_next=now + timedelta(seconds=delay))
                retried += 1
            params.append(row)
        table = cast(Table, DeliveryRow.__table__)
        # Only while our lease holds: a row re-leased by another deliverer is theirs to record.
        statement = (
            table.update()
            .where(table.c.id == bindparam("b_id"), table.c.claim == bindparam("b_claim"))
            .values(
                status=bindparam("b_status"),
                activation_id=bindparam("b_activation"),
                last_error=bindparam("b_error"),
                next_at=bindparam("b_next"),
                claim=None,
                lease_until=None,
                updated=now,
            )
        )
        with write_lock(self._sessions), self._sessions() as session, session.begin():
            # Ledger and completion commit together: a completed event never runs this version again.
            # An entry already there was written by a deliverer whose lease ran out: nothing to add.
            conflict = ["key_hash", "digest", "namespace", "function"]
            insert_ignore(session, LedgerRow, ledger, conflict, returning=False)
            session.execute(statement, params)
        metrics.DELIVERED.inc(delivered)
        metrics.RETRIED.inc(retried)
        metrics.DEAD_LETTERED.inc(dead)

    @staticmethod
    def _ledger_row(c: Claimed, activation_id: str | None) -> dict[str, Any]:
        return {
            "key_hash": c.key_hash,
            "digest": c.digest,
            "namespace": c.namespace,
            "function": c.function,
            "version": c.version,
            "cause": c.cause,
            "activation_id": activation_id,
            "completed": _now(),
        }


def outstanding(session: Session, ids: Sequence[int]) -> int:
    """How many of the deliveries ``ids`` are neither done nor dead."""
    rows = session.scalars(
        select(DeliveryRow.id).where(DeliveryRow.id.in_(ids), DeliveryRow.status.in_(("pending", "inflight")))
    ).all()
    return len(rows)
