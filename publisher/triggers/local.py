"""Local directory source: inotify through watchdog, plus scans so nothing that landed is missed.

Live events: ``FileClosedEvent`` (IN_CLOSE_WRITE: the writer closed the file) and files moved into
the tree are ``created``; deletions and moves out are ``deleted``. inotify alone loses files that
land while the service is down, before the watch on a brand-new subdirectory exists, or when the
kernel queue overflows, so the source also scans: at start, for every new subdirectory, and every
``rescan_s``. A scanned file is reported once it has not changed for ``settle_s`` (a file still
being written is left to its close event); the intake drops the duplicates, because a file's key is
its path plus modification time and size.
"""

from __future__ import annotations

import heapq
import os
import queue
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyObserver

from publisher.core.parts import EventSink
from publisher.core.types import StorageEvent
from publisher.triggers.intake import store_with_retry


def file_state(path: Path) -> os.stat_result | None:
    try:
        st = path.stat()
    except OSError:  # gone already (or unreadable): nothing to report as created
        return None
    return st if path.is_file() else None


class LocalDirectorySource:
    """Watches ``root``; events carry the path below it (``root/incoming/a.csv`` -> ``/incoming/a.csv``)."""

    name = "local"

    def __init__(
        self,
        root: str | os.PathLike[str],
        recursive: bool = True,
        settle_s: float = 1.0,
        rescan_s: float = 300.0,
    ) -> None:
        self.root = Path(root).absolute()
        self.recursive = recursive
        self.settle_s = settle_s
        self.rescan_s = rescan_s
        self._raw: queue.Queue[FileSystemEvent] = queue.Queue()
        # (due monotonic time, path): files or directories to look at once they have settled.
        self._checks: list[tuple[float, str]] = []

    def logical(self, path: Path) -> str:
        return "/" + path.relative_to(self.root).as_posix()

    def created(self, path: Path, st: os.stat_result, observed: datetime | None = None) -> StorageEvent:
        return StorageEvent(
            source="local",
            path=self.logical(path),
            kind="created",
            time=observed or datetime.fromtimestamp(st.st_mtime, UTC),
            size=st.st_size,
            event_id=f"{st.st_mtime_ns}.{st.st_size}",
            url=path.as_uri(),
        )

    def deleted(self, path: Path) -> StorageEvent:
        return StorageEvent(
            source="local",
            path=self.logical(path),
            kind="deleted",
            time=datetime.now(UTC),
            event_id=str(time.time_ns()),
            url=path.as_uri(),
        )

    def files(self, top: Path) -> Iterator[Path]:
        """Regular files below ``top`` (only direct children unless recursive)."""
        if top.is_file():
            yield top
            return
        for dirpath, dirnames, filenames in os.walk(top):
            if not self.recursive:
                dirnames.clear()
            for name in filenames:
                yield Path(dirpath) / name

    def run(self, sink: EventSink, stop: Callable[[], bool]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        observer = InotifyObserver(generate_full_events=True)
        observer.schedule(_Forward(self._raw), str(self.root), recursive=self.recursive)
        observer.start()
        try:
            # The watch exists before the scan, so nothing falls between the two.
            self._schedule(str(self.root), 0.0)
            next_rescan = time.monotonic() + self.rescan_s
            while not stop():
                try:
                    raw = self._raw.get(timeout=0.1)
                except queue.Empty:
                    raw = None
                if raw is not None:
                    store_with_retry(sink, self._translate(raw), stop)
                self._run_checks(sink, stop)
                if time.monotonic() >= next_rescan:
                    self._schedule(str(self.root), 0.0)
                    next_rescan = time.monotonic() + self.rescan_s
        finally:
            observer.stop()
            observer.join(timeout=5)

    def _translate(self, raw: FileSystemEvent) -> list[StorageEvent]:
        now = datetime.now(UTC)
        src = Path(os.fsdecode(raw.src_path)) if raw.src_path else None
        dest = Path(os.fsdecode(raw.dest_path)) if raw.dest_path else None
        if isinstance(raw, FileClosedEvent) and src is not None:
            st = file_state(src)
            return [self.created(src, st, now)] if st else []
        if isinstance(raw, FileDeletedEvent) and src is not None:
            return [self.deleted(src)]
        if isinstance(raw, FileMovedEvent):
            events = [self.deleted(src)] if src is not None else []
            st = file_state(dest) if dest is not None else None
            if dest is not None and st is not None:
                events.append(self.created(dest, st, now))
            return events
        if isinstance(raw, DirMovedEvent | DirCreatedEvent):
            # Files can land in a new directory before its watch exists: look at them once settled.
            target = dest if isinstance(raw, DirMovedEvent) else src
            if target is not None and self.recursive:
                self._schedule(str(target), 0.0)
        return []

    def _schedule(self, path: str, delay: float) -> None:
        heapq.heappush(self._checks, (time.monotonic() + delay, path))

    def _run_checks(self, sink: EventSink, stop: Callable[[], bool]) -> None:
        while self._checks and self._checks[0][0] <= time.monotonic() and not stop():
            _, path = heapq.heappop(self._checks)
            settled = []
            for file in self.files(Path(path)):
                st = file_state(file)
                if st is None:
                    continue
                age = time.time() - st.st_mtime
                if age >= self.settle_s:
                    settled.append(self.created(file, st))
                else:
                    self._schedule(str(file), self.settle_s - age)
            store_with_retry(sink, settled, stop)


class _Forward(FileSystemEventHandler):
    """Moves watchdog's events from its thread to the source's own loop."""

    def __init__(self, out: queue.Queue[FileSystemEvent]) -> None:
        self._out = out

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._out.put(event)
