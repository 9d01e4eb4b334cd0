"""chain-summary: a CSV file arrives, its summary is written next to it."""

from __future__ import annotations

import csv
import json
from typing import Any

from faaspub_runtime.events import StorageEvent, open_input, write_output

SUFFIX = ".summary.json"


def summarise(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Row count, column names and the mean of every column whose values are all numbers."""
    columns = list(rows[0]) if rows else []
    means: dict[str, float] = {}
    for column in columns:
        try:
            values = [float(row[column]) for row in rows]
        except (TypeError, ValueError):
            continue
        means[column] = sum(values) / len(values)
    return {"rows": len(rows), "columns": columns, "means": means}


def main(params: dict[str, Any]) -> dict[str, Any]:
    event = StorageEvent.from_cloudevent(params)
    with open_input(event, "r") as handle:
        summary = summarise(list(csv.DictReader(handle)))
    summary["source"] = event.path
    target = write_output(event, SUFFIX, json.dumps(summary, indent=2, sort_keys=True))
    return {"summary": target, "rows": summary["rows"]}
