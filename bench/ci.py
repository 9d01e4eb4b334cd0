"""Wall time of the faaspub GitLab pipeline of examples/hello, run by gitlab-ci-local with podman.

Sets up what the CI tests use (local registry, private podman configuration and API socket, the
offline python base and tools image, the templates project served over smart HTTP), then times
the tag pipeline validate → build → test → release. ``quick`` skips the release (branch pipeline).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from publisher.oci.registry import RegistryClient
from publisher.podman import write_config
from publisher.runtime.base import BASE_REPOSITORY, build_base
from tests.ci.conftest import load_tools_builder
from tests.ci.githttp import GitHttpServer
from tests.ci.pipeline import (
    PROJECT_INCLUDE,
    REPO_ROOT,
    container_args,
    function_project,
    pipeline_variables,
    publish_templates,
    run_gitlab_ci_local,
)
from tests.infra.containers import cache_root, run_podman, start_registry

GOAL_SECONDS = 60.0


def run(quick: bool) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="faaspub-bench-ci-"))
    registry = start_registry(work / "registry")
    podman_env = write_config(work / "podman", [registry.host])
    sock = work / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        env={**os.environ, **podman_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        store = RegistryClient(registry.url, insecure=True)
        base = build_base("3.11", store, cache_dir=cache_root())
        base_ref = f"{registry.host}/{BASE_REPOSITORY}:{base.tag}"
        tools = load_tools_builder().build_tools_image(store, base_ref, cache_dir=cache_root()).reference
        run_podman(podman_env, "pull", "--quiet", tools)
        (work / "repos").mkdir()
        with GitHttpServer(work / "repos") as server:
            publish_templates(server, work)
            project = function_project(
                REPO_ROOT / "examples" / "hello", work / "hello", server, "group/hello", PROJECT_INCLUDE
            )
            variables = pipeline_variables(registry.host, tools, base_ref)
            args = container_args(tools, f"unix://{sock}")
            if not quick:
                variables["CI_COMMIT_TAG"] = "v1.0.0"
                args += ["--unset-variable", "CI_COMMIT_BRANCH"]
            resolve = run_gitlab_ci_local(project, ["--list"])
            pipeline = run_gitlab_ci_local(project, args, variables=variables, env=podman_env)
        command = "gitlab-ci-local --container-executable podman (examples/hello, include: project)"
        return [
            {
                "metric": "ci_pipeline_hello_seconds",
                "value": round(pipeline.seconds, 2),
                "unit": "s",
                "command": command + ("" if quick else " on tag v1.0.0"),
                "goal": GOAL_SECONDS,
                "passed": pipeline.ok,
            },
            {
                "metric": "ci_include_resolution_seconds",
                "value": round(resolve.seconds, 2),
                "unit": "s",
                "command": "gitlab-ci-local --list (include: project over smart HTTP)",
            },
        ]
    finally:
        service.terminate()
        service.wait(timeout=15)
        run_podman(podman_env, "rm", "--all", "--force", "--time", "0", check=False)
        run_podman(podman_env, "volume", "prune", "--force", check=False)
        run_podman(podman_env, "rmi", "--all", "--force", check=False)
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
