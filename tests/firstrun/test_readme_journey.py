"""The README's "Write a function", word for word, from separate folders and processes (issue 14).

A fresh machine (its own ``FAASPUB_HOME``): ``faaspub serve`` runs from one folder; in a second,
``faaspub init`` with the default runtime, then inside the new function's folder ``faaspub validate``,
``pytest`` and ``faaspub publish``; from a third folder ``faaspub invoke``, ``faaspub ls`` and
``faaspub status``. The service's catalogue lists the function and a file landing in the watched
folder runs it. Nothing is configured: every process finds the same state through ``FAASPUB_HOME``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.stack import Service, clean_env, start_service, wait_for
from tests.firstrun.machine import leftovers, run
from tests.infra.containers import require_tool

pytestmark = pytest.mark.containers
NAME = "cxi-peaks"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    require_tool("podman")
    state = tmp_path / "machine-home"
    yield state
    from publisher.config import Settings
    from publisher.podman import stop_private_service

    stop_private_service(Settings(state_dir=str(state)))
    assert not leftovers(state)


@pytest.fixture
def service(home: Path, tmp_path: Path) -> Iterator[Service]:
    folder = tmp_path / "terminal-1"
    folder.mkdir()
    running = start_service(folder, env={"FAASPUB_HOME": str(home)})
    try:
        yield running
    finally:
        running.stop()


def test_write_a_function_from_its_own_folder(home: Path, service: Service, tmp_path: Path) -> None:
    work, elsewhere = tmp_path / "terminal-2", tmp_path / "terminal-3"
    work.mkdir()
    elsewhere.mkdir()

    created = run(home, work, "init", NAME)
    assert "note:" not in created.stderr  # the default runtime needs no outside registry
    folder = work / NAME
    assert "runtime: python:3.13" in (folder / "function.yaml").read_text()
    assert "ok: cxi-peaks" in run(home, folder, "validate").stderr
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0 and "2 passed" in tests.stdout, tests.stdout + tests.stderr

    # Inside the function's folder, with no argument; the runtime base is built on first use.
    published = json.loads(run(home, folder, "publish", "--json").stdout)
    assert published["function"] == NAME and published["backend"] == "local"
    assert published["image"].startswith(f"oci:{home}/oci:functions/local/{NAME}:")

    answer = json.loads(run(home, elsewhere, "invoke", NAME, "--data", '{"name": "you"}', "--json").stdout)
    assert answer["status"] == "success" and answer["result"] == {"greeting": "Hello, you!"}, answer
    listed = run(home, elsewhere, "ls").stdout
    assert "files created matching *.json in local:/incoming" in listed and "None:None" not in listed
    # The service listens on a free port here, not 8080: status is told so, as faaspub.toml would.
    listen = service.url.removeprefix("http://")
    status = json.loads(run(home, elsewhere, "status", "--json", FAASPUB_SERVER__LISTEN=listen).stdout)
    assert status["state"] == str(home) and status["configuration"] is None
    assert status["service"]["answers"] is True
    assert status["functions"] == [f"local/{NAME}"] and "python:3.13" in status["runtime_bases"]

    # The running service sees what the CLI published: its catalogue, and a file that lands.
    catalogue = requests.get(f"{service.url}/api/v1/functions", timeout=10).json()
    assert [f["name"] for f in catalogue["items"]] == [NAME]
    incoming = home / "data" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "run0001.json").write_text('{"frames": 3}')

    def storage_run() -> dict[str, object] | None:
        items = service.get("/api/v1/activations", function=NAME)["items"]
        return next((a for a in items if a["cause"] != "cli" and a["status"] != "pending"), None)

    activation = wait_for(storage_run, 90, f"the storage event to run {NAME} ({service.output()[-2000:]})")
    assert activation["status"] == "success", activation
