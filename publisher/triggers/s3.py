"""S3 objects as storage events: notification bodies (AWS, MinIO, Ceph RGW) and listed objects.

The dialects differ in small ways that matter:

* object keys: AWS and MinIO send them URL-encoded as in a query string (``+`` for a space; MinIO
  applies Go's ``url.QueryEscape``), Ceph RGW sends them as stored. Decoding an RGW key would turn
  ``a+b.txt`` into ``a b.txt``, an object that does not exist;
* event names with or without ``s3:`` (AWS and current Ceph omit it, MinIO and old Ceph send it);
* ``eTag`` or ``etag``; listings quote the ETag, notifications do not;
* AWS delivers through SNS, whose HTTP(S) subscriptions wrap the body in an envelope (unless the
  subscription has raw message delivery).

:func:`object_event` is the one place that decides an object's identity, for notifications and
listings alike, so an object both notified and listed is one event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote_plus

from publisher.core.types import StorageEvent

KINDS: dict[str, Literal["created", "deleted"]] = {"ObjectCreated": "created", "ObjectRemoved": "deleted"}
# Fields only Ceph RGW puts in a record: an RGW whose eventSource is not "ceph:s3" is still RGW.
RGW_ONLY = ("eventId", "opaqueData")


class S3BodyError(ValueError):
    """The body is not a notification at all; ``reason`` is a short metrics label."""

    def __init__(self, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.body = body  # kept with the delivery record when it helps the operator


class MalformedRecord(ValueError):
    """A record that should name an object event but cannot be read: its object needs a listing."""


@dataclass
class Parsed:
    """What one notification body held."""

    name: str | None
    body: dict[str, Any]
    events: list[StorageEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # one reason per record that was not an event
    malformed: bool = False  # a create or remove record we could not read: its object needs a listing


def event_kind(name: str) -> Literal["created", "deleted"] | None:
    """``s3:ObjectCreated:Put`` / ``ObjectCreated:Put`` -> ``created``; unsupported -> None."""
    return KINDS.get(name.removeprefix("s3:").split(":", 1)[0])


def is_folder(key: str) -> bool:
    """A key ending in ``/`` is a folder marker (consoles create them), not a file to process."""
    return key.endswith("/")


def object_url(endpoint: str | None, bucket: str, key: str) -> str | None:
    """The object's plain (unsigned) URL, path-style; deliveries replace it with a presigned one."""
    if not endpoint:
        return None
    return f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/{quote(key)}"


def object_event(
    bucket: str,
    key: str,
    *,
    kind: Literal["created", "deleted"] = "created",
    etag: str | None = None,
    size: int | None = None,
    time: datetime | None = None,
    sequencer: str | None = None,
    endpoint: str | None = None,
) -> StorageEvent:
    """The event of one object, with its identity: bucket, key and ETag for a created object.

    The ETag is what a notification and a listing both know of the object's content (and what
    changes when it is rewritten with other content), so the two find the same event. A removal
    has no content left: its notification's ``sequencer`` tells one removal from the next (and
    stands in for a missing ETag).
    """
    etag = etag.strip('"') if etag else None
    created = kind == "created"
    return StorageEvent(
        source="s3",
        path=f"{bucket}/{key}",
        kind=kind,
        time=time or datetime.now(UTC),
        size=size,
        checksum=f"etag:{etag}" if etag and created else None,
        event_id=sequencer,
        url=object_url(endpoint, bucket, key),
    )


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def stored_key(record: dict[str, Any], sent: str) -> str:
    """The key as stored, from the key as the sender put it in the record."""
    if record.get("eventSource") == "ceph:s3" or any(name in record for name in RGW_ONLY):
        return sent
    return unquote_plus(sent)


def record_event(record: dict[str, Any], endpoint: str | None = None) -> StorageEvent:
    """One ``Records[]`` entry as an event; raises ``ValueError`` naming what is missing."""
    name = record.get("eventName")
    if not isinstance(name, str):
        raise MalformedRecord("record has no eventName")
    kind = event_kind(name)
    if kind is None:
        raise ValueError(f"event {name} is not a create or remove")
    s3 = record.get("s3") or {}
    bucket = (s3.get("bucket") or {}).get("name")
    obj = s3.get("object") or {}
    sent = obj.get("key")
    if not isinstance(bucket, str) or not bucket or not isinstance(sent, str) or not sent:
        raise MalformedRecord("record has no s3.bucket.name or s3.object.key")
    key = stored_key(record, sent)
    if is_folder(key):
        raise ValueError(f"{key} is a folder marker")
    size = obj.get("size")
    return object_event(
        bucket,
        key,
        kind=kind,
        etag=obj.get("eTag") or obj.get("etag"),
        size=size if isinstance(size, int) else None,
        time=_time(record.get("eventTime")),
        sequencer=obj.get("sequencer") or obj.get("versionId") or record.get("eventId"),
        endpoint=endpoint,
    )


def _unwrap_sns(data: dict[str, Any]) -> dict[str, Any]:
    """The S3 body inside an SNS HTTP(S) delivery; other bodies as they are."""
    if data.get("Type") == "SubscriptionConfirmation":
        arn, token = data.get("TopicArn", "?"), data.get("Token", "?")
        raise S3BodyError(
            "sns_subscription",
            f"SNS subscription confirmation: aws sns confirm-subscription --topic-arn {arn} --token {token}",
            body=data,
        )
    if data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        try:
            inner = json.loads(data["Message"])
        except json.JSONDecodeError:
            raise S3BodyError("not_json", "SNS Message is not JSON") from None
        if isinstance(inner, dict):
            return inner
    return data


def parse(body: bytes, endpoint: str | None = None) -> Parsed:
    """Every supported record of ``body``; raises :class:`S3BodyError` when it is not a notification."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise S3BodyError("not_json", "body is not JSON (or nested too deeply)") from None
    if not isinstance(data, dict):
        raise S3BodyError("not_json", "body is not a JSON object")
    notification = _unwrap_sns(data)
    records = notification.get("Records")
    name = notification.get("EventName") or notification.get("Event")
    if not isinstance(records, list) or not records:
        raise S3BodyError("no_records", f"no Records in the body (event {name or 'unnamed'})")
    parsed = Parsed(name=str(name)[:64] if name else None, body=data)
    for record in records:
        try:
            parsed.events.append(record_event(record if isinstance(record, dict) else {}, endpoint))
        except MalformedRecord as exc:
            parsed.ignored.append(str(exc))
            parsed.malformed = True
        except ValueError as exc:
            parsed.ignored.append(str(exc))
    if parsed.name is None and parsed.events:
        parsed.name = str(records[0].get("eventName"))[:64]
    return parsed
