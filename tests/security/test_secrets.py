"""A function gets only the secrets its own namespace (and, where configured, it alone) was granted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.backends.local import LocalBackend
from publisher.core.types import ImageRef
from publisher.errors import FaaspubError
from tests.backends.images import make_release
from tests.security.conftest import local_context

pytestmark = pytest.mark.containers

TOKEN = "dcache-platform-token-7731"  # the facility's own dCache credential
LEAK = """
import os

def main(params):
    return {"token": os.environ.get("DCACHE_TOKEN")}
"""


def secret_dir(path: Path, value: str = TOKEN) -> str:
    path.mkdir(parents=True)
    (path / "DCACHE_TOKEN").write_text(value + "\n")
    return str(path)


def test_a_function_of_another_namespace_does_not_get_the_platforms_secret(
    tmp_path: Path, podman_socket: str, function_image: Callable[..., ImageRef]
) -> None:
    # The platform's value sits in [secrets] dir: it is the embedded namespace's ("local").
    secrets = {"dir": secret_dir(tmp_path / "secrets")}
    context = local_context(tmp_path, secrets, engine="docker", docker_host=podman_socket)
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    image = function_image("leak", "1.0.0", LEAK)
    try:
        backend.deploy(make_release("leak", "1.0.0", image, "intruder", secrets=["DCACHE_TOKEN"]))
        with pytest.raises(
            FaaspubError, match="secret DCACHE_TOKEN has no value for namespace intruder"
        ) as no:
            backend.invoke("intruder", "leak", {})
        assert TOKEN not in str(no.value)
        assert all(TOKEN not in json.dumps(a.result) for a in backend.activations("intruder"))

        backend.deploy(make_release("leak", "1.0.0", image, "local", secrets=["DCACHE_TOKEN"]))
        assert backend.invoke("local", "leak", {}).result == {"token": TOKEN}
    finally:
        backend.close()
        context.engine.dispose()


def test_namespace_and_function_grants(
    tmp_path: Path, podman_socket: str, function_image: Callable[..., ImageRef]
) -> None:
    grants = {
        "namespaces": {
            "xfel": {
                "dir": secret_dir(tmp_path / "xfel", "xfel-token"),
                "functions": {"leak": ["DCACHE_TOKEN"]},
            },
            "esrf": {"dir": secret_dir(tmp_path / "esrf", "esrf-token")},
        }
    }
    context = local_context(tmp_path, grants, engine="docker", docker_host=podman_socket)
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    image = function_image("leak", "1.0.0", LEAK)
    try:
        for namespace, name in (("xfel", "leak"), ("xfel", "other"), ("esrf", "leak")):
            backend.deploy(make_release(name, "1.0.0", image, namespace, secrets=["DCACHE_TOKEN"]))
        assert backend.invoke("xfel", "leak", {}).result == {"token": "xfel-token"}
        assert backend.invoke("esrf", "leak", {}).result == {"token": "esrf-token"}
        # A function the grant does not list gets nothing, even in the granted namespace.
        with pytest.raises(FaaspubError, match="no value for namespace xfel") as refused:
            backend.invoke("xfel", "other", {})
        assert "functions.other" in (refused.value.hint or "")
    finally:
        backend.close()
        context.engine.dispose()
