"""``faaspub runtime build-base`` end to end, and the ``require_tool`` rule (fail under CI, else skip)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli.runtime import runtime
from publisher.oci.layout import OciLayout
from publisher.runtime.base import BASE_REPOSITORY
from tests.infra.containers import cache_root, require_tool


@pytest.mark.containers
def test_build_base_json_into_the_default_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("apt-get")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FAASPUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAASPUB_BUILD__CACHE_DIR", str(cache_root()))
    result = CliRunner().invoke(runtime, ["build-base", "--python", "3.11", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    layout = OciLayout(tmp_path / "home" / "oci")  # the embedded state, not the working directory
    assert doc["image"] == f"oci:{layout.root}:{BASE_REPOSITORY}:3.11"
    assert layout.resolve(BASE_REPOSITORY, "3.11") == doc["digest"]
    assert doc["packages"]["python3.11"].startswith("3.11.")
    assert "libstdc++6" in doc["packages"]


def test_build_base_312_fails_with_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(runtime, ["build-base", "--python", "3.12"])
    assert result.exit_code != 0
    assert "python3.12/Dockerfile" in str(result.exception)


def test_require_tool_fails_under_ci_and_skips_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="docker-registry"):
        require_tool("docker-registry")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="docker-registry"):
        require_tool("docker-registry")
