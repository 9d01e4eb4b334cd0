"""A TCP proxy in front of a real server (the registry) that can go down for a while.

While down, every new connection is reset as soon as it is accepted (the client sees what a
stopped server behind a load balancer gives: a connection error), and connections already open
are cut. Only the thread that owns a socket closes it: closing a descriptor another thread is
blocked on lets its number be reused by an unrelated socket while that thread still uses it.
``outage_at(n, seconds)`` takes it down when the n-th connection from now arrives, so an outage
can land on a chosen request of a job (image verification, deploy) instead of at a time.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to ``target`` (``host:port``) until told to fail."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._trigger: tuple[int, float] | None = None
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        self.connections = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._serve, name="flaky-proxy", daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        # shutdown, not close, wakes the thread blocked in accept(); the descriptor is closed only
        # once no thread uses it, or a new socket of the next test could reuse its number under it.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._listener.close()
        self._cut()

    # -- faults ----------------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def outage(self, seconds: float) -> None:
        """Go down now for ``seconds``."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
        self._cut()

    def outage_at(self, nth: int, seconds: float) -> None:
        """Go down for ``seconds`` when the ``nth`` connection from now arrives (it is refused too)."""
        with self._lock:
            self._trigger = (self.connections + nth, seconds)

    # -- forwarding ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                if self._trigger and self.connections >= self._trigger[0]:
                    self._down_until = time.monotonic() + self._trigger[1]
                    self._trigger = None
                refuse = time.monotonic() < self._down_until
            if refuse:
                self.refused += 1
                _reset(client)
                continue
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._open.update((client, upstream))
        pumps = [
            threading.Thread(target=_pump, args=(client, upstream), daemon=True),
            threading.Thread(target=_pump, args=(upstream, client), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        _reset(client)
        upstream.close()

    def _cut(self) -> None:
        """Break open connections; their forwarding thread closes them (it owns the descriptors)."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dead peer's kernel would answer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
