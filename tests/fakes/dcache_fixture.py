"""The ``dcache_server`` fixture: a fresh fake dCache frontend per test (:mod:`tests.fakes.dcache_server`)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.fakes.dcache_server import FakeDcache, start, stop

TOKEN = "test-dcache-token-3f9a"
MACAROON = "MDAxY2xvY2F0aW9uIE9wdGlvbmFsLmVtcHR5CjAwMThpZGVudGlmaWVyIGZha2UK"
PASSWORD = "s3cret-pw"
USERS = {
    f"Bearer {TOKEN}": "alice",
    f"Bearer {MACAROON}": "alice",
    "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode(): "alice",
}


@pytest.fixture
def dcache_server() -> Iterator[FakeDcache]:
    server, fake = start(USERS)
    try:
        yield fake
    finally:
        stop(server)
