"""faaspub's private podman service: started on demand, stopped with nothing left mounted."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from publisher.config import Settings
from publisher.podman import docker_host, mounts_under, release_mounts, socket_alive, stop_private_service
from tests.infra.containers import require_tool


def test_stopping_the_private_service_leaves_nothing_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("podman")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    settings = Settings(state_dir=str(tmp_path / "state"))
    root = (tmp_path / "state" / "podman").resolve()
    try:
        assert docker_host(settings) == f"unix://{root / 'podman.sock'}"
        assert socket_alive(root / "podman.sock")
        assert mounts_under(root) != []  # the overlay driver's self bind mount, which outlives the service
    finally:
        assert stop_private_service(settings)
    assert not socket_alive(root / "podman.sock")
    assert mounts_under(root) == []
    shutil.rmtree(tmp_path / "state")  # nothing holds the folder any more
    assert not stop_private_service(settings)  # a second stop finds nothing to stop


def test_mount_points_with_spaces_are_found_and_released(tmp_path: Path) -> None:
    require_tool("mount")
    inner = tmp_path / "state dir" / "with\ttab"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(inner), str(inner)], check=True)
    try:
        assert mounts_under(tmp_path) == [inner]
    finally:
        release_mounts(tmp_path)
    assert mounts_under(tmp_path) == []
