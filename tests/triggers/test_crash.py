"""Kill -9 the consumer at random moments while files arrive: nothing lost, nothing run twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from publisher.core.context import Context
from publisher.db.models import ActivationRecord
from publisher.triggers.store import DeliveryRow, EventRow, LedgerRow
from tests.triggers.conftest import Publish, wait_for

ROUNDS = 20
REPO = Path(__file__).resolve().parents[2]


def start_worker(directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.triggers.crash_worker", str(directory)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.slow
def test_kill_minus_nine_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, context: Context, publish: Publish
) -> None:
    publish("fn", [{"path": "/incoming", "match": "*.dat"}])
    incoming = Path(context.settings.storage.local.root) / "incoming"
    incoming.mkdir(parents=True)
    written: list[str] = []
    done = threading.Event()
    rng = random.Random(1234)

    def writer() -> None:
        n = 0
        while not done.is_set():
            name = f"f{n:05d}.dat"
            if n % 7 == 0:  # some arrive by rename, as finished uploads often do
                tmp = incoming.parent / f".{name}.part"
                tmp.write_bytes(os.urandom(64))
                os.rename(tmp, incoming / name)
            else:
                (incoming / name).write_bytes(os.urandom(64 + n % 50))
            written.append(f"/incoming/{name}")
            n += 1
            time.sleep(rng.uniform(0.005, 0.04))

    feeder = threading.Thread(target=writer, daemon=True)
    feeder.start()
    try:
        for _ in range(ROUNDS):
            worker = start_worker(tmp_path)
            time.sleep(rng.uniform(1.0, 3.0))  # start-up (imports) takes ~1.5 s
            kill(worker)
    finally:
        done.set()
        feeder.join(timeout=5)
    final = start_worker(tmp_path)
    try:

        def state() -> dict[str, int]:
            with context.sessions() as session:
                found = dict(
                    session.execute(
                        select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)
                    ).all()
                )
                found["ledger"] = session.scalar(select(func.count()).select_from(LedgerRow)) or 0
                found["events"] = session.scalar(select(func.count()).select_from(EventRow)) or 0
                orphans = session.scalars(
                    select(EventRow.path).outerjoin(DeliveryRow).where(DeliveryRow.id.is_(None))
                ).all()
                found["without_delivery"] = len(orphans)
                if orphans:
                    print("events without delivery:", orphans[:5], sorted(written)[:3])
                return found

        try:
            wait_for(lambda: state()["ledger"] == len(written), timeout=30, what="every file in the ledger")
        except AssertionError:
            raise AssertionError(f"{len(written)} files written; state {state()}") from None
    finally:
        kill(final)
    with context.sessions() as session:
        causes = session.execute(
            select(ActivationRecord.cause, ActivationRecord.result, func.count()).group_by(
                ActivationRecord.cause
            )
        ).all()
        twice = [(cause, n) for cause, _, n in causes if n != 1]
        assert twice == [], f"ran more than once: {twice[:5]}"
        subjects = sorted(result["subject"] for _, result, _ in causes)
        assert subjects == sorted(str(incoming.parent) + path for path in written)  # files on disk
        statuses = dict(
            session.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all()
        )
        assert statuses == {"done": len(written)}
    assert len(written) > 200
