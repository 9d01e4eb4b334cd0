"""Running faaspub the way its users do, for the end-to-end tests and ``bench/e2e.py``.

``faaspub serve`` and the CLI run as subprocesses of the test (``python -m publisher.cli``), so the
service, its background workers and every command read their own configuration and database exactly
as on an operator's machine. Nothing here stands in for a part of faaspub.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
FAASPUB = [sys.executable, "-m", "publisher.cli"]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without faaspub or engine settings that would leak into a run.

    ``FAASPUB_HOME`` stays: it is the test's own embedded state (tests/conftest.py), never the user's.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAASPUB_", "DOCKER_HOST")) or k == "FAASPUB_HOME"
    }
    return {**env, **(extra or {})}


def faaspub(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the faaspub CLI; on failure the assertion carries its stderr."""
    proc = subprocess.run(
        [*FAASPUB, *args], cwd=cwd, env=clean_env(env), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"faaspub {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def publish_result(stdout: str) -> dict[str, Any]:
    """The one function of ``faaspub publish --json`` (an object, or a list for several functions)."""
    printed = json.loads(stdout)
    [result] = printed if isinstance(printed, list) else [printed]
    return dict(result)


@dataclass
class Service:
    """A running ``faaspub serve`` subprocess (background workers and storage-event consumers on)."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **params: Any) -> Any:
        resp = self.session.get(f"{self.url}{path}", params=params, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown: workers stop, warm instances are removed), then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.session.close()


def start_service(
    workdir: Path, config: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 60
) -> Service:
    """``faaspub serve`` in ``workdir`` on a free port; returns once ``/healthz`` answers."""
    listen = f"127.0.0.1:{free_port()}"
    args = [*FAASPUB, "serve", "--listen", listen, *(["--config", str(config)] if config else [])]
    log = workdir / f"serve-{listen.rsplit(':', 1)[1]}.log"
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, cwd=workdir, env=clean_env(env), stdout=out, stderr=subprocess.STDOUT)
    service = Service(f"http://{listen}", proc, log)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"faaspub serve exited with {proc.returncode}:\n{service.output()[-3000:]}")
        try:
            return requests.get(f"{service.url}/healthz", timeout=1).ok
        except requests.ConnectionError:
            return False

    try:
        wait_for(healthy, timeout, "faaspub serve to answer /healthz", interval=0.05)
    except BaseException:
        service.stop()
        raise
    return service


def stop_private_podman(state_dir: Path) -> None:
    """Stop the podman service faaspub started under ``state_dir`` (embedded default) and its containers.

    faaspub starts it in its own session so that it outlives one command; the test that caused it
    stops it by the process id that owns its socket, then removes what it left behind.
    """
    root = (state_dir / "podman").resolve()
    sock = root / "podman.sock"
    for pid in _socket_owners(sock):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        _wait_gone(pid, 15)
    if (root / "storage.conf").is_file() and shutil.which("podman"):
        env = {
            **os.environ,
            "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
            "TMPDIR": str(root / "tmp"),
        }
        for args in (["rm", "--all", "--force", "--time", "0"], ["rmi", "--all", "--force"]):
            subprocess.run(["podman", *args], env=env, capture_output=True, timeout=120)


def _socket_owners(sock: Path) -> list[int]:
    """Process ids holding the listening unix socket ``sock`` (from /proc, no name matching)."""
    inodes = set()
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        # Flags 00010000 (__SO_ACCEPTCON): the listening socket, not the connections it accepted.
        if len(fields) >= 8 and fields[7] == str(sock) and fields[3] == "00010000":
            inodes.add(f"socket:[{fields[6]}]")
    owners = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            owners.append(int(proc.name))
    return owners


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


class Timeline:
    """Seconds since creation at named points (push-to-live measurements)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> float:
        self.marks[name] = round(time.monotonic() - self.started, 2)
        return self.marks[name]
