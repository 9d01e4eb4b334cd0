"""Builds pushed to a real registry and tested inside podman (through its Docker API socket)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from publisher.build.buildah import BuildahBuilder
from publisher.build.native import NativeBuilder
from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from publisher.tester.container import ContainerTester
from tests.build.conftest import FunctionFactory, commit_all
from tests.infra.containers import BaseImage, RegistryServer, require_tool

pytestmark = pytest.mark.containers
SIX_HANDLER = """\
import six


def main(p):
    return {"greeting": "hello " + p.get("name", ""), "six": six.__version__, "nested": {"n": 7}}
"""
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def settings(registry: RegistryServer, base_image: BaseImage, pip_cache: Path, tmp_path: Path) -> Settings:
    return Settings(
        registry={
            "url": registry.url,
            "insecure": True,
            "base_image": base_image.ref,
            "credentials_file": str(tmp_path / "no-config.json"),
        },
        build={"cache_dir": str(pip_cache)},
    )


@pytest.fixture
def tester(settings: Settings, podman_socket: str) -> ContainerTester:
    return ContainerTester(settings, docker_host=podman_socket)


def copy_example(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(EXAMPLES / name, target, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return target


@pytest.mark.parametrize("example", ["hello", "cxi-metadata"])
def test_example_builds_reproducibly_and_passes_in_its_image(
    example: str, settings: Settings, tester: ContainerTester, tmp_path: Path
) -> None:
    fn = load_function(EXAMPLES / example)
    first = NativeBuilder(settings).build(fn, "1.0.0", {})
    second = NativeBuilder(settings).build(fn, "1.0.0", {})
    assert first.ref.digest == second.ref.digest
    assert second.layers_reused == second.layers, "a rebuild uploads nothing"
    junit = tmp_path / "junit.xml"
    report = tester.test(fn, first, junit)
    assert report.ok, "\n".join(report.failures)
    assert report.passed >= 1 + len(fn.manifest.examples) + 1  # init, examples, at least one pytest case
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    assert set(suites) == {"pytest", "smoke"}
    assert int(suites["smoke"].get("tests", 0)) == 1 + len(fn.manifest.examples)


def test_failing_test_and_failing_example_fail_with_a_readable_report(
    make_function: FunctionFactory, settings: Settings, tester: ContainerTester, tmp_path: Path
) -> None:
    root = make_function(
        files={
            "tests/test_broken.py": "def test_broken():\n    assert 1 + 1 == 3, 'arithmetic is off'\n",
        },
        manifest=(
            "name: hello\nruntime: python:3.11\nhandler: handler:main\n"
            "examples:\n"
            "  - name: right\n    input: {name: a}\n    expect: {greeting: hello a}\n"
            "  - name: wrong\n    input: {name: b}\n    expect: {greeting: hello b, nested: {n: 5}}\n"
        ),
    )
    fn = load_function(root)
    image = NativeBuilder(settings).build(fn, "1.0.0", {})
    junit = tmp_path / "junit.xml"
    report = tester.test(fn, image, junit)
    assert not report.ok
    assert report.failed == 2, report.failures
    text = "\n".join(report.failures)
    assert "test_broken" in text and "arithmetic is off" in text
    assert "example 2: wrong" in text and "$.nested.n: expected 5, got 1" in text
    xml = junit.read_text()
    assert "test_broken" in xml and "$.nested.n: expected 5, got 1" in xml


def test_code_only_change_uploads_only_the_code_layer(
    make_function: FunctionFactory, settings: Settings, registry: RegistryServer
) -> None:
    root = make_function(files={"requirements.txt": "six==1.16.0\n"})
    first = NativeBuilder(settings).build(load_function(root), "1.0.0", {})
    (root / "handler.py").write_text((root / "handler.py").read_text() + "\n# code-only change\n")
    commit_all(root)
    second = NativeBuilder(settings).build(load_function(root), "1.0.0", {})
    assert second.ref.digest != first.ref.digest and second.ref.tag != first.ref.tag
    assert second.layers == 3 and second.layers_reused == 2  # base and dependencies already there


def test_buildah_builds_the_equivalent_dockerfile(
    make_function: FunctionFactory,
    settings: Settings,
    tester: ContainerTester,
    podman_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_tool("buildah")
    for key, value in podman_env.items():
        monkeypatch.setenv(key, value)
    root = make_function(
        files={
            "requirements.txt": "six==1.16.0\n",
            "handler.py": SIX_HANDLER,
        }
    )
    fn = load_function(root)
    image = BuildahBuilder(settings).build(fn, "1.0.0", {"org.faaspub.doi": "10.1/x"})
    assert image.builder == "buildah" and image.test_ref is not None
    report = tester.test(fn, image)
    assert report.ok, "\n".join(report.failures)


def test_buildah_builds_a_docker_runtime_repository_with_run_steps(
    make_function: FunctionFactory,
    settings: Settings,
    tester: ContainerTester,
    base_image: BaseImage,
    podman_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_tool("buildah")
    for key, value in podman_env.items():
        monkeypatch.setenv(key, value)
    dockerfile = (
        f"FROM {base_image.ref}\n"
        "USER root\n"
        "COPY handler.py /action/handler.py\n"
        "RUN echo built-by-run > /action/BUILT && python3 -c 'print(1)'\n"
        "USER 1000\n"
        "ENV FAASPUB_HANDLER=handler:main\n"
    )
    handler = "def main(p):\n    return {'built': open('/action/BUILT').read().strip()}\n"
    manifest = (
        "name: own-image\nruntime: docker\nhandler: handler:main\n"
        "examples:\n  - input: {}\n    expect: {built: built-by-run}\n"
    )
    # Its tests run in its own image (plus pytest and the tests folder), reading what RUN wrote.
    test = (
        "def test_run_step_wrote_the_marker():\n"
        "    assert open('/action/BUILT').read() == 'built-by-run\\n'\n"
    )
    root = make_function(
        "own-image",
        files={"Dockerfile": dockerfile, "handler.py": handler, "tests/test_handler.py": test},
        manifest=manifest,
    )
    fn = load_function(root)
    image = BuildahBuilder(settings).build(fn, "2.0.0", {})
    assert image.ref.tag.startswith("2.0.0-") and image.test_ref is not None
    report = tester.test(fn, image)
    assert report.ok, "\n".join(report.failures)
    assert report.passed == 3  # the marker test, init and the example


def test_registry_requiring_login_is_named_without_secrets(
    make_function: FunctionFactory, registry_auth: RegistryServer, pip_cache: Path, tmp_path: Path
) -> None:
    settings = Settings(
        registry={
            "url": registry_auth.url,
            "insecure": True,
            "credentials_file": str(tmp_path / "none.json"),
        },
        build={"cache_dir": str(pip_cache)},
    )
    with pytest.raises(FaaspubError) as err:
        NativeBuilder(settings).build(load_function(make_function()), "1.0.0", {})
    assert registry_auth.host in str(err.value) and "login" in str(err.value)
    assert registry_auth.password and registry_auth.password not in str(err.value)


def test_wrong_credentials_are_refused_by_name(
    make_function: FunctionFactory, registry_auth: RegistryServer, pip_cache: Path, tmp_path: Path
) -> None:
    wrong = RegistryServer(
        registry_auth.host, registry_auth.workdir, registry_auth.process, "faaspub", "wrong-pass"
    )
    config = wrong.docker_config(tmp_path / "config.json")
    settings = Settings(
        registry={"url": registry_auth.url, "insecure": True, "credentials_file": str(config)},
        build={"cache_dir": str(pip_cache)},
    )
    with pytest.raises(FaaspubError) as err:
        NativeBuilder(settings).build(load_function(make_function()), "1.0.0", {})
    assert registry_auth.host in str(err.value) and "denied" in str(err.value)
    assert "wrong-pass" not in str(err.value)


def test_unreachable_registry_fails_clearly(make_function: FunctionFactory, pip_cache: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        registry={"url": f"http://127.0.0.1:{port}", "insecure": True}, build={"cache_dir": str(pip_cache)}
    )
    with pytest.raises(FaaspubError, match=rf"127.0.0.1:{port} unreachable after \d+ attempts"):
        NativeBuilder(settings).build(load_function(make_function()), "1.0.0", {})


def test_cli_build_json_then_test_by_image(
    make_function: FunctionFactory,
    registry: RegistryServer,
    base_image: BaseImage,
    pip_cache: Path,
    podman_socket: str,
    tmp_path: Path,
) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "FAASPUB_REGISTRY__URL": registry.url,
        "FAASPUB_REGISTRY__INSECURE": "true",
        "FAASPUB_REGISTRY__BASE_IMAGE": base_image.ref,
        "FAASPUB_BUILD__CACHE_DIR": str(pip_cache),
        "DOCKER_HOST": podman_socket,
    }
    root = make_function(
        manifest=(
            "name: hello\nruntime: python:3.11\nhandler: handler:main\n"
            "examples:\n  - input: {name: a}\n    expect: {greeting: hello b}\n"
        )
    )
    faaspub = [sys.executable, "-m", "publisher.cli"]
    built = subprocess.run(
        [*faaspub, "build", str(root), "--version", "3.1.0", "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    result = json.loads(built.stdout)
    assert {"image", "digest", "size", "layers", "layers_reused", "test_image"} <= set(result)
    assert result["image"].endswith(f"@{result['digest']}") and ":3.1.0-" in result["image"]
    image = result["image"].split("@")[0]
    tested = subprocess.run(
        [*faaspub, "test", str(root), "--image", image, "--junit", str(tmp_path / "j.xml"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert tested.returncode == 1, tested.stderr
    report = json.loads(tested.stdout)
    assert report["ok"] is False and report["failed"] == 1 and report["passed"] >= 2
    assert '$.greeting: expected "hello b", got "hello a"' in report["failures"][0]
    assert (tmp_path / "j.xml").is_file()
