"""Push-to-live: from a release tag on a function repository to its first successful invocation.

* ``e2e_push_to_live_embedded_seconds``: journey 7 on the embedded defaults in a fresh folder
  (``faaspub serve`` already running): ``faaspub publish`` of the tagged examples/cxi-metadata
  (validate, build with numpy and h5py, test in the image, deploy, bind), then ``faaspub invoke``.
  Also the time from a CXI file copied into ``./data/incoming`` to its sidecar.
* ``e2e_push_to_live_gitlab_seconds`` (full mode): the timeline that tests/e2e/test_gitlab_path.py
  prints, so the figure comes from exactly the set-up the test asserts: the tag pipeline run by
  gitlab-ci-local (build cache warm, as on a runner with a cache volume), GitLab's Pipeline Hook to
  ``faaspub serve``, the release (Zenodo DOI, OpenWhisk deploy), then the first invocation on
  OpenWhisk (publishing the chained function in between is subtracted). GitLab, Zenodo, OpenWhisk
  and dCache are the test servers of tests/fakes.
* ``e2e_make_run_ready_seconds`` (full mode): ``scripts/run.py`` (what ``make run`` runs once the
  virtualenv is installed) in a fresh copy of the examples, until it prints "ready"; then a second
  start of the same folder (base image and dependency layers present).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.e2e import embedded  # noqa: E402
from tests.e2e.functions import write_cxi  # noqa: E402
from tests.e2e.stack import free_port, stop_private_podman, wait_for  # noqa: E402

GOAL_EMBEDDED_S = 60.0
GITLAB_TEST = "tests/e2e/test_gitlab_path.py"
TIMELINE = re.compile(r"push-to-live timeline \(s\): (\{.*\})")
GOAL_GITLAB_S = 120.0


def run(quick: bool) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-e2e-"))
    try:
        parts = os.environ.get("FAASPUB_BENCH_E2E_PARTS", "embedded,gitlab,make-run").split(",")
        rows = embedded_push_to_live(work / "embedded") if "embedded" in parts else []
        if not quick:
            rows += gitlab_push_to_live(work / "gitlab") if "gitlab" in parts else []
            rows += make_run_ready(work / "make-run") if "make-run" in parts else []
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def embedded_push_to_live(work: Path) -> list[dict[str, Any]]:
    work.mkdir(parents=True)
    embedded.prepare(work)
    machine = embedded.start(work)
    try:
        folder = embedded.function_checkout(work)
        started = time.monotonic()
        published = machine.publish(folder)
        run = machine.invoke(published["function"], {"selftest": True})
        live = time.monotonic() - started
        assert run["status"] == "success", run
        cxi = write_cxi(work / "run0001.cxi")
        started = time.monotonic()
        shutil.copy(cxi, machine.incoming / cxi.name)
        wait_for((machine.incoming / f"{cxi.name}.metadata.json").is_file, 60, "the sidecar")
        sidecar = time.monotonic() - started
    finally:
        machine.stop()
    return [
        {
            "metric": "e2e_push_to_live_embedded_seconds",
            "value": round(live, 2),
            "unit": "s",
            "command": "faaspub publish examples/cxi-metadata (tag v1.0.0, fresh folder) + faaspub invoke",
            "goal": GOAL_EMBEDDED_S,
        },
        {
            "metric": "e2e_file_to_sidecar_embedded_seconds",
            "value": round(sidecar, 2),
            "unit": "s",
            "command": "cp run.cxi data/incoming/ until run.cxi.metadata.json exists (cold instance)",
        },
    ]


def gitlab_push_to_live(work: Path) -> list[dict[str, Any]]:
    """The GitLab path as tests/e2e/test_gitlab_path.py runs it (same fixtures), from its timeline."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            f"--basetemp={work}",
            GITLAB_TEST,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    found = TIMELINE.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"{GITLAB_TEST} failed:\n{proc.stdout[-3000:]}")
    marks = json.loads(found.group(1))
    pipeline, live, first = marks["pipeline"], marks["live"], marks["first invocation"]
    # The chained function is published (CLI) between the pipeline and the hook: not part of the path.
    setup = marks["chain published"] - pipeline
    return [
        {
            "metric": "e2e_push_to_live_gitlab_seconds",
            "value": round(first - setup, 2),
            "unit": "s",
            "command": "gitlab-ci-local tag pipeline + Pipeline Hook + release + first OpenWhisk invocation",
            "goal": GOAL_GITLAB_S,
        },
        {
            "metric": "e2e_gitlab_pipeline_seconds",
            "value": pipeline,
            "unit": "s",
            "command": "validate, build, test, release of examples/cxi-metadata (runner cache warm)",
        },
        {
            "metric": "e2e_gitlab_hook_to_live_seconds",
            "value": round(live - marks["hook"], 2),
            "unit": "s",
            "command": "Pipeline Hook -> release worker -> Zenodo DOI, OpenWhisk deploy, GitLab status",
        },
        {
            "metric": "e2e_gitlab_first_invocation_seconds",
            "value": round(first - live, 2),
            "unit": "s",
            "command": "faaspub invoke cxi-metadata on OpenWhisk (image pull + cold container)",
        },
        {
            "metric": "e2e_gitlab_file_to_chained_output_seconds",
            "value": round(marks["chained output"] - first, 2),
            "unit": "s",
            "command": "CXI file PUT to dCache -> cxi-metadata sidecar -> chain-index output (OpenWhisk)",
        },
    ]


def make_run_ready(work: Path) -> list[dict[str, Any]]:
    """``scripts/run.py`` in a copy holding only what it uses (scripts/ and examples/)."""
    for part in ("scripts", "examples"):
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__", ".faaspub"))
    first = _time_to_ready(work)
    second = _time_to_ready(work)
    stop_private_podman(work / "home")
    command = "make run (scripts/run.py: base image, serve, publish hello, cxi-metadata, chain) until 'ready'"
    return [
        {
            "metric": "e2e_make_run_ready_seconds",
            "value": first,
            "unit": "s",
            "command": command + ", fresh folder",
        },
        {
            "metric": "e2e_make_run_ready_again_seconds",
            "value": second,
            "unit": "s",
            "command": command + ", second start of the same folder",
        },
    ]


def _time_to_ready(work: Path, timeout: float = 600) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAASPUB_", "DOCKER_HOST"))}
    env["FAASPUB_SERVER__LISTEN"] = f"127.0.0.1:{free_port()}"
    env["FAASPUB_HOME"] = str(work / "home")  # a fresh machine's state, never the user's
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(work / "scripts" / "run.py")],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        output = []
        for line in proc.stdout:
            output.append(line)
            if "ready in" in line:
                return round(time.monotonic() - started, 2)
            if time.monotonic() - started > timeout:
                break
        raise RuntimeError("scripts/run.py did not get ready:\n" + "".join(output[-30:]))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


if __name__ == "__main__":
    for row in run(quick="--full" not in sys.argv):
        print(row)
