"""The offline python base image: reproducible, and it runs under podman."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from publisher.errors import FaaspubError
from publisher.oci.layout import OciLayout
from publisher.oci.store import ImageStore
from publisher.oci.transfer import fetch_image
from publisher.runtime.base import BASE_REPOSITORY, build_base, default_proxy_dir
from tests.infra.containers import BaseImage, RegistryServer, cache_root, require_tool, run_podman

pytestmark = pytest.mark.containers


def test_base_runs_python_with_stdlib_and_proxy(base_image: BaseImage, podman_env: dict[str, str]) -> None:
    run_podman(podman_env, "pull", "-q", base_image.ref)
    proc = run_podman(
        podman_env,
        "run",
        "--rm",
        "--network",
        "host",
        base_image.ref,
        "python3",
        "-c",
        "import ssl, sqlite3, json, ctypes, lzma, bz2, os, faaspub_runtime; "
        "print(os.getuid(), os.getcwd(), ssl.get_default_verify_paths().cafile is not None)",
    )
    assert proc.stdout.split() == ["1000", "/action", "True"]
    sh = run_podman(
        podman_env, "run", "--rm", "--network", "none", base_image.ref, "sh", "-c", "ls / && test -w /tmp"
    )
    assert "opt" in sh.stdout.split()


def test_base_config(base_image: BaseImage) -> None:
    from publisher.oci.registry import RegistryClient

    image = fetch_image(RegistryClient(base_image.registry.url), base_image.path, base_image.tag)
    assert image.digest == base_image.digest
    cfg = image.config.container
    assert cfg["User"] == "1000"
    assert cfg["WorkingDir"] == "/action"
    assert cfg["Cmd"] == ["python3", "-m", "faaspub_runtime.proxy"]
    assert cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert image.config.env["PYTHONPATH"] == "/opt/faaspub"
    assert image.config.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert image.config.labels["io.faaspub.runtime"] == "python:3.11"


def test_base_build_is_reproducible(tmp_path: Path) -> None:
    require_tool("apt-get")
    require_tool("dpkg-deb")
    # A snapshot of the proxy, so an edit to runtime-images/ between the two builds cannot interfere.
    proxy = tmp_path / "proxy"
    shutil.copytree(default_proxy_dir(), proxy, ignore=shutil.ignore_patterns("__pycache__"))
    digests = []
    for name in ("one", "two"):
        store: ImageStore = OciLayout(tmp_path / name)
        result = build_base("3.11", store, cache_root(), proxy_dir=proxy, use_layer_cache=False)
        assert not result.cached
        digests.append(result.digest)
        assert store.resolve(BASE_REPOSITORY, "3.11") == result.digest
    assert digests[0] == digests[1]


def test_python_312_needs_the_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(FaaspubError, match=r"python3.12/Dockerfile"):
        build_base("3.12", OciLayout(tmp_path), cache_root())


def test_python_313_base_from_debian_trixie_runs(
    registry: RegistryServer, podman_env: dict[str, str]
) -> None:
    """3.13 comes from trixie through a private apt index on the system's own Debian mirror."""
    require_tool("apt-get")
    require_tool("dpkg-deb")
    from publisher.oci.registry import RegistryClient

    result = build_base("3.13", RegistryClient(registry.url, insecure=True), cache_root())
    assert (
        result.suite == "trixie" and result.packages and result.labels["io.faaspub.runtime"] == "python:3.13"
    )
    assert next(p.version for p in result.packages if p.name == "python3.13").startswith("3.13.")
    ref = f"{registry.host}/{BASE_REPOSITORY}:3.13"
    run_podman(podman_env, "pull", "-q", ref)
    proc = run_podman(
        podman_env,
        "run",
        "--rm",
        "--read-only",
        "--network",
        "host",
        ref,
        "python3",
        "-c",
        "import ssl, sqlite3, json, ctypes, lzma, bz2, decimal, zoneinfo, os, sys, faaspub_runtime; "
        "zoneinfo.ZoneInfo('Europe/Berlin'); cafile = ssl.get_default_verify_paths().cafile; "
        "print(sys.version_info[:2], os.getuid(), os.getcwd(), os.path.isfile(cafile))",
    )
    assert proc.stdout.split() == ["(3,", "13)", "1000", "/action", "True"]
    assert run_podman(podman_env, "run", "--rm", ref, "sh", "-c", "echo ok").stdout.strip() == "ok"
