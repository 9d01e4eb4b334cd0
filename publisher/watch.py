"""Saves in a function folder, for ``faaspub dev``: inotify through watchdog, bursts folded into one.

An editor's save is often several events (write a temporary file, rename it over the original,
touch a backup); :meth:`FolderWatch.wait` returns once the folder has been quiet for ``quiet_s``.
Caches, VCS data and editor droppings never count as changes.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from types import TracebackType

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from publisher.build.inputs import EXCLUDED_DIRS, EXCLUDED_SUFFIXES

# Editors' swap, backup and lock files (vim, emacs, JetBrains, Kate).
_SCRATCH_SUFFIXES = (".swp", ".swx", ".swo", "~", ".tmp", ".kate-swp", "___jb_tmp___", "___jb_old___")


def relevant(root: Path, path: str) -> bool:
    """Whether a change at ``path`` can change the function (its image, tests or manifest)."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return False
    if not parts or any(part in EXCLUDED_DIRS for part in parts[:-1]):
        return False
    name = parts[-1]
    return not (
        name in EXCLUDED_DIRS
        or name.endswith(EXCLUDED_SUFFIXES + _SCRATCH_SUFFIXES)
        or name.startswith(".#")
        or name == "4913"  # vim's probe for a writable directory
    )


class _Collector(FileSystemEventHandler):
    def __init__(self, root: Path, changes: queue.Queue[str]) -> None:
        self.root = root
        self.changes = changes

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or (
            event.is_directory and event.event_type == "modified"
        ):
            return
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and relevant(self.root, str(path)):
                self.changes.put(str(path))


class FolderWatch:
    """Watches ``root`` recursively while open (a context manager)."""

    def __init__(self, root: Path, quiet_s: float = 0.02) -> None:
        self.root = root.resolve()
        self.quiet_s = quiet_s
        self._changes: queue.Queue[str] = queue.Queue()
        self._observer = InotifyObserver()
        self._observer.schedule(_Collector(self.root, self._changes), str(self.root), recursive=True)

    def __enter__(self) -> FolderWatch:
        self._observer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def wait(self, timeout: float | None = None) -> set[str]:
        """The paths changed since the last call, once they have settled; empty after ``timeout``."""
        try:
            changed = {self._changes.get(timeout=timeout)}
        except queue.Empty:
            return set()
        while True:
            deadline = time.monotonic() + self.quiet_s
            try:
                changed.add(self._changes.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return changed
