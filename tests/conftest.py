"""Test-wide configuration: shared fixtures come from plugins (real components and test servers).

No test may touch the real user's faaspub state or configuration: every test process (xdist workers
included) gets its own ``XDG_DATA_HOME`` and ``XDG_CONFIG_HOME``, and every test its own
``FAASPUB_HOME``. ``XDG_CACHE_HOME`` is left alone: the download and layer cache is content-addressed
and shared on purpose, so repeated runs stay fast.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.infra.containers",
    "tests.infra.ceph",
    "tests.fakes.postgres_fixture",
    "tests.fakes.zenodo_fixture",
    "tests.fakes.gitlab_fixture",
    "tests.fakes.openwhisk_fixture",
    "tests.fakes.dcache_fixture",
    "tests.fakes.scicat_fixture",
    "tests.infra.rucio",
]

_PROCESS_HOME = Path(tempfile.mkdtemp(prefix="faaspub-test-home-"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["XDG_DATA_HOME"] = str(_PROCESS_HOME / "data")
    os.environ["XDG_CONFIG_HOME"] = str(_PROCESS_HOME / "config")
    os.environ["FAASPUB_HOME"] = str(_PROCESS_HOME / "faaspub")
    os.environ.pop("FAASPUB_CONFIG", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_PROCESS_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def _own_faaspub_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A fresh, empty embedded state for each test (what a first run on a new machine sees)."""
    home = tmp_path_factory.mktemp("faaspub-home")
    previous = os.environ.get("FAASPUB_HOME")
    os.environ["FAASPUB_HOME"] = str(home)
    yield
    if previous is None:
        os.environ.pop("FAASPUB_HOME", None)
    else:
        os.environ["FAASPUB_HOME"] = previous
