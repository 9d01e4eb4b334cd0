"""Storage events as CloudEvents 1.0: parse them, read the file they name, write results next to it.

A function triggered by storage receives one event (as its params, or under ``"event"``)::

    {"specversion": "1.0", "id": "…", "source": "faaspub/dcache/…", "type": "storage.object.created",
     "subject": "/pnfs/…/run42.h5", "time": "2025-01-01T12:00:00Z", "datacontenttype": "application/json",
     "data": {"path": "/pnfs/…/run42.h5", "size": 1048576, "checksum": "adler32:…",
              "url": "https://dcache.example.org:2880/pnfs/…/run42.h5", "storage": "dcache"}}

Reading and writing, by ``data.storage``:

* ``local``: ``data.path`` is opened directly (the platform mounts the storage at the same path);
* ``dcache``: WebDAV over HTTPS with ``Authorization: Bearer $DCACHE_TOKEN`` (the secret's name is a
  parameter); the token is sent only in that header, never on redirects, never over plain HTTP to a
  remote host;
* ``s3``: an ``https://`` ``data.url`` (presigned by the platform) is read without any token; an
  ``s3://bucket/key`` URL, and every write, needs ``boto3`` in the function image (endpoint from
  ``S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL``, credentials the usual boto3 way).

Only the standard library is used, so these helpers work in every faaspub image.
"""

from __future__ import annotations

import importlib
import io
import ipaddress
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

SPECVERSION = "1.0"
EVENT_TYPES = {"created": "storage.object.created", "deleted": "storage.object.deleted"}
STORAGES = ("dcache", "s3", "local")
CONTENT_TYPE = "application/json"
DEFAULT_TOKEN_ENV = "DCACHE_TOKEN"


class EventError(ValueError):
    """The event is malformed, or the file it names cannot be read or written; says which and why."""


@dataclass(frozen=True)
class StorageEvent:
    """One ``storage.object.created``/``deleted`` CloudEvent, validated."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    path: str
    storage: str
    size: int | None = None
    checksum: str | None = None
    url: str | None = None

    @property
    def kind(self) -> str:
        """``created`` or ``deleted``."""
        return self.type.rsplit(".", 1)[1]

    @property
    def name(self) -> str:
        """The file name without its folder."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @classmethod
    def from_cloudevent(cls, params: Mapping[str, Any]) -> StorageEvent:
        """Parse the event itself, ``{"event": {...}}``, or action params that are the event plus extras."""
        event = _unwrap(params)
        version = event.get("specversion")
        if version != SPECVERSION:
            raise EventError(f"CloudEvent 'specversion' must be {SPECVERSION!r}, got {version!r}")
        event_type = _text(event, "type")
        if event_type not in EVENT_TYPES.values():
            allowed = sorted(EVENT_TYPES.values())
            raise EventError(f"CloudEvent 'type' must be one of {allowed}, got {event_type!r}")
        content_type = event.get("datacontenttype", CONTENT_TYPE)
        if not isinstance(content_type, str) or content_type.split(";")[0].strip() != CONTENT_TYPE:
            raise EventError(f"CloudEvent 'datacontenttype' must be {CONTENT_TYPE!r}, got {content_type!r}")
        data = event.get("data")
        if not isinstance(data, Mapping):
            raise EventError("CloudEvent 'data' must be an object with path, size, url and storage")
        subject, path = _text(event, "subject"), _text(data, "path", "data.")
        if subject != path:
            raise EventError(f"CloudEvent 'subject' {subject!r} differs from 'data.path' {path!r}")
        storage = data.get("storage")
        if storage not in STORAGES:
            raise EventError(f"'data.storage' must be one of {list(STORAGES)}, got {storage!r}")
        size = data.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise EventError(f"'data.size' must be a non-negative integer or null, got {size!r}")
        return cls(
            id=_text(event, "id"),
            source=_text(event, "source"),
            type=event_type,
            subject=subject,
            time=_timestamp(event.get("time")),
            path=path,
            storage=storage,
            size=size,
            checksum=_optional_text(data, "checksum"),
            url=_optional_text(data, "url"),
        )


def make_cloudevent(
    *,
    source: str,
    kind: str,
    path: str,
    size: int | None,
    checksum: str | None,
    url: str | None,
    event_id: str,
    time: str,
    storage: str,
) -> dict[str, Any]:
    """The CloudEvent the platform sends to a function; raises :class:`EventError` on bad fields."""
    if kind not in EVENT_TYPES:
        raise EventError(f"event kind must be one of {sorted(EVENT_TYPES)}, got {kind!r}")
    data: dict[str, Any] = {"path": path, "size": size, "url": url, "storage": storage}
    if checksum is not None:
        data["checksum"] = checksum
    event = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source,
        "type": EVENT_TYPES[kind],
        "subject": path,
        "time": time,
        "datacontenttype": CONTENT_TYPE,
        "data": data,
    }
    StorageEvent.from_cloudevent(event)  # one set of rules for making and for reading events
    return event


