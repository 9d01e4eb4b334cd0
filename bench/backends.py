"""Backend benchmarks: the local backend on podman, and OpenWhisk deploys against the fake controller.

* local cold start: first invoke of a version (container create + start + ``/init`` + ``/run``), the
  image already pulled; median of three;
* local warm invoke p50/p99 over 5,000 sequential calls (quick: 1,000) of a trivial function, end to
  end through :meth:`LocalBackend.invoke` (catalogue lookup, ``/run`` over keep-alive HTTP, log
  markers through the engine's attach stream, activation record in SQLite). The peer is the bare
  ``/run`` round trip to the same warm runtime proxy, so the ratio is the backend's own overhead;
* throughput with 1, 4 and 16 concurrent clients (limits.concurrency 1, up to 4 instances);
* OpenWhisk deploy latency: package, versioned action, alias and the registry tag check against
  ``tests/fakes/openwhisk_server.py`` on loopback.

``run(quick)`` starts its own registry, private podman configuration and podman API service, and
stops and removes them at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from publisher.backends.local import LocalBackend
from publisher.backends.openwhisk import OpenWhiskBackend
from publisher.backends.pool import Channel
from publisher.oci.registry import RegistryClient
from publisher.podman import start_service, write_config
from publisher.runtime.base import BASE_REPOSITORY, build_base
from tests.backends.conftest import make_context
from tests.backends.images import build_function_image, make_release
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.infra.containers import BaseImage, cache_root, start_registry

TRIVIAL = "def main(params):\n    return {'ok': True}\n"
COMMAND = "python bench/backends.py"


def _pct(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _row(metric: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "value": round(value, 3), "unit": unit, "command": COMMAND, **extra}


def _local(backend: LocalBackend, calls: int) -> list[dict[str, Any]]:
    rows = []
    deployed = backend.catalogue.resolve("bench", "trivial")
    backend.executor.prepare(deployed)
    cold = []
    for _ in range(3):
        backend._close_pools("bench", "trivial", None)
        start = time.perf_counter()
        assert backend.invoke("bench", "trivial", {}).ok
        cold.append((time.perf_counter() - start) * 1000)
    rows.append(_row("local_cold_start_ms", statistics.median(cold), "ms"))

    for _ in range(50):
        backend.invoke("bench", "trivial", {})
    warm = []
    for _ in range(calls):
        start = time.perf_counter()
        backend.invoke("bench", "trivial", {})
        warm.append((time.perf_counter() - start) * 1000)

    # Peer: the bare /run round trip to the same warm proxy (what any backend must at least pay).
    worker = backend._pools[deployed.key].workers[0]
    channel = Channel(worker.instance.endpoint)
    body = json.dumps({"value": {}, "deadline": int(time.time() * 1000) + 60_000}).encode()
    raw = []
    for _ in range(calls):
        start = time.perf_counter()
        channel.post("/run", body, timeout=10)
        raw.append((time.perf_counter() - start) * 1000)
    channel.close()
    worker.logs.take(0.5)
    p50, raw50 = statistics.median(warm), statistics.median(raw)
    rows.append(
        _row(
            "local_warm_invoke_p50",
            p50,
            "ms",
            goal="< 5 ms",
            peer="direct /run to the runtime proxy",
            peer_value=round(raw50, 3),
            ratio=round(p50 / raw50, 2),
        )
    )
    rows.append(
        _row(
            "local_warm_invoke_p99",
            _pct(warm, 99),
            "ms",
            peer="direct /run to the runtime proxy",
            peer_value=round(_pct(raw, 99), 3),
        )
    )
    rows.append(_row("local_warm_invoke_overhead_p50", p50 - raw50, "ms", goal="< 5 ms"))

    per_level = max(200, calls // 5)
    for clients in (1, 4, 16):
        with ThreadPoolExecutor(clients) as pool:
            # Warm-up at this concurrency, so instance start-ups are not part of the measurement.
            list(pool.map(lambda _: backend.invoke("bench", "trivial", {}).ok, range(clients * 10)))
            start = time.perf_counter()
            results = list(pool.map(lambda _: backend.invoke("bench", "trivial", {}).ok, range(per_level)))
            elapsed = time.perf_counter() - start
        assert all(results)
        rows.append(_row(f"local_throughput_{clients}_clients", per_level / elapsed, "invokes/s"))
    return rows


def _openwhisk(tmp: Path, base: BaseImage, rounds: int) -> list[dict[str, Any]]:
    image = build_function_image(base, "owbench", "1.0.0", TRIVIAL)
    with OpenWhiskServer() as server:
        (tmp / "ow").mkdir()
        (tmp / "ow" / "auth").write_text(server.auth)
        settings = {"api_host": server.url, "auth_file": str(tmp / "ow" / "auth")}
        context = make_context(tmp / "ow", kind="openwhisk", openwhisk=settings)
        backend = context.backend
        assert isinstance(backend, OpenWhiskBackend)
        times = []
        for i in range(rounds):
            release = make_release("owbench", f"1.0.{i}", image)
            start = time.perf_counter()
            backend.deploy(release)
            times.append((time.perf_counter() - start) * 1000)
        requests_per_deploy = len(server.controller.requests) / rounds
        backend.close()
        context.engine.dispose()
    return [
        _row("openwhisk_deploy_p50", statistics.median(times), "ms"),
        _row("openwhisk_deploy_api_requests", requests_per_deploy, "requests"),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    calls = 1000 if quick else 5000
    tmp = Path(tempfile.mkdtemp(prefix="faaspub-bench-backends-"))
    registry = start_registry(tmp / "registry")
    podman_env = write_config(tmp / "podman", [registry.host])
    env = {**os.environ, **podman_env}
    sock = tmp / "podman.sock"
    service = start_service(podman_env, sock, tmp / "podman-service.log", idle_exit_s=0)
    backend: LocalBackend | None = None
    try:
        store = RegistryClient(registry.url, insecure=True)
        built = build_base("3.11", store, cache_dir=cache_root())
        base = BaseImage(f"{registry.host}/{BASE_REPOSITORY}", built.tag, built.digest, registry)
        image = build_function_image(base, "trivial", "1.0.0", TRIVIAL)
        context = make_context(
            tmp / "local", kind="local", local={"engine": "docker", "docker_host": f"unix://{sock}"}
        )
        local = context.backend
        assert isinstance(local, LocalBackend)
        backend = local
        local.deploy(make_release("trivial", "1.0.0", image, namespace="bench"))
        rows = _local(local, calls)
        rows += _openwhisk(tmp, base, 5 if quick else 30)
        return rows
    finally:
        if backend is not None:
            backend.close()
        subprocess.run(["podman", "rm", "--all", "--force", "--time", "0"], env=env, capture_output=True)
        service.terminate()
        service.wait(timeout=10)
        subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True)
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
