"""Real faaspub pipelines run by gitlab-ci-local 4.73.0 with podman, against the local registry.

The templates are included the way a GitLab project includes them: ``include: project`` and
``include: component`` resolved from a git remote served over smart HTTP. The jobs run in the
offline-built faaspub tools image and call the real faaspub CLI.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import SSlibKey

from publisher.oci.registry import RegistryClient
from publisher.provenance.attest import attached
from publisher.provenance.verify import verify
from tests.ci.githttp import GitHttpServer
from tests.ci.pipeline import (
    COMPONENT_INCLUDE,
    PROJECT_INCLUDE,
    REPO_ROOT,
    container_args,
    function_project,
    pipeline_variables,
    run_gitlab_ci_local,
)
from tests.infra.containers import BaseImage, RegistryServer, run_podman
from tests.provenance.test_signatures import pem_key

HELLO = REPO_ROOT / "examples" / "hello"

pytestmark = pytest.mark.containers


@pytest.fixture
def run_args(
    gcl: str,
    tools_image: str,
    podman_env: dict[str, str],
    podman_socket: str,
    registry: RegistryServer,
    base_image: BaseImage,
) -> tuple[list[str], dict[str, str], dict[str, str]]:
    # The jobs' images come from the local registry; podman must know the tools image before
    # gitlab-ci-local asks for it with --pull-policy if-not-present.
    run_podman(podman_env, "pull", "--quiet", tools_image)
    return (
        container_args(tools_image, podman_socket),
        pipeline_variables(registry.host, tools_image, base_image.ref),
        podman_env,
    )


def test_include_forms_resolve_from_the_git_remote(
    gcl: str, git_server: GitHttpServer, tmp_path: Path
) -> None:
    for name, include in (("project", PROJECT_INCLUDE), ("component", COMPONENT_INCLUDE)):
        project = function_project(HELLO, tmp_path / name, git_server, f"group/{name}", include)
        before = len(git_server.requests)
        run = run_gitlab_ci_local(project, ["--list-json"])
        assert run.ok, run.output
        jobs = {
            job["name"]: job
            for job in json.loads(run.output[run.output.index("[") :].split("\n]")[0] + "\n]")
        }
        assert {"faaspub:validate", "faaspub:build", "faaspub:test"} <= set(jobs)
        assert any("ci-templates.git" in r for r in git_server.requests[before:]), "nothing was cloned"


def test_component_inputs_reach_the_jobs(gcl: str, git_server: GitHttpServer, tmp_path: Path) -> None:
    include = COMPONENT_INCLUDE + "    inputs:\n      test_stage: check\n      builder: buildah\n"
    ci = include + "stages: [build, check, deploy]\n"
    project = function_project(HELLO, tmp_path / "inputs", git_server, "group/inputs", ci)
    run = run_gitlab_ci_local(project, ["--preview"])
    assert run.ok, run.output
    assert "FAASPUB_BUILDER: buildah" in run.output
    assert "stage: check" in run.output
    bad = function_project(
        HELLO,
        tmp_path / "bad",
        git_server,
        "group/bad",
        COMPONENT_INCLUDE + "    inputs:\n      builder: docker\n",
    )
    run = run_gitlab_ci_local(bad, ["--list"])
    assert not run.ok
    assert "not in the list of allowed options" in run.output


def test_hello_pipeline_passes_and_releases_on_a_tag(
    git_server: GitHttpServer,
    tmp_path: Path,
    run_args: tuple[list[str], dict[str, str], dict[str, str]],
    registry: RegistryServer,
) -> None:
    args, variables, env = run_args
    project = function_project(HELLO, tmp_path / "hello", git_server, "group/hello", PROJECT_INCLUDE)
    # The facility's key, as a protected File variable gives it to the job: a path to the key file.
    key = pem_key(tmp_path / "signing.pem")
    key.chmod(0o644)  # readable by the job's user inside the container
    run = run_gitlab_ci_local(
        project,
        [*args, "--unset-variable", "CI_COMMIT_BRANCH", "--volume", f"{key}:/run/faaspub/signing.pem:ro"],
        variables={
            **variables,
            "CI_COMMIT_TAG": "v1.0.0",
            "FAASPUB_PROVENANCE__SIGNING_KEY_FILE": "/run/faaspub/signing.pem",
            "CI_JOB_URL": "https://gitlab.example.org/group/hello/-/jobs/4711",
        },
        env=env,
    )
    assert run.ok, run.output[-6000:]
    build = json.loads(run.artifact("faaspub:build", "build.json").read_text())
    assert build["digest"].startswith("sha256:")
    # The build job attached the SBOM and the signed provenance to the image in the registry.
    assert build["sbom"] is True and build["signed_by"]
    repository = build["image"].split("@", 1)[0].split("/", 1)[1].rsplit(":", 1)[0]
    found = attached(RegistryClient(registry.url, insecure=True), repository, build["digest"])
    assert len(found.sboms) == 1 and len(found.envelopes) == 1
    public = SSlibKey.from_crypto(serialization.load_pem_private_key(key.read_bytes(), None).public_key())
    result = verify(found, build["digest"], public)
    assert result.ok, result.reason
    assert result.statement is not None
    assert result.statement["predicate"]["runDetails"]["metadata"]["invocationId"].endswith("/jobs/4711")
    junit = ET.parse(run.artifact("faaspub:test", "junit.xml")).getroot()
    assert junit.iter("testcase"), "junit.xml has no test cases"
    release = json.loads(run.artifact("faaspub:release", "release.json").read_text())
    assert release["function"] == "hello"
    assert release["version"] == "1.0.0"
    assert release["digest"] == build["digest"]
    assert release["image"].endswith("@" + build["digest"])
    assert release["tests"]["failed"] == 0 and release["tests"]["passed"] > 0


def test_failing_tests_fail_the_pipeline_with_a_report(
    git_server: GitHttpServer, tmp_path: Path, run_args: tuple[list[str], dict[str, str], dict[str, str]]
) -> None:
    args, variables, env = run_args
    project = function_project(HELLO, tmp_path / "broken", git_server, "group/broken", COMPONENT_INCLUDE)
    test_file = project / "tests" / "test_broken.py"
    test_file.write_text("def test_always_fails():\n    assert 1 + 1 == 3\n")
    from tests.ci.githttp import git

    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "a failing test", cwd=project)
    run = run_gitlab_ci_local(
        project,
        [*args, "--unset-variable", "CI_COMMIT_BRANCH"],
        variables={**variables, "CI_COMMIT_TAG": "v1.0.1"},
        env=env,
    )
    assert not run.ok
    assert "faaspub:test" in run.output
    junit = ET.parse(run.artifact("faaspub:test", "junit.xml")).getroot()
    failures = [c for c in junit.iter("testcase") if c.find("failure") is not None]
    assert any(c.get("name") == "test_always_fails" for c in failures)
    assert not run.artifact("faaspub:release", "release.json").exists()
