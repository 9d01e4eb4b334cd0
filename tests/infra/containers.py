"""Shared container fixtures: a local OCI registry, private podman configuration, the python base image.

Loaded as a pytest plugin from ``tests/conftest.py``. Everything here follows
``local-containers.md``: the Debian ``docker-registry`` binary on a random loopback port, podman
configured only through ``CONTAINERS_*`` files in a temporary directory (runc, cgroupfs, host
network, explicit ulimits), and every process stopped by its own PID at the end of the session.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from publisher.podman import start_service, write_config

_LISTENING = re.compile(r"listening on (127\.0\.0\.1:\d+)")


def require_tool(name: str) -> str:
    """The path of the executable ``name``; fails under ``CI=true`` when missing, skips otherwise."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"required tool {name!r} is not installed (see docs: local-containers)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def cache_root() -> Path:
    """A stable per-user cache directory (debs, built base layers) so repeated runs stay fast."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(base) / "faaspub"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its own handle: SIGTERM, then SIGKILL after a grace period."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class RegistryServer:
    """A running ``docker-registry serve`` on 127.0.0.1 (plain HTTP, deletes enabled)."""

    host: str
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    username: str | None = None
    _password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def port(self) -> int:
        return int(self.host.rsplit(":", 1)[1])

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def log(self) -> str:
        return (self.workdir / "registry.log").read_text(errors="replace")

    def docker_config(self, path: Path) -> Path:
        """Write a Docker ``config.json`` holding this registry's credentials and return its path."""
        auths = {}
        if self.username and self._password:
            token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode()
            auths[self.host] = {"auth": token}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"auths": auths}))
        return path

    def stop(self) -> None:
        _stop(self.process)


def start_registry(workdir: Path, username: str | None = None, password: str | None = None) -> RegistryServer:
    """Start a registry with its data under ``workdir``; with a username it requires htpasswd basic auth."""
    exe = require_tool("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "version: 0.1",
        "log: {level: info, fields: {service: registry}}",
        "storage:",
        "  cache: {blobdescriptor: inmemory}",
        f"  filesystem: {{rootdirectory: {workdir / 'data'}}}",
        "  delete: {enabled: true}",
        "http:",
        "  addr: 127.0.0.1:0",
        "  secret: faaspub-test-only",
        "  headers: {X-Content-Type-Options: [nosniff]}",
    ]
    if username:
        import bcrypt

        assert password, "a registry with a username needs a password"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{username}:{hashed}\n")
        lines.append(f"auth: {{htpasswd: {{realm: faaspub-test, path: {workdir / 'htpasswd'}}}}}")
    (workdir / "config.yml").write_text("\n".join(lines) + "\n")
    log_path = workdir / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "serve", str(workdir / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            server = RegistryServer(match.group(1), workdir, proc, username, password)
            _wait_http(f"{server.url}/v2/")
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    _stop(proc)
    raise RuntimeError(f"docker-registry did not start: {log_path.read_text(errors='replace')[-2000:]}")


def _wait_http(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _tempdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"faaspub-{prefix}-"))


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """An anonymous local registry for the whole session."""
    workdir = _tempdir("registry")
    server = start_registry(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def registry_auth() -> Iterator[RegistryServer]:
    """A local registry that requires basic auth (bcrypt htpasswd) with ``.username``/``.password``."""
    workdir = _tempdir("registry-auth")
    server = start_registry(workdir, username="faaspub", password="s3cret-" + os.urandom(6).hex())
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_podman(
    podman_env: dict[str, str], *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``podman ARGS`` with the private configuration; raises with podman's stderr when ``check``."""
    exe = require_tool("podman")
    proc = subprocess.run(
        [exe, *args], env={**os.environ, **podman_env}, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="session")
def podman_env(registry: RegistryServer, registry_auth: RegistryServer) -> Iterator[dict[str, str]]:
    """``CONTAINERS_*``/``TMPDIR`` env vars pointing at a private podman configuration and storage.

    Both session registries are listed as insecure (plain HTTP). Containers and volumes left
    behind are removed at the end, then the storage directory.
    """
    require_tool("podman")
    require_tool("runc")
    root = _tempdir("podman")
    env = write_config(root, [registry.host, registry_auth.host])
    try:
        yield env
    finally:
        run_podman(env, "rm", "--all", "--force", "--time", "0", check=False)
        run_podman(env, "volume", "prune", "--force", check=False)
        run_podman(env, "rmi", "--all", "--force", check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_socket(podman_env: dict[str, str]) -> Iterator[str]:
    """podman's Docker-compatible API service; yields the ``DOCKER_HOST`` value (``unix://…``)."""
    require_tool("podman")
    sock_dir = _tempdir("podman-sock")
    sock = sock_dir / "podman.sock"
    proc = start_service(podman_env, sock, sock_dir / "service.log", idle_exit_s=0)
    try:
        yield f"unix://{sock}"
    finally:
        _stop(proc)
        shutil.rmtree(sock_dir, ignore_errors=True)


@dataclass(frozen=True)
class BaseImage:
    """The python runtime base image pushed into the session registry."""

    repository: str  # "127.0.0.1:PORT/faaspub/python-base"
    tag: str
    digest: str
    registry: RegistryServer = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def path(self) -> str:
        """The repository path inside the registry (``faaspub/python-base``)."""
        return self.repository.split("/", 1)[1]


@pytest.fixture(scope="session")
def base_image(registry: RegistryServer) -> BaseImage:
    """The offline python 3.11 base (debx method) built once (layer cached) and pushed to ``registry``."""
    require_tool("apt-get")
    require_tool("dpkg-deb")
    from publisher.oci.registry import RegistryClient
    from publisher.runtime.base import BASE_REPOSITORY, build_base

    store = RegistryClient(registry.url, insecure=True)
    result = build_base("3.11", store, cache_dir=cache_root())
    return BaseImage(f"{registry.host}/{BASE_REPOSITORY}", result.tag, result.digest, registry)
