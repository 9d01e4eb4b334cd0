"""Catalogue benchmark: throughput and latency of the API and pages on a populated catalogue.

A SQLite catalogue with 100 functions (releases of examples/hello under other names) and 20 000
activations is served by ``faaspub serve --no-background`` in its own process on a loopback port;
``wrk`` (another process) drives a search, an activation listing with a filter, a deep cursor page
and a function page. The reference is ``GET /healthz`` on the same server in the same run: what the
HTTP stack itself answers per second, so each figure shows how much of that the catalogue keeps.
The server's CPU time per request is recorded too: unlike req/s it hardly moves with the load of the
shared machine.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FUNCTIONS = 100
ACTIVATIONS = 20_000
CONNECTIONS = 8
PAGE_GOAL_RPS, PAGE_GOAL_P99_MS, SEARCH_GOAL_RPS = 500, 50, 1500
REFERENCE = "GET /healthz on the same server (the HTTP stack's own ceiling)"


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(workdir: Path, db_url: str) -> Iterator[tuple[str, int]]:
    """``faaspub serve --no-background`` on a free port, in its own process; yields (url, pid)."""
    config = workdir / "faaspub.toml"
    config.write_text(f'state_dir = "{workdir / "state"}"\n[database]\nurl = "{db_url}"\n')
    port = _free_port()
    command = [sys.executable, "-m", "publisher.cli", "serve", "--no-background", "--config", str(config)]
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 (closed below, after the process)
    proc = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}"],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"faaspub serve exited: {(workdir / 'serve.log').read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("faaspub serve did not start within 60 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, seconds: int, pid: int) -> dict[str, float]:
    """Requests per second, p50/p99 latency (ms), the server's CPU ms per request, the load average."""
    cpu_before = _cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = _cpu_seconds(pid) - cpu_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} answers were not 2xx/3xx")

    def latency(pct: str) -> float:
        value, unit = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency("50"),
        "p99": latency("99"),
        "cpu_ms_per_request": 1000 * cpu / max(requests, 1),
        "load": os.getloadavg()[0],
    }


# label -> (path, id of the throughput figure, id of the p99 figure, throughput goal, p99 goal)
Target = tuple[str, str | None, str | None, str | None, str | None]


def _targets(cursor: str) -> dict[str, Target]:
    return {
        "API search (GET /api/v1/functions?q=fn-04)": (
            "/api/v1/functions?q=fn-04",
            "scale.search_rps",
            "scale.search_p99_ms",
            f">= {SEARCH_GOAL_RPS} req/s",
            None,
        ),
        "API activations of one function, failed only": (
            "/api/v1/activations?function=fn-003&status=failed",
            None,
            None,
            None,
            None,
        ),
        "API activations page 21 (cursor)": (
            f"/api/v1/activations?function=fn-003&cursor={cursor}",
            None,
            None,
            None,
            None,
        ),
        "function page (chart, versions, 20 recent runs)": (
            "/functions/local/fn-003",
            "scale.catalogue_page_rps",
            "scale.catalogue_page_p99_ms",
            f">= {PAGE_GOAL_RPS} req/s",
            f"< {PAGE_GOAL_P99_MS} ms",
        ),
    }


def _records(
    label: str, target: Target, found: dict[str, float], ref: dict[str, float], seconds: int
) -> list[dict[str, Any]]:
    path, rps_id, p99_id, rps_goal, p99_goal = target
    wrk = f"wrk -t2 -c{CONNECTIONS} -d{seconds}s --latency {path}"
    common = {
        "peer": REFERENCE,
        "command": f"faaspub serve --no-background (SQLite); {wrk}",
        "load_avg_1m": round(found["load"], 2),
    }
    rows = [
        (f"{label}: throughput", round(found["rps"], 1), "req/s", round(ref["rps"], 1), rps_id, rps_goal),
        (f"{label}: p99 latency", round(found["p99"], 1), "ms", round(ref["p99"], 2), p99_id, p99_goal),
    ]
    records = []
    for metric, value, unit, peer_value, ident, goal in rows:
        record: dict[str, Any] = {"metric": metric, "value": value, "unit": unit, "peer_value": peer_value}
        record |= common | ({"id": ident} if ident else {}) | ({"goal": goal} if goal else {})
        records.append(record)
    records[0]["ratio"] = round(found["rps"] / ref["rps"], 3)
    # CPU of the server per request: 1000 / this is the rate one uncontended core sustains,
    # whatever the load of the shared machine.
    records[0]["server_cpu_ms_per_request"] = round(found["cpu_ms_per_request"], 3)
    records[0]["reference_cpu_ms_per_request"] = round(ref["cpu_ms_per_request"], 3)
    records[0]["p50_ms"] = round(found["p50"], 2)
    return records


def run(quick: bool) -> list[dict[str, Any]]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed")
    from tests.catalogue.conftest import make_context

    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-catalogue-"))
    context = make_context(work)
    cursor = _seed(context)
    db_url = context.settings.database.url
    context.engine.dispose()
    seconds = 3 if quick else 10
    results: list[dict[str, Any]] = []
    try:
        with _server(work, db_url) as (base, pid):
            _wrk(base + "/healthz", 1, pid)  # warm-up: imports, first connections
            reference = _wrk(base + "/healthz", seconds, pid)
            for label, target in _targets(cursor).items():
                results += _records(label, target, _wrk(base + target[0], seconds, pid), reference, seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    for record in run(quick="--quick" in sys.argv):
        print(
            f"{record['metric']:<70} {record['value']:>10} {record['unit']:<6}"
            f" (ref {record.get('peer_value')}, load {record.get('load_avg_1m')},"
            f" cpu {record.get('server_cpu_ms_per_request', '-')} ms/request)"
        )
