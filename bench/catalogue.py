"""Catalogue benchmark: throughput and latency of the API and pages on a populated catalogue.

A SQLite catalogue with 100 functions (releases of examples/hello under other names) and 20 000
activations is served by uvicorn (one process, as ``faaspub serve``) on a loopback port; ``wrk``
drives a search, an activation listing with a filter, a deep cursor page and a function page.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FUNCTIONS = 100
ACTIVATIONS = 20_000


def _seed(context: Any) -> str:
    from sqlalchemy import insert

    from publisher.catalogue.record import record_release
    from publisher.core.pipeline import citation_dict
    from publisher.db.engine import transaction
    from publisher.db.models import ActivationRecord
    from publisher.manifest.load import load_function
    from tests.catalogue.conftest import HELLO, release_of

    hello = load_function(HELLO, "local")
    citation = citation_dict(hello)
    with transaction(context.sessions) as session:
        for i in range(FUNCTIONS):
            manifest = hello.manifest.model_copy(update={"name": f"fn-{i:03d}"})
            source = dataclasses.replace(hello, manifest=manifest)
            record_release(session, release_of(source, "1.0.0", f"10.5281/zenodo.{9000 + i}"), citation)
    start = datetime.now(UTC) - timedelta(hours=23)
    rows = [
        {
            "id": f"a{i:06d}",
            "namespace": "local",
            "function": f"fn-{i % 10:03d}",
            "version": "1.0.0",
            "digest": "sha256:" + "0" * 64,
            "start": start + timedelta(seconds=4 * i),
            "duration_ms": 10.0,
            "status": "success" if i % 7 else "application_error",
            "result": {"i": i},
            "logs": [f"line {i}"],
            "cause": "storage",
        }
        for i in range(ACTIVATIONS)
    ]
    with transaction(context.sessions) as session:
        session.execute(insert(ActivationRecord), rows)
    from publisher.catalogue.queries import list_activations

    with context.sessions() as session:  # a cursor 20 pages deep
        cursor = None
        for _ in range(20):
            cursor = list_activations(session, function="fn-003", cursor=cursor, limit=50).next_cursor
    return cursor or ""


def _wrk(url: str, seconds: int) -> tuple[float, float]:
    """Requests per second and the 99th percentile latency in ms."""
    out = subprocess.run(
        ["wrk", "-t2", "-c8", f"-d{seconds}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def run(quick: bool) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed")
    from tests.catalogue.conftest import make_context, serve
    from webhooks.app import create_app

    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-catalogue-"))
    context = make_context(work)
    cursor = _seed(context)
    seconds = 3 if quick else 10
    targets = {
        "API search (GET /api/v1/functions?q=fn-04)": "/api/v1/functions?q=fn-04",
        "API activations of one function, failed only": "/api/v1/activations?function=fn-003&status=failed",
        "API activations page 21 (cursor)": f"/api/v1/activations?function=fn-003&cursor={cursor}",
        "function page (chart, versions, 20 recent runs)": "/functions/local/fn-003",
    }
    results: list[dict[str, Any]] = []
    try:
        with serve(create_app(context)) as base:
            for label, path in targets.items():
                rps, p99 = _wrk(base + path, seconds)
                command = f"wrk -t2 -c8 -d{seconds}s --latency {path}"
                results.append(
                    {
                        "metric": f"{label}: throughput",
                        "value": round(rps, 1),
                        "unit": "req/s",
                        "command": command,
                    }
                )
                results.append(
                    {
                        "metric": f"{label}: p99 latency",
                        "value": round(p99, 1),
                        "unit": "ms",
                        "command": command,
                    }
                )
    finally:
        context.engine.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    for record in run(quick="--quick" in sys.argv):
        print(f"{record['metric']:<70} {record['value']:>10} {record['unit']}")
