"""Runtime proxy benchmarks: warm ``/run`` overhead of a no-op handler, in a process and in a container,
and the container cold start (``podman run`` until ``/init`` has answered).

``run(quick)`` starts everything it needs (a proxy process; for the container figures a
``docker-registry``, the offline base image plus a no-op function layer, podman with a private
configuration) on random loopback ports and stops it all at the end. Without podman or the registry
the container figures are left out and the in-process ones still reported.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUNTIME_SRC = ROOT / "runtime-images" / "python"

NOOP = "def main(params):\n    return {}\n"
RUN_BODY = json.dumps({"value": {"name": "bench"}, "activation_id": "0" * 32, "namespace": "guest"}).encode()
HEADERS = {"Content-Type": "application/json"}
GOAL_WARM_MS = 1.0
GOAL_COLD_MS = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    conn.request("POST", path, body, HEADERS)
    answer = conn.getresponse()
    answer.read()
    return answer.status


def _wait_init(port: int, deadline_s: float = 30.0) -> None:
    """POST /init until it answers 200 (connection refused while the proxy is not up yet)."""
    body = json.dumps({"value": {}}).encode()
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            status = _post(conn, "/init", body)
            conn.close()
            if status != 200:
                raise RuntimeError(f"/init answered {status}")
            return
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)


def warm_latencies(port: int, calls: int) -> list[float]:
    """Milliseconds per ``/run`` on one kept-alive connection (what an invoker does), after a warm-up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(min(200, calls)):
        _post(conn, "/run", RUN_BODY)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        status = _post(conn, "/run", RUN_BODY)
        times.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise RuntimeError(f"/run answered {status}")
    conn.close()
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency_records(where: str, times: list[float], command: str) -> list[dict[str, Any]]:
    return [
        {
            "metric": f"runtime warm /run no-op p50 ({where})",
            "value": round(statistics.median(times), 3),
            "unit": "ms",
            "goal": GOAL_WARM_MS if where == "process" else None,
            "command": command,
        },
        {
            "metric": f"runtime warm /run no-op p99 ({where})",
            "value": round(_percentile(times, 0.99), 3),
            "unit": "ms",
            "command": command,
        },
    ]


def in_process(calls: int, work: Path) -> list[dict[str, Any]]:
    action = work / "action"
    (action / ".faaspub").mkdir(parents=True)
    (action / "noop.py").write_text(NOOP)
    (action / ".faaspub" / "handler.json").write_text(json.dumps({"handler": "noop:main"}))
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(RUNTIME_SRC),
        "FAASPUB_ACTION_DIR": str(action),
        "FAASPUB_PROXY_HOST": "127.0.0.1",
        "FAASPUB_PROXY_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "faaspub_runtime.proxy"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_init(port)
        times = warm_latencies(port, calls)
    finally:
        proc.terminate()
        proc.wait(10)
    return _latency_records("process", times, f"python -m faaspub_runtime.proxy; {calls} calls, keep-alive")


def in_container(calls: int, starts: int, work: Path) -> list[dict[str, Any]]:
    from publisher.oci.layer import build_layer
    from publisher.oci.registry import RegistryClient
    from publisher.oci.transfer import append_layers, fetch_image
    from publisher.podman import write_config
    from publisher.runtime.base import BASE_REPOSITORY, build_base
    from tests.infra.containers import cache_root, run_podman, start_registry

    registry = start_registry(work / "registry")
    podman_env = write_config(work / "podman", [registry.host])
    try:
        store = RegistryClient(registry.url, insecure=True)
        built = build_base("3.11", store, cache_dir=cache_root())
        base = fetch_image(store, BASE_REPOSITORY, built.tag)
        layer = build_layer(
            {"noop.py": NOOP.encode(), ".faaspub/handler.json": b'{"handler": "noop:main"}'}, prefix="/action"
        )
        digest = append_layers(store, base, "bench/runtime-noop", "bench", [(layer, "COPY noop /action")])
        image = f"{registry.host}/bench/runtime-noop@{digest}"
        run_podman(podman_env, "pull", "--quiet", image)

        def podman_run(port: int, *command: str) -> list[str]:
            return [
                shutil.which("podman") or "podman",
                "run",
                "--rm",
                "--init",
                "--network",
                "host",
                "--read-only",
                "--tmpfs",
                "/tmp",
                "--name",
                f"faaspub-bench-{uuid.uuid4().hex[:10]}",
                "--env",
                "FAASPUB_PROXY_HOST=127.0.0.1",
                "--env",
                f"FAASPUB_PROXY_PORT={port}",
                image,
                *command,
            ]

        cold, bare, warm = [], [], []
        for i in range(starts):
            port = _free_port()
            start = time.perf_counter()
            proc = subprocess.Popen(
                podman_run(port),
                env={**os.environ, **podman_env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_init(port)
                cold.append((time.perf_counter() - start) * 1000)
                if i == 0:
                    warm = warm_latencies(port, calls)
            finally:
                proc.terminate()  # podman forwards SIGTERM; --init makes the proxy stop at once
                proc.wait(30)
            start = time.perf_counter()
            subprocess.run(
                podman_run(0, "python3", "-c", "pass"),
                env={**os.environ, **podman_env},
                capture_output=True,
                check=True,
            )
            bare.append((time.perf_counter() - start) * 1000)
        cold_p50, bare_p50 = statistics.median(cold), statistics.median(bare)
        command = "podman run --rm --init --network host --read-only --tmpfs /tmp (runc, overlay)"
        return [
            *_latency_records("container", warm, f"{command}; {calls} calls, keep-alive"),
            {
                "metric": "runtime cold start: podman run until /init answered (p50)",
                "value": round(cold_p50, 1),
                "unit": "ms",
                "goal": GOAL_COLD_MS,
                "peer": "podman run … python3 -c pass (same image)",
                "peer_value": round(bare_p50, 1),
                "ratio": round(cold_p50 / bare_p50, 2),
                "command": f"{command}; {starts} starts",
            },
        ]
    finally:
        run_podman(podman_env, "rm", "--all", "--force", "--time", "0", check=False)
        run_podman(podman_env, "rmi", "--all", "--force", check=False)
        registry.stop()


def run(quick: bool) -> list[dict[str, Any]]:
    calls = 2_000 if quick else 10_000
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-runtime-"))
    try:
        results = in_process(calls, work)
        if shutil.which("podman") and shutil.which("docker-registry"):
            results += in_container(calls, 5 if quick else 15, work)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(quick="--full" not in sys.argv), indent=2))
