"""The OpenWhisk action runtime protocol on port 8080: ``POST /init`` once, then ``POST /run``.

Run it as ``python3 -m faaspub_runtime.proxy``. Settings come from the environment:

* ``FAASPUB_PROXY_HOST`` (default ``0.0.0.0``) and ``FAASPUB_PROXY_PORT`` (default 8080; 0 picks a
  free port and prints ``faaspub-runtime listening on HOST:PORT`` on stdout);
* ``FAASPUB_PROXY_SOCKET``: listen on this unix socket instead (the local backend's containers have no
  network of their own; the socket's folder is the only thing shared with the host);
* ``FAASPUB_PROXY_TOKEN``: when set, every request must carry it in ``X-Faaspub-Proxy-Token`` (else
  403, before the body is read). It is removed from the environment before any function code runs.
  OpenWhisk's own invoker sends no such header and sets no token, so on OpenWhisk the protocol is
  exactly OpenWhisk's;
* ``FAASPUB_TIMEOUT_MS``: the action's time limit, applied on top of each request's ``deadline``;
* ``FAASPUB_CONCURRENCY`` (or OpenWhisk's ``__OW_ALLOW_CONCURRENT=true``): runs in parallel, default 1;
* ``FAASPUB_ACTION_DIR`` and ``FAASPUB_HANDLER``: see :mod:`faaspub_runtime.loader`.

The handler runs in a worker thread of this process (no per-run process: a warm run costs well under a
millisecond). Python cannot stop a thread, so a run that passes its deadline is answered with the time
limit error and then the proxy exits: the backend replaces the container, as OpenWhisk does with a
timed-out container. See docs/decisions/runtime-proxy.md.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import socketserver
import sys
import threading
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from faaspub_runtime import loader

MARKER = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
# OpenWhisk caps parameters at 1 MB; /run adds the activation context around them.
RUN_BODY_LIMIT = 1024 * 1024 + 16 * 1024
# Code may be 48 MB, which is 64 MB once base64-encoded for /init.
INIT_BODY_LIMIT = 64 * 1024 * 1024
# An oversized body is read and dropped up to this size so the client sees the 413, not a reset.
DRAIN_LIMIT = 64 * 1024 * 1024
CONCURRENCY_MAX = 500
# Exit status after a timed-out run (EX_TEMPFAIL): the container must be replaced.
EXIT_TIMED_OUT = 75
TOKEN_HEADER = "X-Faaspub-Proxy-Token"

NOT_A_RESULT = "The action did not return a dictionary or array."
REINIT = "Cannot initialize the action more than once."
TIME_LIMIT = "The action exceeded its time limit"
TOO_LATE = f"{TIME_LIMIT} before it could start."


class Reply:
    """What one request answers; ``exit_after`` ends the process once the reply is sent."""

    # A plain class, not a dataclass: dataclasses imports inspect, which costs cold-start time.
    __slots__ = ("body", "exit_after", "status")

    def __init__(self, status: int, body: bytes, exit_after: bool = False) -> None:
        self.status = status
        self.body = body
        self.exit_after = exit_after

    @classmethod
    def of(cls, status: int, payload: Any, exit_after: bool = False) -> Reply:
        return cls(status, _encode(payload), exit_after)


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _error(status: int, message: str, exit_after: bool = False) -> Reply:
    return Reply.of(status, {"error": message}, exit_after)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def end_activation() -> None:
    """Print the end-of-activation marker on stdout and stderr, after everything the handler wrote."""
    for current, real in ((sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)):
        current.flush()
        stream = real or current
        stream.write(MARKER + "\n")
        stream.flush()


class ActionProxy:
    """The protocol state machine: one handler, a bounded number of parallel runs, ``__OW_*`` env."""

    def __init__(self, concurrency: int = 1, timeout_ms: int | None = None) -> None:
        self.concurrency = concurrency
        self.timeout_ms = timeout_ms
        self.handler: loader.Handler | None = None
        self._init_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="action")
        self._env_lock = threading.Lock()
        self._in_flight = 0
        self._env_baseline: dict[str, str] = {}

    def init(self, message: Any) -> Reply:
        value = message.get("value", {}) if isinstance(message, dict) else None
        if not isinstance(value, dict):
            return _error(400, "The init request must be a JSON object with an object 'value'.")
        with self._init_lock:
            if self.handler is not None:
                return _error(403, REINIT)
            try:
                self.handler = loader.load(value)
            except loader.InitError as exc:
                if exc.__cause__ is not None:
                    traceback.print_exception(exc.__cause__)
                print(f"faaspub-runtime: init failed: {exc}", file=sys.stderr)
                return _error(502, str(exc))
            self._env_baseline = {k: v for k, v in os.environ.items() if k.startswith("__OW_")}
        return Reply.of(200, {"ok": True})

    def run(self, message: Any) -> Reply:
        if not isinstance(message, dict) or not isinstance(message.get("value", {}), dict):
            return _error(400, "The run request must be a JSON object with an object 'value'.")
        handler = self.handler
        if handler is None:
            return _error(502, "The action has not been initialized.")
        try:
            budget = self._budget(message.get("deadline"))
        except ValueError:
            return _error(400, "The run request's 'deadline' must be epoch milliseconds.")
        if budget is not None and budget <= 0:
            return _error(502, TOO_LATE)
        started = time.monotonic()
        if not self._slots.acquire(timeout=budget):
            return _error(502, f"{TIME_LIMIT} of {_ms(budget)} ms waiting for a free slot.")
        timed_out = False
        try:
            remaining = None if budget is None else budget - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                return _error(502, TOO_LATE)
            future = self._pool.submit(self._call, handler, message.get("value", {}), _context_env(message))
            try:
                return future.result(timeout=remaining)
            except FutureTimeout:
                timed_out = True
                print(f"faaspub-runtime: {TIME_LIMIT}; exiting so the container is replaced", file=sys.stderr)
                return _error(502, f"{TIME_LIMIT} of {_ms(budget)} ms.", exit_after=True)
        finally:
            # A timed-out run keeps its slot: the process is about to exit and nothing may start.
            if not timed_out:
                self._slots.release()

    def _budget(self, deadline: Any) -> float | None:
        """Seconds this run may take: the request's wall-clock deadline capped by the action's limit."""
        budgets = []
        if deadline is not None and deadline != "":
            budgets.append(float(deadline) / 1000 - time.time())
        if self.timeout_ms is not None:
            budgets.append(self.timeout_ms / 1000)
        return min(budgets) if budgets else None

    def _call(self, handler: loader.Handler, value: dict[str, Any], context: dict[str, str]) -> Reply:
        self._enter(context)
        try:
            result = handler(value)
            if isinstance(result, types.CoroutineType):
                import asyncio  # only for async handlers: importing it costs cold-start time

                result = asyncio.run(result)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: the proxy must survive them
            traceback.print_exception(exc)
            return _error(502, _describe(exc))
        finally:
            self._leave(context)
        if not isinstance(result, dict | list):
            return _error(502, NOT_A_RESULT)
        try:
            return Reply(200, _encode(result))
        except (TypeError, ValueError) as exc:
            return _error(502, f"The action returned a result that is not JSON: {exc}")

    def _enter(self, context: dict[str, str]) -> None:
        with self._env_lock:
            self._in_flight += 1
            os.environ.update(context)

    def _leave(self, context: dict[str, str]) -> None:
        # With parallel runs the variables are shared: restore them only when the last run ends.
        with self._env_lock:
            self._in_flight -= 1
            if self._in_flight:
                return
            for key in context:
                if key in self._env_baseline:
                    os.environ[key] = self._env_baseline[key]
                else:
                    os.environ.pop(key, None)


def _context_env(message: dict[str, Any]) -> dict[str, str]:
    """``{"activation_id": "…"}`` -> ``{"__OW_ACTIVATION_ID": "…"}`` for every key but ``value``."""
    return {f"__OW_{key.upper()}": str(v) for key, v in message.items() if key != "value" and v is not None}


def _ms(seconds: float | None) -> int:
    return max(0, round((seconds or 0) * 1000))


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; JSON in, JSON out; no access log (the context carries an API key)."""

    protocol_version = "HTTP/1.1"
    server_version = "faaspub-runtime"
    server: _Server | _UnixServer

    def setup(self) -> None:
        super().setup()
        if self.connection.family != socket.AF_UNIX:
            # Headers and body go out in two writes; without NODELAY, delayed ACKs add ~40 ms per request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        proxy = self.server.proxy
        token = self.server.token
        if token is not None:
            offered = self.headers.get(TOKEN_HEADER, "").encode()
            if not hmac.compare_digest(offered, token.encode()):
                # Another function (or anyone else) knocking: refused before the body is read.
                self._reply(_error(403, "This runtime serves its own platform only."), close=True)
                return
        if path == "/init":
            self._serve(proxy.init, INIT_BODY_LIMIT)
        elif path == "/run":
            self._serve(proxy.run, RUN_BODY_LIMIT)
        else:
            self._refuse()

    def _refuse(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/init", "/run"):
            reply = _error(405, f"{path} takes POST.")
        else:
            reply = _error(404, f"There is no {path}: the runtime serves POST /init and POST /run.")
        # The body (if any) stays unread, so the connection cannot be reused.
        self._reply(reply, close=True)

    do_GET = do_PUT = do_DELETE = do_PATCH = _refuse

    def _serve(self, action: Any, limit: int) -> None:
        body = self._read_body(limit)
        if body is None:
            return
        try:
            message = json.loads(body)
        except ValueError as exc:
            reply = _error(400, f"The request body is not JSON: {exc}")
        else:
            reply = action(message)
        end_activation()
        self._reply(reply)
        if reply.exit_after:
            self.wfile.flush()
            os._exit(EXIT_TIMED_OUT)

    def _read_body(self, limit: int) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._reply(_error(411, "Send the body with a Content-Length, not chunked."), close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self._reply(_error(411, "A Content-Length header is required."), close=True)
            return None
        if length > limit:
            self._drain(length)
            message = f"The request body of {length} bytes exceeds the limit of {limit} bytes."
            self._reply(_error(413, message), close=True)
            return None
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        # Read and drop in small pieces, so at most one chunk of an oversized body is ever in memory.
        left = length if length <= DRAIN_LIMIT else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def _reply(self, reply: Reply, close: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.body)))
        if close or reply.exit_after:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(reply.body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (malformed request line, unsupported method) are JSON as well."""
        self._reply(_error(code, message or HTTPStatus(code).phrase), close=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced on purpose: request lines would land in the function's activation logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: ActionProxy, token: str | None = None) -> None:
        self.proxy = proxy
        self.token = token
        super().__init__(address, _Handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: str, proxy: ActionProxy, token: str | None = None) -> None:
        self.proxy = proxy
        self.token = token
        if os.path.exists(path):
            os.unlink(path)  # left by a previous instance in the same folder
        super().__init__(path, _Handler)
        # The platform may run as another user than the function; the folder keeps others out.
        os.chmod(path, 0o666)


def make_server(
    host: str, port: int, proxy: ActionProxy, token: str | None = None, socket_path: str | None = None
) -> socketserver.BaseServer:
    """Bind the protocol server (call ``serve_forever`` on the result)."""
    if socket_path:
        return _UnixServer(socket_path, proxy, token)
    return _Server((host, port), proxy, token)


def settings_from_env(env: dict[str, str] | None = None) -> tuple[int, int | None]:
    """``(concurrency, timeout_ms)`` from the environment (see the module docstring)."""
    env = dict(os.environ) if env is None else env
    raw = env.get("FAASPUB_CONCURRENCY", "").strip()
    if raw:
        concurrency = int(raw)
        if not 1 <= concurrency <= CONCURRENCY_MAX:
            raise ValueError(f"FAASPUB_CONCURRENCY={raw} is outside 1-{CONCURRENCY_MAX}")
    elif env.get("__OW_ALLOW_CONCURRENT", "").strip().lower() in ("true", "1", "yes"):
        concurrency = CONCURRENCY_MAX
    else:
        concurrency = 1
    raw_timeout = env.get("FAASPUB_TIMEOUT_MS", "").strip()
    timeout_ms = int(raw_timeout) if raw_timeout else None
    if timeout_ms is not None and timeout_ms <= 0:
        raise ValueError(f"FAASPUB_TIMEOUT_MS={raw_timeout} must be positive")
    return concurrency, timeout_ms


def main() -> int:
    """Serve until killed; exit status 2 on bad settings, 75 after a timed-out run."""
    token = os.environ.pop("FAASPUB_PROXY_TOKEN", "") or None  # never visible to the function
    try:
        concurrency, timeout_ms = settings_from_env()
        host = os.environ.get("FAASPUB_PROXY_HOST", "0.0.0.0")
        port = int(os.environ.get("FAASPUB_PROXY_PORT", "8080"))
        socket_path = os.environ.get("FAASPUB_PROXY_SOCKET") or None
        server = make_server(host, port, ActionProxy(concurrency, timeout_ms), token, socket_path)
    except (ValueError, OSError) as exc:
        print(f"faaspub-runtime: cannot start: {exc}", file=sys.stderr)
        return 2
    if port == 0 and isinstance(server, _Server):
        print(f"faaspub-runtime listening on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
