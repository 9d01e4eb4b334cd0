"""Release-flow latency against the fake Zenodo: reserve + upload + metadata + publish.

The server runs in-process on loopback, so the figures are faaspub's own overhead (client,
metadata crosswalk, SQLite bookkeeping, md5 of the files) plus the HTTP round trips; the number of
requests per release is what a real Zenodo multiplies by its latency.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from publisher.archive.release import ZenodoArchive
from publisher.archive.store import ArchiveStore
from publisher.archive.zenodo import ZenodoClient
from publisher.db.engine import make_engine, upgrade
from tests.archive.conftest import make_function, make_release
from tests.fakes.zenodo_server import ZenodoServer

COMMAND = "ZenodoArchive.reserve + publish against tests/fakes/zenodo_server.py on loopback"


def _release(archive: ZenodoArchive, root: Path, namespace: str, version: str) -> float:
    fn = make_function(root / namespace, namespace=namespace)
    start = time.perf_counter()
    reservation = archive.reserve(fn, version)
    release, files = make_release(fn, version, root)
    release.reservation = reservation
    archive.publish(release, files)
    return (time.perf_counter() - start) * 1000


def run(quick: bool) -> list[dict[str, Any]]:
    rounds = 5 if quick else 30
    with tempfile.TemporaryDirectory(prefix="faaspub-bench-archive-") as tmp, ZenodoServer() as server:
        root = Path(tmp)
        engine = make_engine(f"sqlite:///{root / 'state.db'}")
        upgrade(engine)
        client = ZenodoClient(server.url, server.token)
        archive = ZenodoArchive(lambda ns: client, ArchiveStore(engine), today=lambda: date(2026, 5, 19))
        _release(archive, root, "warmup", "1.0.0")
        first = [_release(archive, root, f"ns{i}", "1.0.0") for i in range(rounds)]
        before = len(server.fake.seen)
        later = [_release(archive, root, f"ns{i}", "1.1.0") for i in range(rounds)]
        requests_per_release = (len(server.fake.seen) - before) / rounds
        client.close()
        engine.dispose()
    return [
        _row("archive_first_release_p50", round(statistics.median(first), 2), "ms"),
        _row("archive_new_version_release_p50", round(statistics.median(later), 2), "ms"),
        _row("archive_new_version_http_requests", requests_per_release, "requests"),
    ]


def _row(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"metric": metric, "value": value, "unit": unit, "command": COMMAND}


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
