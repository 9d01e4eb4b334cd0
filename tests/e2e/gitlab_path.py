"""The GitLab path of the story, link by link: tag → CI pipeline → GitLab → webhook → service → live.

Shared by ``test_gitlab_path.py`` (which asserts every link) and ``bench/e2e.py`` (which times it).
The pieces that cannot run here are the test servers of tests/fakes (GitLab API, Zenodo, OpenWhisk
with real podman actions, the dCache frontend) plus :class:`~tests.e2e.dcache_door.WebdavDoor`;
everything else is the product itself: gitlab-ci-local runs the shared CI template with the real
CLI in the tools image, and ``faaspub serve`` runs as a subprocess with its background workers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.ci.githttp import GitHttpServer
from tests.ci.pipeline import (
    PROJECT_INCLUDE,
    PipelineRun,
    container_args,
    pipeline_variables,
    run_gitlab_ci_local,
)
from tests.e2e.dcache_door import WebdavDoor
from tests.e2e.functions import CXI_METADATA, commit_and_tag, copy_function, tracked_files
from tests.fakes.dcache_fixture import TOKEN as DCACHE_TOKEN
from tests.fakes.dcache_server import FakeDcache
from tests.fakes.gitlab_server import FakeGitLab
from tests.fakes.openwhisk_server import OpenWhiskServer
from tests.fakes.zenodo_server import ZenodoServer

GROUP = "fs-sc"
PROJECT = f"{GROUP}/cxi-metadata"
PROJECT_ID = 4242
TAG = "v1.0.0"
RAW = "/pnfs/xfel.eu/exfel/raw/SPB"  # the beamline's raw-data folder the function watches
WEBHOOK_SECRET = "e2e-hook-secret-5d1c"
GITLAB_TOKEN = "glpat-test-token"  # the fake's read-write token

# The facility's copy of examples/cxi-metadata: its trigger names the dCache folder (the example
# itself watches the local ./data/incoming), and it reads files through WebDAV with a token secret.
FACILITY_TRIGGERS = [
    {
        "storage": {
            "source": "dcache",
            "path": RAW,
            "recursive": True,
            "events": ["created"],
            "match": "*.cxi",
        }
    }
]
CHAIN_TRIGGERS = [
    {"storage": {"source": "dcache", "path": RAW, "recursive": True, "match": "*.metadata.json"}}
]


@dataclass
class Facility:
    """The external services of a facility, as test servers, plus the shared registry and base image."""

    gitlab: FakeGitLab
    zenodo: ZenodoServer
    openwhisk: OpenWhiskServer
    dcache: FakeDcache
    door: WebdavDoor
    registry_host: str
    base_image: str


def function_repository(workdir: Path, git_server: GitHttpServer) -> tuple[Path, str]:
    """examples/cxi-metadata as the project ``fs-sc/cxi-metadata``, tagged ``v1.0.0``; (tree, sha)."""
    tree = copy_function(
        CXI_METADATA,
        workdir / "cxi-metadata",
        triggers=FACILITY_TRIGGERS,
        secrets=["DCACHE_TOKEN"],
        output=None,  # it writes through WebDAV next to its input, not into a local folder
    )
    (tree / ".gitlab-ci.yml").write_text(PROJECT_INCLUDE)
    sha = commit_and_tag(tree, TAG, remote=git_server.url(PROJECT))
    return tree, sha


def run_pipeline(
    tree: Path,
    facility: Facility,
    tools_image: str,
    podman_socket: str,
    podman_env: dict[str, str],
    runner_cache: Path | None = None,
) -> PipelineRun:
    """The tag pipeline (validate, build, test, release) of the shared CI template, with gitlab-ci-local.

    ``runner_cache``: a host folder mounted into the jobs as the build cache, like a GitLab runner's
    shared cache volume, so the dependency layer (numpy, h5py) is not downloaded on every run.
    """
    variables = {
        **pipeline_variables(facility.registry_host, tools_image, facility.base_image),
        "CI_REGISTRY_IMAGE": f"{facility.registry_host}/{PROJECT}",
        "CI_COMMIT_TAG": TAG,
    }
    args = [*container_args(tools_image, podman_socket), "--unset-variable", "CI_COMMIT_BRANCH"]
    if runner_cache is not None:
        runner_cache.mkdir(parents=True, exist_ok=True)
        args += ["--volume", f"{runner_cache}:/cache/faaspub"]
        variables["FAASPUB_BUILD__CACHE_DIR"] = "/cache/faaspub"
    return run_gitlab_ci_local(tree, args, variables=variables, env=podman_env)


def serve_on_gitlab(gitlab: FakeGitLab, tree: Path, sha: str, run: PipelineRun) -> dict[str, Any]:
    """Put the project, its commit and the finished pipeline's job artifacts on the GitLab test server."""
    project = gitlab.projects.get(PROJECT_ID) or gitlab.add_project(PROJECT_ID, PROJECT)
    files = tracked_files(tree)
    project.branches["main"] = sha
    project.files["main"] = files
    jobs = {
        "faaspub:build": {"build.json": run.artifact("faaspub:build", "build.json").read_bytes()},
        "faaspub:test": {"junit.xml": run.artifact("faaspub:test", "junit.xml").read_bytes()},
        "faaspub:release": {"release.json": run.artifact("faaspub:release", "release.json").read_bytes()},
    }
    return gitlab.add_pipeline(PROJECT_ID, sha=sha, ref=TAG, tag=True, jobs=jobs, tree=files)


