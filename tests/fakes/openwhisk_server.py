"""A fake Apache OpenWhisk controller for tests: the REST API of ``/api/v1``, strict, with real actions.

Every request is checked against the official swagger (``shared/specs/openwhisk-apiv1swagger.json``):
the path and method must exist, query parameters must be declared with the right type and enum,
and bodies are validated with ``jsonschema`` against the swagger definitions. On top of that it
reproduces the controller behaviours recorded in ``shared/reference/contracts.md`` section B:
basic auth (401/403), the ``{"error", "code"}`` error shape, 200 with the full entity on PUT and
DELETE, 409 ``resource already exists`` without ``overwrite=true``, 400 for unknown kinds and for
limits beyond the thresholds (with the controller's messages), blocking invokes (200/502, 202
when not done in time), trigger fires (202 with one log line per rule, 204 without active rules),
rules that invoke their action, and activation records.

Blackbox actions run for real: :class:`PodmanRunner` starts the action's image with podman
(host network, the proxy on a free port), drops the digest from the image name and pulls by tag
as OpenWhisk does, then speaks ``/init`` and ``/run``. Faults can be injected per path prefix
(``fail_next``) to exercise client retries.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import requests

SPECS = Path(os.environ.get("FAASPUB_SHARED", "/work/shared")) / "specs"
SWAGGER = json.loads((SPECS / "openwhisk-apiv1swagger.json").read_text())
RUNTIMES = json.loads((SPECS / "openwhisk-runtimes.json").read_text())
KINDS = sorted(
    [r["kind"] for family in RUNTIMES["runtimes"].values() for r in family]
    + [f"{family}:default" for family in RUNTIMES["runtimes"]]
)
ENTITY_NAME = re.compile(r"\A([\w]|[\w][\w@ .-]*[\w@.-]+)\Z")
MARKER = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"

NOT_FOUND = "The requested resource does not exist."
UNAUTHENTICATED = "The supplied authentication is invalid"
FORBIDDEN = "The supplied authentication is not authorized to access this resource."
EXISTS = "resource already exists"
LIMITS = {
    "memory": (128, 512, 256),
    "timeout": (100, 300_000, 60_000),
    "logs": (0, 10, 10),
    "concurrency": (1, 1, 1),
}
LIMIT_UNITS = {"memory": "MB", "timeout": "milliseconds", "logs": "MB", "concurrency": ""}
MAX_BLOCKING_WAIT_MS = 60_000


class ApiError(Exception):
    """Answered as ``{"error": message, "code": transaction id}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bump(version: str) -> str:
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


# -- swagger routing and validation ----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]


def _routes() -> list[Route]:
    routes = []
    for template in SWAGGER["paths"]:
        names = tuple(re.findall(r"{(\w+)}", template))
        regex = re.escape(template)
        for name in names:
            regex = regex.replace(re.escape("{" + name + "}"), r"([^/]+)")
        routes.append(Route(template, re.compile(f"^{regex}$"), names))
    return routes


ROUTES = _routes()


def validate_request(
    method: str, path: str, query: dict[str, list[str]], body: Any
) -> tuple[str, dict[str, str]]:
    """Check the request against the swagger; returns the route template and the path parameters."""
    for route in ROUTES:
        match = route.pattern.match(path)
        if not match:
            continue
        params = {n: unquote(v) for n, v in zip(route.names, match.groups(), strict=True)}
        item = SWAGGER["paths"][route.template]
        op = item.get(method.lower())
        if op is None:
            allowed = ", ".join(m.upper() for m in item if m != "parameters")
            raise ApiError(405, f"HTTP method not allowed, supported methods: {allowed}")
        declared = [*item.get("parameters", []), *op.get("parameters", [])]
        for param in declared:
            if (
                param["in"] == "path"
                and not ENTITY_NAME.match(params.get(param["name"], ""))
                and param["name"] != "activationid"
            ):
                raise ApiError(
                    400, f"The request has an invalid {param['name']}: {params.get(param['name'])!r}"
                )
        _check_query(declared, query)
        _check_body(declared, body)
        return route.template, params
    raise ApiError(404, NOT_FOUND)


