"""``faaspub dev``: a saved edit is live at the next invoke; a failing test keeps the previous version.

``faaspub dev --json`` runs as its own process on a fresh machine, watching a folder made by
``faaspub init``; saves are made the way editors make them (write beside, rename over), and
``faaspub invoke`` runs from another folder, so what is checked is what every other process sees.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.e2e.stack import FAASPUB, clean_env
from tests.firstrun.machine import leftovers, run, stop_session
from tests.infra.containers import require_tool

pytestmark = pytest.mark.containers

HANDLER = '''"""lab-fn: greets, and says which revision answered."""

REVISION = {revision}


def main(params: dict) -> dict:
    return {{"greeting": "{greeting}, " + params.get("name", "world") + "!", "revision": REVISION}}
'''
TEST = """from lab_fn import main


def test_greets_by_name() -> None:
    assert main({"name": "faaspub"})["greeting"] == "Hello, faaspub!"
"""


def save(folder: Path, revision: int, greeting: str = "Hello") -> None:
    tmp = folder / ".lab_fn.py.swp"  # an editor's scratch file first, then the rename
    tmp.write_text(HANDLER.format(revision=revision, greeting=greeting))
    tmp.replace(folder / "lab_fn.py")


def next_round(proc: subprocess.Popen[str], stdout: IO[str]) -> dict[str, Any]:
    line = stdout.readline()
    assert line, f"faaspub dev exited ({proc.poll()})"
    return dict(json.loads(line))


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    require_tool("podman")
    home, work = tmp_path / "home", tmp_path / "work"
    work.mkdir()
    run(home, work, "init", "lab-fn")
    folder = work / "lab-fn"
    (folder / "tests" / "test_lab_fn.py").write_text(TEST)
    save(folder, 0)
    yield home, folder
    from publisher.config import Settings
    from publisher.podman import stop_private_service

    stop_private_service(Settings(state_dir=str(home)))
    assert not leftovers(home)


def test_edit_goes_live_and_a_failing_test_keeps_the_previous_version(
    machine: tuple[Path, Path], tmp_path: Path
) -> None:
    home, folder = machine
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def invoke() -> dict[str, Any]:
        return dict(json.loads(run(home, elsewhere, "invoke", "lab-fn", "--json").stdout)["result"])

    dev = subprocess.Popen(
        [*FAASPUB, "dev", "--json"],
        cwd=folder,
        env=clean_env({"FAASPUB_HOME": str(home)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert dev.stdout is not None
    try:
        first = next_round(dev, dev.stdout)
        assert first["live"] and first["result"]["revision"] == 0, first
        assert invoke()["revision"] == 0

        save(folder, 1)
        edited = next_round(dev, dev.stdout)
        assert edited["live"] and edited["result"] == {"greeting": "Hello, faaspub!", "revision": 1}
        assert invoke() == {"greeting": "Hello, world!", "revision": 1}  # the next invoke: the new code

        save(folder, 2, greeting="Howdy")  # breaks test_greets_by_name and the scaffold's examples
        broken = next_round(dev, dev.stdout)
        assert not broken["live"] and broken["live_version"] == edited["version"]
        assert "test_greets_by_name" in broken["error"] and "Howdy, faaspub!" in broken["error"]
        assert any("test_greets_by_name" in f for f in broken["failures"])
        assert invoke()["revision"] == 1  # the previous version stays live
        listed = run(home, elsewhere, "ls", "--json").stdout
        assert broken["version"] not in listed  # the failed version was never left deployed
    finally:
        stop_session(dev, signal.SIGTERM, timeout=60)
    assert dev.returncode == 0, dev.stderr.read() if dev.stderr else ""
    # The warm test runner went with it (the private podman itself is stopped by the fixture).
    containers = subprocess.run(
        ["podman", "ps", "--all", "--format", "{{.Labels}}"],
        env={**clean_env(), **_podman_env(home)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dev-test-runner" not in containers


def _podman_env(home: Path) -> dict[str, str]:
    from publisher.config import Settings
    from publisher.podman import config_env, private_root

    return config_env(private_root(Settings(state_dir=str(home))))
