"""Fixtures of the CI pipeline tests: the tools image, the git server and the gitlab-ci-local set-up."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.ci.githttp import GitHttpServer
from tests.ci.pipeline import REPO_ROOT, gitlab_ci_local, publish_templates
from tests.infra.containers import BaseImage, RegistryServer, cache_root, require_tool

TOOLS_BUILDER = REPO_ROOT / "runtime-images" / "tools" / "offline.py"


def load_tools_builder() -> ModuleType:
    """runtime-images/tools/offline.py as a module (its folder name is not importable)."""
    spec = importlib.util.spec_from_file_location("faaspub_tools_offline", TOOLS_BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gcl() -> str:
    """The pinned gitlab-ci-local (installed by scripts/install-gitlab-ci-local.sh); needs npm and rsync."""
    require_tool("npm")
    require_tool("rsync")
    require_tool("git")
    return gitlab_ci_local()


@pytest.fixture(scope="session")
def tools_image(registry: RegistryServer, base_image: BaseImage) -> str:
    """The faaspub tools image, built offline on the python base and pushed: ``HOST/REPO:TAG``."""
    from publisher.oci.registry import RegistryClient

    builder = load_tools_builder()
    store = RegistryClient(registry.url, insecure=True)
    built = builder.build_tools_image(store, base_image.ref, cache_dir=cache_root())
    return str(built.reference)


@pytest.fixture(scope="session")
def git_server() -> Iterator[GitHttpServer]:
    """A smart-HTTP git server standing in for the GitLab instance, with faaspub/ci-templates published."""
    require_tool("git")
    root = Path(tempfile.mkdtemp(prefix="faaspub-git-"))
    (root / "repos").mkdir()
    with GitHttpServer(root / "repos") as server:
        publish_templates(server, root)
        yield server
    shutil.rmtree(root, ignore_errors=True)
