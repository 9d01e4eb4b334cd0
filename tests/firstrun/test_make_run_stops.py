"""``make run`` stops cleanly on SIGTERM, SIGHUP and SIGINT: no process and no mount left behind.

``make run`` is started in its own session, the way a terminal or a process manager starts it, on a
machine of its own (``FAASPUB_HOME``) and a free port, publishing only examples/hello. Once ready, a
file in the watched folder runs hello in a container of the service, so there is a container to stop
too. Then the whole session gets the signal (``timeout``, systemd and a closing terminal all signal
the group), and afterwards no process of that machine (serve, publish, podman, conmon, a container)
and no mount under its state directory may remain.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.stack import REPO_ROOT, clean_env, free_port, wait_for
from tests.firstrun.machine import leftovers, stop_session
from tests.infra.containers import require_tool

pytestmark = [pytest.mark.containers, pytest.mark.slow]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One machine for the three signals: the second start also proves a stopped machine starts again."""
    require_tool("podman")
    require_tool("make")
    state = tmp_path_factory.mktemp("make-run") / "home"
    yield state
    assert not leftovers(state)


def start_make_run(home: Path, port: int, log: Path) -> subprocess.Popen[str]:
    env = clean_env(
        {
            "FAASPUB_HOME": str(home),
            "FAASPUB_SERVER__LISTEN": f"127.0.0.1:{port}",
            "FAASPUB_RUN_EXAMPLES": "examples/hello",
        }
    )
    with open(log, "w") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_make_run_leaves_no_process_and_no_mount(home: Path, signum: signal.Signals, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "make-run.log"
    make = start_make_run(home, port, log)
    try:
        wait_for(
            lambda: "ready in" in log.read_text() or make.poll() is not None, 600, "make run to be ready"
        )
        output = log.read_text()
        assert make.poll() is None and "==> live: hello" in output, output
        assert "up to date" not in output and "\033[" not in output  # plain lines when not a terminal
        # The clock counts from make run's own start, and what to try names this machine's folder.
        assert "since make run started, install included" in output
        incoming = home / "data" / "incoming"
        assert f"cp examples/hello/README.md {incoming}/hello.txt" in output

        api = f"http://127.0.0.1:{port}/api/v1/activations"

        def successes() -> int:
            items = requests.get(api, params={"function": "hello"}, timeout=5).json()["items"]
            return sum(a["status"] == "success" for a in items)

        before = successes()  # the machine is reused: earlier runs left their activations
        (incoming / f"{signum.name}.txt").write_text("a storage event\n")
        wait_for(lambda: successes() > before, 120, "hello to run on the storage event")
        assert any("faaspub-hello" in p for p in _container_processes(home)), "no warm container to stop"
    finally:
        stop_session(make, signum)  # make waits for run.py's clean-up, then dies of the signal itself
    output = log.read_text()
    assert f"==> stopping ({signum.name})" in output and "==> stopped\n" in output, output[-3000:]
    assert "still mounted" not in output
    deadline = time.monotonic() + 10  # conmon's exit hooks finish right after the service
    while leftovers(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers(home), "\n".join(leftovers(home))


def _container_processes(home: Path) -> list[str]:
    """conmon processes of the machine's private podman (one per running container)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("/usr/bin/conmon") and str(home) in cmdline:
                found.append(cmdline)
    return found
