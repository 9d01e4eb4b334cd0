"""Opaque pagination cursors: the sort key of the last item of a page, as URL-safe base64 JSON.

Keyset pagination (``WHERE key < last``) stays correct while rows are added, unlike offsets, and the
cursor is opaque so clients do not come to depend on its content.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from publisher.errors import FaaspubError

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class CursorError(FaaspubError):
    """A cursor that this service did not hand out (or from another listing)."""


def encode(kind: str, *key: Any) -> str:
    """The cursor after an item whose sort key is ``key``; ``kind`` ties it to one listing."""
    values = [v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([kind, *values], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(kind: str, cursor: str, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The sort key in ``cursor``, checked against the listing ``kind`` and the key ``types``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CursorError("cursor is not valid", hint="pass the next_cursor of a previous page") from None
    if not isinstance(data, list) or len(data) != len(types) + 1 or data[0] != kind:
        raise CursorError("cursor does not belong to this listing", hint="start again without a cursor")
    key: list[Any] = []
    for value, wanted in zip(data[1:], types, strict=True):
        key.append(_typed(value, wanted))
    return tuple(key)


def _typed(value: Any, wanted: type) -> Any:
    if wanted is datetime and isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CursorError("cursor is not valid") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if wanted is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if wanted is str and isinstance(value, str):
        return value
    raise CursorError("cursor is not valid", hint="pass the next_cursor of a previous page")


def clamp(limit: int | None) -> int:
    """``limit`` within 1..MAX_LIMIT (the API rejects out-of-range values before this)."""
    return max(1, min(limit or DEFAULT_LIMIT, MAX_LIMIT))
