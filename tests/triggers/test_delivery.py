"""Intake and deliverer on a real SQLite database: at least once, never twice once completed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from publisher.core.context import Context
from publisher.core.types import StorageEvent
from publisher.db.models import ActivationRecord
from publisher.triggers.bindings import BindingCache
from publisher.triggers.delivery import Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.store import DeliveryRow, LedgerRow, dead_letters, redrive
from tests.triggers.conftest import Publish
from tests.triggers.recording import RecordingBackend

Kind = Literal["created", "deleted"]


def event(path: str, size: int = 10, kind: Kind = "created") -> StorageEvent:
    return StorageEvent(
        source="local", path=path, kind=kind, time=datetime.now(UTC), size=size, event_id=f"1.{size}"
    )


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def drain(deliverer: Deliverer) -> None:
    while deliverer.run_once():
        pass


def test_event_reaches_the_bound_version_once_with_a_cloudevent(
    context: Context, backend: RecordingBackend, publish: Publish
) -> None:
    publish("summary", [{"path": "/incoming", "match": "*.csv"}])
    intake = Intake(context.sessions, BindingCache(context.sessions))
    assert intake.accept([event("/incoming/a.csv"), event("/incoming/b.txt"), event("/elsewhere/c.csv")]) == 1
    # The same event again (a rescan, a resumed stream) is dropped at the intake.
    assert intake.accept([event("/incoming/a.csv")]) == 0
    drain(Deliverer(context.sessions, backend))
    assert len(backend.calls) == 1
    ce = backend.calls[0]["event"]
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "storage.object.created"
    assert ce["subject"] == "/incoming/a.csv"
    assert ce["data"]["size"] == 10
    with context.sessions() as session:
        ledger = session.scalars(select(LedgerRow)).all()
        assert [(row.function, row.version) for row in ledger] == [("summary", "1.0.0")]
        assert ledger[0].activation_id == session.scalar(select(ActivationRecord.id))


def test_completed_event_never_runs_the_same_version_again_but_a_new_version_does(
    context: Context, backend: RecordingBackend, publish: Publish
) -> None:
    publish("summary", [{"path": "/incoming"}])
    bindings = BindingCache(context.sessions, ttl_s=0)
    intake = Intake(context.sessions, bindings)
    intake.accept([event("/incoming/a.csv")])
    drain(Deliverer(context.sessions, backend))
    # A fresh process (new deliverer, new intake) sees the same file again: nothing runs.
    Intake(context.sessions, BindingCache(context.sessions)).accept([event("/incoming/a.csv")])
    with context.sessions() as session, session.begin():
        # Even a delivery row forced back to pending is stopped by the ledger.
        session.execute(update(DeliveryRow).values(status="pending"))
    drain(Deliverer(context.sessions, backend))
    assert len(backend.calls) == 1


def test_failures_retry_with_backoff_then_dead_letter_and_redrive(
    context: Context, backend: RecordingBackend, publish: Publish
) -> None:
    publish("summary", [{"path": "/incoming"}])
    backend.fail_paths = {"/incoming/bad.csv"}
    intake = Intake(context.sessions, BindingCache(context.sessions))
    intake.accept([event("/incoming/bad.csv"), event("/incoming/good.csv")])
    dead_before = sample("faaspub_storage_events_dead_lettered_total")
    retried_before = sample("faaspub_storage_events_retried_total")
    deliverer = Deliverer(context.sessions, backend, max_attempts=3, backoff_base_s=0.0)
    drain(deliverer)
    # A failing event never blocks the others.
    assert {c["event"]["subject"] for c in backend.calls} == {"/incoming/bad.csv", "/incoming/good.csv"}
    assert [c["event"]["subject"] for c in backend.calls].count("/incoming/bad.csv") == 3
    assert sample("faaspub_storage_events_retried_total") - retried_before == 2
    assert sample("faaspub_storage_events_dead_lettered_total") - dead_before == 1
    with context.sessions() as session:
        letters = dead_letters(session)
        assert [(d.path, d.attempts) for d in letters] == [("/incoming/bad.csv", 3)]
        assert "backend unavailable" in (letters[0].last_error or "")
    backend.fail_paths = set()
    with context.sessions() as session, session.begin():
        assert redrive(session, [letters[0].id]) == 1
    drain(deliverer)
    with context.sessions() as session:
        assert dead_letters(session) == []
        assert session.scalar(select(func.count()).select_from(LedgerRow)) == 2


def test_redelivery_after_a_crash_finds_the_activation_instead_of_running_again(
    context: Context, backend: RecordingBackend, publish: Publish
) -> None:
    publish("summary", [{"path": "/incoming"}])
    Intake(context.sessions, BindingCache(context.sessions)).accept([event("/incoming/a.csv")])
    deliverer = Deliverer(context.sessions, backend, lease_s=0.0)
    claimed = deliverer._claim()
    # The process ran the function, then died before recording: the lease (0 s) has run out.
    deliverer._deliver(claimed[0])
    assert len(backend.calls) == 1
    drain(Deliverer(context.sessions, backend))
    assert len(backend.calls) == 1
    with context.sessions() as session:
        assert session.scalar(select(DeliveryRow.status)) == "done"
        assert session.scalar(select(func.count()).select_from(LedgerRow)) == 1


def test_multiple_functions_and_kinds(context: Context, backend: RecordingBackend, publish: Publish) -> None:
    publish("all", [{"path": "/", "recursive": True, "events": ["created", "deleted"]}])
    publish("direct", [{"path": "/incoming", "recursive": False}])
    intake = Intake(context.sessions, BindingCache(context.sessions))
    intake.accept(
        [event("/incoming/sub/x.h5"), event("/incoming/y.h5"), event("/incoming/y.h5", kind="deleted")]
    )
    drain(Deliverer(context.sessions, backend))
    got = sorted((c["function"], c["event"]["subject"], c["event"]["type"]) for c in backend.calls)
    assert got == [
        ("all", "/incoming/sub/x.h5", "storage.object.created"),
        ("all", "/incoming/y.h5", "storage.object.created"),
        ("all", "/incoming/y.h5", "storage.object.deleted"),
        ("direct", "/incoming/y.h5", "storage.object.created"),
    ]
