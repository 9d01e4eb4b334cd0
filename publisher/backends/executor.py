"""What the local backend needs from whatever runs the runtime proxy: a container engine or a process.

An :class:`Executor` prepares a version's image once and starts :class:`Instance` objects: a
running ``faaspub_runtime.proxy`` at an :class:`Endpoint` (a unix socket shared with the container,
or ``127.0.0.1:PORT``) that answers only requests carrying the instance's own token, and whose
output feeds a :class:`~publisher.backends.runlogs.LogCollector`. :func:`make_executor` picks the
engine from ``backend.local.engine``: ``docker`` (Docker or podman's API socket), ``process``
(no isolation: only when chosen explicitly), or ``auto`` (the configured socket; without one,
faaspub's private podman service; without podman, an error rather than unisolated processes).
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from faaspub_runtime.identity import environment as identity_environment

from publisher.backends.catalogue import Deployed
from publisher.backends.runlogs import LogCollector
from publisher.config import Settings
from publisher.errors import ConfigError, FaaspubError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0


class StartError(FaaspubError):
    """An instance could not be started (engine failure, image missing, proxy exited)."""


class InitFailed(StartError):
    """The runtime started but ``/init`` failed: the function's own fault (a developer error)."""


TOKEN_HEADER = "X-Faaspub-Proxy-Token"  # faaspub_runtime.proxy.TOKEN_HEADER


@dataclass(frozen=True)
class Endpoint:
    """Where one instance's proxy listens, and the token it expects on every request."""

    port: int = 0
    socket_path: str | None = None
    token: str = field(default="", repr=False)

    def connect(self, timeout: float) -> socket.socket:
        if self.socket_path is None:
            return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        return sock

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        """A keep-alive HTTP connection to the proxy (not yet connected)."""
        if self.socket_path is None:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return _UnixConnection(self, timeout)

    @property
    def headers(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.token} if self.token else {}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._endpoint = endpoint

    def connect(self) -> None:
        assert self.timeout is not None
        self.sock = self._endpoint.connect(self.timeout)


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to start: the version, its environment (secrets included) and where it listens.

    ``reads`` are the storage folders its triggers watch (mounted read-only) and ``writes`` the one
    folder it may write (its manifest's ``output``), both as paths below ``storage.local.root``.
    """

    deployed: Deployed
    env: dict[str, str] = field(repr=False)
    endpoint: Endpoint
    name: str
    reads: tuple[str, ...] = ()
    writes: str | None = None


class Instance(Protocol):
    """A running runtime proxy."""

    endpoint: Endpoint
    logs: LogCollector

    def alive(self) -> bool: ...

    def stop(self) -> None: ...


class Executor(Protocol):
    """Prepares images and starts instances; thread-safe."""

    name: str

    def prepare(self, deployed: Deployed) -> None: ...

    def start(self, spec: InstanceSpec) -> Instance: ...

    def forget(self, deployed: Deployed) -> None:
        """Drop what :meth:`prepare` cached for a version that is gone."""
        ...

    def close(self) -> None: ...


def free_port() -> int:
    """A free loopback port; the proxy binds it next (a lost race is retried by the pool)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(endpoint: Endpoint, exited: Callable[[], str | None], what: str) -> None:
    """Wait until the proxy accepts connections; ``exited()`` returns a reason once it died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.002
    where = endpoint.socket_path or f"port {endpoint.port}"
    while True:
        try:
            with endpoint.connect(timeout=0.5):
                return
        except OSError:
            reason = exited()
            if reason is not None:
                raise StartError(f"{what}: the runtime exited before it was ready ({reason})") from None
            if time.monotonic() > deadline:
                raise StartError(
                    f"{what}: the runtime did not listen on {where} in {READY_TIMEOUT_S:.0f}s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def proxy_env(
    spec_env: dict[str, str], deployed: Deployed, endpoint: Endpoint, socket_path: str | None = None
) -> dict[str, str]:
    """The runtime's settings (contract of ``faaspub_runtime.proxy``) and the version's identity
    (:mod:`faaspub_runtime.identity`) on top of the function's env.

    ``socket_path``: the proxy's socket as the runtime sees it (inside its container).
    """
    identity = identity_environment(
        namespace=deployed.namespace,
        name=deployed.function,
        version=deployed.version,
        digest=deployed.digest,
        image=deployed.image,
        doi=deployed.doi,
    )
    where = (
        {"FAASPUB_PROXY_SOCKET": socket_path}
        if socket_path
        else {"FAASPUB_PROXY_HOST": "127.0.0.1", "FAASPUB_PROXY_PORT": str(endpoint.port)}
    )
    return {
        **spec_env,
        **identity,
        **where,
        "FAASPUB_PROXY_TOKEN": endpoint.token,
        "FAASPUB_CONCURRENCY": str(deployed.concurrency),
        "FAASPUB_TIMEOUT_MS": str(deployed.timeout_ms),
        "__OW_ACTION_NAME": f"/{deployed.namespace}/{deployed.function}@{deployed.version}",
        "__OW_ACTION_VERSION": deployed.version,
    }


PROCESS_WARNING = (
    "backend.local.engine = 'process': functions run as plain processes of the service, NOT isolated "
    "(the service's user, files and network); use podman or Docker for anything but a trusted laptop"
)
_warned_process = False


def isolation_warning(settings: Settings) -> str | None:
    """What ``faaspub status`` (and the service's log) should warn about the local backend, if anything."""
    local = settings.backend.local
    if settings.backend.kind != "local":
        return None
    if local.engine == "process":
        return PROCESS_WARNING
    if local.network == "host":
        return (
            "backend.local.network = 'host': functions share the host's network (each instance still "
            "answers only its own token)"
        )
    return None


def make_executor(settings: Settings) -> Executor:
    local = settings.backend.local
    engine = local.engine
    base_url = local.docker_host or os.environ.get("DOCKER_HOST")
    if engine == "auto":
        if not (base_url or shutil.which("podman")):
            raise ConfigError(
                "no container engine for the local backend: podman is not installed and no "
                "backend.local.docker_host or DOCKER_HOST is set",
                hint="install podman (apt-get install podman runc), or set backend.local.engine = "
                "'process' to run functions as plain, unisolated processes",
            )
        engine = "docker"
    if engine == "docker":
        from publisher.backends.docker_engine import DockerExecutor
        from publisher.podman import docker_host

        # Without a configured engine: faaspub's private podman service (publisher.podman).
        return DockerExecutor(settings, base_url or docker_host(settings))
    global _warned_process
    if not _warned_process:
        _warned_process = True
        log.warning(PROCESS_WARNING)
    from publisher.backends.process_engine import ProcessExecutor

    return ProcessExecutor(settings)
