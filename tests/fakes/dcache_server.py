"""A dCache frontend stand-in for tests: storage events (SSE) and the namespace REST API.

It follows ``/work/shared/reference/contracts.md`` C.1: channels (201 + Location, 429 beyond 128 per
user, ``{"timeout":…}``, PATCH 1…86400, DELETE, garbage collection after ``timeout`` seconds
disconnected), inotify subscriptions (selectors validated against ``inotify-selector-schema.json``;
400 ``Bad selector``/``Not found``; 303 to an identical existing one), the SSE stream (``event:``,
``id:`` per-channel counter from 0, SYSTEM events without id, replay from ``Last-Event-ID`` out of a
bounded backlog, ``EVENT_LOSS`` when the id fell out of it, ``COMPETING_CLIENT`` for the earlier
consumer), and ``GET /api/v1/namespace/<path>[?children=true]``. Every inotify payload it sends is
validated against ``inotify-event-schema.json``. Anonymous requests get 401 as in dCache.

Quality of service, after dCache's ``FileResources`` and ``QoSTransitionEngine`` (frontend and
``modules/dcache`` at 77340d66): ``POST /api/v1/namespace/<path>`` ``{"action": "qos", "target": …}``
answers 201 ``{"status": "success"}``, or 400 for a directory ("Transition for directories not
supported"), an unknown target ("no such qos type: …"), ``volatile``/``unavailable`` ("Unsupported
QoS target for transition"), tape back to disk ("Unsupported QoS transition"), an unknown action
("No such action …") or a body without one; ``GET …?qos=true`` adds ``currentQos`` and, while a
transition runs, ``targetQos`` (``locality=true`` adds ``fileLocality``). A transition completes
``qos_delay`` seconds after it was requested. Bulk requests after ``BulkResources``:
``POST /api/v1/bulk-requests`` (``activity``, ``target``, ``arguments``; ``UPDATE_QOS`` needs
``targetQos``; unknown top-level keys are refused) answers 201 with a ``request-url`` header and no
body; ``GET`` on that URL gives the ``BulkRequestInfo`` (status QUEUED, STARTED, COMPLETED; each
target CREATED, RUNNING, COMPLETED or FAILED).

Test controls (Python methods): ``mkdir``, ``upload`` (IN_CREATE, IN_OPEN, IN_MODIFY…, then
IN_CLOSE_WRITE and IN_ATTRIB in either order), ``move``, ``delete``, ``overflow``, ``system``,
``send_raw`` (malformed lines), ``drop_connections``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import posixpath
import queue
import random
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema

SPECS = Path("/work/shared/specs/dcache")
SELECTOR_SCHEMA = json.loads((SPECS / "inotify-selector-schema.json").read_text())
EVENT_SCHEMA = json.loads((SPECS / "inotify-event-schema.json").read_text())
SELECTOR = jsonschema.Draft6Validator(SELECTOR_SCHEMA)
EVENT = jsonschema.Draft6Validator(EVENT_SCHEMA)

EXPANSIONS = {
    "IN_ALL_EVENTS": {
        "IN_ACCESS",
        "IN_ATTRIB",
        "IN_CLOSE_WRITE",
        "IN_CLOSE_NOWRITE",
        "IN_CREATE",
        "IN_DELETE",
        "IN_DELETE_SELF",
        "IN_MODIFY",
        "IN_MOVE_SELF",
        "IN_MOVED_FROM",
        "IN_MOVED_TO",
        "IN_OPEN",
    },
    "IN_CLOSE": {"IN_CLOSE_WRITE", "IN_CLOSE_NOWRITE"},
    "IN_MOVE": {"IN_MOVED_FROM", "IN_MOVED_TO"},
}
ALWAYS = {"IN_IGNORED", "IN_Q_OVERFLOW", "IN_UNMOUNT"}
MAX_CHANNELS = 128
BACKLOG = 16383


QOS_NAMES = {"disk": "disk", "tape": "tape", "disk+tape": "disk+tape", "tape+disk": "disk+tape"}
LOCALITY = {"disk": "ONLINE", "tape": "NEARLINE", "disk+tape": "ONLINE_AND_NEARLINE"}
BULK_ACTIVITIES = ("PIN", "UNPIN", "DELETE", "UPDATE_QOS", "STAGE", "RELEASE", "LOG_TARGET")
# Top-level keys BulkResources.toBulkRequest accepts (camelCase, snake_case and kebab-case alike).
BULK_KEYS = (
    {"target", "activity", "arguments"}
    | {
        spelling
        for words in (
            "target prefix",
            "expand directories",
            "clear on success",
            "clear on failure",
            "cancel on failure",
            "pre store",
        )
        for spelling in (
            words.replace(" ", "_"),
            words.replace(" ", "-"),
            words.split()[0] + "".join(w.title() for w in words.split()[1:]),
        )
    }
    | {"prestore"}
)


class BadRequest(Exception):
    """A request dCache answers with 400 and this message."""


@dataclass
class Entry:
    kind: str  # REGULAR | DIR
    size: int = 0
    mtime: int = field(default_factory=lambda: int(time.time() * 1000))
    pnfsid: str = field(default_factory=lambda: "0000" + secrets.token_hex(14).upper())
    qos: str = "disk"  # where new files land: a disk pool (ONLINE, REPLICA)
    target_qos: str | None = None
    transition_done_at: float = 0.0

    def settle(self) -> None:
        """Finish a transition whose time has come (the migration or flush to tape is over)."""
        if self.target_qos is not None and time.monotonic() >= self.transition_done_at:
            self.qos, self.target_qos = self.target_qos, None

    def qos_json(self, locality: bool) -> dict[str, Any]:
        self.settle()
        doc: dict[str, Any] = {"currentQos": self.qos}
        if self.target_qos is not None:
            doc["targetQos"] = self.target_qos
        if locality:
            doc["fileLocality"] = LOCALITY[self.qos]
        return doc

    def json(self) -> dict[str, Any]:
        return {
            "fileMimeType": "application/octet-stream"
            if self.kind == "REGULAR"
            else "application/vnd.dcache.folder",
            "fileType": self.kind,
            "pnfsId": self.pnfsid,
            "nlink": 1,
            "mtime": self.mtime,
            "creationTime": self.mtime,
            "size": self.size,
        }


@dataclass
class Subscription:
    id: str
    path: str
    flags: frozenset[str]
    selector: dict[str, Any]


@dataclass
class Stream:
    """One connected consumer: frames to write, and its socket (to drop it on purpose)."""

    frames: queue.Queue[bytes | None]
    sock: socket.socket


@dataclass
class Channel:
    id: str
    owner: str
    client_id: str | None
    timeout: int = 300
    next_id: int = 0
    backlog: deque[tuple[int, bytes]] = field(default_factory=deque)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    consumer: Stream | None = None
    disconnected_at: float = field(default_factory=time.monotonic)


def frame(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


class FakeDcache:
    """State of the fake; the HTTP handler below serves it."""

    def __init__(self, users: dict[str, str] | None = None, backlog: int = BACKLOG, seed: int = 7) -> None:
        # credential -> user: "Bearer <token>" or "Basic <b64>" exactly as sent.
        self.users = users or {}
        self.backlog_size = backlog
        self.random = random.Random(seed)
        self.lock = threading.RLock()
        self.namespace: dict[str, Entry] = {"/": Entry("DIR")}
        self.channels: dict[str, Channel] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.url = ""
        self.selector_errors: list[str] = []
        self.server_closing = False
        self.qos_delay = 0.3  # seconds a QoS transition takes
        self.qos_requests: list[tuple[str, str]] = []  # (path, target) as accepted
        self.bulk: dict[str, dict[str, Any]] = {}

    # --- namespace operations (test controls) -----------------------------------------------------
    def mkdir(self, path: str, parents: bool = True) -> None:
        with self.lock:
            if parents and posixpath.dirname(path) not in self.namespace:
                self.mkdir(posixpath.dirname(path))
            if path in self.namespace:
                return
            self.namespace[path] = Entry("DIR")
            self._child_event(path, ["IN_CREATE", "IN_ISDIR"])

    def upload(self, path: str, size: int = 1024, modifies: int = 2) -> Entry:
        """The WebDAV PUT sequence; CLOSE_WRITE and ATTRIB come in either order."""
        with self.lock:
            entry = self.namespace[path] = Entry("REGULAR")
            for mask in (["IN_CREATE"], ["IN_OPEN"], *[["IN_MODIFY"]] * modifies):
                self._child_event(path, mask)
            entry.size = size
            entry.mtime = int(time.time() * 1000)
            last = [["IN_CLOSE_WRITE"], ["IN_ATTRIB"]]
            self.random.shuffle(last)
            for mask in last:
                self._child_event(path, mask)
            return entry

    def move(self, src: str, dst: str) -> None:
        with self.lock:
            moved = {p: e for p, e in self.namespace.items() if p == src or p.startswith(src + "/")}
            for p in moved:
                del self.namespace[p]
            for p, e in moved.items():
                self.namespace[dst + p[len(src) :]] = e
            isdir = ["IN_ISDIR"] if moved[src].kind == "DIR" else []
            cookie = base64.b64encode(secrets.token_bytes(16)).decode()
            pair = [(src, ["IN_MOVED_FROM", *isdir]), (dst, ["IN_MOVED_TO", *isdir])]
            self.random.shuffle(pair)
            for path, mask in pair:
                self._child_event(path, mask, cookie=cookie)
            for channel in self.channels.values():  # watches follow their target
                for sub in channel.subscriptions.values():
                    if sub.path == src or sub.path.startswith(src + "/"):
                        sub.path = dst + sub.path[len(src) :]

    def delete(self, path: str) -> None:
        with self.lock:
            entry = self.namespace.pop(path)
            self._child_event(path, ["IN_DELETE", *(["IN_ISDIR"] if entry.kind == "DIR" else [])])
            for channel in self.channels.values():
                for sid, sub in list(channel.subscriptions.items()):
                    if sub.path == path:
                        self._send(channel, sub, {"mask": ["IN_DELETE_SELF", "IN_ISDIR"]})
                        self._send(channel, sub, {"mask": ["IN_IGNORED"]})
                        del channel.subscriptions[sid]

    def overflow(self, path: str) -> None:
        with self.lock:
            for channel in self.channels.values():
                for sub in channel.subscriptions.values():
                    if sub.path == path:
                        self._send(channel, sub, {"mask": ["IN_Q_OVERFLOW"]})

    def system(self, kind: str, channel_id: str | None = None) -> None:
        with self.lock:
            for channel in self.channels.values():
                if channel_id in (None, channel.id) and channel.consumer is not None:
                    channel.consumer.frames.put(frame("SYSTEM", {"type": kind}))

    def send_raw(self, text: str) -> None:
        """Bytes as-is to every connected consumer (malformed lines, unknown event types)."""
        with self.lock:
            for channel in self.channels.values():
                if channel.consumer is not None:
                    channel.consumer.frames.put(text.encode())

    def drop_connections(self) -> None:
        with self.lock:
            for channel in self.channels.values():
                if channel.consumer is not None:
                    with contextlib.suppress(OSError):
                        channel.consumer.sock.shutdown(socket.SHUT_RDWR)

    def connected(self) -> int:
        with self.lock:
            return sum(1 for c in self.channels.values() if c.consumer is not None)

    def watched(self) -> set[str]:
        with self.lock:
            return {s.path for c in self.channels.values() for s in c.subscriptions.values()}

    # --- quality of service -----------------------------------------------------------------------
    def request_qos(self, path: str, target: Any) -> None:
        """``{"action": "qos"}`` on one file, with QoSTransitionEngine.adjustQoS's refusals."""
        with self.lock:
            entry = self.namespace.get(path)
            if entry is None:
                raise KeyError(path)
            if entry.kind == "DIR":
                raise BadRequest("Transition for directories not supported")
            if not isinstance(target, str):
                raise BadRequest("no target qos given.")
            wanted = QOS_NAMES.get(target.lower())
            if wanted is None:
                if target.lower() in ("volatile", "unavailable"):
                    raise BadRequest("Unsupported QoS target for transition")
                raise BadRequest(f"no such qos type: {target}")
            entry.settle()
            if wanted == "disk" and entry.qos == "tape":
                raise BadRequest("Unsupported QoS transition")
            self.qos_requests.append((path, wanted))
            if wanted != entry.qos:
                entry.target_qos = wanted
                entry.transition_done_at = time.monotonic() + self.qos_delay

    def submit_bulk(self, body: Any, user: str) -> str:
        """A bulk request as ``BulkResources.toBulkRequest`` reads it; returns its uid."""
        if not isinstance(body, dict) or not body:
            raise BadRequest("empty request payload.")
        unknown = set(body) - BULK_KEYS
        if unknown:
            raise BadRequest(f"unsupported arguments: {sorted(unknown)}")
        targets = body.get("target")
        if isinstance(targets, str):
            targets = [t for t in targets.split(",") if t]
        if not isinstance(targets, list) or not targets:
            raise BadRequest("request contains no targets.")
        activity = body.get("activity")
        if activity not in BULK_ACTIVITIES:
            raise BadRequest(f"{activity} is not a valid activity.")
        arguments = {k: str(v) for k, v in (body.get("arguments") or {}).items()}
        if activity == "UPDATE_QOS" and "targetQos" not in arguments and "qosPolicy" not in arguments:
            raise BadRequest("either targetQos or qosPolicy must be provided as argument.")
        prefix = body.get("targetPrefix") or body.get("target_prefix") or body.get("target-prefix") or ""
        uid = secrets.token_hex(16)
        now = int(time.time() * 1000)
        items = []
        for i, target in enumerate(targets):
            path = posixpath.join(prefix or "/", str(target).lstrip("/")) if prefix else str(target)
            item: dict[str, Any] = {
                "id": i,
                "target": path,
                "state": "RUNNING",
                "submittedAt": now,
                "startedAt": now,
                "finishedAt": None,
                "errorType": None,
                "errorMessage": None,
            }
            try:
                self.request_qos(path, arguments.get("targetQos"))
            except KeyError:
                item.update(
                    state="FAILED",
                    finishedAt=now,
                    errorType="FileNotFoundCacheException",
                    errorMessage=f"No such file or directory: {path}",
                )
            except BadRequest as exc:
                item.update(
                    state="FAILED",
                    finishedAt=now,
                    errorType="UnsupportedOperationException",
                    errorMessage=str(exc),
                )
            items.append(item)
        with self.lock:
            self.bulk[uid] = {
                "owner": user,
                "uid": uid,
                "arrivedAt": now,
                "startedAt": now,
                "lastModified": now,
                "status": "STARTED",
                "targetPrefix": prefix or "/",
                "targets": items,
            }
        return uid

    def bulk_info(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            request = self.bulk.get(uid)
            if request is None:
                return None
            now = int(time.time() * 1000)
            for item in request["targets"]:
                if item["state"] == "RUNNING":
                    entry = self.namespace.get(item["target"])
                    if entry is not None and entry.qos_json(False).get("targetQos") is None:
                        item.update(state="COMPLETED", finishedAt=now)
            if all(t["state"] in ("COMPLETED", "FAILED", "SKIPPED", "CANCELLED") for t in request["targets"]):
                request["status"] = "COMPLETED"
            info = {k: v for k, v in request.items() if k != "owner"}
            info["nextId"] = -1
            return json.loads(json.dumps(info))

    # --- event plumbing ---------------------------------------------------------------------------
    def _child_event(self, path: str, mask: list[str], cookie: str | None = None) -> None:
        parent, name = posixpath.dirname(path), posixpath.basename(path)
        payload: dict[str, Any] = {"name": name, "mask": mask}
        if cookie:
            payload["cookie"] = cookie
        for channel in self.channels.values():
            for sub in channel.subscriptions.values():
                if sub.path == parent and mask[0] in sub.flags:
                    self._send(channel, sub, payload)

    def _send(self, channel: Channel, sub: Subscription, payload: dict[str, Any]) -> None:
        EVENT.validate(payload)  # never send what real dCache would not
        if not (set(payload["mask"]) & (sub.flags | ALWAYS | {"IN_ISDIR"})):
            return
        event_id = channel.next_id
        channel.next_id += 1
        data = {"event": payload, "subscription": self.subscription_url(channel, sub)}
        raw = frame("inotify", data, event_id)
        channel.backlog.append((event_id, raw))
        while len(channel.backlog) > self.backlog_size:
            channel.backlog.popleft()
        if channel.consumer is not None:
            channel.consumer.frames.put(raw)

    def channel_url(self, channel: Channel) -> str:
        return f"{self.url}/api/v1/events/channels/{channel.id}"

    def subscription_url(self, channel: Channel, sub: Subscription) -> str:
        return f"{self.channel_url(channel)}/subscriptions/inotify/{sub.id}"

    def collect_garbage(self) -> None:
        now = time.monotonic()
        for cid, channel in list(self.channels.items()):
            if channel.consumer is None and now - channel.disconnected_at > channel.timeout:
                del self.channels[cid]


def _errors(status: int, message: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "status": str(status)}]}


