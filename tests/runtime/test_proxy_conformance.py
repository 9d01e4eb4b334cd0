"""The conformance suite against the proxy running as a local process (no container)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from runtime_conformance import ConformanceSuite
from runtime_endpoint import Endpoint, StartProxy, start_local_proxy


@pytest.fixture
def start_proxy() -> Iterator[StartProxy]:
    started: list[Endpoint] = []

    def start(handler: str | None = "probe:echo", env: dict[str, str] | None = None, **_: Any) -> Endpoint:
        endpoint = start_local_proxy(handler, env)
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


class TestLocalProcess(ConformanceSuite):
    """Every case of the suite, against ``python -m faaspub_runtime.proxy``."""
