"""The ``gitlab_server`` fixture: a fresh fake GitLab API per test (see :mod:`tests.fakes.gitlab_server`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gitlab_server import FakeGitLab, start, stop


@pytest.fixture
def gitlab_server() -> Iterator[FakeGitLab]:
    fake = start()
    try:
        yield fake
    finally:
        stop(fake)
