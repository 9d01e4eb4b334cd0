"""The conformance suite against the proxy inside a function image, run by podman.

The image is the offline python base (``base_image`` fixture, which bakes the current proxy) plus
one code layer with ``actions/`` under ``/action``, appended with ``publisher.oci``. Each case runs
one container the way the local backend does: host network on a random loopback port, read-only
root, tmpfs ``/tmp``, ``--init``, ``--rm``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_conformance import ConformanceSuite
from runtime_endpoint import ACTIONS, Endpoint, StartProxy

from tests.infra.containers import BaseImage, RegistryServer, require_tool, run_podman

pytestmark = pytest.mark.containers

PROBE_REPOSITORY = "faaspub-test/runtime-probe"


def action_files() -> dict[str, Path]:
    """The probe handlers as layer entries (no byte-code caches)."""
    return {
        path.relative_to(ACTIONS).as_posix(): path
        for path in sorted(ACTIONS.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def probe_image(base_image: BaseImage, registry: RegistryServer, podman_env: dict[str, str]) -> str:
    """The base image plus the probe handlers under /action, pushed and pulled into podman."""
    from publisher.oci.layer import build_layer
    from publisher.oci.registry import RegistryClient
    from publisher.oci.transfer import append_layers, fetch_image

    store = RegistryClient(registry.url, insecure=True)
    base = fetch_image(store, base_image.path, base_image.tag)
    layer = build_layer(action_files(), prefix="/action")
    digest = append_layers(store, base, PROBE_REPOSITORY, "conformance", [(layer, "COPY actions/ /action/")])
    image = f"{registry.host}/{PROBE_REPOSITORY}@{digest}"
    run_podman(podman_env, "pull", "--quiet", image)
    return image


def podman_run_args(image: str, name: str, env: dict[str, str]) -> list[str]:
    """``podman run`` as the local backend starts a function container (attached: logs on two pipes)."""
    flags = ["--rm", "--init", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    for key, value in env.items():
        flags += ["--env", f"{key}={value}"]
    return ["run", *flags, image]


@pytest.fixture
def start_proxy(probe_image: str, podman_env: dict[str, str]) -> Iterator[StartProxy]:
    podman = require_tool("podman")
    started: list[Endpoint] = []

    def start(handler: str | None = "probe:echo", env: dict[str, str] | None = None, **_: Any) -> Endpoint:
        name = f"faaspub-rt-{uuid.uuid4().hex[:12]}"
        settings = {"FAASPUB_PROXY_HOST": "127.0.0.1", "FAASPUB_PROXY_PORT": "0", **(env or {})}
        if handler:
            settings["FAASPUB_HANDLER"] = handler
        process = subprocess.Popen(
            [podman, *podman_run_args(probe_image, name, settings)],
            env={**os.environ, **podman_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        remove = lambda: run_podman(podman_env, "rm", "--force", "--time", "0", name, check=False)  # noqa: E731
        endpoint = Endpoint(process, remove)
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


class TestContainer(ConformanceSuite):
    """Every case of the suite, against the proxy in a podman container."""

    def test_runs_as_app_user_with_read_only_root(self, start_proxy: StartProxy) -> None:
        proxy = start_proxy()
        code = (
            "import os\n"
            "def main(p):\n"
            "    try:\n"
            "        open('/action/x', 'w')\n"
            "        writable = True\n"
            "    except OSError:\n"
            "        writable = False\n"
            "    return {'uid': os.getuid(), 'root_writable': writable, 'cwd': os.getcwd()}\n"
        )
        assert proxy.init({"code": code}).status == 200
        assert proxy.run().json == {"uid": 1000, "root_writable": False, "cwd": "/action"}
