"""The warm-container bed the latency benchmarks share: a registry, a private podman service, the
python base image and one function deployed on the local backend, bound to one storage trigger.

Used by ``bench/triggers.py`` (file close -> start) and ``bench/s3.py`` (upload -> start). The
function is told ``{"warm": seconds}`` to stay busy while warming, and otherwise returns when it
started and for which event subject.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from publisher.backends.local import LocalBackend
from publisher.config import Settings
from publisher.core.context import Context
from publisher.db.models import ActivationRecord

FUNCTION = "started"
# Notes when it started; ``warm`` keeps it busy so pools grow.
STARTED = """
import time


def main(event):
    started = time.time()
    time.sleep(event.get("warm", 0))
    return {"started": started, "subject": event.get("subject")}
"""


@contextmanager
def podman_local_backend(
    tmp: Path, trigger: dict[str, Any], **settings: Any
) -> Iterator[tuple[Context, LocalBackend]]:
    """The local backend on a private podman service with ``STARTED`` deployed and bound to
    ``trigger`` (a ``storage`` entry of function.yaml); ``settings`` adds configuration sections
    (``storage`` is merged with the local root)."""
    from publisher.oci.registry import RegistryClient
    from publisher.podman import start_service, write_config
    from publisher.runtime.base import BASE_REPOSITORY, build_base
    from tests.backends.images import build_function_image, make_release
    from tests.infra.containers import BaseImage, cache_root, start_registry

    registry = start_registry(tmp / "registry")
    podman_env = write_config(tmp / "podman", [registry.host])
    sock = tmp / "podman.sock"
    service = start_service(podman_env, sock, tmp / "podman-service.log", idle_exit_s=0)
    backend: LocalBackend | None = None
    try:
        built = build_base("3.11", RegistryClient(registry.url, insecure=True), cache_dir=cache_root())
        base = BaseImage(f"{registry.host}/{BASE_REPOSITORY}", built.tag, built.digest, registry)
        image = build_function_image(base, FUNCTION, "1.0.0", STARTED)
        storage = {"local": {"root": str(tmp / "data")}, **settings.pop("storage", {})}
        config = {
            "state_dir": str(tmp / "state"),
            "database": {"url": f"sqlite:///{tmp / 'faaspub.db'}"},
            "registry": {"insecure": True},
            "backend": {
                "kind": "local",
                "local": {"engine": "docker", "docker_host": f"unix://{sock}", "idle_timeout_s": 3600},
            },
            "storage": storage,
            "secrets": {"dir": str(tmp / "secrets")},
            **settings,
        }
        context = Context(Settings.model_validate(config))
        local = context.backend
        assert isinstance(local, LocalBackend)
        backend = local
        release = make_release(FUNCTION, "1.0.0", image, triggers=[{"storage": trigger}])
        local.deploy(release)
        local.bind(release, release.source.manifest.storage_triggers())
        yield context, local
    finally:
        if backend is not None:
            backend.close()
        env = {**os.environ, **podman_env}
        subprocess.run(["podman", "rm", "--all", "--force", "--time", "0"], env=env, capture_output=True)
        service.terminate()
        service.wait(timeout=10)
        subprocess.run(["podman", "rmi", "--all", "--force"], env=env, capture_output=True)
        registry.stop()


def warm(backend: LocalBackend) -> None:
    """Start every instance the pool may use: concurrent runs that stay busy a moment."""
    namespace = backend.functions()[0].namespace
    count = backend.max_instances
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda _: backend.invoke(namespace, FUNCTION, {"warm": 1.0}), range(count)))
    assert backend.warm_instances(namespace, FUNCTION) == count


def wait_started(context: Context, n: int, timeout_s: float = 60.0) -> dict[str, float]:
    """Handler start times by event subject, once ``n`` runs succeeded (or the timeout passed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with context.sessions() as session:
            results = session.scalars(
                select(ActivationRecord.result).where(ActivationRecord.status == "success")
            ).all()
        started = {r["subject"]: r["started"] for r in results if isinstance(r, dict) and r.get("subject")}
        if len(started) >= n or time.monotonic() > deadline:
            return started
        time.sleep(0.1)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]
