"""The local directory source on real directories with real inotify."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from publisher.core.context import Context
from publisher.triggers.bindings import BindingCache
from publisher.triggers.intake import Intake
from publisher.triggers.local import LocalDirectorySource
from publisher.triggers.store import EventRow
from tests.triggers.conftest import Publish, wait_for


@contextmanager
def watching(context: Context, settle_s: float = 0.3) -> Iterator[Path]:
    root = Path(context.settings.storage.local.root)
    source = LocalDirectorySource(root, settle_s=settle_s)
    intake = Intake(context.sessions, BindingCache(context.sessions, ttl_s=0))
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(intake, stop.is_set), daemon=True)
    thread.start()
    time.sleep(0.3)  # the watch is in place
    try:
        yield root
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()


def rows(context: Context, kind: str = "created") -> list[tuple[str, int | None]]:
    with context.sessions() as session:
        found = session.execute(select(EventRow.path, EventRow.size).where(EventRow.kind == kind)).all()
    return sorted((path, size) for path, size in found)


def test_close_after_write_is_one_event_even_for_a_slow_writer(context: Context, publish: Publish) -> None:
    publish("fn", [{"path": "/incoming", "match": "*.csv"}])
    (Path(context.settings.storage.local.root) / "incoming").mkdir(parents=True)
    with watching(context) as root:
        with open(root / "incoming" / "a.csv", "w") as handle:
            for _ in range(5):
                handle.write("x" * 100)
                handle.flush()
                time.sleep(0.05)
        (root / "incoming" / "b.txt").write_text("not matched")
        wait_for(lambda: rows(context), what="the event")
        time.sleep(0.5)
    assert rows(context) == [("/incoming/a.csv", 500)]


def test_moves_into_the_tree_new_subdirectories_and_deletes(context: Context, publish: Publish) -> None:
    publish("fn", [{"path": "/incoming", "recursive": True, "events": ["created", "deleted"]}])
    root = Path(context.settings.storage.local.root)
    (root / "incoming").mkdir(parents=True)
    outside = root.parent / "outside.dat"
    outside.write_text("moved in")
    with watching(context) as root:
        os.rename(outside, root / "incoming" / "moved.dat")
        # A new subdirectory whose file lands before inotify can watch it.
        nested = root / "incoming" / "run1" / "deep"
        nested.mkdir(parents=True)
        (nested / "early.dat").write_text("early")
        wait_for(lambda: len(rows(context)) == 2, what="moved and early files")
        (nested / "late.dat").write_text("late")
        wait_for(lambda: len(rows(context)) == 3, what="the late file")
        (root / "incoming" / "moved.dat").unlink()
        wait_for(lambda: rows(context, "deleted"), what="the delete")
    assert [p for p, _ in rows(context)] == [
        "/incoming/moved.dat",
        "/incoming/run1/deep/early.dat",
        "/incoming/run1/deep/late.dat",
    ]
    assert [p for p, _ in rows(context, "deleted")] == ["/incoming/moved.dat"]


def test_files_that_landed_while_stopped_are_picked_up_once(context: Context, publish: Publish) -> None:
    publish("fn", [{"path": "/incoming"}])
    root = Path(context.settings.storage.local.root)
    (root / "incoming").mkdir(parents=True)
    (root / "incoming" / "before.dat").write_text("old")
    with watching(context):
        wait_for(lambda: rows(context), what="the file from before the start")
    with watching(context):  # a restart scans again; the intake drops what it already has
        time.sleep(0.6)
    assert rows(context) == [("/incoming/before.dat", 3)]
