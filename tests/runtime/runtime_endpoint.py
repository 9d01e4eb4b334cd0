"""A running runtime proxy as the conformance suite sees it: a URL, its two log streams, its exit.

The same class wraps ``python -m faaspub_runtime.proxy`` and ``podman run … IMAGE`` (attached, so the
container's stdout and stderr arrive on two separate pipes). Both print ``listening on HOST:PORT``
when started with ``FAASPUB_PROXY_PORT=0``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

RUNTIME_SRC = Path(__file__).resolve().parents[2] / "runtime-images" / "python"
ACTIONS = Path(__file__).resolve().parent / "actions"
_LISTENING = re.compile(rb"listening on ([\d.]+):(\d+)")


class StreamLog:
    """Drains one pipe on a thread (so a chatty handler never blocks) and keeps everything read."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._data = bytearray()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[bytes]) -> None:
        while chunk := pipe.read1(65536):  # type: ignore[attr-defined]
            with self._changed:
                self._data += chunk
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return self._data.decode("utf-8", errors="replace")

    def wait_for(self, ready: Callable[[bytes], Any], timeout: float = 10.0) -> Any:
        """Wait until ``ready(data)`` is truthy and return its value; None on timeout or end of stream."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = ready(bytes(self._data))
                left = deadline - time.monotonic()
                if found or self._closed or left <= 0:
                    return found or None
                self._changed.wait(left)


@dataclass
class Response:
    status: int
    raw: bytes
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


class Endpoint:
    """One proxy process; ``stop`` is how it ends (``stopper`` may remove a container too)."""

    def __init__(self, process: subprocess.Popen[bytes], stopper: Callable[[], object] | None = None) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.out = StreamLog(process.stdout)
        self.err = StreamLog(process.stderr)
        self._stopper = stopper
        self._conn: http.client.HTTPConnection | None = None
        match = self.out.wait_for(_LISTENING.search, timeout=30)
        if match is None:
            self.stop()
            raise RuntimeError(f"the proxy did not start:\n{self.out.text()}\n{self.err.text()}")
        self.host, self.port = match.group(1).decode(), int(match.group(2))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        fresh: bool = False,
        timeout: float = 30,
    ) -> Response:
        """Send one request on the kept-alive connection (or on a new one with ``fresh``)."""
        conn = self._connection(fresh, timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            answer = conn.getresponse()
            response = Response(answer.status, answer.read(), dict(answer.headers))
        except BaseException:
            conn.close()
            raise
        if fresh or response.headers.get("Connection", "").lower() == "close":
            conn.close()
            if conn is self._conn:
                self._conn = None
        return response

    def _connection(self, fresh: bool, timeout: float) -> http.client.HTTPConnection:
        if fresh:
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self._conn.timeout = timeout
        return self._conn

    def post(self, path: str, message: Any, **kwargs: Any) -> Response:
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        return self.request("POST", path, body, {"Content-Type": "application/json"}, **kwargs)

    def init(self, value: Mapping[str, Any] | None = None, **kwargs: Any) -> Response:
        return self.post("/init", {"value": dict(value or {})}, **kwargs)

    def run(
        self, value: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Response:
        return self.post("/run", {"value": dict(value or {}), **dict(context or {})}, **kwargs)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._stopper is not None:
            self._stopper()
        if self.process.poll() is None:
            self.process.terminate()
            if self.wait_exit(10) is None:
                self.process.kill()
                self.process.wait(10)


StartProxy = Callable[..., Endpoint]
"""``start_proxy(handler="probe:echo", env={...}) -> Endpoint``; ``handler=None`` keeps the baked one."""


def start_local_proxy(handler: str | None = "probe:echo", env: Mapping[str, str] | None = None) -> Endpoint:
    """``python -m faaspub_runtime.proxy`` on a random loopback port, with ``actions/`` as /action."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("FAASPUB_", "__OW_"))}
    child_env.update(
        {
            "PYTHONPATH": str(RUNTIME_SRC),
            "PYTHONDONTWRITEBYTECODE": "1",
            "FAASPUB_PROXY_HOST": "127.0.0.1",
            "FAASPUB_PROXY_PORT": "0",
            "FAASPUB_ACTION_DIR": str(ACTIONS),
            **({"FAASPUB_HANDLER": handler} if handler else {}),
            **(env or {}),
        }
    )
    command = [sys.executable, "-m", "faaspub_runtime.proxy"]
    process = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return Endpoint(process)
