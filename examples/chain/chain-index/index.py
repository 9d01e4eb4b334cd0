"""chain-index: a summary arrives, one line is appended to the folder's index.jsonl.

On dCache and S3, where files are written once and cannot be appended to, the entry is written as
its own file next to the summary (``<summary>.index.json``) instead.
"""

from __future__ import annotations

import fcntl
import json
import os
from typing import Any

from faaspub_runtime.events import StorageEvent, open_input, write_output

INDEX = "index.jsonl"
ENTRY_SUFFIX = ".index.json"


def main(params: dict[str, Any]) -> dict[str, Any]:
    event = StorageEvent.from_cloudevent(params)
    with open_input(event, "r") as handle:
        summary = json.load(handle)
    line = {
        "event": event.id,
        "summary": event.path,
        "source": summary.get("source") or summary.get("file"),
        "rows": summary.get("rows"),
    }
    if event.storage != "local":
        entry = write_output(event, ENTRY_SUFFIX, json.dumps(line, sort_keys=True) + "\n")
        return {"index": entry, "added": True}
    index = os.path.join(os.path.dirname(event.path), INDEX)
    with open(index, "a+", encoding="utf-8") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # several instances may append at once
        out.seek(0)
        # Delivery is at least once; the event id is stable across redeliveries, so skip a repeat.
        if any(json.loads(existing).get("event") == event.id for existing in out if existing.strip()):
            return {"index": index, "added": False}
        out.write(json.dumps(line, sort_keys=True) + "\n")
    return {"index": index, "added": True}
