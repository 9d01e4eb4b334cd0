"""Fixtures for backend tests: a context on a fresh SQLite database and function images."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.types import ImageRef
from tests.backends.images import build_function_image

HELLO = """
import os, sys

def main(params):
    print("hello from", params.get("name", "nobody"))
    print("to stderr", file=sys.stderr)
    return {"greeting": "hello " + params.get("name", "world"), "pid": os.getpid(),
            "uid": os.getuid(), "version": os.environ.get("__OW_ACTION_VERSION"),
            "identity": {k: v for k, v in os.environ.items() if k.startswith("FAASPUB_FUNCTION_")}}
"""


def make_context(tmp_path: Path, **backend: object) -> Context:
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "database": {"url": f"sqlite:///{tmp_path / 'faaspub.db'}"},
            "registry": {"insecure": True},
            "backend": backend,
            # The namespaces test functions use (make_release's "grp", and "xfel/spb") were granted
            # the secrets in this folder; every other namespace gets none.
            "secrets": {"namespaces": {ns: {"dir": str(tmp_path / "secrets")} for ns in ("grp", "xfel/spb")}},
        }
    )
    return Context(settings)


@pytest.fixture(scope="session")
def function_image(base_image: object) -> Callable[..., ImageRef]:
    """Build (once per code) a function image on the session base image."""
    cache: dict[tuple[str, str, str], ImageRef] = {}

    def build(name: str, version: str, code: str = HELLO) -> ImageRef:
        key = (name, version, code)
        if key not in cache:
            cache[key] = build_function_image(base_image, name, version, code)
        return cache[key]

    return build


@pytest.fixture()
def ctx(tmp_path: Path) -> Iterator[Context]:
    context = make_context(tmp_path)
    yield context
    context.engine.dispose()
