"""Logging setup: text or JSON lines, each line carrying the delivery, release and job it belongs to.

Workers set :data:`delivery_id`, :data:`release_id` and :data:`job_id` (context variables) around
the work they do; a filter copies them onto every record, so no call site has to pass them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

delivery_id: ContextVar[int | None] = ContextVar("delivery_id", default=None)
release_id: ContextVar[int | None] = ContextVar("release_id", default=None)
job_id: ContextVar[int | None] = ContextVar("job_id", default=None)
_FIELDS = {"delivery_id": delivery_id, "release_id": release_id, "job_id": job_id}


class ContextFilter(logging.Filter):
    """Adds the current delivery/release/job ids to each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _FIELDS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class WithoutQuery(logging.Filter):
    """Drops the query string from uvicorn's access lines: push endpoints of S3 servers carry the
    webhook token there (``/hooks/s3?token=…``), and a token must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access: (client address, method, path with query, HTTP version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) > 2 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [delivery=… release=…] message``."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{name.removesuffix('_id')}={getattr(record, name)}"
            for name in _FIELDS
            if getattr(record, name, None) is not None
        )
        record.ids = f" [{ids}]" if ids else ""
        return super().format(record)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Route the root logger to stderr in ``log_format`` (``text`` or ``json``); safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s%(ids)s %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_faaspub", False)]:
        root.removeHandler(old)
    handler._faaspub = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    hide_query_strings()


def hide_query_strings() -> None:
    """Keep query strings out of uvicorn's access log, however uvicorn was started (idempotent)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, WithoutQuery) for f in access.filters):
        access.addFilter(WithoutQuery())


@contextmanager
def bound(**ids: int | None) -> Iterator[None]:
    """Set ``delivery_id``/``release_id``/``job_id`` for the duration of a block."""
    tokens = [(_FIELDS[name], _FIELDS[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
