"""The whole GitLab path on one machine, each link asserted (issue 11).

A scientist tags ``v1.0.0`` on their cxi-metadata repository; the shared CI template builds, tests
and releases it (gitlab-ci-local, real CLI, real registry); GitLab (test server) serves the
pipeline's artifacts and sends its Pipeline Hook to a running ``faaspub serve``, which publishes
the DOI on Zenodo (test server), deploys ``cxi-metadata@1.0.0`` and its alias on OpenWhisk (test
server, actions in real podman containers), binds the dCache folder and writes back to GitLab.
Then a real HDF5 file lands in dCache: the function reads it over WebDAV, writes its sidecar back,
and that sidecar runs the chained function (examples/chain/chain-index).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ci.githttp import GitHttpServer
from tests.e2e import gitlab_path as gp
from tests.e2e.dcache_door import WebdavDoor
from tests.e2e.functions import CHAIN_INDEX, commit_and_tag, copy_function, write_cxi
from tests.e2e.stack import Service, Timeline, faaspub, publish_result, start_service, wait_for
from tests.fakes.dcache_server import FakeDcache
from tests.fakes.gitlab_server import FakeGitLab
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer
from tests.infra.containers import BaseImage, RegistryServer, cache_root, run_podman

pytestmark = pytest.mark.containers


@pytest.fixture
def facility(
    tmp_path: Path,
    gitlab_server: FakeGitLab,
    zenodo_server: ZenodoServer,
    openwhisk_server: OpenWhiskServer,
    dcache_server: FakeDcache,
    registry: RegistryServer,
    base_image: BaseImage,
) -> Iterator[gp.Facility]:
    dcache_server.mkdir(gp.RAW)
    with WebdavDoor(dcache_server, tmp_path / "dcache-pools") as door:
        yield gp.Facility(
            gitlab_server, zenodo_server, openwhisk_server, dcache_server, door, registry.host, base_image.ref
        )


@pytest.fixture
def service(tmp_path: Path, facility: gp.Facility) -> Iterator[tuple[Service, Path]]:
    config = gp.facility_config(tmp_path / "service", facility, cache_root())
    running = start_service(tmp_path / "service", config)
    try:
        yield running, config
    finally:
        running.stop()


def release_status(gitlab: FakeGitLab, sha: str) -> str | None:
    history = gitlab.projects[gp.PROJECT_ID].statuses.get(sha, [])
    final = [s for s in history if s["name"] == "faaspub" and s["status"] in ("success", "failed")]
    return final[-1]["status"] if final else None


def activations_of(openwhisk: OpenWhiskServer, name: str) -> list[dict[str, Any]]:
    with openwhisk.controller.lock:
        return [a for a in openwhisk.controller.activations.values() if a.get("name") == name]


def succeeded(openwhisk: OpenWhiskServer, name: str) -> bool:
    return any(a["response"]["success"] for a in activations_of(openwhisk, name))


def output(facility: gp.Facility, path: str) -> bytes | None:
    """The file at ``path`` in dCache; fails at once, with the function's error and logs, if a run failed."""
    with facility.openwhisk.controller.lock:
        runs = list(facility.openwhisk.controller.activations.values())
    failed = [a for a in runs if a["response"].get("success") is False]
    if failed:
        raise AssertionError(f"activations failed: {json.dumps(failed, indent=1)[-4000:]}")
    return facility.door.read(path)


