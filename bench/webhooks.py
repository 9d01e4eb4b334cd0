"""Webhook intake under sustained load: 500 deliveries/s for 60 s (quick: 10 s) from another process.

``uvicorn`` serves the real app (``webhooks.app.create_app``, no background workers) in one
subprocess. The load comes from a second process (this file with ``--drive``): an open-loop asyncio
client that sends token-authenticated pipeline deliveries (each a distinct pipeline, so each stores a
delivery and a job) on a fixed schedule, whatever the answers do, and measures every answer time from
the moment the request was *due*, so a stalled server shows up in the percentiles instead of slowing
the client down (no coordinated omission). Afterwards the deliveries are counted in the database:
none may be lost. ``wrk`` (closed loop, as fast as it can) gives the peak rate as a peer figure.
Run on SQLite (WAL) and on PostgreSQL (a throwaway database on 127.0.0.1:5432, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path("/work/shared/specs/gitlab-webhooks/pipeline_hook.json")
RATE = 500
GOAL_P99_MS = 50.0
ANSWER_TIMEOUT_S = 10.0  # GitLab gives up on a delivery after about 10 s
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PEAK_CONNECTIONS = 16
KEEP_ALIVE_S = 2.0  # reuse a connection only well within uvicorn's keep-alive timeout (5 s)
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]

# The service app as ``faaspub serve --no-background`` runs it.
SERVER = """
import sys, uvicorn
from publisher.config import load_settings
from publisher.core.context import Context
from webhooks.app import create_app
app = create_app(Context(load_settings(sys.argv[1])))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""

