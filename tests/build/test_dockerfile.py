"""The equivalent Dockerfile and its context; the kaniko builder's refusal without an executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from publisher.build import get_builder
from publisher.build.deps import Target, install_layer
from publisher.build.dockerfile import docker_quote, prepare
from publisher.config import Settings
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from tests.build.conftest import FunctionFactory


def test_docker_quote_escapes() -> None:
    assert docker_quote('say "hi"\\now\nnext') == '"say \\"hi\\"\\\\now next"'


def test_pip_mode_context(make_function: FunctionFactory, tmp_path: Path) -> None:
    root = make_function(files={"requirements.txt": "six==1.16.0\n-r more.txt\n", "more.txt": "attrs\n"})
    ctx = prepare(
        load_function(root),
        "1.0.0",
        tmp_path / "ctx",
        base="reg/base@sha256:" + "a" * 64,
        user="1000",
        pythonpath="/opt/faaspub/deps:/opt/faaspub",
        labels={"org.faaspub.doi": 'x"y'},
        deps="pip",
    )
    text = ctx.dockerfile.read_text()
    assert "\nFROM reg/base@sha256:" + "a" * 64 + "\n" in text
    assert "RUN --mount=type=bind,source=pip,target=/tmp/faaspub-pip" in text
    assert "USER 1000" in text and 'LABEL org.faaspub.doi="x\\"y"' in text
    assert "ENV PYTHONPATH=/opt/faaspub/deps:/opt/faaspub" in text
    assert (ctx.root / "requirements.txt").read_text().split() == ["six==1.16.0", "attrs"]
    assert (ctx.root / "pip" / "pip" / "__init__.py").is_file() and (ctx.root / "pip" / "ca.pem").is_file()
    assert (
        json.loads((ctx.root / "action" / ".faaspub" / "handler.json").read_text())["handler"]
        == "handler:main"
    )
    assert not (ctx.root / "action" / "tests").exists()


def test_context_mode_unpacks_cached_deps(
    make_function: FunctionFactory, tmp_path: Path, pip_cache: Path
) -> None:
    root = make_function(files={"requirements.txt": "six==1.16.0\n"})
    layer, _ = install_layer(
        ["six==1.16.0"],
        ["-r", str(root / "requirements.txt")],
        Target("/opt/faaspub/deps", "3.11", "manylinux2014_x86_64"),
        pip_cache,
        "requirements",
    )
    ctx = prepare(
        load_function(root),
        "1.0.0",
        tmp_path / "ctx",
        base="b",
        user="1000",
        pythonpath="/p",
        labels={},
        deps="context",
        deps_layer=layer.path,
    )
    assert (ctx.root / "deps" / "six.py").is_file()
    assert "COPY deps/ /opt/faaspub/deps/" in ctx.dockerfile.read_text()
    assert "RUN" not in ctx.dockerfile.read_text()


def test_kaniko_without_executor_is_explained(
    make_function: FunctionFactory, layout_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KANIKO_EXECUTOR", "/nonexistent/executor")
    with pytest.raises(FaaspubError, match="kaniko executor /nonexistent/executor not found"):
        get_builder("kaniko", layout_settings).build(load_function(make_function()), "1.0.0", {})


def test_unknown_builder() -> None:
    with pytest.raises(FaaspubError, match="unknown builder 'docker'"):
        get_builder("docker", Settings())
