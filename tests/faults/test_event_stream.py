"""kill -9 the event consumer at random moments while files arrive in a watched directory (inotify).

The consumer is ``tests.triggers.crash_worker``: the real trigger runner (local directory source
on inotify plus scans, intake, deliverers with a short lease) and the recording backend, on
SQLite. A writer thread keeps dropping files (some by rename, as finished uploads arrive). Each
round lets the consumer work, kills it at a random moment, restarts it, then pauses the writer
until the backlog is delivered and checks: every file that arrived ran exactly once.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from publisher.core.context import Context
from publisher.triggers.store import LedgerRow
from tests.faults import invariants
from tests.faults.processes import kill9, spawn, stop, tail
from tests.triggers.conftest import make_settings, publish_rows, wait_for

ROUNDS = 7


class Writer:
    """Drops files into ``incoming`` at random intervals until paused; remembers their event paths."""

    def __init__(self, incoming: Path, rng: random.Random) -> None:
        self.incoming, self.rng = incoming, rng
        self.written: list[str] = []
        self.running = threading.Event()
        self.done = threading.Event()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self.done.is_set():
            if not self.running.is_set():
                self.idle.set()
                self.running.wait(0.05)
                continue
            self.idle.clear()
            name = f"f{n:05d}.dat"
            data = os.urandom(self.rng.randint(16, 256))
            if self.rng.random() < 0.2:  # written elsewhere, then moved in
                part = self.incoming.parent / f".{name}.part"
                part.write_bytes(data)
                os.rename(part, self.incoming / name)
            else:
                (self.incoming / name).write_bytes(data)
            self.written.append(f"/incoming/{name}")
            n += 1
            time.sleep(self.rng.uniform(0.002, 0.03))

    def pause(self) -> None:
        self.running.clear()
        self.idle.wait(5)


def ledger_size(context: Context) -> int:
    with context.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(LedgerRow)) or 0)


def delivering(context: Context) -> Callable[[], bool]:
    """True once the ledger grew past its size at the time of this call."""
    seen = ledger_size(context)
    return lambda: ledger_size(context) > seen


def test_consumer_killed_at_random_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, rng: random.Random
) -> None:
    context = Context(make_settings(tmp_path))
    context.engine  # noqa: B018  (migrate before the consumer starts)
    publish_rows(context, "fn", "1.0.0", "sha256:" + "f" * 64, [{"path": "/incoming", "match": "*.dat"}])
    incoming = Path(context.settings.storage.local.root) / "incoming"
    incoming.mkdir(parents=True)
    log = tmp_path / "consumer.log"

    def consumer() -> subprocess.Popen[bytes]:
        return spawn("tests.triggers.crash_worker", str(tmp_path), log=log)

    writer = Writer(incoming, rng)
    writer.thread.start()
    process = consumer()
    try:
        for n in range(1, ROUNDS + 1):
            writer.running.set()
            # Once the consumer delivers, it runs for a random while before the kill.
            wait_for(delivering(context), timeout=20, what=f"round {n}: delivery")
            alive = rng.uniform(0.0, 1.2)
            label = f"round {n} (kill -9 {alive:.2f}s into delivery)"
            time.sleep(alive)
            kill9(process)
            process = consumer()
            time.sleep(rng.uniform(0.0, 0.5))  # files keep arriving while it starts again
            writer.pause()
            expected = len(writer.written)
            try:
                wait_for(lambda: ledger_size(context) >= expected, timeout=30, what=label)  # noqa: B023
            except AssertionError:
                raise AssertionError(f"{label}: {ledger_size(context)}/{expected}\n{tail(log)}") from None
            invariants.events_delivered_once(context.sessions, writer.written, label)
        assert len(writer.written) > 100, "too few files to mean anything"
    finally:
        writer.done.set()
        writer.running.set()
        writer.thread.join(timeout=5)
        stop(process)
        context.engine.dispose()