def open_input(
    event: StorageEvent | Mapping[str, Any],
    mode: str = "rb",
    *,
    token_env: str = DEFAULT_TOKEN_ENV,
    timeout: float = 60.0,
) -> IO[Any]:
    """Open the file the event names for reading (``"rb"`` or ``"r"`` for UTF-8 text); close it after use."""
    if mode not in ("rb", "r"):
        raise ValueError(f"mode must be 'rb' or 'r', not {mode!r}")
    ev = _as_event(event)
    if ev.storage == "local":
        return open(ev.path, "rb") if mode == "rb" else open(ev.path, encoding="utf-8")
    if not ev.url:
        raise EventError(f"the {ev.storage} event for {ev.path} has no 'data.url' to read from")
    if ev.url.startswith("s3://"):
        bucket, key = _s3_location(ev.url)
        stream = _s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    else:
        token = _token(token_env) if ev.storage == "dcache" else None
        stream = _http("GET", ev.url, token=token, timeout=timeout)
    return io.TextIOWrapper(stream, encoding="utf-8") if mode == "r" else stream


def output_path(event: StorageEvent | Mapping[str, Any], suffix: str) -> str:
    """Where an output for this input goes: the input's path or URL with ``suffix`` appended.

    ``run42.h5`` + ``".summary.json"`` -> ``run42.h5.summary.json``, in the same folder. Make sure the
    trigger's ``match`` pattern does not match the outputs, or the function triggers itself.
    """
    if not suffix or "/" in suffix or "\x00" in suffix:
        raise EventError(f"output suffix {suffix!r} must be non-empty, without '/' or NUL")
    ev = _as_event(event)
    if ev.storage == "local":
        return ev.path + suffix
    if ev.storage == "s3":
        return f"s3://{ev.path.lstrip('/')}{suffix}"
    if not ev.url:
        raise EventError(f"the dcache event for {ev.path} has no 'data.url' to write next to")
    parts = urllib.parse.urlsplit(ev.url)
    path = parts.path + urllib.parse.quote(suffix)
    return urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))


def write_output(
    event: StorageEvent | Mapping[str, Any],
    suffix: str,
    data: bytes | str,
    *,
    token_env: str = DEFAULT_TOKEN_ENV,
    timeout: float = 60.0,
) -> str:
    """Write ``data`` to :func:`output_path` (atomically for local files, HTTP PUT for dCache); return it."""
    target = output_path(event, suffix)
    body = data.encode("utf-8") if isinstance(data, str) else data
    storage = _as_event(event).storage
    if storage == "local":
        _write_atomically(Path(target), body)
    elif storage == "s3":
        bucket, key = _s3_location(target)
        _s3_client().put_object(Bucket=bucket, Key=key, Body=body)
    else:
        _http("PUT", target, token=_token(token_env), timeout=timeout, data=body).close()
    return target


def _unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(params, Mapping):
        raise EventError(f"a storage event must be a JSON object, not {type(params).__name__}")
    if "specversion" in params:
        return params
    nested = params.get("event")
    if isinstance(nested, Mapping):
        return nested
    raise EventError("no CloudEvent found: expected 'specversion' in the params or an 'event' object")


def _text(obj: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"CloudEvent '{prefix}{key}' must be a non-empty string, got {value!r}")
    return value


def _optional_text(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise EventError(f"'data.{key}' must be a non-empty string or null, got {value!r}")
    return value


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise EventError(f"CloudEvent 'time' must be an RFC 3339 timestamp, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise EventError(f"CloudEvent 'time' {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise EventError(f"CloudEvent 'time' {value!r} needs a time zone (e.g. 'Z')")
    return parsed


def _as_event(event: StorageEvent | Mapping[str, Any]) -> StorageEvent:
    return event if isinstance(event, StorageEvent) else StorageEvent.from_cloudevent(event)


def _token(env_name: str) -> str | None:
    return os.environ.get(env_name) or None


def _redacted(url: str) -> str:
    """The URL without credentials, query (presigned signatures) or fragment: safe for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _http(method: str, url: str, *, token: str | None, timeout: float, data: bytes | None = None) -> Any:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise EventError(f"cannot {method} {_redacted(url)}: only http(s) URLs are supported here")
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        if parts.scheme != "https" and not _is_loopback(parts.hostname):
            raise EventError(f"refusing to send the token over plain http to {parts.hostname}; use https")
        # Unredirected: a redirect (e.g. dCache door -> pool) must not carry the token elsewhere.
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        hint = " (no token: set the function's secret)" if exc.code in (401, 403) and not token else ""
        raise EventError(f"{method} {_redacted(url)} failed: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EventError(f"{method} {_redacted(url)} failed: {reason}") from None


def _s3_location(url: str) -> tuple[str, str]:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise EventError(f"{url!r} is not an s3://bucket/key URL")
    return bucket, key


def _s3_client() -> Any:
    try:
        boto3 = importlib.import_module("boto3")
    except ImportError:
        raise EventError(
            "s3:// access needs boto3 in the function image (add it to requirements.txt); "
            "reading also works when the platform puts a presigned https URL in 'data.url'"
        ) from None
    endpoint = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _write_atomically(target: Path, body: bytes) -> None:
    # Rename into place so a watcher of the folder sees the output only once it is complete.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; outputs are meant to be shared like their inputs
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
