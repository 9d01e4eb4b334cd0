"""Per-activation logs from a runtime's stdout/stderr, split on OpenWhisk's end-of-activation markers.

The runtime prints ``XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX`` on stdout *and* stderr after each
``/init`` and ``/run``. A reader thread feeds raw output here; a finished run takes one segment per
stream, merged in arrival order and formatted like OpenWhisk (``2024-…Z stdout: line``). With
concurrency above 1 the runs share the streams, so a segment goes to whichever run asks first
(OpenWhisk has the same limitation for concurrent activations).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime

MARKER = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
STREAMS = ("stdout", "stderr")
# A run's log lines beyond this are dropped with a note (OpenWhisk's default log limit is 10 MB).
MAX_LINES = 10_000

Line = tuple[float, str, str]  # (arrival time, stream, text)


class LogCollector:
    """Thread-safe: one reader thread feeds, any number of runs take."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._partial = {s: b"" for s in STREAMS}
        self._pending: dict[str, list[Line]] = {s: [] for s in STREAMS}
        self._done: dict[str, deque[list[Line]]] = {s: deque() for s in STREAMS}
        self._closed = False

    def feed(self, stream: str, data: bytes) -> None:
        """Raw bytes from ``stream``; complete lines are kept, a partial line waits for its end."""
        buffered = self._partial[stream] + data
        *lines, rest = buffered.split(b"\n")
        self._partial[stream] = rest
        if not lines:
            return
        now = time.time()
        with self._cond:
            for raw in lines:
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if text == MARKER:
                    self._done[stream].append(self._pending[stream])
                    self._pending[stream] = []
                    self._cond.notify_all()
                elif len(self._pending[stream]) < MAX_LINES:
                    self._pending[stream].append((now, stream, text))

    def close(self) -> None:
        """The streams ended (the process exited): waiting runs get what was printed so far."""
        with self._cond:
            for stream in STREAMS:
                if self._partial[stream]:
                    text = self._partial[stream].decode("utf-8", "replace")
                    self._pending[stream].append((time.time(), stream, text))
                    self._partial[stream] = b""
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def take(self, timeout: float) -> list[str]:
        """The next segment of each stream (waiting up to ``timeout`` s for both markers), formatted."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed and not all(self._done[s] for s in STREAMS):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            lines: list[Line] = []
            for stream in STREAMS:
                if self._done[stream]:
                    lines += self._done[stream].popleft()
                else:
                    # No marker (crash, timeout): whatever the run printed so far is its log.
                    lines += self._pending[stream]
                    self._pending[stream] = []
        lines.sort(key=lambda line: line[0])
        return [format_line(*line) for line in lines]


def format_line(when: float, stream: str, text: str) -> str:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {stream}: {text}"
