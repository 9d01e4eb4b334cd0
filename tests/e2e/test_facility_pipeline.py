"""Issue 20 end to end: the standard functions publish from ``functions/`` and, chained by storage
events, carry a NeXus file from dCache into SciCat, Rucio and tape.

Real parts: ``faaspub serve`` and ``faaspub publish`` as subprocesses, the local backend running each
function in a container of faaspub's own podman, the real Rucio server (tests/infra/rucio.py). Test
servers: the dCache frontend (events, namespace, QoS) with its WebDAV door, and SciCat.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e import embedded
from tests.e2e.dcache_door import WebdavDoor
from tests.e2e.facility_pipeline import (
    FUNCTIONS,
    NAMESPACE,
    RAW,
    RUN,
    STEPS,
    facility_config,
    facility_copy,
    record,
)
from tests.e2e.stack import Service, faaspub, publish_result, start_service, stop_private_podman, wait_for
from tests.fakes.dcache_fixture import TOKEN as DCACHE_TOKEN
from tests.fakes.dcache_server import FakeDcache
from tests.fakes.scicat_fixture import TOKEN as SCICAT_TOKEN
from tests.fakes.scicat_server import FakeScicat
from tests.infra.containers import cache_root, require_tool
from tests.infra.rucio import RucioServer
from tests.stdfunctions.functions import load

# Each test publishes four functions (build, tests inside the image, deploy): minutes on a loaded machine.
pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

# One build cache for both tests (and runs): the dependency layers (h5py, scitacean, rucio-clients)
# are made once.
BUILD_CACHE = cache_root() / "standard-functions"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One facility folder for both tests: one runtime base, one private podman, two databases."""
    require_tool("podman")
    folder = tmp_path_factory.mktemp("facility")
    embedded.prepare(folder)
    try:
        yield folder
    finally:
        stop_private_podman(folder / ".faaspub")


def test_each_standard_function_publishes_from_its_folder(workdir: Path) -> None:
    env = {
        **embedded.home(workdir),  # the facility folder's own state, where prepare() put the base
        "FAASPUB_NAMESPACE": NAMESPACE,
        "FAASPUB_BUILD__CACHE_DIR": str(BUILD_CACHE),
        # Not the pipeline's database: these functions as they are point at example.org services.
        "FAASPUB_DATABASE__URL": f"sqlite:///{workdir / 'as-published.db'}",
    }
    for name in STEPS:
        published = publish_result(
            faaspub("publish", str(FUNCTIONS / name), "--json", cwd=workdir, env=env, timeout=600).stdout
        )
        assert published["function"] == name and published["digest"].startswith("sha256:")
        assert {t["source"] for t in published["triggers"]} == {"dcache"}
    listed = json.loads(faaspub("ls", "--json", cwd=workdir, env=env).stdout)
    assert sorted(f["name"] for f in listed) == sorted(STEPS)


@pytest.fixture
def door(dcache_server: FakeDcache, tmp_path: Path) -> Iterator[WebdavDoor]:
    dcache_server.mkdir(RUN)
    dcache_server.qos_delay = 1.0
    with WebdavDoor(dcache_server, tmp_path / "pools") as running:
        yield running


def test_a_file_in_dcache_runs_the_whole_facility_pipeline(
    workdir: Path,
    dcache_server: FakeDcache,
    door: WebdavDoor,
    scicat_server: FakeScicat,
    rucio_server: RucioServer,
) -> None:
    rucio = rucio_server.client()
    if "p002042" not in rucio.list_scopes():
        rucio.add_scope(rucio_server.account, "p002042")
    config = facility_config(
        workdir,
        dcache_url=dcache_server.url,
        door_url=door.url,
        secrets={
            "DCACHE_TOKEN": DCACHE_TOKEN,
            "SCICAT_TOKEN": SCICAT_TOKEN,
            "RUCIO_PASSWORD": rucio_server.password,
        },
        cache_dir=BUILD_CACHE,
    )
    settings = {
        "nexus-metadata": {},
        "scicat-ingest": {"SCICAT_URL": scicat_server.url},
        "rucio-rule": {"RUCIO_URL": rucio_server.url, "RUCIO_ACCOUNT": "root", "RUCIO_USERNAME": "root"},
        "dcache-qos": {"DCACHE_API_URL": dcache_server.url, "QOS_WAIT_S": "20", "QOS_POLL_S": "0.2"},
    }
    published = {}
    for name in STEPS:
        folder = facility_copy(name, workdir, settings[name])
        published[name] = publish_result(
            faaspub(
                "publish", str(folder), "--json", "--config", str(config), cwd=workdir, timeout=600
            ).stdout
        )
        assert published[name]["version"] == "1.0.0"
    service = start_service(workdir, config)
    try:
        run_pipeline(service, dcache_server, door, scicat_server, rucio, published, config, workdir)
    finally:
        service.stop()


