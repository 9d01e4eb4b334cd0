"""What the local backend needs from whatever runs the runtime proxy: a container engine or a process.

An :class:`Executor` prepares a version's image once and starts :class:`Instance` objects: a
running ``faaspub_runtime.proxy`` listening on ``127.0.0.1:PORT`` whose output feeds a
:class:`~publisher.backends.runlogs.LogCollector`. :func:`make_executor` picks the engine from
``backend.local.engine``: ``docker`` (Docker or podman's API socket), ``process`` (no isolation),
or ``auto`` (the configured socket; without one, faaspub's private podman service when podman is installed;
else a process, with a one-time warning).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class InstanceSpec:
    """One instance to start: the version, its environment (secrets included) and its port."""

    deployed: Deployed
    env: dict[str, str] = field(repr=False)
    port: int
    name: str


class Instance(Protocol):
    """A running runtime proxy."""

    port: int
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


def wait_ready(port: int, exited: Callable[[], str | None], what: str) -> None:
    """Wait until the proxy accepts connections; ``exited()`` returns a reason once it died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            reason = exited()
            if reason is not None:
                raise StartError(f"{what}: the runtime exited before it was ready ({reason})") from None
            if time.monotonic() > deadline:
                raise StartError(
                    f"{what}: the runtime did not listen on port {port} in {READY_TIMEOUT_S:.0f}s"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def proxy_env(spec_env: dict[str, str], deployed: Deployed, port: int) -> dict[str, str]:
    """The runtime's settings (contract of ``faaspub_runtime.proxy``) and the version's identity
    (:mod:`faaspub_runtime.identity`) on top of the function's env."""
    identity = identity_environment(
        namespace=deployed.namespace,
        name=deployed.function,
        version=deployed.version,
        digest=deployed.digest,
        image=deployed.image,
        doi=deployed.doi,
    )
    return {
        **spec_env,
        **identity,
        "FAASPUB_PROXY_HOST": "127.0.0.1",
        "FAASPUB_PROXY_PORT": str(port),
        "FAASPUB_CONCURRENCY": str(deployed.concurrency),
        "FAASPUB_TIMEOUT_MS": str(deployed.timeout_ms),
        "__OW_ACTION_NAME": f"/{deployed.namespace}/{deployed.function}@{deployed.version}",
        "__OW_ACTION_VERSION": deployed.version,
    }


_warned_process = False


def make_executor(settings: Settings) -> Executor:
    local = settings.backend.local
    if local.network != "host":
        raise ConfigError(
            f"backend.local.network = {local.network!r} is not supported",
            hint="the local backend reaches each runtime over the host network; use 'host'",
        )
    engine = local.engine
    base_url = local.docker_host or os.environ.get("DOCKER_HOST")
    if engine == "auto":
        engine = "docker" if base_url or shutil.which("podman") else "process"
    if engine == "docker":
        from publisher.backends.docker_engine import DockerExecutor
        from publisher.podman import docker_host

        # Without a configured engine: faaspub's private podman service (publisher.podman).
        return DockerExecutor(settings, base_url or docker_host(settings))
    global _warned_process
    if not _warned_process:
        _warned_process = True
        log.warning(
            "no container engine: the local backend runs functions as plain processes, NOT isolated "
            "(no user, filesystem or memory isolation); set backend.local.docker_host or DOCKER_HOST "
            "to use Docker or podman"
        )
    from publisher.backends.process_engine import ProcessExecutor

    return ProcessExecutor(settings)
