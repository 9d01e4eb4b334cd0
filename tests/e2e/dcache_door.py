"""A dCache WebDAV door for the end-to-end tests, in front of the dCache test server's namespace.

Real dCache serves file data through WebDAV doors (port 2880), separate from the frontend (3880)
that the fake in :mod:`tests.fakes.dcache_server` implements. The door keeps file contents under a
host directory and, like dCache, turns a completed ``PUT`` into the namespace entry and its inotify
events (``FakeDcache.upload``), so a function writing its output back through WebDAV triggers the
next function exactly as on a facility's dCache. ``GET`` and ``PUT`` need the same credentials as
the frontend (401 otherwise); a ``PUT`` onto an existing file is refused (dCache files are
write-once by default).
"""

from __future__ import annotations

import posixpath
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.dcache_server import FakeDcache


class WebdavDoor:
    """Serves ``GET``/``PUT``/``HEAD`` of ``/pnfs/...`` paths; contents live under ``root``."""

    def __init__(self, fake: FakeDcache, root: Path) -> None:
        self.fake = fake
        self.root = root
        self.requests: list[tuple[str, str, int]] = []  # method, path, status
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webdav-door", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def local(self, path: str) -> Path:
        """Where the door keeps the content of dCache path ``path``."""
        clean = posixpath.normpath("/" + path.lstrip("/"))
        return self.root / clean.lstrip("/")

    def read(self, path: str) -> bytes | None:
        target = self.local(path)
        return target.read_bytes() if target.is_file() else None

    def put(self, path: str, data: bytes) -> int:
        """Store a new file and emit its upload events; the HTTP status dCache would answer."""
        with self.lock:
            target = self.local(path)
            if target.exists():
                return 409
            with self.fake.lock:
                if posixpath.dirname(path) not in self.fake.namespace:
                    return 409  # WebDAV: the parent collection does not exist
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.fake.upload(path, size=len(data))
        return 201

    def __enter__(self) -> WebdavDoor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(door: WebdavDoor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"") -> None:
            with door.lock:
                door.requests.append((self.command, unquote(urlsplit(self.path).path), status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorised(self) -> bool:
            return (self.headers.get("Authorization") or "") in door.fake.users

        def do_GET(self) -> None:
            if not self._authorised():
                self._reply(401)
                return
            data = door.read(unquote(urlsplit(self.path).path))
            self._reply(200, data) if data is not None else self._reply(404)

        do_HEAD = do_GET

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not self._authorised():
                self._reply(401)
                return
            self._reply(door.put(unquote(urlsplit(self.path).path), body))

    return Handler