# wrk drives the peak: closed loop, every request a distinct pipeline with its own Idempotency-Key.
WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  token, template = args[1], args[2]
end
function request()
  counter = counter + 1
  local id = 900000000 + tid * 10000000 + counter
  local body = string.gsub(template, "__PIPELINE_ID__", tostring(id))
  local headers = {["X-Gitlab-Token"] = token, ["X-Gitlab-Event"] = "Pipeline Hook",
                   ["Content-Type"] = "application/json",
                   ["Idempotency-Key"] = string.format("peak-%d-%d", tid, counter)}
  return wrk.format("POST", nil, headers, body)
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {"sent": %d, "elapsed": %f, "p99": %f, "non2xx": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(99) / 1000, summary.errors.status))
end
"""


def body_template() -> str:
    """A tag pipeline delivery of the served group, with a placeholder for the pipeline id."""
    body: dict[str, Any] = json.loads(SPEC.read_text())
    body["object_attributes"].update(id=0, ref="v1.0.0", tag=True, source="push")
    body.pop("merge_request")
    body["project"].update(id=77, path_with_namespace="bench/project")
    return json.dumps(body).replace('"id": 0,', '"id": __PIPELINE_ID__,', 1)


# ---------------------------------------------------------------------------------------------
# The open-loop client (its own process).


def _request(port: int, token: str, template: str, n: int, prefix: str) -> bytes:
    # Pipeline ids differ between runs (prefix) so that every delivery makes a new job.
    body = template.replace("__PIPELINE_ID__", f"{zlib.crc32(prefix.encode()) % 10**6}{n:08d}", 1).encode()
    head = (
        f"POST /hooks/gitlab HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Gitlab-Event: Pipeline Hook\r\nX-Gitlab-Token: {token}\r\n"
        f"Idempotency-Key: {prefix}-{n}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(connection: Connection, request: bytes) -> tuple[int, bool]:
    """Send one request on a keep-alive connection; the status and whether the server keeps it open."""
    reader, writer = connection
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
    await reader.readexactly(length)
    return status, "connection: close" not in head


async def drive(port: int, token: str, rate: float, seconds: float, prefix: str) -> dict[str, Any]:
    """Send ``rate`` deliveries per second for ``seconds`` on schedule; answer times count from due time.

    A request never waits for a free connection: when every open one is busy, it opens another.
    """
    template = body_template()
    idle: list[tuple[float, Connection]] = []  # (last used, connection), most recent last
    latencies: list[float] = []
    lags: list[float] = []  # how late the client itself sent (it shares the machine)
    services: list[float] = []  # answer times counted from the actual send (the server's share)
    statuses: Counter[str] = Counter()
    last_answer = 0.0

    async def connection() -> Connection:
        while idle:
            used, conn = idle.pop()
            if time.perf_counter() - used < KEEP_ALIVE_S:
                return conn
            conn[1].close()  # the server may be closing it right now
        return await asyncio.open_connection("127.0.0.1", port)

    async def one(n: int, due: float) -> None:
        nonlocal last_answer
        lags.append(time.perf_counter() - due)
        request = _request(port, token, template, n, prefix)
        conn = None
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                conn = await connection()
                sent = time.perf_counter()
                status, reusable = await _exchange(conn, request)
                services.append(time.perf_counter() - sent)
            statuses[str(status)] += 1
            if reusable:
                idle.append((time.perf_counter(), conn))
                conn = None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            statuses[type(exc).__name__] += 1
        finally:
            if conn is not None:
                conn[1].close()
        now = time.perf_counter()
        latencies.append(now - due)
        last_answer = max(last_answer, now)

    total = int(rate * seconds)
    start = time.perf_counter() + 0.1
    tasks = []
    for n in range(total):
        due = start + n / rate
        if due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    for _used, (_reader, writer) in idle:
        writer.close()
    for values in (latencies, lags, services):
        values.sort()

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[max(0, math.ceil(p / 100 * len(values)) - 1)] * 1000 if values else math.nan

    answered = sum(c for s, c in statuses.items() if s.isdigit() and s.startswith("2"))
    return {
        "sent": total,
        "answered_2xx": answered,
        "statuses": dict(statuses),
        "rate": answered / (last_answer - start),
        "p50": pct(50),
        "p99": pct(99),
        "p999": pct(99.9),
        "max": latencies[-1] * 1000,
        "client_send_lag_p99": pct(99, lags),
        "p99_from_send": pct(99, services),
    }


# ---------------------------------------------------------------------------------------------
# The measurement (server, client, counting).


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"uvicorn exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("uvicorn did not start")


@contextmanager
def _server(db_url: str, workdir: Path, token: str) -> Iterator[int]:
    (workdir / "secret").write_text(token)
    config = workdir / "faaspub.toml"
    config.write_text(
        f'state_dir = "{workdir / "state"}"\n[database]\nurl = "{db_url}"\n'
        f'[gitlab]\nwebhook_secret_file = "{workdir / "secret"}"\ngroups = ["bench"]\n'
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(config), str(port)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_port(port, server)
        yield port
    finally:
        server.terminate()
        server.wait(20)


def _client(port: int, token: str, rate: float, seconds: float, prefix: str) -> dict[str, Any]:
    """Run :func:`drive` in its own process, as GitLab would be."""
    args = [str(port), token, str(rate), str(seconds), prefix]
    done = subprocess.run(
        [sys.executable, __file__, "--drive", *args], capture_output=True, text=True, timeout=seconds + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _peak(port: int, token: str, seconds: float, workdir: Path) -> dict[str, Any]:
    script = workdir / "peak.lua"
    script.write_text(WRK_SCRIPT)
    template = body_template()
    url = f"http://127.0.0.1:{port}/hooks/gitlab"
    command = ["wrk", "-t1", f"-c{PEAK_CONNECTIONS}", f"-d{int(seconds)}s", "-s", str(script)]
    done = subprocess.run(
        [*command, url, "--", token, template], capture_output=True, text=True, timeout=seconds + 60
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {done.stderr[-2000:]} {done.stdout[-2000:]}")
    stats: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return stats


def _count(db_url: str) -> tuple[int, int]:
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM deliveries WHERE outcome = 'queued'")).scalar_one()
        jobs = conn.execute(text("SELECT count(*) FROM jobs")).scalar_one()
    engine.dispose()
    return int(stored), int(jobs)


def measure(db_url: str, label: str, seconds: float, workdir: Path) -> list[dict[str, Any]]:
    """Warm up, run the open-loop load, count what was stored, then the closed-loop peak."""
    token = secrets.token_hex(16)
    load_before = os.getloadavg()
    with _server(db_url, workdir, token) as port:
        _client(port, token, 100, 1, "warmup")
        before = _count(db_url)
        stats = _client(port, token, RATE, seconds, "load")
        after = _count(db_url)
        load_after = os.getloadavg()
        peak = _peak(port, token, 3 if seconds < 30 else 10, workdir)
    stored, jobs = after[0] - before[0], after[1] - before[1]
    lost = stats["sent"] - min(stored, jobs)
    cores = os.cpu_count()
    load = f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({cores} cores)"
    command = f"python bench/webhooks.py ({label}, open loop {RATE}/s for {seconds:.0f}s)"
    peak_rate = (peak["sent"] - peak["non2xx"]) / peak["elapsed"]
    common = {"command": command, "load": load}
    return [
        {
            "metric": f"machine load average during webhook run ({label})",
            "value": round(max(load_before[0], load_after[0]), 2),
            "unit": f"runnable ({cores} cores)",
            **common,
        },
        {
            "metric": f"webhook p99 answer time ({label})",
            "value": round(stats["p99"], 2),
            "unit": "ms",
            "goal": f"< {GOAL_P99_MS} ms at {RATE}/s",
            **common,
        },
        {
            "metric": f"webhook p50 answer time ({label})",
            "value": round(stats["p50"], 2),
            "unit": "ms",
            **common,
        },
        {
            "metric": f"webhook deliveries/s sustained ({label})",
            "value": round(stats["rate"], 1),
            "unit": "1/s",
            "goal": f">= {RATE}",
            "peer": f"wrk closed loop, {PEAK_CONNECTIONS} connections (peak)",
            "peer_value": round(peak_rate, 1),
            "ratio": round(stats["rate"] / peak_rate, 3) if peak_rate else None,
            **common,
        },
        {
            "metric": f"webhook deliveries lost ({label})",
            "value": lost,
            "unit": "deliveries",
            "goal": "0",
            **common,
            "detail": {**stats, "stored": stored, "jobs": jobs},
        },
    ]


@contextmanager
def _postgres() -> Iterator[str | None]:
    """A throwaway database, dropped afterwards; None when PostgreSQL is not reachable."""
    name = f"faaspub_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        admin.dispose()
        yield None
        return
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(quick: bool) -> list[dict[str, Any]]:
    seconds = 10.0 if quick else 60.0
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="faaspub-bench-webhooks-") as tmp:
        sqlite_dir = Path(tmp) / "sqlite"
        sqlite_dir.mkdir()
        results += measure(f"sqlite:///{sqlite_dir / 'faaspub.db'}", "SQLite", seconds, sqlite_dir)
        with _postgres() as url:
            if url is not None:
                pg_dir = Path(tmp) / "postgres"
                pg_dir.mkdir()
                results += measure(url, "PostgreSQL", seconds, pg_dir)
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        port, token, rate, seconds, prefix = sys.argv[2:7]
        import uvloop  # the client's own overhead stays small next to the server's

        print(json.dumps(uvloop.run(drive(int(port), token, float(rate), float(seconds), prefix))))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
