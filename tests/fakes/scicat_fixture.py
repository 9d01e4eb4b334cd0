"""The ``scicat_server`` fixture: a fresh SciCat test server per test (:mod:`tests.fakes.scicat_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.scicat_server import FakeScicat, User, start, stop

# An ingestor account of the facility, allowed to create datasets of the group p002042.
TOKEN = "test-scicat-token-9c2e"
OTHER_TOKEN = "test-scicat-token-other-11"
USERS = {TOKEN: User("ingestor", ["p002042", "facility"]), OTHER_TOKEN: User("visitor", ["p000001"])}


@pytest.fixture
def scicat_server() -> Iterator[FakeScicat]:
    server, fake = start(USERS)
    try:
        yield fake
    finally:
        stop(server)
