"""``faaspub dev``: from saving a code change to the new version answering, next to a full publish.

In a fresh ``FAASPUB_HOME`` (embedded defaults: local OCI layout, local backend on faaspub's private
podman), a function made by ``faaspub init`` (default runtime) gets a handler whose result carries a
revision number. ``faaspub dev --json`` watches it; each sample saves the handler with the next
revision and waits for the round's line, which ``faaspub dev`` prints only once the new version is
live and an invoke through the local backend answered with that revision. The same kind of change
is then published with ``faaspub publish`` (validate, build, test in containers, deploy), in the
same run and folder, as the peer figure.

* ``dev.code_change_live_ms`` (p50, goal < 1000 ms) and ``dev.code_change_live_p90_ms``;
* peer: ``faaspub publish`` of a code-only change (p50), the whole command.

Quick mode: 9 dev samples and 3 publishes; full: 31 and 7.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from publisher.config import Settings  # noqa: E402
from publisher.podman import stop_private_service  # noqa: E402

FAASPUB = [sys.executable, "-m", "publisher.cli"]
NAME = "bench-dev"
GOAL_MS = 1000.0
HANDLER = '''"""bench-dev: greets, and says which revision of the code answered."""

REVISION = {revision}


def main(params: dict) -> dict:
    name = params.get("name", "world")
    return {{"greeting": f"Hello, {{name}}!", "revision": REVISION}}
'''
TEST = """from bench_dev import main


def test_greets_by_name() -> None:
    assert main({"name": "faaspub"})["greeting"] == "Hello, faaspub!"
"""


def run(quick: bool) -> list[dict[str, Any]]:
    samples, publishes = (9, 3) if quick else (31, 7)
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-dev-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAASPUB_", "DOCKER_HOST"))}
    env["FAASPUB_HOME"] = str(work / "home")
    try:
        folder = _function(work, env)
        live_ms = _dev_samples(folder, env, samples)
        publish_ms = _publish_samples(folder, env, publishes, first_revision=samples + 1)
    finally:
        stop_private_service(Settings(state_dir=env["FAASPUB_HOME"]))
        shutil.rmtree(work, ignore_errors=True)
    p50, publish_p50 = statistics.median(live_ms), statistics.median(publish_ms)
    command = "faaspub dev: save the handler -> rebuilt, tested, live, invoke answered (local backend)"
    return [
        {
            "metric": "dev.code_change_live_ms",
            "value": round(p50, 1),
            "unit": "ms",
            "command": command + f", p50 of {samples}",
            "peer": "faaspub publish of the same kind of change (whole pipeline)",
            "peer_value": round(publish_p50, 1),
            "ratio": round(publish_p50 / p50, 2),
            "goal": f"< {GOAL_MS:.0f} ms",
        },
        {
            "metric": "dev.code_change_live_p90_ms",
            "value": round(statistics.quantiles(live_ms, n=10)[-1], 1),
            "unit": "ms",
            "command": command + f", p90 of {samples}",
        },
    ]


def _function(work: Path, env: dict[str, str]) -> Path:
    subprocess.run([*FAASPUB, "init", NAME], cwd=work, env=env, check=True, capture_output=True)
    folder = work / NAME
    (folder / "tests" / "test_bench_dev.py").write_text(TEST)
    _save(folder, 0)
    return folder


def _save(folder: Path, revision: int) -> None:
    # Written beside and renamed over the handler, as editors save.
    tmp = folder / ".bench_dev.py.new"
    tmp.write_text(HANDLER.format(revision=revision))
    tmp.replace(folder / "bench_dev.py")


def _dev_samples(folder: Path, env: dict[str, str], samples: int) -> list[float]:
    proc = subprocess.Popen(
        [*FAASPUB, "dev", str(folder), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        _next_round(proc, proc.stdout, revision=0, timeout=600)
        times = []
        for revision in range(1, samples + 1):
            time.sleep(0.5)  # separate saves, as a person makes them
            started = time.perf_counter()
            _save(folder, revision)
            _next_round(proc, proc.stdout, revision, timeout=120)
            times.append((time.perf_counter() - started) * 1000)
        return times
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _next_round(proc: subprocess.Popen[str], stdout: IO[str], revision: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            assert proc.stderr is not None
            raise RuntimeError(f"faaspub dev exited ({proc.poll()}): {proc.stderr.read()[-3000:]}")
        round_ = json.loads(line)
        if round_.get("live") and (round_.get("result") or {}).get("revision") == revision:
            return
        if not round_.get("live"):
            raise RuntimeError(f"revision {revision} did not go live: {round_.get('error')}")
    raise RuntimeError(f"revision {revision} was not live within {timeout:.0f}s")


def _publish_samples(folder: Path, env: dict[str, str], publishes: int, first_revision: int) -> list[float]:
    times = []
    for revision in range(first_revision, first_revision + publishes):
        _save(folder, revision)
        started = time.perf_counter()
        subprocess.run(
            [*FAASPUB, "publish", str(folder), "--json"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
