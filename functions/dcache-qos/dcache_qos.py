"""dcache-qos: ask dCache to move files to another quality of service (disk, tape, disk+tape) and
report when they got there.

Through dCache's frontend REST API (port 3880): one file with ``POST /api/v1/namespace/{path}``
``{"action": "qos", "target": …}``, then ``GET …?qos=true`` until ``currentQos`` is the target and no
``targetQos`` (transition) is left; many files with one bulk request (``POST /api/v1/bulk-requests``,
activity ``UPDATE_QOS``), followed until it is ``COMPLETED``.

Called with
* a storage event for a data file, or for the step record of the function named in ``AFTER``
  (``<file>.<AFTER>.json``: the transition happens only after that function succeeded on the file);
  writes the step record ``<file>.dcache-qos.json``;
* ``{"files": [paths], "target"?: …}``: one bulk request for all of them;
* ``{"check": path}``: the file's current and target QoS, nothing changed;
* ``{"dry_run": true, "path"|"files": …}``: the requests that would be sent, nothing sent.

Settings (``env``): ``DCACHE_API_URL``, ``QOS_TARGET`` (default ``tape``), ``AFTER``, ``QOS_WAIT_S``
(how long to wait for the target, default 60; 0 = do not wait), ``QOS_POLL_S``. Secret:
``DCACHE_TOKEN`` (bearer token or macaroon), sent only in the Authorization header.
"""

from __future__ import annotations

import os
import time
from typing import Any
from urllib.parse import quote

import requests

FUNCTION = "dcache-qos"
TARGETS = ("disk", "tape", "disk+tape")
DONE = ("COMPLETED", "CANCELLED")


class QosError(RuntimeError):
    """dCache refused or failed a request; the message names the request and dCache's reason."""


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or default
    if value is None:
        raise QosError(f"{FUNCTION}: the setting {name} is missing (function.yaml env)")
    return value


def target_of(value: str | None) -> str:
    target = (value or setting("QOS_TARGET", "tape")).lower()
    if target == "tape+disk":
        target = "disk+tape"
    if target not in TARGETS:
        raise QosError(f"target QoS {value!r} is not one of {', '.join(TARGETS)}")
    return target


class Dcache:
    """The frontend REST API with the namespace's token."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> Dcache:
        return cls(setting("DCACHE_API_URL"), os.environ.get("DCACHE_TOKEN"))

    def namespace_url(self, path: str) -> str:
        return f"{self.url}/api/v1/namespace{quote(path)}"

    def call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            resp = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise QosError(f"{method} {url.split('?')[0]} failed: {type(exc).__name__}") from None
        if resp.status_code >= 400:
            raise QosError(f"{method} {url.split('?')[0]}: HTTP {resp.status_code} {_reason(resp)}")
        return resp

    def request_transition(self, path: str, target: str) -> None:
        self.call("POST", self.namespace_url(path), json={"action": "qos", "target": target})

    def qos(self, path: str) -> dict[str, Any]:
        doc = self.call("GET", self.namespace_url(path), params={"qos": "true"}).json()
        return {"currentQos": doc.get("currentQos"), "targetQos": doc.get("targetQos")}

    def submit_bulk(self, paths: list[str], target: str) -> str:
        body = {"activity": "UPDATE_QOS", "target": paths, "arguments": {"targetQos": target}}
        resp = self.call("POST", f"{self.url}/api/v1/bulk-requests", json=body)
        location = resp.headers.get("request-url")
        if not location:
            raise QosError("dCache accepted the bulk request but named no request-url")
        return location

    def bulk_status(self, request_url: str) -> dict[str, Any]:
        return dict(self.call("GET", request_url).json())


def _reason(resp: requests.Response) -> str:
    try:
        errors = resp.json().get("errors") or []
        return "; ".join(str(e.get("message")) for e in errors) or resp.reason
    except (ValueError, AttributeError):
        return resp.reason or ""


def reached(status: dict[str, Any], target: str) -> bool:
    return status.get("currentQos") == target and not status.get("targetQos")


def wait_for(poll: Any, done: Any, wait_s: float, every_s: float) -> tuple[Any, float]:
    """Call ``poll()`` until ``done(result)`` or ``wait_s`` passed; the last result and the time waited."""
    started = time.monotonic()
    while True:
        result = poll()
        waited = time.monotonic() - started
        if done(result) or waited >= wait_s:
            return result, round(waited, 3)
        time.sleep(min(every_s, max(wait_s - waited, 0.0)))


def transition(dcache: Dcache, path: str, target: str) -> dict[str, Any]:
    """Request ``target`` for one file and follow it for up to ``QOS_WAIT_S`` seconds."""
    before = dcache.qos(path)
    if not reached(before, target):
        dcache.request_transition(path, target)
    status, waited = wait_for(
        lambda: dcache.qos(path),
        lambda s: reached(s, target),
        float(setting("QOS_WAIT_S", "60")),
        float(setting("QOS_POLL_S", "1")),
    )
    return {
        "path": path,
        "requested": target,
        "before": before["currentQos"],
        **status,
        "reached": reached(status, target),
        "waited_s": waited,
    }


def bulk(dcache: Dcache, paths: list[str], target: str) -> dict[str, Any]:
    """One ``UPDATE_QOS`` bulk request for ``paths``, followed until it completes (or the wait ends)."""
    request_url = dcache.submit_bulk(paths, target)
    info, waited = wait_for(
        lambda: dcache.bulk_status(request_url),
        lambda i: i.get("status") in DONE,
        float(setting("QOS_WAIT_S", "60")),
        float(setting("QOS_POLL_S", "1")),
    )
    items = info.get("targets") or []
    targets = {t.get("target"): t.get("state") for t in items}
    failed = {t.get("target"): t.get("errorMessage") for t in items if t.get("state") == "FAILED"}
    return {
        "request": request_url,
        "requested": target,
        "status": info.get("status"),
        "targets": targets,
        "failed": failed,
        "waited_s": waited,
    }


def plan(params: dict[str, Any]) -> dict[str, Any]:
    """What would be sent, without sending it."""
    target = target_of(params.get("target"))
    if "files" in params:
        body = {"activity": "UPDATE_QOS", "target": list(params["files"]), "arguments": {"targetQos": target}}
        return {"method": "POST", "path": "/api/v1/bulk-requests", "body": body}
    return {
        "method": "POST",
        "path": f"/api/v1/namespace{quote(str(params['path']))}",
        "body": {"action": "qos", "target": target},
    }


def _from_event(params: dict[str, Any]) -> dict[str, Any]:
    from faaspub_runtime.steps import resolve, write_record  # in every faaspub runtime image

    step = resolve(params, after=os.environ.get("AFTER") or None)
    result = transition(Dcache.from_env(), step.data.path, target_of(None))
    return {**result, "record": write_record(step, FUNCTION, result)}


def main(params: dict[str, Any]) -> dict[str, Any]:
    if params.get("dry_run"):
        return plan(params)
    if params.get("specversion") == "1.0" or "event" in params:
        return _from_event(params)
    if "files" in params:
        files = params["files"]
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise ValueError("'files' must be a non-empty list of dCache paths")
        return bulk(Dcache.from_env(), files, target_of(params.get("target")))
    if "check" in params:
        return {"path": params["check"], **Dcache.from_env().qos(str(params["check"]))}
    raise ValueError("expected a storage event, {'files': [...]}, {'check': path} or {'dry_run': true, ...}")
