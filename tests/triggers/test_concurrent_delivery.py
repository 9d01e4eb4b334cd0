"""The deliverer sends a claimed batch concurrently (bounded), keeps claims cheap and in order, and
drops sends it has not started once its lease is gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from publisher.core.context import Context
from publisher.triggers.bindings import BindingCache
from publisher.triggers.delivery import Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.store import DeliveryRow, LedgerRow
from tests.triggers.conftest import Publish
from tests.triggers.recording import RecordingBackend
from tests.triggers.test_delivery import drain, event


class Overlapping:
    """A backend whose calls only return once ``parties`` of them are running at the same time."""

    name = "overlapping"

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=10)
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.subjects: list[str] = []

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.subjects.append(str(event["subject"]))
        try:
            self._barrier.wait()
        finally:
            with self._lock:
                self.running -= 1
        return f"act-{event['id']}"


def queue(context: Context, publish: Publish, n: int) -> None:
    publish("summary", [{"path": "/incoming"}])
    intake = Intake(context.sessions, BindingCache(context.sessions))
    assert intake.accept([event(f"/incoming/{i}.csv", size=i) for i in range(n)]) == n


def ledger_count(context: Context) -> int:
    with context.sessions() as session:
        return session.scalar(select(func.count()).select_from(LedgerRow)) or 0


def test_a_batch_is_sent_concurrently_but_never_beyond_the_bound(context: Context, publish: Publish) -> None:
    queue(context, publish, 12)
    backend = Overlapping(parties=4)
    deliverer = Deliverer(context.sessions, backend, batch=12, concurrency=4)
    try:
        # Sequential sends would wait at the barrier until it times out and fail every delivery.
        assert deliverer.run_once() == 12
    finally:
        deliverer.close()
    assert backend.most == 4
    assert sorted(backend.subjects) == sorted(f"/incoming/{i}.csv" for i in range(12))
    assert ledger_count(context) == 12
    with context.sessions() as session:
        ids = session.scalars(select(LedgerRow.activation_id)).all()
        assert all(a and a.startswith("act-storage:") for a in ids)


def test_expired_leases_are_claimed_first_and_the_batch_bound_holds(
    context: Context, publish: Publish
) -> None:
    queue(context, publish, 5)
    with context.sessions() as session, session.begin():
        first_two = session.scalars(select(DeliveryRow.id).order_by(DeliveryRow.id.desc()).limit(2)).all()
        # Two rows a killed deliverer had leased; their lease ran out a minute ago.
        session.execute(
            update(DeliveryRow)
            .where(DeliveryRow.id.in_(first_two))
            .values(
                status="inflight",
                claim="gone",
                attempts=1,
                lease_until=datetime.now(UTC) - timedelta(minutes=1),
            )
        )
    claimed = Deliverer(context.sessions, RecordingBackend(context.sessions), batch=3)._claim()
    assert len(claimed) == 3
    assert {c.id for c in claimed} >= set(first_two)
    assert {c.attempts for c in claimed if c.id in first_two} == {2}
    with context.sessions() as session:
        statuses = dict(
            session.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()
        )
    assert statuses == {"inflight": 3, "pending": 2}


def test_sends_not_started_are_dropped_when_the_lease_is_lost(
    context: Context, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue(context, publish, 4)
    backend = RecordingBackend(context.sessions, delay_s=0.3)
    deliverer = Deliverer(context.sessions, backend, batch=4, concurrency=1, lease_s=0.3)
    # Another deliverer took the rows over: renewing the lease fails.
    monkeypatch.setattr(deliverer, "_renew", lambda rows: False)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()
    sent = len(backend.calls)
    assert 1 <= sent < 4
    assert ledger_count(context) == sent  # what ran is recorded
    with context.sessions() as session:
        left = session.scalar(select(func.count()).where(DeliveryRow.status == "inflight"))
    assert left == 4 - sent  # the rest waits for its lease to run out, then is delivered
    time.sleep(0.35)
    drain(Deliverer(context.sessions, backend))
    assert ledger_count(context) == 4
    assert sorted(c["event"]["subject"] for c in backend.calls) == sorted(
        f"/incoming/{i}.csv" for i in range(4)
    )


def test_run_wakes_on_intake_and_stops_its_senders(context: Context, publish: Publish) -> None:
    publish("summary", [{"path": "/incoming"}])
    intake = Intake(context.sessions, BindingCache(context.sessions))
    backend = RecordingBackend(context.sessions)
    # A long poll: only the intake's wake-up can make this delivery quick.
    deliverer = Deliverer(context.sessions, backend, poll_s=30.0, wakeup=intake.wakeup)
    stop = threading.Event()
    runner = threading.Thread(target=deliverer.run, args=(stop.is_set,), daemon=True)
    runner.start()
    try:
        time.sleep(0.2)  # the loops are waiting now
        intake.accept([event(f"/incoming/{i}.csv", size=i) for i in range(3)])
        deadline = time.monotonic() + 5
        while ledger_count(context) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger_count(context) == 3
    finally:
        stop.set()
        intake.wakeup.set()
        runner.join(timeout=35)
    assert not runner.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("deliverer-send")]
