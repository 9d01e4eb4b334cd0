"""faaspub's own service image, built from this checkout by the native builder and run under podman
the way a cluster runs it: read-only root, non-root user, state on a scratch volume, the database
upgraded by a separate `db upgrade` container first (the migration Job), then `serve` and `worker`
answering their probes from inside their containers."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import pytest
import requests

from publisher import __version__
from publisher.oci.registry import RegistryClient
from publisher.oci.transfer import fetch_image
from publisher.runtime.base import BASE_REPOSITORY
from publisher.runtime.service import SERVICE_REPOSITORY, ServiceBuild, build_service
from tests.catalogue.conftest import free_port
from tests.infra.containers import RegistryServer, cache_root, require_tool, run_podman

pytestmark = pytest.mark.containers

# As in deploy/kubernetes: nothing written outside the state volume and /tmp, both owned by the
# service's user (podman's U option does for them what fsGroup does for a pod's emptyDir).
LIKE_A_POD = ["--network", "host", "--read-only", "--tmpfs", "/var/lib/faaspub:rw,U", "--tmpfs", "/tmp:rw,U"]


class Containers:
    """Containers a test starts with ``podman run -d``; all removed afterwards, whatever happened."""

    def __init__(self, podman_env: dict[str, str]) -> None:
        self.env = podman_env
        self.names: list[str] = []

    def start(self, options: list[str], image: str, *command: str) -> str:
        name = f"faaspub-test-{secrets.token_hex(4)}"
        self.names.append(name)
        run_podman(self.env, "run", "-d", "--name", name, *options, image, *command)
        return name

    def wait_ok(self, name: str, url: str, timeout: float = 90) -> requests.Response:
        """The first 200 answer from ``url``; on time-out the assertion carries the container's log."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = requests.get(url, timeout=2)
                if answer.status_code == 200:
                    return answer
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                log = run_podman(self.env, "logs", name, check=False)
                raise AssertionError(
                    f"{url} gave no 200 in {timeout} s; {name} logged:\n{log.stderr[-3000:]}"
                )
            time.sleep(0.2)

    def remove(self) -> None:
        for name in self.names:
            run_podman(self.env, "rm", "--force", "--time", "2", name, check=False)


@pytest.fixture(scope="module")
def service(registry: RegistryServer) -> ServiceBuild:
    require_tool("apt-get")
    require_tool("dpkg-deb")
    return build_service(RegistryClient(registry.url, insecure=True), cache_root())


@pytest.fixture(scope="module")
def image(service: ServiceBuild, podman_env: dict[str, str]) -> str:
    ref = f"{service.reference}@{service.digest}"
    run_podman(podman_env, "pull", "-q", ref, timeout=300)
    return ref


@pytest.fixture()
def containers(podman_env: dict[str, str]) -> Iterator[Containers]:
    started = Containers(podman_env)
    yield started
    started.remove()


def test_the_image_is_the_runtime_base_plus_faaspub(service: ServiceBuild, registry: RegistryServer) -> None:
    store = RegistryClient(registry.url, insecure=True)
    image = fetch_image(store, SERVICE_REPOSITORY, service.digest)
    base = fetch_image(store, BASE_REPOSITORY, service.base_digest)
    assert image.manifest.layers[: len(base.manifest.layers)] == base.manifest.layers
    assert len(image.manifest.layers) == len(base.manifest.layers) + 3
    config = image.config.container
    assert config["Entrypoint"] == ["faaspub"]
    assert config["Cmd"] == ["serve", "--listen", "0.0.0.0:8080"]
    assert config["User"] == "1000" and config["WorkingDir"] == "/var/lib/faaspub"
    assert image.config.labels["org.opencontainers.image.version"] == __version__
    assert store.resolve(SERVICE_REPOSITORY, __version__) == service.digest
    # Rebuilding the same checkout gives the same image.
    assert build_service(store, cache_root()).digest == service.digest


def test_serve_answers_healthz_from_inside_its_container(image: str, containers: Containers) -> None:
    port = free_port()
    name = containers.start(LIKE_A_POD, image, "serve", "--listen", f"127.0.0.1:{port}")
    health = containers.wait_ok(name, f"http://127.0.0.1:{port}/healthz").json()
    assert health == {"status": "ok", "version": __version__}
    # The catalogue answers from the embedded database the container created in its state volume.
    assert requests.get(f"http://127.0.0.1:{port}/api/v1/functions", timeout=5).json()["items"] == []


def test_migration_job_then_serve_and_worker_on_postgresql(
    image: str, podman_env: dict[str, str], containers: Containers, empty_pg_url: str
) -> None:
    options = [*LIKE_A_POD, "--env", f"FAASPUB_DATABASE__URL={empty_pg_url}"]
    first = json.loads(
        run_podman(podman_env, "run", "--rm", *options, image, "db", "upgrade", "--json").stdout
    )
    assert first["before"] == [] and first["upgraded"] and first["after"]
    again = json.loads(
        run_podman(podman_env, "run", "--rm", *options, image, "db", "upgrade", "--json").stdout
    )
    assert again == {"before": first["after"], "after": first["after"], "upgraded": False}

    serve, worker = free_port(), free_port()
    serving = containers.start(options, image, "serve", "--listen", f"127.0.0.1:{serve}")
    working = containers.start(options, image, "worker", "--listen", f"127.0.0.1:{worker}")
    assert containers.wait_ok(serving, f"http://127.0.0.1:{serve}/healthz").json()["status"] == "ok"
    assert containers.wait_ok(working, f"http://127.0.0.1:{worker}/healthz").json()["status"] == "ok"
    assert containers.wait_ok(working, f"http://127.0.0.1:{worker}/readyz").json() == {"status": "ok"}
    metrics = containers.wait_ok(serving, f"http://127.0.0.1:{serve}/metrics").text
    assert 'faaspub_queue_jobs{status="queued"} 0.0' in metrics
