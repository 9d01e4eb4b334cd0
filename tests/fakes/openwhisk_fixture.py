"""The ``openwhisk_server`` pytest fixture: a fresh fake OpenWhisk controller per test.

Register it as a plugin (``pytest_plugins``) or import the fixture into a ``conftest.py``.
Actions run in podman (the shared ``podman_env`` fixture), so invokes execute the function's code.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.openwhisk_server import OpenWhiskServer


@pytest.fixture
def openwhisk_server(podman_env: dict[str, str]) -> Iterator[OpenWhiskServer]:
    """A running fake OpenWhisk (namespace ``guest``); its key is ``.auth`` (``uuid:key``)."""
    with OpenWhiskServer(podman_env) as server:
        yield server