def test_tag_to_live_to_data_through_gitlab(
    tmp_path: Path,
    facility: gp.Facility,
    service: tuple[Service, Path],
    git_server: GitHttpServer,
    gcl: str,
    tools_image: str,
    podman_env: dict[str, str],
    podman_socket: str,
) -> None:
    server, config = service
    gitlab, zenodo, openwhisk, door = facility.gitlab, facility.zenodo, facility.openwhisk, facility.door

    # 1. The repository, tagged v1.0.0, and its tag pipeline: validate, build, test, release.
    timeline = Timeline()
    tree, sha = gp.function_repository(tmp_path, git_server)
    run_podman(podman_env, "pull", "--quiet", tools_image)
    run = gp.run_pipeline(
        tree, facility, tools_image, podman_socket, podman_env, runner_cache=cache_root() / "ci-runner"
    )
    (tmp_path / "pipeline.log").write_text(run.output)
    assert run.ok, run.output[-6000:]
    timeline.mark("pipeline")
    build = json.loads(run.artifact("faaspub:build", "build.json").read_text())
    release = json.loads(run.artifact("faaspub:release", "release.json").read_text())
    junit = ET.parse(run.artifact("faaspub:test", "junit.xml")).getroot()
    assert release["function"] == "cxi-metadata" and release["version"] == "1.0.0"
    assert release["digest"] == build["digest"] and release["image"].startswith(facility.registry_host)
    assert release["tests"]["failed"] == 0 and list(junit.iter("testcase"))

    # The chained function, published from its own checkout with the CLI against the same facility.
    chain = copy_function(
        CHAIN_INDEX,
        tmp_path / "chain-index",
        triggers=gp.CHAIN_TRIGGERS,
        secrets=["DCACHE_TOKEN"],
        output=None,  # on dCache it writes through WebDAV
    )
    commit_and_tag(chain, "v1.0.0")
    chain_result = publish_result(
        faaspub(
            "publish",
            str(chain),
            "--json",
            "--config",
            str(config),
            cwd=tmp_path,
            env={"DOCKER_HOST": podman_socket},
        ).stdout
    )
    assert chain_result["backend"] == "openwhisk" and chain_result["doi"]
    timeline.mark("chain published")

    # 2. GitLab serves the pipeline's artifacts and sends the Pipeline Hook to the service.
    pipeline = gp.serve_on_gitlab(gitlab, tree, sha, run)
    answer = gp.send_hook(server.url, gp.pipeline_hook(pipeline))
    assert answer.status_code == 202, answer.text
    assert answer.json()["outcome"] == "queued"
    timeline.mark("hook")
    status = wait_for(lambda: release_status(gitlab, sha), 120, "the release's final commit status")
    assert status == "success", server.output()[-5000:]
    timeline.mark("live")

    # 3. Zenodo: a published version with its DOI, the release files attached.
    [record] = [d for d in zenodo.fake.published() if d.metadata.get("title", "").startswith("cxi-metadata")]
    assert {"release.json", "junit.xml", "CITATION.cff"} <= set(record.files)
    public = requests.get(f"{zenodo.url}/records/{record.id}", timeout=10).json()
    doi = public["doi"]
    assert public["metadata"]["version"] == "1.0.0" and doi.startswith("10.")

    # 4. OpenWhisk: the versioned action and the alias, both on the CI-built image; it runs for real.
    actions = openwhisk.controller.actions
    versioned, alias = actions[f"{gp.GROUP}/cxi-metadata@1.0.0"], actions[f"{gp.GROUP}/cxi-metadata"]
    assert versioned["exec"]["image"] == alias["exec"]["image"] == release["image"]
    invoked = json.loads(
        faaspub(
            "invoke",
            "cxi-metadata",
            "--data",
            '{"selftest": true}',
            "--json",
            "--config",
            str(config),
            cwd=tmp_path,
        ).stdout
    )
    assert invoked["status"] == "success" and invoked["version"] == "1.0.0", invoked
    assert invoked["result"]["photon_energy_ev"] == pytest.approx(9300.0)
    timeline.mark("first invocation")

    # 5. GitLab: commit statuses, the production deployment, DOI in the release notes and a citation MR.
    project = gitlab.projects[gp.PROJECT_ID]
    assert [s["status"] for s in project.statuses[sha]] == ["running", "success"]
    assert doi in project.statuses[sha][-1]["description"]
    [deployment] = project.deployments.values()
    assert deployment["status"] == "success" and deployment["environment"]["name"] == "production"
    wait_for(lambda: project.merge_requests, 30, "the citation merge request")
    [mr] = project.merge_requests.values()
    assert doi in mr["title"] and f"doi: {doi}" in project.files[mr["source_branch"]]["CITATION.cff"]

    # 6. Data arrives: a real CXI file is written to dCache through its WebDAV door.
    cxi = write_cxi(tmp_path / "run0042.cxi")
    assert door.put(f"{gp.RAW}/run0042.cxi", cxi.read_bytes()) == 201
    sidecar = wait_for(
        partial(output, facility, f"{gp.RAW}/run0042.cxi.metadata.json"),
        60,
        "the sidecar in dCache",
    )
    timeline.mark("sidecar")
    metadata = json.loads(sidecar)
    assert metadata["format"] == "cxi" and metadata["file"] == f"{gp.RAW}/run0042.cxi"
    assert metadata["detectors"][0]["data_shape"] == [3, 8, 8]
    assert metadata["photon_energy_ev"] == pytest.approx(12400.0)
    # ... which is itself a storage event: the chained function indexes it.
    entry = wait_for(
        partial(output, facility, f"{gp.RAW}/run0042.cxi.metadata.json.index.json"),
        60,
        "the chained function's output",
    )
    timeline.mark("chained output")
    assert json.loads(entry)["source"] == f"{gp.RAW}/run0042.cxi"
    # Both runs are activations on OpenWhisk (the record is stored once the run has answered).
    for name in ("cxi-metadata", "chain-index"):
        wait_for(partial(succeeded, openwhisk, name), 10, f"the activation record of {name}")
    print(f"push-to-live timeline (s): {json.dumps(timeline.marks)}")