def _check_query(declared: list[dict[str, Any]], query: dict[str, list[str]]) -> None:
    known = {p["name"]: p for p in declared if p["in"] == "query"}
    for name, values in query.items():
        if name not in known:
            raise ApiError(400, f"The request has an unknown query parameter {name!r}.")
        spec = known[name]
        for value in values:
            if "enum" in spec and value not in spec["enum"]:
                raise ApiError(400, f"Query parameter {name}={value!r} is not one of {spec['enum']}.")
            if spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                raise ApiError(400, f"Query parameter {name}={value!r} is not an integer.")
            if spec.get("type") == "boolean" and value not in ("true", "false"):
                raise ApiError(400, f"Query parameter {name}={value!r} is not a boolean.")


def _check_body(declared: list[dict[str, Any]], body: Any) -> None:
    spec = next((p for p in declared if p["in"] == "body"), None)
    if spec is None:
        return
    if body is None:
        if spec.get("required"):
            raise ApiError(400, "The request content was malformed: a JSON body is required.")
        return
    try:
        # The body schema refers to "#/definitions/…" of the swagger document: give it those.
        schema = {**spec["schema"], "definitions": SWAGGER["definitions"]}
        jsonschema.Draft4Validator(schema).validate(body)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        if where == "exec/kind":
            raise ApiError(400, unsupported_kind(exc.instance)) from None
        raise ApiError(400, f"The request content was malformed: {where or 'body'}: {exc.message}") from None


def unsupported_kind(kind: Any) -> str:
    valid = "', '".join([*KINDS, "blackbox", "sequence"])
    return f"The specified runtime '{kind}' is not supported by this platform. Valid values are: '{valid}'."


# -- real execution of blackbox actions ------------------------------------------------------------


@dataclass
class RunResult:
    status_code: int  # 0 success, 1 application error, 2 developer error, 3 whisk error
    result: Any
    logs: list[str]
    init_ms: int = 0


