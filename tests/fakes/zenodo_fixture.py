"""The ``zenodo_server`` pytest fixture: a fresh fake Zenodo per test (register as a pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.zenodo_server import ZenodoServer


@pytest.fixture
def zenodo_server() -> Iterator[ZenodoServer]:
    """A running fake Zenodo (production DOI prefix, RDM behaviour); tweak ``.fake`` per test."""
    with ZenodoServer() as server:
        yield server
