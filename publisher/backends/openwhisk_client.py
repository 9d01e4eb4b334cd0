"""A small OpenWhisk REST client (``/api/v1``): basic auth, retries with backoff, errors that name the entity.

OpenWhisk answers every error as ``{"error": "<message>", "code": "<transaction id>"}``; this client
turns that into a :class:`FaaspubError` naming what was asked for. 429 and 503 (and connection
errors) are retried with exponential backoff, honouring ``Retry-After``; when the platform stays
unreachable the error is :class:`BackendUnavailable`, which the pipeline treats as resumable.
The ``uuid:key`` credential lives in a private attribute and only ever travels in the
``Authorization`` header.

Trigger fires, the hot path of storage-event delivery, go through :meth:`OpenWhiskClient.post_json`:
a pool of keep-alive connections shared by the deliverer's threads, each request one socket write,
answers parsed by ``http.client``: about a tenth of the CPU per request of ``requests`` (see
``docs/decisions/triggers-delivery-throughput.md``), with the same retries and errors.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies
from urllib3.exceptions import NewConnectionError
from urllib3.util.wait import wait_for_read

from publisher.backends.errors import BackendUnavailable
from publisher.config import OpenWhiskSettings, read_secret
from publisher.errors import ConfigError, FaaspubError

log = logging.getLogger(__name__)

RETRY_STATUS = (429, 503)
# Idle keep-alive connections kept for fires; more concurrent fires open (and then close) extra ones.
FIRE_POOL = 64


class Answer(Protocol):
    """What the retry and error handling read from a response (``requests`` or :class:`Reply`)."""

    status_code: int
    reason: str
    headers: Any

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


A = TypeVar("A", bound=Answer)


@dataclass
class Reply:
    """A response read off a pooled fire connection."""

    status_code: int
    reason: str
    headers: Message
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _NeverConnected(Exception):
    """The connection could not be opened: nothing was sent, so even a POST may be retried."""


def load_auth(settings: OpenWhiskSettings) -> tuple[str, str]:
    """``(uuid, key)`` from ``backend.openwhisk.auth`` or ``auth_file``; the error never shows the value."""
    what = "OpenWhisk credentials (backend.openwhisk.auth_file)"
    text = read_secret(settings.auth, settings.auth_file, what)
    if text is None:
        raise ConfigError(
            "backend.openwhisk.auth_file is not set",
            hint="point it at a file holding the namespace key 'uuid:key' (wsk property get --auth)",
        )
    user, sep, key = text.partition(":")
    if not sep or not user or not key:
        raise ConfigError("the OpenWhisk credentials must have the form 'uuid:key'")
    return user, key


class OpenWhiskClient:
    """Requests against one OpenWhisk API host for one namespace (``_`` = the key's own)."""

    def __init__(
        self,
        api_host: str,
        auth: tuple[str, str],
        namespace: str = "_",
        *,
        insecure: bool = False,
        retries: int = 4,
        backoff: float = 0.25,
        timeout: float = 75.0,
    ) -> None:
        if "://" not in api_host:
            api_host = f"https://{api_host}"
        self.base_url = api_host.rstrip("/") + "/api/v1"
        self.host = api_host.split("://", 1)[1].rstrip("/")
        self.namespace = namespace
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = auth
        self._session.verify = not insecure
        self._session.headers["User-Agent"] = "faaspub"
        # A proxy from the environment is honoured by requests only: fires then take that path too.
        proxied = bool(get_environ_proxies(self.base_url))
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        head = {
            "Authorization": f"Basic {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "faaspub",
        }
        pooled = _Connections(self.base_url, head, verify=not insecure, timeout=timeout)
        self._fires = None if proxied else pooled

    def __repr__(self) -> str:
        return f"OpenWhiskClient({self.base_url!r}, namespace={self.namespace!r})"

    def close(self) -> None:
        self._session.close()
        if self._fires is not None:
            self._fires.close()

    def path(self, collection: str, *names: str) -> str:
        """``/namespaces/NS/COLLECTION/NAME…`` with each part percent-encoded ('@' stays readable)."""
        parts = [quote(self.namespace, safe=""), collection, *(quote(n, safe="@") for n in names)]
        return "/namespaces/" + "/".join(parts)

    def request(
        self,
        method: str,
        path: str,
        *,
        entity: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        ok: Iterable[int] = (200,),
        timeout: float | None = None,
    ) -> requests.Response:
        """Send one request; statuses outside ``ok`` become a :class:`FaaspubError` naming ``entity``."""
        url = self.base_url + path

        def send(last: bool) -> requests.Response | None:
            try:
                return self._session.request(
                    method, url, params=params, json=body, timeout=timeout or self.timeout
                )
            except requests.ConnectionError as exc:
                # An invoke that may have reached the controller must not run twice: POST is only
                # retried when the connection was never established.
                if last or (method == "POST" and not _never_connected(exc)):
                    raise self._unreachable(entity, exc) from None
                return None
            except requests.Timeout:
                raise self._timed_out(entity) from None

        return self._with_retries(method, entity, ok, send)

    def post_json(self, path: str, *, entity: str, body: Any, ok: Iterable[int] = (200,)) -> Answer:
        """POST ``body`` as JSON over a pooled keep-alive connection (trigger fires).

        Retries and errors are those of :meth:`request`: 429/503 and connections that could not be
        opened are retried; a connection lost after the request went out is not (the fire may have
        happened), it is :class:`BackendUnavailable` and the deliverer tries again later.
        """
        if self._fires is None:
            return self.request("POST", path, entity=entity, body=body, ok=ok)
        fires = self._fires
        target = fires.prefix + path
        data = json.dumps(body, allow_nan=False).encode("utf-8")

        def send(last: bool) -> Reply | None:
            try:
                return fires.post(target, data)
            except _NeverConnected as exc:
                if last:
                    raise self._unreachable(entity, exc.__cause__ or exc) from None
                return None
            except TimeoutError:
                raise self._timed_out(entity) from None
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(entity, exc) from None

        return self._with_retries("POST", entity, ok, send)

    def _with_retries(
        self, method: str, entity: str, ok: Iterable[int], send: Callable[[bool], A | None]
    ) -> A:
        """Call ``send(last_attempt)`` until an accepted status; ``None`` means "retry after a pause"."""
        accepted = tuple(ok)
        for attempt in range(self.retries + 1):
            last = attempt >= self.retries
            delay: float | None = None
            resp = send(last)
            if resp is not None:
                if resp.status_code in accepted:
                    return resp
                if resp.status_code not in RETRY_STATUS or last:
                    raise self._error(method, entity, resp)
                delay = _retry_after(resp)
                log.info("OpenWhisk answered %s for %s; retrying", resp.status_code, entity)
            time.sleep(delay if delay is not None else self.backoff * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _timed_out(self, entity: str) -> BackendUnavailable:
        return BackendUnavailable(
            f"OpenWhisk at {self.host} did not answer in time for {entity}",
            hint="the step is resumable: run it again once the platform responds",
        )

    def _unreachable(self, entity: str, exc: BaseException) -> BackendUnavailable:
        reason = type(exc).__name__
        return BackendUnavailable(
            f"OpenWhisk at {self.host} is not reachable ({reason}) while working on {entity}; "
            "nothing was lost and the release can be resumed",
            hint="check backend.openwhisk.api_host and the platform, then run the same step again",
        )

    def _error(self, method: str, entity: str, resp: Answer) -> FaaspubError:
        message, code = _error_shape(resp)
        where = f"OpenWhisk {method} {entity}: {message} (HTTP {resp.status_code}"
        where += f", transaction {code})" if code else ")"
        if resp.status_code == 401:
            return FaaspubError(where, hint="the key in backend.openwhisk.auth_file is not valid here")
        if resp.status_code == 403:
            return FaaspubError(where, hint=f"the key may not access namespace {self.namespace!r}")
        if resp.status_code in RETRY_STATUS:
            return BackendUnavailable(where, hint="the platform is overloaded; the step is resumable")
        return FaaspubError(where)


def _error_shape(resp: Answer) -> tuple[str, str | None]:
    try:
        doc = resp.json()
    except ValueError:
        return (resp.text.strip()[:200] or resp.reason or "no message"), None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        code = doc.get("code")
        return doc["error"], str(code) if code is not None else None
    if isinstance(doc, dict) and isinstance(doc.get("response"), dict):
        result = doc["response"].get("result")
        if isinstance(result, dict) and "error" in result:
            return str(result["error"]), doc.get("activationId")
    return str(doc)[:200], None


def _retry_after(resp: Answer) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return min(float(value), 30.0)
    except ValueError:
        return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 8:
        if isinstance(cause, NewConnectionError):
            return True
        inner = getattr(cause, "reason", None) or (cause.args[0] if cause.args else None)
        cause = inner if isinstance(inner, BaseException) else cause.__cause__
        seen += 1
    return False


class _Connections:
    """Keep-alive HTTP/1.1 connections to one API host, shared by threads (one request at a time each).

    A request goes out in one ``sendall`` (``http.client`` writes head and body separately) and the
    answer is read with :class:`http.client.HTTPResponse` (status, headers, length or chunked body).
    """

    def __init__(
        self, base_url: str, head: Mapping[str, str], *, verify: bool, timeout: float, size: int = FIRE_POOL
    ) -> None:
        split = urlsplit(base_url)
        https = split.scheme == "https"
        self.prefix = split.path.rstrip("/")
        self._server_name = split.hostname or ""
        self._address = (self._server_name, split.port or (443 if https else 80))
        host = split.netloc.rpartition("@")[2]
        # Fixed header lines of every request; the credential stays inside this private buffer.
        self._head = f"Host: {host}\r\n".encode("ascii") + b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in head.items()
        )
        self._timeout = timeout
        self._size = size
        self._tls = _tls_context(verify) if https else None
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def post(self, target: str, data: bytes) -> Reply:
        """One POST; raises :class:`_NeverConnected` when no connection could be opened."""
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            target.encode("ascii"),
            self._head,
            len(data),
            data,
        )
        idle = self._take()
        sock = idle or self._connect()
        try:
            try:
                resp = self._exchange(sock, request)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if idle is None:
                    raise
                # The server closed this idle connection as the request went out (the keep-alive
                # race no readability check closes) and no byte of an answer came back. Send it
                # once more on a new connection: delivery is at-least-once anyway (a lost fire is
                # fired again by the next round), so this adds no duplicate and saves a round.
                sock.close()
                sock = self._connect()
                resp = self._exchange(sock, request)
            reply = Reply(resp.status, resp.reason, resp.headers, resp.read())
        except BaseException:
            sock.close()
            raise
        if resp.will_close:
            sock.close()
        else:
            self._give(sock)
        return reply

    @staticmethod
    def _exchange(sock: socket.socket, request: bytes) -> http.client.HTTPResponse:
        """Send ``request`` and read the status line and headers of its answer."""
        sock.sendall(request)
        resp = http.client.HTTPResponse(sock, method="POST")
        resp.begin()
        return resp

    def _take(self) -> socket.socket | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                sock = self._idle.pop()
            # Readable while idle means the server closed it (or broke the protocol): open another.
            if not wait_for_read(sock, timeout=0.0):
                return sock
            sock.close()

    def _give(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(sock)
                return
        sock.close()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection(self._address, timeout=self._timeout)
        except OSError as exc:
            raise _NeverConnected(str(exc)) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is None:
            return sock
        try:
            return self._tls.wrap_socket(sock, server_hostname=self._server_name)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _tls_context(verify: bool) -> ssl.SSLContext:
    """Verify as requests does: its CA bundle, or ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
    )
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)
