"""The same intake and deliverers on PostgreSQL: conflict-free inserts and SKIP LOCKED leases."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.types import StorageEvent
from publisher.db.models import ActivationRecord
from publisher.triggers.bindings import BindingCache
from publisher.triggers.delivery import Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.store import LedgerRow
from tests.triggers.conftest import publish_rows
from tests.triggers.recording import RecordingBackend

pytestmark = pytest.mark.postgres


def test_concurrent_deliverers_on_postgres_run_each_event_once(tmp_path: Path, pg_url: str) -> None:
    context = Context(Settings.model_validate({"database": {"url": pg_url}, "state_dir": str(tmp_path)}))
    publish_rows(context, "pg-fn", "1.0.0", "sha256:" + "c" * 64, [{"path": "/pgtest", "recursive": True}])
    now = datetime.now(UTC)
    events = [
        StorageEvent(source="local", path=f"/pgtest/{i}.h5", kind="created", time=now, event_id=str(i))
        for i in range(300)
    ]
    intakes = [Intake(context.sessions, BindingCache(context.sessions)) for _ in range(2)]
    # Two intakes racing on the same events: each key is stored once.
    racers = [threading.Thread(target=intake.accept, args=(events,)) for intake in intakes]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    backend = RecordingBackend(context.sessions)
    deliverers = [Deliverer(context.sessions, backend, batch=16) for _ in range(3)]

    def drain(deliverer: Deliverer) -> None:
        while deliverer.run_once():
            pass

    workers = [threading.Thread(target=drain, args=(d,)) for d in deliverers]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    subjects = Counter(call["event"]["subject"] for call in backend.calls)
    assert len(subjects) == 300 and set(subjects.values()) == {1}
    with context.sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(LedgerRow).where(LedgerRow.function == "pg-fn"))
            == 300
        )
        assert (
            session.scalar(
                select(func.count()).select_from(ActivationRecord).where(ActivationRecord.function == "pg-fn")
            )
            == 300
        )
    context.engine.dispose()
