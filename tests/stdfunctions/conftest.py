"""Fixtures of the standard-function tests: a dCache (frontend test server plus WebDAV door)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.dcache_door import WebdavDoor
from tests.fakes.dcache_fixture import TOKEN
from tests.fakes.dcache_server import FakeDcache
from tests.stdfunctions.functions import storage_event

RAW = "/pnfs/facility/raw/p002042/r0042"


@dataclass
class Dcache:
    """The frontend (QoS, namespace, events) and the WebDAV door that holds file contents."""

    fake: FakeDcache
    door: WebdavDoor

    def land(self, name: str, data: bytes, folder: str = RAW) -> dict[str, object]:
        """Upload through the door (as an instrument does) and return the storage event for it."""
        path = f"{folder}/{name}"
        assert self.door.put(path, data) == 201
        return storage_event(path, self.door.url + path, len(data))


@pytest.fixture
def dcache(dcache_server: FakeDcache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dcache]:
    dcache_server.mkdir(RAW)
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    monkeypatch.setenv("DCACHE_API_URL", dcache_server.url)
    with WebdavDoor(dcache_server, tmp_path / "pools") as door:
        yield Dcache(dcache_server, door)
