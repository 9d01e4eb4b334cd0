"""Runs runtime proxies as containers through the Docker API (Docker, or podman's API socket).

Every container is unprivileged and uses the host network (never bridge: it changes the host):
read-only root with a tmpfs ``/tmp``, all capabilities dropped, ``no-new-privileges``, an init
process (so stop is fast), the version's memory limit. The local storage root is mounted at its own
path (storage events name the real file, and outputs go next to it), and the function runs as the
owner of that directory, so it can read and write there and nowhere else on the host. Images are
pulled by digest from their registry, or loaded from the local OCI layout as a docker archive.
Output is read through an attach stream opened before the container starts, so no line is missed
and logs arrive as the function prints them (the engine's log files are polled, an attach stream is not).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, DockerException, NotFound
from docker.utils.socket import frames_iter

from publisher.backends.catalogue import Deployed
from publisher.backends.executor import InstanceSpec, StartError, proxy_env, wait_ready
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


class DockerInstance:
    """One container running the proxy, with a thread reading its attach stream."""

    def __init__(self, client: docker.DockerClient, container: Any, port: int, sock: Any) -> None:
        self.client = client
        self.container = container
        self.port = port
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
        self.storage, self.user = storage_mount(settings)
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
        try:
            container = self.client.containers.create(
                image,
                name=spec.name,
                detach=True,
                network_mode="host",
                user=self.user,
                read_only=True,
                tmpfs={"/tmp": TMPFS},
                volumes={self.storage: {"bind": self.storage, "mode": "rw"}},
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                init=True,
                mem_limit=f"{deployed.memory_mb}m",
                environment=proxy_env(spec.env, deployed, spec.port),
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
            raise StartError(f"cannot start {deployed.function}@{deployed.version}: {exc}") from None
        instance = DockerInstance(self.client, container, spec.port, sock)
        try:
            wait_ready(spec.port, instance.exit_reason, f"{deployed.function}@{deployed.version}")
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


def storage_mount(settings: Settings) -> tuple[str, str]:
    """The local storage root (created if missing) and the ``uid:gid`` functions run as.

    Functions run as the owner of the storage root so they can write outputs next to their inputs,
    but never as root: a root-owned storage root (faaspub itself running as root) is handed to the
    runtime's unprivileged user, directories only, once.
    """
    root = Path(settings.storage.local.root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    st = root.stat()
    if st.st_uid != 0:
        return str(root), f"{st.st_uid}:{st.st_gid}"
    if os.geteuid() == 0:
        for directory, _subdirs, _files in os.walk(root):
            os.chown(directory, *FUNCTION_USER)
    else:
        log.warning("storage root %s belongs to root: functions (uid 1000) cannot write there", root)
    return str(root), f"{FUNCTION_USER[0]}:{FUNCTION_USER[1]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
