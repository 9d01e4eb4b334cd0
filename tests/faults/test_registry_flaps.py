"""The registry goes away for a while during image verification or deploy: the release retries and completes.

The real registry sits behind :class:`~tests.faults.flaky_proxy.FlakyProxy`; images are pushed and
named through the proxy, so every registry call of a release (the ``verify`` step, and the
OpenWhisk backend's tag check at deploy) can meet an outage. Each round arms one outage of random
length on the first (verify) or the second (deploy) registry connection of the release, in turn,
then checks that the release finished once, with one DOI, and that the new version is live.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.faults import invariants
from tests.faults.conftest import make_bed
from tests.faults.flaky_proxy import FlakyProxy
from tests.gitlab.conftest import Project
from tests.triggers.conftest import wait_for

ROUNDS = 5
FUNCTION = "hello"


@pytest.fixture
def proxy(project: Project) -> Iterator[FlakyProxy]:
    with FlakyProxy(project.registry) as flaky:
        yield flaky


def test_release_survives_registry_outages(
    tmp_path: Path,
    project: Project,
    proxy: FlakyProxy,
    zenodo_server: ZenodoServer,
    openwhisk: OpenWhiskServer,
    monkeypatch: pytest.MonkeyPatch,
    rng: random.Random,
) -> None:
    proxied = Project(project.fake, proxy.host)
    bed = make_bed(
        tmp_path, f"sqlite:///{tmp_path / 'faaspub.db'}", proxied, zenodo_server, openwhisk, monkeypatch
    )
    bed.fast_retries()
    released: list[str] = []
    for n in range(1, ROUNDS + 1):
        version = f"2.{n}.0"
        pipeline = bed.project.tag_pipeline(f"v{version}")
        nth, seconds = 1 + n % 2, round(rng.uniform(0.2, 3.2), 2)  # verify step, then deploy
        label = f"round {n} ({version}: registry down {seconds}s from its connection {nth})"
        proxy.outage_at(nth, seconds)
        bed.hook(pipeline)
        bed.work(timeout=60)
        assert proxy.refused, f"{label}: the outage never met a request"
        record = bed.release(version)
        assert record is not None and record.step == "done", f"{label}: {record.error if record else None}"
        released.append(version)
        namespace = record.data["namespace"]
        invariants.one_doi_per_release(bed.zenodo.fake, namespace, FUNCTION, released, [], label)
        invariants.live_version(bed.sessions, namespace, FUNCTION, version, label, bed.openwhisk)
        wait_for(lambda: not proxy.down, timeout=10, what="the registry to come back")
        proxy.refused = 0
