"""S3 bucket notifications (AWS, MinIO, Ceph RGW) as storage events.

The dialects differ in small ways that matter: event names with or without ``s3:`` (AWS and current
Ceph omit it, MinIO and old Ceph send it), ``eTag`` or ``etag``, and object keys that are
URL-encoded (``+`` for a space, as in a query string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus

from publisher.core.types import StorageEvent

KINDS = {"ObjectCreated": "created", "ObjectRemoved": "deleted"}


class S3BodyError(ValueError):
    """The body is not a notification at all; ``reason`` is a short metrics label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Parsed:
    """What one notification body held."""

    name: str | None
    body: dict[str, Any]
    events: list[StorageEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # one reason per record that was not an event


def event_kind(name: str) -> str | None:
    """``s3:ObjectCreated:Put`` / ``ObjectCreated:Put`` -> ``created``; unsupported -> None."""
    return KINDS.get(name.removeprefix("s3:").split(":", 1)[0])


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def record_event(record: dict[str, Any], endpoint: str | None = None) -> StorageEvent:
    """One ``Records[]`` entry as an event; raises ``ValueError`` naming what is missing."""
    name = record.get("eventName")
    if not isinstance(name, str):
        raise ValueError("record has no eventName")
    kind = event_kind(name)
    if kind is None:
        raise ValueError(f"event {name} is not a create or remove")
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    raw_key = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(raw_key, str) or not raw_key:
        raise ValueError("record has no s3.bucket.name or s3.object.key")
    key = unquote_plus(raw_key)
    etag = obj.get("eTag") or obj.get("etag")
    size = obj.get("size")
    return StorageEvent(
        source="s3",
        path=f"{bucket}/{key}",
        kind=kind,  # type: ignore[arg-type]
        time=_time(record.get("eventTime")),
        size=size if isinstance(size, int) else None,
        checksum=f"etag:{etag}" if etag else None,
        event_id=obj.get("sequencer") or obj.get("versionId") or record.get("eventId"),
        url=f"{endpoint.rstrip('/')}/{quote(bucket)}/{quote(key)}" if endpoint else None,
    )


def parse(body: bytes, endpoint: str | None = None) -> Parsed:
    """Every supported record of ``body``; raises :class:`S3BodyError` when it is not a notification."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise S3BodyError("not_json", "body is not JSON") from None
    if not isinstance(data, dict):
        raise S3BodyError("not_json", "body is not a JSON object")
    records = data.get("Records")
    name = data.get("EventName") or data.get("Event")
    if not isinstance(records, list) or not records:
        raise S3BodyError("no_records", f"no Records in the body (event {name or 'unnamed'})")
    parsed = Parsed(name=str(name)[:64] if name else None, body=data)
    for record in records:
        try:
            parsed.events.append(record_event(record if isinstance(record, dict) else {}, endpoint))
        except ValueError as exc:
            parsed.ignored.append(str(exc))
    if parsed.name is None and parsed.events:
        parsed.name = str(records[0].get("eventName"))[:64]
    return parsed
