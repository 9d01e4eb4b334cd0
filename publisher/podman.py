"""A private podman for the embedded defaults: no Docker daemon, nothing global changed.

When no container engine is configured (no ``DOCKER_HOST``, no ``backend.local.docker_host``),
faaspub runs podman's Docker-compatible API service with its own configuration and storage under
the state directory, reached through the ``CONTAINERS_*`` variables only. The service exits by itself
after a while without clients, so a command-line run leaves nothing behind for long.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from publisher.config import Settings
from publisher.errors import FaaspubError

IDLE_EXIT_S = 900


def write_config(root: Path, insecure_hosts: list[str]) -> dict[str, str]:
    """Write storage, engine and registry configuration under ``root``; return the environment to use it.

    runc, cgroupfs, host networking and explicit ulimits are what works without CAP_SYS_RESOURCE and
    with hybrid cgroups (see docs/decisions); bridge networking would change the host's firewall.
    """
    for sub in ("root", "runroot", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "root"}"\nrunroot = "{root / "runroot"}"\n'
    )
    (root / "containers.conf").write_text(
        "[containers]\n"
        'netns = "host"\n'
        'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
        "[engine]\n"
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{root / "events.log"}"\n'
        'runtime = "runc"\n'
        f'tmp_dir = "{root / "tmp"}"\n'
    )
    registries = ["unqualified-search-registries = []", 'short-name-mode = "disabled"']
    for host in insecure_hosts:
        registries += ["[[registry]]", f'location = "{host}"', "insecure = true"]
    (root / "registries.conf").write_text("\n".join(registries) + "\n")
    return config_env(root)


def config_env(root: Path) -> dict[str, str]:
    """The environment that points podman at the configuration :func:`write_config` wrote."""
    return {
        "CONTAINERS_STORAGE_CONF": str(root / "storage.conf"),
        "CONTAINERS_CONF": str(root / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
        "TMPDIR": str(root / "tmp"),
    }


def socket_alive(sock: Path) -> bool:
    """True when something answers the Docker API ``/_ping`` on the unix socket."""
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(2)
        try:
            client.connect(str(sock))
            client.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return client.recv(64).startswith(b"HTTP/1.")
        except OSError:
            return False


def start_service(
    env: dict[str, str], sock: Path, log: Path, idle_exit_s: int = IDLE_EXIT_S, timeout: float = 20.0
) -> subprocess.Popen[bytes]:
    """Start ``podman system service`` on ``sock`` and wait until it answers."""
    exe = shutil.which("podman")
    if exe is None:
        raise FaaspubError(
            "no container engine: podman is not installed and DOCKER_HOST is not set",
            hint="install podman (apt-get install podman runc) or set backend.local.engine = 'process'",
        )
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [exe, "system", "service", f"--time={idle_exit_s}", f"unix://{sock}"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the command that started it, until idle
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FaaspubError(f"podman system service exited with {proc.returncode}; see {log}")
        if socket_alive(sock):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise FaaspubError(f"podman system service did not answer on {sock} within {timeout:.0f}s; see {log}")


def private_root(settings: Settings) -> Path:
    """Where faaspub's private podman keeps its configuration, storage and socket."""
    return (settings.state_path / "podman").resolve()


def docker_host(settings: Settings) -> str:
    """The Docker API to use: ``DOCKER_HOST``, the configured one, or the private podman service."""
    configured = os.environ.get("DOCKER_HOST") or settings.backend.local.docker_host
    if configured:
        return configured
    root = private_root(settings)
    sock = root / "podman.sock"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the service and a CLI run may both get here first
        if not socket_alive(sock):
            insecure = [settings.registry.url.split("//", 1)[-1]] if settings.registry.url else []
            env = write_config(root, insecure)
            proc = start_service(env, sock, root / "service.log")
            (root / "service.pid").write_text(str(proc.pid))
    return f"unix://{sock}"


def stop_private_service(settings: Settings, timeout: float = 15.0) -> bool:
    """Stop the private podman service started for ``settings`` (if it runs); True when one was stopped.

    Its containers go first (they would outlive the service); once no service answers, the storage
    mounts it left under the state directory are released too.
    """
    root = private_root(settings)
    remove_containers(root)
    stopped = _terminate(root / "service.pid", timeout)
    if not socket_alive(root / "podman.sock"):
        release_mounts(root)
    return stopped


def remove_containers(root: Path) -> None:
    """Remove every container of the private podman under ``root`` (all are faaspub's).

    Through the podman command on the same storage, so containers whose service already stopped
    (they outlive it) go too.
    """
    exe = shutil.which("podman")
    if exe is None or not (root / "storage.conf").is_file():
        return
    subprocess.run(
        [exe, "rm", "--all", "--force", "--time", "0"],
        env={**os.environ, **config_env(root)},
        capture_output=True,
        timeout=120,
        check=False,
    )


def _terminate(pid_file: Path, timeout: float) -> bool:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


def _running(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our own child, exited and now reaped (a zombie still answers kill 0)
    except ChildProcessError:
        pass  # another process's child: its parent reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below ``root`` in this mount namespace, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with space, tab, newline and backslash written as octal escapes.
        point = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[4]))
        if point == root or point.is_relative_to(root):
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def release_mounts(root: Path) -> None:
    """Unmount what podman left mounted under ``root``.

    The overlay storage driver bind-mounts its directory onto itself and does not undo that when the
    service exits, which keeps the state directory from being removed. Without the right to unmount
    (rootless podman) there is nothing to release: its mounts live in its own namespace.
    """
    for point in mounts_under(root):
        subprocess.run(["umount", str(point)], capture_output=True, check=False)
