"""Fixtures for build tests: function folders in git repositories and a tiny base image in a layout."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from publisher.config import Settings
from publisher.oci.image import MEDIA_OCI_MANIFEST, ImageConfig, Manifest
from publisher.oci.layer import build_layer
from publisher.oci.layout import OciLayout

HANDLER = """\
def main(params):
    name = params.get("name", "world")
    return {"greeting": f"hello {name}", "nested": {"n": len(name), "tags": ["a", "b"]}}
"""

TEST = """\
from handler import main


def test_greets():
    assert main({"name": "x"})["greeting"] == "hello x"
"""

MANIFEST = """\
name: {name}
runtime: python:3.11
handler: handler:main
description: Says hello.
env:
  GREETING_STYLE: plain
limits:
  timeout: 30s
  concurrency: 2
examples:
  - input: {{name: faaspub}}
    expect: {{greeting: hello faaspub, nested: {{n: 7}}}}
"""

CITATION = """\
cff-version: 1.2.0
message: Cite me.
title: hello
license: Apache-2.0
authors:
  - family-names: Doe
    given-names: Jane
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_AUTHOR_DATE": "2024-05-01T10:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-05-01T10:00:00+00:00",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def commit_all(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


FunctionFactory = Callable[..., Path]


@pytest.fixture
def make_function(tmp_path: Path) -> FunctionFactory:
    """Write a committed function repository; keyword arguments override or add files."""

    def make(name: str = "hello", files: dict[str, str] | None = None, manifest: str | None = None) -> Path:
        root = tmp_path / name
        root.mkdir()
        content = {
            "function.yaml": manifest if manifest is not None else MANIFEST.format(name=name),
            "handler.py": HANDLER,
            "tests/test_handler.py": TEST,
            "CITATION.cff": CITATION,
            **(files or {}),
        }
        for rel, text in content.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(textwrap.dedent(text))
        git(root, "init", "-q", "-b", "main")
        git(root, "remote", "add", "origin", f"https://gitlab.example.org/group/{name}.git")
        commit_all(root, "initial")
        return root

    return make


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dependency-layer cache for the session, so pip runs once per distinct requirement set."""
    return tmp_path_factory.mktemp("build-cache")


@pytest.fixture
def layout_settings(tmp_path: Path, pip_cache: Path) -> Settings:
    """Settings for a local OCI layout holding a tiny (not runnable) base image ``faaspub/base:3.11``."""
    layout = OciLayout(tmp_path / "oci")
    layer = build_layer({"etc/os-release": b"ID=tiny\n"}, "/")
    config = ImageConfig()
    config.append_layer(layer.diff_id, "tiny base")
    config.set_env({"PYTHONPATH": "/opt/faaspub/runtime"})
    config.set_cmd(["python3", "-m", "faaspub_runtime"])
    layout.put_blob("faaspub/base", layer.read_bytes(), layer.digest)
    layout.put_blob("faaspub/base", config.to_bytes(), config.descriptor().digest)
    manifest = Manifest(config.descriptor(), (layer.descriptor,))
    layout.put_manifest("faaspub/base", "3.11", manifest.to_bytes(), MEDIA_OCI_MANIFEST)
    return Settings(
        registry={"oci_layout": str(tmp_path / "oci"), "base_image": "faaspub/base:{python}"},
        build={"cache_dir": str(pip_cache)},
    )