def openwhisk_image_name(image: str) -> str:
    """What OpenWhisk pulls for ``image``: ``ExecManifest.ImageName.fromString`` drops the digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


class PodmanRunner:
    """One warm container per action revision, started with podman, driven over /init and /run."""

    def __init__(self, podman_env: dict[str, str]) -> None:
        self.env = {**os.environ, **podman_env}
        self._containers: dict[str, tuple[str, int, threading.Lock, list[int]]] = {}
        self._lock = threading.Lock()
        self.pulled: list[str] = []

    def _podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def run(
        self,
        key: str,
        action: dict[str, Any],
        init_env: dict[str, Any],
        params: dict[str, Any],
        context: dict[str, Any],
    ) -> RunResult:
        timeout_ms = int(action["limits"]["timeout"])
        with self._lock:
            entry = self._containers.get(key)
        init_ms = 0
        if entry is None:
            started = time.monotonic()
            try:
                entry = self._start(key, action, init_env)
            except RuntimeError as exc:
                return RunResult(2, {"error": str(exc)}, [])
            init_ms = int((time.monotonic() - started) * 1000)
        name, port, lock, seen = entry
        with lock:
            body = {"value": params, **context, "deadline": _now_ms() + timeout_ms}
            try:
                resp = requests.post(f"http://127.0.0.1:{port}/run", json=body, timeout=timeout_ms / 1000 + 1)
            except requests.Timeout:
                self._discard(key)
                return RunResult(
                    2, {"error": f"The action exceeded its time limits of {timeout_ms} milliseconds."}, []
                )
            except requests.ConnectionError:
                logs = self._logs(name, seen)
                self._discard(key)
                return RunResult(
                    2, {"error": "The action did not produce a valid response and exited unexpectedly."}, logs
                )
            logs = self._logs(name, seen)
        try:
            result = resp.json()
        except ValueError:
            return RunResult(2, {"error": "The action did not produce a valid JSON response."}, logs, init_ms)
        if resp.status_code == 200 and isinstance(result, dict) and "error" not in result:
            return RunResult(0, result, logs, init_ms)
        if isinstance(result, dict) and "exceeded its time limit" in str(result.get("error", "")):
            self._discard(key)
            return RunResult(
                2,
                {"error": f"The action exceeded its time limits of {timeout_ms} milliseconds."},
                logs,
                init_ms,
            )
        if isinstance(result, dict) and "error" in result:
            return RunResult(1, result, logs, init_ms)
        return RunResult(2, {"error": "The action did not return a dictionary."}, logs, init_ms)

    def _start(
        self, key: str, action: dict[str, Any], init_env: dict[str, Any]
    ) -> tuple[str, int, threading.Lock, list[int]]:
        image = openwhisk_image_name(action["exec"]["image"])
        pull = self._podman("pull", "--quiet", image)
        if pull.returncode != 0:
            raise RuntimeError(f"Failed to pull container image '{image}'.")
        self.pulled.append(image)
        port = _free_port()
        name = f"ow-fake-{uuid.uuid4().hex[:10]}"
        proc = self._podman(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--init",
            "-e",
            f"FAASPUB_PROXY_PORT={port}",
            "-e",
            "FAASPUB_PROXY_HOST=127.0.0.1",
            "-e",
            f"FAASPUB_TIMEOUT_MS={action['limits']['timeout']}",
            "--memory",
            f"{action['limits']['memory']}m",
            image,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"Failed to start container: {proc.stderr.strip()[-300:]}")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self._podman("rm", "-f", "-t", "0", name)
                    raise RuntimeError("The action container did not start listening.") from None
                time.sleep(0.02)
        init = {
            "value": {
                "name": action["name"],
                "main": action["exec"].get("main", "main"),
                "binary": False,
                "env": {k: v if isinstance(v, str) else json.dumps(v) for k, v in init_env.items()},
            }
        }
        if "code" in action["exec"]:
            init["value"]["code"] = action["exec"]["code"]
        resp = requests.post(f"http://127.0.0.1:{port}/init", json=init, timeout=60)
        seen = [0]
        if resp.status_code != 200:
            self._podman("rm", "-f", "-t", "0", name)
            raise RuntimeError(f"Initialization failed: {resp.text[:300]}")
        self._logs(name, seen)  # init output (the marker after /init) is not an activation's
        entry = (name, port, threading.Lock(), seen)
        with self._lock:
            self._containers[key] = entry
        return entry

    def _logs(self, name: str, seen: list[int]) -> list[str]:
        """The lines of the next activation: up to the next marker on each stream (as the invoker reads)."""
        deadline = time.monotonic() + 3
        while True:
            # Not --timestamps: podman stamps every partial write (unbuffered print) inside one line.
            proc = self._podman("logs", name, timeout=30)
            streams = {"stdout": proc.stdout.splitlines(), "stderr": proc.stderr.splitlines()}
            segments = {s: _segments(lines) for s, lines in streams.items()}
            if all(len(segs) > seen[0] for segs in segments.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out = []
        for stream, segs in segments.items():
            chunk = segs[seen[0]] if len(segs) > seen[0] else []
            out += [f"{stamp} {stream}: {text}" for text in chunk]
        seen[0] += 1
        return out

    def _discard(self, key: str) -> None:
        with self._lock:
            entry = self._containers.pop(key, None)
        if entry:
            self._podman("rm", "-f", "-t", "0", entry[0])

    def forget(self, prefix: str) -> None:
        with self._lock:
            keys = [k for k in self._containers if k.startswith(prefix)]
        for key in keys:
            self._discard(key)

    def close(self) -> None:
        with self._lock:
            keys = list(self._containers)
        for key in keys:
            self._discard(key)


def _segments(lines: list[str]) -> list[list[str]]:
    segments: list[list[str]] = [[]]
    for line in lines:
        if line == MARKER:
            segments.append([])
        else:
            segments[-1].append(line)
    return segments[:-1]  # the last one has no marker yet


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the controller --------------------------------------------------------------------------------


@dataclass
class Fault:
    prefix: str
    status: int
    count: int
    message: str


@dataclass
class Controller:
    """The entity store and controller logic of one namespace (``guest`` by default)."""

    namespace: str = "guest"
    user: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)
    runner: PodmanRunner | None = None
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)  # "pkg/name" or "name"
    packages: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]], Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # The controller's own cap on a blocking wait (OpenWhisk: 60 s); lower it to provoke 202 answers.
    max_blocking_wait_ms: int = MAX_BLOCKING_WAIT_MS
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def auth(self) -> str:
        """``uuid:key`` of this namespace (what ``wsk property get --auth`` shows)."""
        return f"{self.user}:{self.key}"

    def fail_next(self, prefix: str, status: int, count: int = 1, message: str | None = None) -> None:
        """Answer the next ``count`` requests under ``/api/v1{prefix}`` with ``status``."""
        default = {
            429: "Too many requests in the last minute (count: 121, allowed: 120).",
            503: "System is overloaded, try again later.",
        }
        self.faults.append(Fault(prefix, status, count, message or default.get(status, "fault")))

    # entity helpers

    def _meta(self, path_ns: str) -> str:
        if path_ns not in ("_", self.namespace):
            raise ApiError(403, FORBIDDEN)
        return self.namespace

    def _entity(
        self, kind: str, name: str, prev: dict[str, Any] | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "namespace": self.namespace if "/" not in name else f"{self.namespace}/{name.split('/')[0]}",
            "name": name.split("/")[-1],
            "version": _bump(prev["version"]) if prev else "0.0.1",
            "publish": bool(extra.pop("publish", False)),
            "annotations": extra.pop("annotations", []) or [],
            "updated": _now_ms(),
            **extra,
        }

    # actions

    def put_action(self, key: str, body: dict[str, Any], overwrite: bool) -> dict[str, Any]:
        with self.lock:
            prev = self.actions.get(key)
            if prev is not None and not overwrite:
                raise ApiError(409, EXISTS)
            if "/" in key and key.split("/")[0] not in self.packages:
                raise ApiError(404, NOT_FOUND)
            exec_ = body.get("exec") or (prev or {}).get("exec")
            if not exec_:
                raise ApiError(400, "exec undefined")
            kind = exec_.get("kind")
            if kind not in (*KINDS, "blackbox", "sequence"):
                raise ApiError(400, unsupported_kind(kind))
            if kind == "blackbox" and not exec_.get("image"):
                raise ApiError(400, "blackbox exec requires an image")
            limits = {name: dflt for name, (_, _, dflt) in LIMITS.items()}
            limits.update((prev or {}).get("limits", {}))
            for name, value in (body.get("limits") or {}).items():
                if name in LIMITS:
                    low, high, _ = LIMITS[name]
                    unit = f" {LIMIT_UNITS[name]}" if LIMIT_UNITS[name] else ""
                    if value > high:
                        raise ApiError(400, f"{name} {value}{unit} exceeds allowed threshold of {high}{unit}")
                    if value < low:
                        raise ApiError(400, f"{name} {value}{unit} below allowed threshold of {low}{unit}")
                limits[name] = value
            annotations = [a for a in body.get("annotations", []) if a["key"] != "exec"]
            if prev is None and not any(a["key"] == "provide-api-key" for a in annotations):
                annotations.append({"key": "provide-api-key", "value": False})
            annotations.append({"key": "exec", "value": kind})
            serialized = {"kind": kind, "binary": bool(exec_.get("binary", False))}
            for k in ("image", "code", "main", "components"):
                if k in exec_:
                    serialized[k] = exec_[k]
            entity = self._entity(
                "action",
                key,
                prev,
                {
                    "exec": serialized,
                    "limits": limits,
                    "parameters": body.get("parameters", []),
                    "annotations": annotations,
                    "publish": body.get("publish", False),
                },
            )
            self.actions[key] = entity
        if self.runner:
            self.runner.forget(key + "#")
        return entity

    def get(self, store: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
        with self.lock:
            if key not in store:
                raise ApiError(404, NOT_FOUND)
            return store[key]

    def delete(self, store: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
        with self.lock:
            if key not in store:
                raise ApiError(404, NOT_FOUND)
            entity = store.pop(key)
        if store is self.actions and self.runner:
            self.runner.forget(key + "#")
        return entity

    def invoke(
        self,
        key: str,
        payload: dict[str, Any],
        cause: str | None = None,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Start an activation of action ``key``; the record is stored when it finishes."""
        action = self.get(self.actions, key)
        activation_id = uuid.uuid4().hex
        thread = threading.Thread(
            target=self._activate, args=(key, action, payload, activation_id, cause, on_done), daemon=True
        )
        thread.start()
        return activation_id

    def _activate(
        self,
        key: str,
        action: dict[str, Any],
        payload: dict[str, Any],
        activation_id: str,
        cause: str | None,
        on_done: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        start = _now_ms()
        params = {p["key"]: p["value"] for p in action.get("parameters", []) if not p.get("init")}
        params.update(payload)
        init_env = {p["key"]: p["value"] for p in action.get("parameters", []) if p.get("init")}
        path = f"{self.namespace}/{key}"
        context = {
            "namespace": self.namespace,
            "action_name": f"/{path}",
            "activation_id": activation_id,
            "transaction_id": activation_id,
            "api_host": "http://127.0.0.1",
        }
        if action["exec"]["kind"] != "blackbox" or self.runner is None:
            outcome = RunResult(
                3, {"error": "The fake controller only runs blackbox actions with a runner."}, []
            )
        else:
            outcome = self.runner.run(f"{key}#{action['version']}", action, init_env, params, context)
        end = _now_ms()
        status = ["success", "application error", "action developer error", "whisk internal error"]
        annotations = [
            {"key": "path", "value": path},
            {"key": "kind", "value": action["exec"]["kind"]},
            {"key": "limits", "value": action["limits"]},
            {"key": "waitTime", "value": 1},
        ]
        if outcome.init_ms:
            annotations.append({"key": "initTime", "value": outcome.init_ms})
        record = {
            "activationId": activation_id,
            "namespace": self.namespace,
            "name": key.split("/")[-1],
            "subject": self.user,
            "version": action["version"],
            "publish": False,
            "start": start,
            "end": end,
            "duration": end - start,
            "statusCode": outcome.status_code,
            "response": {
                "status": status[outcome.status_code],
                "statusCode": outcome.status_code,
                "success": outcome.status_code == 0,
                "result": outcome.result,
            },
            "logs": outcome.logs,
            "annotations": annotations,
        }
        if cause:
            record["cause"] = cause
        with self.lock:
            self.activations[activation_id] = record
        if on_done:
            on_done(record)

    def wait_activation(self, activation_id: str, timeout_s: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                record = self.activations.get(activation_id)
            if record is not None:
                return record
            time.sleep(0.01)
        return None

    # triggers and rules

    def fire(self, name: str, payload: dict[str, Any]) -> str | None:
        trigger = self.get(self.triggers, name)
        with self.lock:
            active = [
                (rname, rule)
                for rname, rule in self.rules.items()
                if rule["trigger"]["name"] == name and rule["status"] == "active"
            ]
        if not active:
            return None
        params = {p["key"]: p["value"] for p in trigger.get("parameters", [])}
        params.update(payload)
        trigger_id = uuid.uuid4().hex
        logs = []
        for rname, rule in active:
            target = rule["action"]
            key = (
                f"{target['path'].split('/', 1)[1]}/{target['name']}"
                if "/" in target["path"]
                else target["name"]
            )
            entry = {
                "statusCode": 0,
                "success": True,
                "rule": f"{self.namespace}/{rname}",
                "action": f"{target['path']}/{target['name']}",
            }
            try:
                entry["activationId"] = self.invoke(key, params, cause=trigger_id)
            except ApiError:
                entry.update(statusCode=1, success=False, error=f"Action '{key}' not found.")
            logs.append(json.dumps(entry))
        now = _now_ms()
        with self.lock:
            self.activations[trigger_id] = {
                "activationId": trigger_id,
                "namespace": self.namespace,
                "name": name,
                "subject": self.user,
                "version": trigger["version"],
                "publish": False,
                "start": now,
                "end": now,
                "duration": 0,
                "response": {"status": "success", "statusCode": 0, "success": True, "result": params},
                "logs": logs,
                "annotations": [{"key": "path", "value": f"{self.namespace}/{name}"}],
            }
        return trigger_id


# -- HTTP ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body are two writes: without NODELAY, delayed ACKs add ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the Authorization header must never reach test output anyway."""

    def _handle(self) -> None:
        ctl = self.server.controller
        tid = uuid.uuid4().hex
        headers: dict[str, str] = {}
        try:
            split = urlsplit(self.path)
            if not split.path.startswith("/api/v1/"):
                raise ApiError(404, NOT_FOUND)
            path = split.path[len("/api/v1") :]
            query = parse_qs(split.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            if length > 1024 * 1024:
                raise ApiError(413, f"The request content was malformed: size {length} exceeds 1 MB.")
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                raise ApiError(400, "The request content was malformed.") from None
            self._authenticate(ctl)
            with ctl.lock:
                ctl.requests.append((self.command, path, query, body))
                for fault in ctl.faults:
                    if fault.count > 0 and path.startswith(fault.prefix):
                        fault.count -= 1
                        raise ApiError(fault.status, fault.message)
            template, params = validate_request(self.command, path, query, body)
            status, payload = self.server.dispatch(self.command, template, params, query, body, headers)
        except ApiError as exc:
            status, payload = exc.status, {"error": exc.message, "code": tid}
        self._send(status, payload, headers)

    do_GET = do_PUT = do_POST = do_DELETE = _handle

    def _authenticate(self, ctl: Controller) -> None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise ApiError(401, UNAUTHENTICATED)
        try:
            given = base64.b64decode(header[6:]).decode()
        except ValueError:
            raise ApiError(401, UNAUTHENTICATED) from None
        if given != ctl.auth:
            raise ApiError(401, UNAUTHENTICATED)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[-1] == "true"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Like a controller behind nginx: many clients connecting at once are queued, not reset.
    request_queue_size = 128

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        super().__init__(("127.0.0.1", 0), _Handler)

    def dispatch(
        self,
        method: str,
        template: str,
        p: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        ctl = self.controller
        if template == "/namespaces":
            return 200, [ctl.namespace]
        ctl._meta(p["namespace"])
        collection = template.split("/")[3]
        if collection == "limits":
            return 200, {
                "invocationsPerMinute": 120,
                "concurrentInvocations": 100,
                "firesPerMinute": 60,
                "minActionMemory": 128,
                "maxActionMemory": 512,
                "minActionTimeout": 100,
                "maxActionTimeout": 300000,
                "maxActionConcurrency": 1,
            }
        if collection == "actions":
            return self._actions(method, p, query, body or {}, headers)
        if collection == "packages":
            return self._packages(method, p, query, body or {})
        if collection == "triggers":
            return self._triggers(method, p, query, body or {})
        if collection == "rules":
            return self._rules(method, p, query, body or {})
        return self._activations(p, query, template)

    def _list(
        self,
        store: dict[str, dict[str, Any]],
        query: dict[str, list[str]],
        keep: Callable[[str], bool] = lambda k: True,
    ) -> list[dict[str, Any]]:
        limit = int(query.get("limit", ["30"])[-1])
        skip = int(query.get("skip", ["0"])[-1])
        if not 0 <= limit <= 200:
            raise ApiError(400, "limit must be between 0 and 200")
        with self.controller.lock:
            items = [e for k, e in store.items() if keep(k)]
        items.sort(key=lambda e: -e["updated"] if "updated" in e else -e.get("start", 0))
        return items[skip : skip + (limit or 200)]

    def _actions(
        self,
        method: str,
        p: dict[str, str],
        query: dict[str, list[str]],
        body: dict[str, Any],
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        ctl = self.controller
        if "actionName" not in p:
            return 200, [
                {
                    k: e[k]
                    for k in ("namespace", "name", "version", "publish", "annotations", "limits", "updated")
                }
                | {"exec": {"binary": e["exec"]["binary"]}}
                for e in self._list(ctl.actions, query)
            ]
        key = f"{p['packageName']}/{p['actionName']}" if "packageName" in p else p["actionName"]
        if method == "PUT":
            return 200, ctl.put_action(key, body, _flag(query, "overwrite"))
        if method == "GET":
            return 200, ctl.get(ctl.actions, key)
        if method == "DELETE":
            return 200, ctl.delete(ctl.actions, key)
        wait_ms = int(query.get("timeout", [str(MAX_BLOCKING_WAIT_MS)])[-1])
        if not 0 < wait_ms <= MAX_BLOCKING_WAIT_MS:
            raise ApiError(400, f"Timeout must be between 1 and {MAX_BLOCKING_WAIT_MS} milliseconds.")
        activation_id = ctl.invoke(key, body)
        headers["x-openwhisk-activation-id"] = activation_id
        if not _flag(query, "blocking"):
            return 202, {"activationId": activation_id}
        record = ctl.wait_activation(activation_id, min(wait_ms, ctl.max_blocking_wait_ms) / 1000)
        if record is None:
            return 202, {"activationId": activation_id}
        code = record["response"]["statusCode"]
        status = 200 if code == 0 else 502 if code in (1, 2) else 500
        if _flag(query, "result"):
            return status, record["response"]["result"]
        return status, record

    def _packages(
        self, method: str, p: dict[str, str], query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        ctl = self.controller
        if "packageName" not in p:
            return 200, self._list(ctl.packages, query)
        name = p["packageName"]
        if method == "PUT":
            with ctl.lock:
                prev = ctl.packages.get(name)
                if prev is not None and not _flag(query, "overwrite"):
                    raise ApiError(409, EXISTS)
                entity = ctl._entity(
                    "package",
                    name,
                    prev,
                    {
                        "parameters": body.get("parameters", []),
                        "annotations": body.get("annotations", []),
                        "publish": body.get("publish", False),
                        "binding": body.get("binding", {}),
                    },
                )
                ctl.packages[name] = entity
            return 200, entity
        if method == "DELETE":
            with ctl.lock:
                inside = [k for k in ctl.actions if k.startswith(name + "/")]
                if inside and not _flag(query, "force"):
                    raise ApiError(409, f"Package not empty (contains {len(inside)} entity)")
                for k in inside:
                    ctl.actions.pop(k)
            return 200, ctl.delete(ctl.packages, name)
        entity = dict(ctl.get(ctl.packages, name))
        with ctl.lock:
            entity["actions"] = [
                {"name": a["name"], "version": a["version"], "annotations": a["annotations"]}
                for k, a in sorted(ctl.actions.items())
                if k.startswith(name + "/")
            ]
        entity["feeds"] = []
        return 200, entity

    def _triggers(
        self, method: str, p: dict[str, str], query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        ctl = self.controller
        if "triggerName" not in p:
            return 200, self._list(ctl.triggers, query)
        name = p["triggerName"]
        if method == "PUT":
            with ctl.lock:
                prev = ctl.triggers.get(name)
                if prev is not None and not _flag(query, "overwrite"):
                    raise ApiError(409, EXISTS)
                entity = ctl._entity(
                    "trigger",
                    name,
                    prev,
                    {
                        "parameters": body.get("parameters", []),
                        "annotations": body.get("annotations", []),
                        "limits": {},
                        "publish": body.get("publish", False),
                    },
                )
                ctl.triggers[name] = entity
            return 200, entity
        if method == "DELETE":
            return 200, ctl.delete(ctl.triggers, name)
        if method == "POST":
            trigger_id = ctl.fire(name, body)
            return (202, {"activationId": trigger_id}) if trigger_id else (204, None)
        entity = dict(ctl.get(ctl.triggers, name))
        with ctl.lock:
            entity["rules"] = {
                f"{ctl.namespace}/{r}": {"action": rule["action"], "status": rule["status"]}
                for r, rule in ctl.rules.items()
                if rule["trigger"]["name"] == name
            }
        return 200, entity

    def _rules(
        self, method: str, p: dict[str, str], query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        ctl = self.controller
        if "ruleName" not in p:
            return 200, self._list(ctl.rules, query)
        name = p["ruleName"]
        if method == "PUT":
            trigger = _path_name(body.get("trigger", ""), ctl.namespace)
            action = _path_name(body.get("action", ""), ctl.namespace)
            with ctl.lock:
                prev = ctl.rules.get(name)
                if prev is not None and not _flag(query, "overwrite"):
                    raise ApiError(409, EXISTS)
                if trigger["name"] not in ctl.triggers:
                    raise ApiError(404, NOT_FOUND)
                entity = ctl._entity(
                    "rule",
                    name,
                    prev,
                    {
                        "trigger": trigger,
                        "action": action,
                        "status": "active",
                        "annotations": body.get("annotations", []),
                        "publish": body.get("publish", False),
                    },
                )
                ctl.rules[name] = entity
            return 200, entity
        if method == "DELETE":
            return 200, ctl.delete(ctl.rules, name)
        if method == "POST":
            rule = ctl.get(ctl.rules, name)
            if body["status"] == "active" and rule["trigger"]["name"] not in ctl.triggers:
                raise ApiError(404, "Only rules with existing triggers can be activated")
            with ctl.lock:
                rule["status"] = body["status"]
            return 200, None
        return 200, ctl.get(ctl.rules, name)

    def _activations(self, p: dict[str, str], query: dict[str, list[str]], template: str) -> tuple[int, Any]:
        ctl = self.controller
        if "activationid" not in p:
            name = query.get("name", [""])[-1]
            since = int(query.get("since", ["0"])[-1])
            upto = int(query.get("upto", [str(2**62)])[-1])
            with ctl.lock:
                ids = [
                    i
                    for i, a in ctl.activations.items()
                    if since <= a["start"] <= upto
                    and (not name or a["name"] == name or _annotation(a, "path").endswith("/" + name))
                ]
            records = self._list({i: ctl.activations[i] for i in ids}, query)
            if _flag(query, "docs"):
                return 200, records
            return 200, [
                {
                    k: a[k]
                    for k in (
                        "activationId",
                        "namespace",
                        "name",
                        "version",
                        "publish",
                        "start",
                        "end",
                        "duration",
                        "annotations",
                    )
                    if k in a
                }
                | {"statusCode": a["response"]["statusCode"]}
                for a in records
            ]
        record = ctl.get(ctl.activations, p["activationid"])
        if template.endswith("/logs"):
            return 200, {"logs": record["logs"]}
        if template.endswith("/result"):
            return 200, record["response"]
        return 200, record


def _annotation(entity: dict[str, Any], key: str) -> str:
    return next((str(a["value"]) for a in entity.get("annotations", []) if a["key"] == key), "")


def _path_name(text: str, namespace: str) -> dict[str, str]:
    """``/_/pkg/a`` -> ``{"path": "guest/pkg", "name": "a"}`` (how rules serialise their references)."""
    parts = [p for p in text.split("/") if p]
    if text.startswith("/"):
        parts = parts[1:]
    if not parts:
        raise ApiError(400, f"The request content was malformed: {text!r} is not an entity name")
    return {"path": "/".join([namespace, *parts[:-1]]), "name": parts[-1]}


class OpenWhiskServer:
    """A running fake controller on 127.0.0.1:<random port>; use as a context manager."""

    def __init__(self, podman_env: dict[str, str] | None = None, namespace: str = "guest") -> None:
        self.controller = Controller(
            namespace=namespace, runner=PodmanRunner(podman_env) if podman_env else None
        )
        self._server = _Server(self.controller)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def auth(self) -> str:
        return self.controller.auth

    def __enter__(self) -> OpenWhiskServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.controller.runner:
            self.controller.runner.close()