class Handler(BaseHTTPRequestHandler):
    """HTTP front of :class:`FakeDcache`."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    # --- helpers ----------------------------------------------------------------------------------
    @property
    def fake(self) -> FakeDcache:
        return self.server.fake

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _user(self) -> str | None:
        credential = self.headers.get("Authorization") or ""
        return self.fake.users.get(credential)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        with self.fake.lock:
            self.fake.requests.append((method, self.path, dict(self.headers)))
            self.fake.collect_garbage()
        user = self._user()
        if user is None:
            self._body()
            self._reply(401, _errors(401, "anonymous access not allowed"))
            return
        if path.startswith("/api/v1/namespace"):
            self._namespace(method, path.removeprefix("/api/v1/namespace") or "/", query)
        elif path.startswith("/api/v1/bulk-requests"):
            self._bulk(method, path.removeprefix("/api/v1/bulk-requests").strip("/"), user)
        elif path.startswith("/api/v1/events"):
            self._events(method, path.removeprefix("/api/v1/events").strip("/").split("/"), user, query)
        else:
            self._reply(404, _errors(404, "Not Found"))

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PATCH = lambda self: self._dispatch("PATCH")  # noqa: E731
    do_DELETE = lambda self: self._dispatch("DELETE")  # noqa: E731

    # --- namespace --------------------------------------------------------------------------------
    def _namespace(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        path = path.rstrip("/") or "/"
        if method == "POST":
            self._modify(path)
            return
        with self.fake.lock:
            entry = self.fake.namespace.get(path)
            if method != "GET" or entry is None:
                self._reply(404, _errors(404, "Not Found"))
                return
            body = entry.json()
            if query.get("qos") == ["true"]:
                body.update(entry.qos_json(query.get("locality") == ["true"]))
            if query.get("children") == ["true"] and entry.kind == "DIR":
                prefix = path.rstrip("/") + "/"
                body["children"] = [
                    {**e.json(), "fileName": p[len(prefix) :]}
                    for p, e in sorted(self.fake.namespace.items())
                    if p != path and p.startswith(prefix) and "/" not in p[len(prefix) :]
                ]
        self._reply(200, body)

    def _modify(self, path: str) -> None:
        """``POST /api/v1/namespace/<path>``: the ``qos`` action (others are not modelled)."""
        try:
            body = self._body()
        except ValueError:
            self._reply(400, _errors(400, "A JSONObject text must begin with '{'"))
            return
        action = body.get("action") if isinstance(body, dict) else None
        try:
            if action is None:
                raise BadRequest('JSONObject["action"] not found.')
            if action != "qos":
                raise BadRequest(f"No such action {action}")
            self.fake.request_qos(path, body.get("target"))
        except KeyError:
            self._reply(404, _errors(404, "Not Found"))
            return
        except BadRequest as exc:
            self._reply(400, _errors(400, str(exc)))
            return
        self._reply(201, {"status": "success"})

    # --- bulk requests ----------------------------------------------------------------------------
    def _bulk(self, method: str, uid: str, user: str) -> None:
        fake = self.fake
        if method == "POST" and not uid:
            try:
                created = fake.submit_bulk(self._body(), user)
            except ValueError:
                self._reply(400, _errors(400, "bad request payload."))
                return
            except BadRequest as exc:
                self._reply(400, _errors(400, str(exc)))
                return
            self._reply(201, headers={"request-url": f"{fake.url}/api/v1/bulk-requests/{created}"})
            return
        if method == "GET" and uid:
            with fake.lock:
                owner = fake.bulk.get(uid, {}).get("owner")
            info = fake.bulk_info(uid) if owner in (None, user) else None
            if owner not in (None, user):
                self._reply(403, _errors(403, "Forbidden"))
            elif info is None:
                self._reply(404, _errors(404, "Not Found"))
            else:
                self._reply(200, info)
            return
        self._reply(405, _errors(405, "Method Not Allowed"))

    # --- events -----------------------------------------------------------------------------------
    def _events(self, method: str, parts: list[str], user: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        if parts == [""] and method == "GET":
            self._reply(
                200,
                {
                    "channels": {
                        "lifetimeWhenDisconnected": {"maximum": 86400, "minimum": 1, "default": 300},
                        "maximumPerUser": MAX_CHANNELS,
                    }
                },
            )
            return
        if parts == ["eventTypes"]:
            self._reply(200, ["inotify", "metronome"])
            return
        if parts[0] != "channels":
            self._reply(404, _errors(404, "Not Found"))
            return
        if len(parts) == 1:
            self._channels(method, user, query)
            return
        with fake.lock:
            channel = fake.channels.get(parts[1])
        if channel is None:
            self._body()
            self._reply(404, _errors(404, "Not Found"))
            return
        if channel.owner != user:
            self._reply(403, _errors(403, "Forbidden"))
            return
        if len(parts) == 2:
            self._channel(method, channel)
        else:
            self._subscriptions(method, channel, parts[3:])

    def _channels(self, method: str, user: str, query: dict[str, list[str]]) -> None:
        fake = self.fake
        if method == "POST":
            body = self._body() or {}
            with fake.lock:
                if sum(1 for c in fake.channels.values() if c.owner == user) >= MAX_CHANNELS:
                    self._reply(429, _errors(429, "Too Many Channels"))
                    return
                channel = Channel(id=secrets.token_urlsafe(16), owner=user, client_id=body.get("client-id"))
                fake.channels[channel.id] = channel
            self._reply(201, headers={"Location": fake.channel_url(channel)})
        elif method == "GET":
            wanted = query.get("client-id")
            with fake.lock:
                urls = [
                    fake.channel_url(c)
                    for c in fake.channels.values()
                    if c.owner == user and (wanted is None or (c.client_id or "") == wanted[0])
                ]
            self._reply(200, urls)
        else:
            self._reply(405, _errors(405, "Method Not Allowed"))

    def _channel(self, method: str, channel: Channel) -> None:
        fake = self.fake
        if method == "GET" and "text/event-stream" in (self.headers.get("Accept") or ""):
            self._stream(channel)
        elif method == "GET":
            self._reply(200, {"timeout": channel.timeout})
        elif method == "PATCH":
            body = self._body() or {}
            timeout = body.get("timeout")
            if not isinstance(timeout, int) or not 1 <= timeout <= 86400:
                self._reply(400, _errors(400, "Bad Request"))
                return
            channel.timeout = timeout
            self._reply(204)
        elif method == "DELETE":
            with fake.lock:
                fake.channels.pop(channel.id, None)
                if channel.consumer is not None:
                    channel.consumer.frames.put(None)
            self._reply(204)
        else:
            self._reply(405, _errors(405, "Method Not Allowed"))

    def _subscriptions(self, method: str, channel: Channel, rest: list[str]) -> None:
        fake = self.fake
        if rest == [] and method == "GET":
            with fake.lock:
                self._reply(200, [fake.subscription_url(channel, s) for s in channel.subscriptions.values()])
            return
        if rest == ["inotify"] and method == "POST":
            selector = self._body()
            if selector is None:
                self._reply(400, _errors(400, "Missing JSON entity in POST request"))
                return
            problems = sorted(SELECTOR.iter_errors(selector), key=str)
            if problems:
                fake.selector_errors.append(problems[0].message)
                self._reply(400, _errors(400, f"Bad selector: {problems[0].message}"))
                return
            flags: set[str] = set()
            for flag in selector.get("flags") or ["IN_ALL_EVENTS"]:
                flags |= EXPANSIONS.get(flag, {flag})
            with fake.lock:
                if selector["path"] not in fake.namespace:
                    self._reply(400, _errors(400, f"Not found: {selector['path']}"))
                    return
                for sub in channel.subscriptions.values():
                    if sub.path == selector["path"] and sub.flags == frozenset(flags):
                        self._reply(303, headers={"Location": fake.subscription_url(channel, sub)})
                        return
                sub = Subscription(secrets.token_urlsafe(18), selector["path"], frozenset(flags), selector)
                channel.subscriptions[sub.id] = sub
                url = fake.subscription_url(channel, sub)
                if channel.consumer is not None:
                    channel.consumer.frames.put(
                        frame("SYSTEM", {"type": "NEW_SUBSCRIPTION", "subscription": url})
                    )
            self._reply(201, headers={"Location": url})
            return
        if len(rest) == 2 and rest[0] == "inotify":
            with fake.lock:
                found = channel.subscriptions.get(rest[1])
                if found is None:
                    self._reply(404, _errors(404, "Not Found"))
                elif method == "GET":
                    self._reply(
                        200,
                        {
                            "path": found.path,
                            **({"flags": found.selector["flags"]} if "flags" in found.selector else {}),
                        },
                    )
                elif method == "DELETE":
                    url = fake.subscription_url(channel, found)
                    del channel.subscriptions[found.id]
                    if channel.consumer is not None:
                        channel.consumer.frames.put(
                            frame("SYSTEM", {"type": "SUBSCRIPTION_CLOSED", "subscription": url})
                        )
                    self._reply(204)
                else:
                    self._reply(405, _errors(405, "Method Not Allowed"))
            return
        self._reply(404, _errors(404, "Not Found"))

    def _stream(self, channel: Channel) -> None:
        fake = self.fake
        stream = Stream(queue.Queue(), self.connection)
        with fake.lock:
            previous = channel.consumer
            if previous is not None:  # one consumer per channel: the earlier one is told and cut off
                previous.frames.put(frame("SYSTEM", {"type": "COMPETING_CLIENT"}))
                previous.frames.put(None)
            channel.consumer = stream
            last = self.headers.get("Last-Event-ID")
            if last is not None and last.isdigit():
                after = int(last)
                oldest = channel.backlog[0][0] if channel.backlog else channel.next_id
                if after + 1 < oldest:
                    stream.frames.put(frame("SYSTEM", {"type": "EVENT_LOSS"}))
                for event_id, raw in channel.backlog:
                    if event_id > after:
                        stream.frames.put(raw)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            while True:
                try:
                    item = stream.frames.get(timeout=0.5)
                except queue.Empty:
                    if fake.server_closing:
                        return
                    continue
                if item is None:
                    return
                self.wfile.write(item)
                self.wfile.flush()
        except OSError:
            return
        finally:
            with fake.lock:
                if channel.consumer is stream:
                    channel.consumer = None
                    channel.disconnected_at = time.monotonic()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeDcache


def start(users: dict[str, str] | None = None, backlog: int = BACKLOG) -> tuple[Server, FakeDcache]:
    """Serve a fresh fake on a random loopback port (in a daemon thread)."""
    fake = FakeDcache(users, backlog)
    server = Server(("127.0.0.1", 0), Handler)
    server.fake = fake
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="fake-dcache", daemon=True).start()
    return server, fake


def stop(server: Server) -> None:
    server.fake.server_closing = True
    server.fake.drop_connections()
    server.shutdown()
    server.server_close()
