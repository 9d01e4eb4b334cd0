"""Storage-event bridge benchmarks (issue 6): throughput to OpenWhisk trigger fires, close -> start latency.

* throughput: events fed to the intake in batches (as a source does) while a :class:`Deliverer` with
  its default settings fires the function's trigger through the real :class:`OpenWhiskBackend`;
  every event goes through inbox, outbox, ledger (SQLite) and is counted once its ledger row
  committed. Two peers, each in its own process: a stub fire endpoint (a raw asyncio/uvloop HTTP
  responder answering 202 ``{"activationId"}``, so the peer is not the bottleneck) and the fake
  OpenWhisk controller of ``tests/fakes/openwhisk_server.py``. Each peer's own ceiling is measured
  with ``wrk`` (same number of connections as the deliverer's concurrency): that is the peer figure.
  The backend client's own ceiling (``OpenWhiskBackend.fire`` from as many threads, no bridge) is a
  third row. Several rounds; the load average is recorded with each (the 2 cores are shared);
* latency from a file's close (the writer's clock) to the function's start (the handler's own
  ``time.time()``, returned in its result), on a real directory with inotify, through
  ``run_triggers`` to the local backend running the function in warm podman containers; plus the
  bridge's share alone (an in-process backend that timestamps the call).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import func, select

from bench.containers import percentile, podman_local_backend, wait_started, warm
from publisher.backends import naming
from publisher.backends.openwhisk import OpenWhiskBackend
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.types import StorageEvent
from publisher.triggers import metrics
from publisher.triggers.bindings import BindingCache
from publisher.triggers.cloudevents import storage_cloudevent
from publisher.triggers.delivery import CONCURRENCY, Deliverer
from publisher.triggers.intake import Intake
from publisher.triggers.local import LocalDirectorySource
from publisher.triggers.runner import run_triggers
from publisher.triggers.store import LedgerRow
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.triggers.conftest import publish_rows

COMMAND = "python bench/triggers.py"
FUNCTION = "bench"


def _context(tmp: Path, **settings: Any) -> Context:
    context = Context(
        Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{tmp / 'faaspub.db'}"},
                "storage": {"local": {"root": str(tmp / "data")}},
                "state_dir": str(tmp / "state"),
                **settings,
            }
        )
    )
    context.engine  # noqa: B018  (migrate before timing)
    publish_rows(context, FUNCTION, "1.0.0", "sha256:" + "b" * 64, [{"path": "/incoming", "recursive": True}])
    return context


def _openwhisk_function(url: str, auth: str) -> None:
    """Package, action, trigger and an active rule on the fake controller."""
    pkg = naming.package_name("local")
    trigger = naming.trigger_name("local", FUNCTION)
    base = f"{url}/api/v1/namespaces/guest"
    user, key = auth.split(":", 1)
    with httpx.Client(auth=(user, key)) as http:
        for url, body in (
            (f"{base}/packages/{pkg}", {}),
            (f"{base}/actions/{pkg}/{FUNCTION}", {"exec": {"kind": "blackbox", "image": "example/bench:1"}}),
            (f"{base}/triggers/{trigger}", {"name": trigger}),
            (
                f"{base}/rules/{trigger}",
                {"name": trigger, "trigger": f"/guest/{trigger}", "action": f"/guest/{pkg}/{FUNCTION}"},
            ),
        ):
            http.put(url, json=body).raise_for_status()


def serve_fire_stub() -> None:
    """A bare HTTP/1.1 keep-alive responder answering every request like a trigger fire (202 + id).

    Runs in its own process (``--fire-stub``) on uvloop when installed, so it is far faster than the
    client side and the bridge is what gets measured. Prints its port, then serves until killed.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                body = b'{"activationId":"%s"}' % uuid.uuid4().hex.encode()
                writer.write(
                    b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def serve_fake_openwhisk() -> None:
    """The fake controller in its own process (``--fake-openwhisk``): prints URL and key, then serves."""
    with OpenWhiskServer(None) as server:
        print(server.url, server.auth, flush=True)
        threading.Event().wait()


@contextmanager
def _server_process(flag: str) -> Iterator[list[str]]:
    """Start ``bench/triggers.py FLAG`` (its own process, so it has its own core); its first line."""
    proc = subprocess.Popen(
        [sys.executable, __file__, flag], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().split()
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _events(n: int, prefix: str) -> list[StorageEvent]:
    now = datetime.now(UTC)
    return [
        StorageEvent(
            source="local",
            path=f"/incoming/{prefix}{i:06d}.h5",
            kind="created",
            time=now,
            size=i,
            event_id=f"{i}",
        )
        for i in range(n)
    ]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _delivered() -> float:
    return float(next(iter(metrics.DELIVERED.collect())).samples[0].value)


def _drive(context: Context, backend: Any, events: list[StorageEvent]) -> tuple[float, float]:
    """Feed ``events`` to the intake in batches of 100 while a default deliverer fires them.

    Returns events/s until the last ledger row committed, and this process's CPU seconds per event
    (intake, deliverer and client together: what the rate would be on one uncontended core).
    """
    intake = Intake(context.sessions, BindingCache(context.sessions))
    deliverer = Deliverer(context.sessions, backend, wakeup=intake.wakeup)
    stop = threading.Event()
    runner = threading.Thread(target=deliverer.run, args=(stop.is_set,), daemon=True)
    with context.sessions() as session:
        expected = (session.scalar(select(func.count()).select_from(LedgerRow)) or 0) + len(events)
    # The deliverer counts after each commit; waiting on that costs the bridge no database reads.
    target = _delivered() + len(events)
    started, cpu = time.perf_counter(), time.process_time()
    runner.start()
    for i in range(0, len(events), 100):
        intake.accept(events[i : i + 100])
    while _delivered() < target:
        time.sleep(0.005)
    rate = len(events) / (time.perf_counter() - started)
    cpu_per_event = (time.process_time() - cpu) / len(events)
    with context.sessions() as session:
        ledger = session.scalar(select(func.count()).select_from(LedgerRow))
    if ledger != expected:
        raise RuntimeError(f"{ledger} ledger rows after the run, expected {expected}")
    stop.set()
    runner.join(timeout=10)
    return rate, cpu_per_event


def _openwhisk_context(tmp: Path, url: str, auth: str) -> Context:
    openwhisk = {"api_host": url, "auth": auth, "namespace": "guest"}
    return _context(tmp, backend={"kind": "openwhisk", "openwhisk": openwhisk})


def wrk_ceiling(url: str, auth: str, connections: int, seconds: int = 2) -> float:
    """Requests/s ``wrk`` gets from ``url`` with trigger-fire POSTs on ``connections`` keep-alive
    connections: the endpoint's own ceiling on this machine."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: it measures the peer endpoints' ceiling")
    body = json.dumps(storage_cloudevent(_events(1, "w")[0], "storage:" + "0" * 40))
    token = base64.b64encode(auth.encode()).decode()
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(
            f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
            f"wrk.headers['Authorization'] = 'Basic {token}'\n"
        )
        script.flush()
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rate = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    if "Non-2xx" in out:
        raise RuntimeError(f"the endpoint refused wrk's fires: {out}")
    return float(rate.split()[1])


def _fire_url(url: str) -> str:
    trigger = naming.trigger_name("local", FUNCTION)
    return f"{url}/api/v1/namespaces/guest/triggers/{trigger}"


def throughput(flag: str, n: int, rounds: int) -> dict[str, Any]:
    """Bridge rounds against one peer process; rates, load averages, the peer's and client's ceiling."""
    found: dict[str, Any] = {"bridge": [], "cpu_us": [], "load": []}
    with tempfile.TemporaryDirectory() as tmp, _server_process(flag) as first:
        if flag == "--fire-stub":
            url, auth = f"http://127.0.0.1:{first[0]}", "user:key"
        else:
            url, auth = first
            _openwhisk_function(url, auth)
        context = _openwhisk_context(Path(tmp), url, auth)
        backend = OpenWhiskBackend(context)
        for r in range(rounds):
            rate, cpu = _drive(context, backend, _events(n, f"r{r}-"))
            found["bridge"].append(round(rate, 1))
            found["cpu_us"].append(round(cpu * 1e6))
            found["load"].append(_load())
        found["peer"] = wrk_ceiling(_fire_url(url), auth, CONCURRENCY)
        # The same backend client firing directly from as many threads, without the bridge.
        event = storage_cloudevent(_events(1, "c")[0], "storage:" + "1" * 40)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _: backend.fire("local", FUNCTION, event), range(n)))
            found["client"] = round(n / (time.perf_counter() - started), 1)
        backend.close()
    return found


class _StartClock:
    """A backend that only notes when it was asked to start the function."""

    name = "clock"

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str:
        self.started[event["subject"]] = time.time()
        return str(event["id"])


def _write_files(directory: Path, n: int, spacing_s: float) -> dict[str, float]:
    """Write ``n`` small files one by one; the time each was closed, by path."""
    closed: dict[str, float] = {}
    for i in range(n):
        path = directory / f"f{i:05d}.h5"
        with open(path, "wb") as handle:
            handle.write(b"x" * 1024)
        closed[str(path)] = time.time()
        time.sleep(spacing_s)
    return closed


def bridge_share(n: int) -> list[float]:
    """Seconds from a file's close to the backend call (no container), for ``n`` files."""
    with tempfile.TemporaryDirectory() as tmp:
        context = _context(Path(tmp))
        incoming = Path(context.settings.storage.local.root) / "incoming"
        incoming.mkdir(parents=True)
        clock = _StartClock()
        intake = Intake(context.sessions, BindingCache(context.sessions))
        deliverer = Deliverer(context.sessions, clock, wakeup=intake.wakeup)
        source = LocalDirectorySource(context.settings.storage.local.root)
        stop = threading.Event()
        threads = [
            threading.Thread(target=source.run, args=(intake, stop.is_set), daemon=True),
            threading.Thread(target=deliverer.run, args=(stop.is_set,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        closed = _write_files(incoming, n, 0.01)
        deadline = time.monotonic() + 30
        while len(clock.started) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        return [clock.started[p] - t for p, t in closed.items() if p in clock.started]


def close_to_start(n: int, spacing_s: float) -> tuple[list[float], float]:
    """Seconds from a file's close to the handler's start in a warm podman container, for ``n`` files
    written ``spacing_s`` apart; and the seconds the set-up (registry, images, warm pool) took."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="faaspub-bench-triggers-") as name:
        tmp = Path(name)
        trigger = {"source": "local", "path": "/incoming", "match": "*.h5"}
        with podman_local_backend(tmp, trigger) as (context, backend):
            warm(backend)
            incoming = Path(context.settings.storage.local.root) / "incoming"
            incoming.mkdir(parents=True)
            stop = threading.Event()
            consumer = threading.Thread(target=run_triggers, args=(context, stop.is_set), daemon=True)
            consumer.start()
            time.sleep(1.0)  # the source's watch and first scan
            setup = time.monotonic() - began
            try:
                closed = _write_files(incoming, n, spacing_s)
                started = wait_started(context, n)
            finally:
                stop.set()
                consumer.join(timeout=15)
    return [started[path] - t for path, t in closed.items() if path in started], setup


def _rate_row(metric: str, found: dict[str, Any], peer: str) -> dict[str, Any]:
    value = statistics.median(found["bridge"])
    return {
        "metric": metric,
        "value": round(value, 1),
        "unit": "events/s",
        "command": COMMAND,
        "goal": ">= 2000 events/s on 2 cores",
        "peer": peer,
        "peer_value": round(found["peer"], 1),
        "ratio": round(value / found["peer"], 3),
        "rounds": found["bridge"],
        "load_avg_1m": found["load"],
        # CPU of the bridge process per event (intake + deliverer + client): 1e6 / this is the
        # rate one uncontended core sustains, whatever the load of the shared machine.
        "cpu_us_per_event": found["cpu_us"],
    }


def _latency_rows(what: str, lags: list[float], **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "metric": f"file close -> function start, {name} ({what}, {len(lags)} files)",
            "value": round(percentile(lags, pct) * 1000, 1),
            "unit": "ms",
            "command": COMMAND,
            "goal": "p99 < 250 ms with warm containers",
            "load_avg_1m": _load(),
            **extra,
        }
        for name, pct in (("p50", 50), ("p99", 99))
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    n, rounds = (3_000, 2) if quick else (10_000, 3)
    stub = throughput("--fire-stub", n, rounds)
    fake = throughput("--fake-openwhisk", n, rounds)
    rows = [
        _rate_row(
            f"storage events -> OpenWhisk trigger fires, stub fire endpoint (median of {rounds}x{n})",
            stub,
            f"the stub endpoint's own ceiling (wrk, {CONCURRENCY} connections)",
        ),
        _rate_row(
            f"storage events -> OpenWhisk trigger fires, fake OpenWhisk controller (median of {rounds}x{n})",
            fake,
            f"the fake controller's own ceiling (wrk, {CONCURRENCY} connections)",
        ),
        {
            "metric": f"OpenWhiskBackend.fire alone to the stub endpoint ({CONCURRENCY} threads, no bridge)",
            "value": stub["client"],
            "unit": "fires/s",
            "command": COMMAND,
            "load_avg_1m": _load(),
        },
    ]
    rows += _latency_rows("bridge share: inotify -> intake -> deliverer -> backend call", bridge_share(200))
    lags, setup = close_to_start(200 if quick else 1_000, 0.02)
    rows += _latency_rows("warm podman containers, local backend", lags, setup_s=round(setup, 1))
    return rows


if __name__ == "__main__":
    if "--fire-stub" in sys.argv:
        serve_fire_stub()
    elif "--fake-openwhisk" in sys.argv:
        serve_fake_openwhisk()
    else:
        print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