def run_pipeline(
    service: Service,
    dcache: FakeDcache,
    door: WebdavDoor,
    scicat: FakeScicat,
    rucio: Any,
    published: dict[str, dict[str, Any]],
    config: Path,
    workdir: Path,
) -> None:
    wait_for(lambda: dcache.connected() and RAW in dcache.watched(), 30, "the service's dCache event channel")
    nexus = load("nexus-metadata").write_nexus(workdir / "run42.nxs", frames=3, energy_kev=12.4)
    data = nexus.read_bytes()
    assert door.put(f"{RUN}/run42.nxs", data) == 201

    final = wait_for(
        lambda: record(door.read, "dcache-qos", f"{RUN}/run42.nxs"),
        240,
        f"the dcache-qos record (serve log:\n{service.output()[-4000:]})",
        interval=0.5,
    )
    # dCache: the file went to tape, after rucio-rule, and the function saw it arrive.
    assert final["after"] == "rucio-rule" and final["result"]["reached"] is True, final
    assert dcache.qos_requests == [(f"{RUN}/run42.nxs", "tape")]
    # SciCat: one raw dataset with the NeXus metadata and the exact software of two steps.
    [dataset] = scicat.datasets.values()
    assert dataset["datasetName"] == "run42.nxs" and dataset["type"] == "raw"
    assert dataset["scientificMetadata"]["source_energy"] == {"value": pytest.approx(12.4), "unit": "keV"}
    used = dataset["usedSoftware"]
    for step in ("scicat-ingest", "nexus-metadata"):
        assert any(published[step]["digest"] in item for item in used), (step, used)
    # Rucio, through its own API: the replica where the file lies, its run's dataset, the rules.
    rules = {r["rse_expression"]: r for r in rucio.list_did_rules("p002042", "run42.nxs")}
    assert set(rules) == {"tier=tape", "FACILITY_BUFFER"} and rules["FACILITY_BUFFER"]["expires_at"]
    assert [d["name"] for d in rucio.list_content("p002042", "p002042.r0042")] == ["run42.nxs"]
    [replica] = rucio.list_replicas([{"scope": "p002042", "name": "run42.nxs"}], all_states=True)
    assert replica["bytes"] == len(data) and replica["states"]["FACILITY_BUFFER"] == "AVAILABLE"
    assert replica["states"]["FACILITY_TAPE"] == "COPYING"  # what the archive rule asked Rucio for

    # Every step is an activation of the exact version that was published.
    runs = wait_for(lambda: finished(service), 30, "four finished activations")
    by_function = {a["function"]: a for a in runs}
    assert set(by_function) == set(published)
    for name, activation in by_function.items():
        assert activation["status"] == "success", activation
        assert activation["version"] == "1.0.0" and activation["digest"] == published[name]["digest"]
        assert activation["cause"].startswith("storage")
    assert by_function["nexus-metadata"]["bytes_read"] == len(data)

    check_accounting(service, runs, config, workdir)
    page = requests.get(service.url + "/", timeout=10).text
    assert "Provided by the facility" in page and all(name in page for name in published)


def finished(service: Service) -> list[dict[str, Any]] | None:
    items = service.get("/api/v1/activations", namespace=NAMESPACE, limit=50)["items"]
    done = [a for a in items if a["status"] != "pending"]
    return done if len(done) >= len(STEPS) else None


def check_accounting(service: Service, runs: list[dict[str, Any]], config: Path, workdir: Path) -> None:
    """The operator's figures are the sums over the activations the catalogue lists."""
    token = json.loads(
        faaspub(
            "token",
            "create",
            "--namespace",
            "*",
            "--scope",
            "read",
            "--json",
            "--config",
            str(config),
            cwd=workdir,
        ).stdout
    )["token"]
    resp = requests.get(
        f"{service.url}/api/v1/accounting",
        params={"namespace": NAMESPACE},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    figures = {i["function"]: i for i in resp.json()["items"]}
    assert Counter({f: i["runs"] for f, i in figures.items()}) == Counter(a["function"] for a in runs)
    for activation in runs:
        row = figures[activation["function"]]
        assert row["gb_seconds"] == pytest.approx(
            activation["memory_mb"] / 1024 * activation["duration_ms"] / 1000
        )
        assert row["bytes_read"] == (activation["bytes_read"] or 0) and row["failures"] == 0
    metrics = requests.get(f"{service.url}/metrics", timeout=10).text
    assert f'faaspub_function_runs_total{{function="dcache-qos",namespace="{NAMESPACE}"}} 1.0' in metrics