def pipeline_hook(pipeline: dict[str, Any]) -> dict[str, Any]:
    """GitLab's documented Pipeline Hook example, made to describe ``pipeline``."""
    body: dict[str, Any] = json.loads(
        Path("/work/shared/specs/gitlab-webhooks/pipeline_hook.json").read_text()
    )
    body.pop("merge_request", None)
    body["object_attributes"].update(
        id=pipeline["id"],
        iid=pipeline["iid"],
        name=None,
        ref=pipeline["ref"],
        tag=True,
        sha=pipeline["sha"],
        before_sha="0" * 40,
        source="push",
        status="success",
        url=pipeline["web_url"],
    )
    body["project"].update(
        id=PROJECT_ID,
        name="cxi-metadata",
        path_with_namespace=PROJECT,
        default_branch="main",
        namespace=GROUP,
    )
    body["commit"].update(id=pipeline["sha"])
    return body


def send_hook(service_url: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{service_url}/hooks/gitlab",
        json=body,
        headers={
            "X-Gitlab-Event": "Pipeline Hook",
            "X-Gitlab-Token": WEBHOOK_SECRET,
            "Idempotency-Key": str(uuid.uuid4()),
        },
        timeout=10,
    )


def facility_config(workdir: Path, facility: Facility, cache_dir: Path) -> Path:
    """``faaspub.toml`` of the facility's service (and of CLI runs against the same facility)."""
    secrets = workdir / "secrets"
    (secrets / "functions").mkdir(parents=True, exist_ok=True)
    values = {
        "gitlab-token": GITLAB_TOKEN,
        "hook": WEBHOOK_SECRET,
        "zenodo": facility.zenodo.token,
        "openwhisk": facility.openwhisk.auth,
        "dcache": DCACHE_TOKEN,
        "functions/DCACHE_TOKEN": DCACHE_TOKEN,
    }
    for name, value in values.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    config = workdir / "faaspub.toml"
    config.write_text(f'''
namespace = "{GROUP}"
state_dir = "{workdir / "state"}"
[database]
url = "sqlite:///{workdir / "faaspub.db"}"
[gitlab]
url = "{facility.gitlab.url}"
token_file = "{secrets / "gitlab-token"}"
webhook_secret_file = "{secrets / "hook"}"
groups = ["{GROUP}"]
[registry]
url = "{facility.registry_host}"
insecure = true
credentials_file = "{workdir / "no-registry-credentials.json"}"
base_image = "{facility.base_image}"
[backend]
kind = "openwhisk"
[backend.openwhisk]
api_host = "{facility.openwhisk.url}"
auth_file = "{secrets / "openwhisk"}"
[archive]
kind = "zenodo"
url = "{facility.zenodo.url}"
token_file = "{secrets / "zenodo"}"
[storage.dcache]
url = "{facility.dcache.url}"
token_file = "{secrets / "dcache"}"
webdav_url = "{facility.door.url}"
verify_tls = false
[storage.allowed_paths]
"{GROUP}" = ["{RAW}"]
[secrets]
dir = "{secrets / "functions"}"
[build]
cache_dir = "{cache_dir}"
''')
    return config
