"""Runs runtime proxies as containers through the Docker API (Docker, or podman's API socket).

Every container is unprivileged: user 1000 of the runtime images (never root, never the owner of
the storage root), read-only root with a tmpfs ``/tmp``, all capabilities dropped,
``no-new-privileges``, an init process (so stop is fast), the version's memory limit and the
``backend.local`` pids and CPU limits. By default it has a network namespace of its own with
nothing in it (``network = "none"``, never bridge: that changes the host); the backend reaches the
proxy through a unix socket in a folder only that container shares. Of the local storage only the
folders the function's triggers watch are mounted, read-only, at their own paths (storage events
name the real file), plus its one ``output`` folder read-write. Images are
pulled by digest from their registry, or loaded from the local OCI layout as a docker archive.
Output is read through an attach stream opened before the container starts, so no line is missed
and logs arrive as the function prints them (the engine's log files are polled, an attach stream is not).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.utils.socket import frames_iter

from publisher.backends.catalogue import Deployed
from publisher.backends.executor import Endpoint, InstanceSpec, StartError, proxy_env, wait_ready
from publisher.backends.runlogs import LogCollector
from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.oci.engine import provide

log = logging.getLogger(__name__)

LABEL = "io.faaspub.backend"
OWNER = "io.faaspub.owner"
TMPFS = "rw,nosuid,nodev,size=64m"
FUNCTION_USER = (1000, 1000)  # the runtime images' unprivileged user
STREAM = {1: "stdout", 2: "stderr"}
# Where a container finds its proxy socket: the one folder it shares with the backend.
RUN_DIR = "/run/faaspub"


class DockerInstance:
    """One container running the proxy, with a thread reading its attach stream."""

    def __init__(
        self, client: docker.DockerClient, container: Any, endpoint: Endpoint, sock: Any, run_dir: Path | None
    ) -> None:
        self.client = client
        self.container = container
        self.endpoint = endpoint
        self.run_dir = run_dir
        self.logs = LogCollector()
        self._sock = sock
        self._stopped = False
        self._reader = threading.Thread(target=self._read, name=f"logs-{container.short_id}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for stream, data in frames_iter(self._sock, tty=False):
                self.logs.feed(STREAM.get(stream, "stdout"), data)
        except (OSError, ValueError):
            pass  # the stream ends when the container is removed
        finally:
            self.logs.close()

    def exit_reason(self) -> str | None:
        try:
            self.container.reload()
        except NotFound:
            return "container removed"
        if self.container.status in ("exited", "dead", "stopped"):
            code = self.container.attrs.get("State", {}).get("ExitCode")
            return f"exit status {code}"
        return None

    def alive(self) -> bool:
        return not self._stopped and not self.logs.closed

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.container.remove(force=True)
        except (NotFound, APIError) as exc:
            log.debug("removing container %s: %s", self.container.short_id, exc)
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


class DockerExecutor:
    """:class:`~publisher.backends.executor.Executor` on a Docker-compatible engine."""

    name = "docker"

    def __init__(self, settings: Settings, base_url: str) -> None:
        self.settings = settings
        try:
            self.client = docker.DockerClient(base_url=base_url)
            self.client.ping()
        except DockerException as exc:
            raise FaaspubError(
                f"cannot reach the container engine at {base_url}: {exc}",
                hint="start podman system service or Docker, or set backend.local.engine = 'process'",
            ) from None
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.local = settings.backend.local
        self.storage = Path(settings.storage.local.root).absolute()
        # Instance folders (sockets) are reached through their mounts only: a private (0700) folder,
        # in the temporary directory because a socket path must stay under 108 bytes.
        self.runs = Path(tempfile.mkdtemp(prefix="faaspub-run-"))
        self._images: dict[str, str] = {}  # digest -> local image name
        self._lock = threading.Lock()
        self._remove_orphans()

    def prepare(self, deployed: Deployed) -> None:
        with self._lock:
            if deployed.digest in self._images:
                return
            self._images[deployed.digest] = self._fetch(deployed)

    def _fetch(self, deployed: Deployed) -> str:
        try:
            return provide(self.client, self.settings, deployed.image, deployed.digest)
        except FaaspubError as exc:
            raise StartError(str(exc)) from None

    def start(self, spec: InstanceSpec) -> DockerInstance:
        deployed = spec.deployed
        image = self._images.get(deployed.digest)
        if image is None:
            self.prepare(deployed)
            image = self._images[deployed.digest]
        volumes = storage_volumes(self.storage, spec.reads, spec.writes)
        endpoint, run_dir, inner = spec.endpoint, None, None
        if self.local.network == "none":
            run_dir = self.runs / spec.name[-8:]  # the name ends in a random hex id
            run_dir.mkdir()
            _hand_to_function_user(run_dir, private=True)
            endpoint = Endpoint(socket_path=str(run_dir / "proxy.sock"), token=spec.endpoint.token)
            inner = f"{RUN_DIR}/proxy.sock"
            volumes[str(run_dir)] = {"bind": RUN_DIR, "mode": "rw"}
        try:
            container = self.client.containers.create(
                image,
                name=spec.name,
                detach=True,
                network_mode=self.local.network,
                user=f"{FUNCTION_USER[0]}:{FUNCTION_USER[1]}",
                read_only=True,
                tmpfs={"/tmp": TMPFS},
                volumes=volumes,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                init=True,
                mem_limit=f"{deployed.memory_mb}m",
                pids_limit=self.local.pids_limit,
                nano_cpus=int(self.local.cpus * 1e9),
                environment=proxy_env(spec.env, deployed, endpoint, inner),
                labels={
                    LABEL: "local",
                    OWNER: self.owner,
                    "io.faaspub.function": deployed.function,
                    "io.faaspub.version": deployed.version,
                },
            )
            sock = self.client.api.attach_socket(
                container.id, params={"stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
            )
            container.start()
        except DockerException as exc:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise StartError(f"cannot start {deployed.function}@{deployed.version}: {exc}") from None
        instance = DockerInstance(self.client, container, endpoint, sock, run_dir)
        try:
            wait_ready(endpoint, instance.exit_reason, f"{deployed.function}@{deployed.version}")
        except StartError:
            tail = instance.logs.take(0.2)
            instance.stop()
            if tail:
                log.warning("runtime output of %s: %s", spec.name, " | ".join(tail[-5:]))
            raise
        return instance

    def forget(self, deployed: Deployed) -> None:
        with self._lock:
            self._images.pop(deployed.digest, None)

    def _remove_orphans(self) -> None:
        """Remove containers left by faaspub processes on this host that no longer exist."""
        host = socket.gethostname()
        try:
            stale = self.client.containers.list(all=True, filters={"label": LABEL})
        except DockerException:
            return
        for container in stale:
            owner = container.labels.get(OWNER, "")
            owner_host, _, pid = owner.partition(":")
            if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(DockerException):
                    container.remove(force=True)

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self.runs, ignore_errors=True)


def storage_volumes(root: Path, reads: tuple[str, ...], writes: str | None) -> dict[str, dict[str, str]]:
    """Bind mounts of the storage folders one function may use, each at its own path.

    ``reads`` (the trigger folders) are read-only; ``writes`` (the function's output folder) is
    read-write and handed to the function's user when faaspub runs as root. A folder is created
    when missing; one that leads out of the storage root (a symbolic link) is refused.
    """
    volumes: dict[str, dict[str, str]] = {}
    for logical, mode in [*((path, "ro") for path in reads), *([(writes, "rw")] if writes else [])]:
        host = root / logical.lstrip("/")
        host.mkdir(parents=True, exist_ok=True)
        if not host.resolve().is_relative_to(root.resolve()):
            raise StartError(f"storage folder {logical} leads out of the local storage (a symbolic link)")
        if mode == "rw":
            _hand_to_function_user(host)
        volumes[str(host)] = {"bind": str(host), "mode": mode}  # the output wins over a read
    return volumes


def _hand_to_function_user(folder: Path, private: bool = False) -> None:
    """Let the function's user write ``folder`` (only the folder itself; nothing else is changed).

    Without root the folder cannot be given away; a rootless engine maps user 1000 to a
    subordinate id, so only a ``private`` folder (an instance's own, inside a 0700 parent) is made
    writable for everyone, and a storage folder is left as it is, with a warning.
    """
    if os.geteuid() == 0:
        os.chown(folder, *FUNCTION_USER)
    elif private:
        folder.chmod(0o777)
    else:
        log.warning("functions (user 1000) may not be able to write %s: faaspub is not root", folder)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
