"""Chained steps on one data file: each function writes a record next to the file, the next runs on it.

A function that processes a file writes ``<file>.<function>.json``, a *step record*: which function
and version (with image digest and DOI) ran, on which file, and its result. That record landing in
storage is itself a storage event, so the next function of a pipeline triggers on
``match: "*.<previous function>.json"`` and finds the original file in the record. A function that
may run either directly on a file or after another one calls :func:`resolve` with the name of the
function it follows::

    from faaspub_runtime.steps import resolve, write_record

    def main(params):
        step = resolve(params, after=os.environ.get("AFTER"))   # the data file, and the record
        result = {...}                                           # of the step it follows, if any
        return {**result, "record": write_record(step, "my-function", result)}

A record only says ``"status": "success"``: a failed run raises and writes none, so nothing runs
after it. Only the standard library is used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faaspub_runtime.events import EventError, StorageEvent, open_input, write_output
from faaspub_runtime.identity import current

SUCCESS = "success"


def record_suffix(function: str) -> str:
    """``.<function>.json``: what ``function`` writes next to each data file."""
    if not function or "/" in function or "." in function:
        raise EventError(f"function name {function!r} cannot name a step record")
    return f".{function}.json"


@dataclass(frozen=True)
class Step:
    """The data file a step works on, and the record of the step it follows (``None`` when direct)."""

    data: StorageEvent
    previous: dict[str, Any] | None = None


def resolve(params: Mapping[str, Any], after: str | None = None) -> Step:
    """The step an event starts: on the file itself, or on the file a record of ``after`` names."""
    event = StorageEvent.from_cloudevent(params)
    if not after or not event.path.endswith(record_suffix(after)):
        return Step(event)
    with open_input(event, "r") as handle:
        try:
            record = json.load(handle)
        except ValueError as exc:
            raise EventError(f"step record {event.path} is not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("status") != SUCCESS:
        raise EventError(f"step record {event.path} does not record a successful run of {after}")
    source = record.get("input")
    if not isinstance(source, dict):
        raise EventError(f"step record {event.path} names no input file")
    data = StorageEvent(
        id=event.id,
        source=event.source,
        type=event.type,
        subject=str(source.get("path")),
        time=event.time,
        path=str(source.get("path")),
        storage=event.storage,
        size=source.get("size"),
        checksum=source.get("checksum"),
        url=source.get("url"),
    )
    return Step(data, record)


def make_record(step: Step, function: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The record of ``function``'s successful run on ``step.data``."""
    identity = current()
    data = step.data
    return {
        "function": identity.name or function,
        "namespace": identity.namespace,
        "version": identity.version,
        "digest": identity.digest,
        "image": identity.image,
        "doi": identity.doi,
        "status": SUCCESS,
        "time": datetime.now(UTC).isoformat(),
        "input": {
            "path": data.path,
            "url": data.url,
            "size": data.size,
            "checksum": data.checksum,
            "storage": data.storage,
        },
        "after": (step.previous or {}).get("function"),
        "result": dict(result),
    }


def write_record(step: Step, function: str, result: Mapping[str, Any]) -> str:
    """Write the record next to the data file; returns where (a path or URL)."""
    record = make_record(step, function, result)
    return write_output(step.data, record_suffix(function), json.dumps(record, indent=2, sort_keys=True))
