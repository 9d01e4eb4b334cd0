"""Running real faaspub pipelines with gitlab-ci-local: project set-up, template publishing, runs.

Shared by the CI tests and ``bench/ci.py``. Nothing here fakes a job: gitlab-ci-local parses the
pipeline, resolves includes from a git remote and runs the jobs in containers (podman).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.ci.githttp import GitHttpServer, git

REPO_ROOT = Path(__file__).resolve().parents[2]
CI_TEMPLATES = REPO_ROOT / "ci-templates"
COMPONENT = CI_TEMPLATES / "templates" / "function" / "template.yml"
PROJECT_TEMPLATE = CI_TEMPLATES / "function.gitlab-ci.yml"
INSTALLER = REPO_ROOT / "scripts" / "install-gitlab-ci-local.sh"

# Where the templates project lives on the (test) GitLab instance, and the tag it is published at.
TEMPLATES_PROJECT = "faaspub/ci-templates"
TEMPLATES_VERSION = "0.1.0"


def gitlab_ci_local() -> str:
    """The pinned gitlab-ci-local executable, installed into .tools/gcl on first use."""
    proc = subprocess.run(["sh", str(INSTALLER)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"installing gitlab-ci-local failed: {proc.stderr.strip()[-1000:]}")
    return proc.stdout.strip().splitlines()[-1]


def init_repo(work_tree: Path, remote_url: str, message: str = "initial") -> str:
    """Make ``work_tree`` a repository with one commit and ``origin`` = ``remote_url``; returns the SHA."""
    git("init", "--quiet", "--initial-branch=main", ".", cwd=work_tree)
    git("add", "-A", cwd=work_tree)
    git("commit", "--quiet", "-m", message, cwd=work_tree)
    git("remote", "add", "origin", remote_url, cwd=work_tree)
    # Stops gitlab-ci-local's "unable to retrieve default remote branch" warnings.
    git("update-ref", "refs/remotes/origin/main", "HEAD", cwd=work_tree)
    git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main", cwd=work_tree)
    return git("rev-parse", "HEAD", cwd=work_tree)


def publish_templates(server: GitHttpServer, scratch: Path) -> str:
    """Publish ci-templates/ as the root of project faaspub/ci-templates, tagged; returns the commit SHA.

    On a GitLab instance the component project has ``templates/`` at its root, so ci-templates/
    is its own project there (e.g. mirrored with ``git subtree split --prefix ci-templates``).
    """
    tree = scratch / "ci-templates"
    shutil.copytree(CI_TEMPLATES, tree, ignore=shutil.ignore_patterns("__pycache__"))
    sha = init_repo(tree, server.url(TEMPLATES_PROJECT), message="faaspub CI templates")
    git("tag", TEMPLATES_VERSION, cwd=tree)
    server.publish(tree, TEMPLATES_PROJECT)
    return sha


@dataclass
class PipelineRun:
    """The outcome of one gitlab-ci-local invocation."""

    returncode: int
    output: str
    seconds: float
    project: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def artifact(self, job: str, name: str) -> Path:
        """The exported artifact ``name`` of ``job`` (gitlab-ci-local's per-job artifact directory)."""
        return self.project / ".gitlab-ci-local" / "artifacts" / safe_job_name(job) / name


def safe_job_name(job: str) -> str:
    """gitlab-ci-local's ``safeDockerString``: each run of other characters than ``[A-Za-z0-9_-]``
    becomes its unpadded base64url (``faaspub:build`` -> ``faaspubOgbuild``)."""
    return re.sub(
        r"[^\w-]+", lambda m: base64.urlsafe_b64encode(m.group().encode()).decode().rstrip("="), job
    )


def run_gitlab_ci_local(
    project: Path,
    args: Sequence[str] = (),
    *,
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> PipelineRun:
    """Run gitlab-ci-local in ``project`` with ``args`` and ``--variable K=V`` for each variable."""
    cmd = [gitlab_ci_local(), "--no-color", "--max-job-name-padding", "0"]
    for key, value in (variables or {}).items():
        cmd += ["--variable", f"{key}={value}"]
    cmd += list(args)
    start = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=project, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    return PipelineRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start, project)


def function_project(
    source: Path, dest: Path, server: GitHttpServer, project_path: str, ci_yaml: str
) -> Path:
    """Copy function folder ``source`` to ``dest`` with ``.gitlab-ci.yml`` = ``ci_yaml``, as a git repo."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".faaspub"))
    (dest / ".gitlab-ci.yml").write_text(ci_yaml)
    init_repo(dest, server.url(project_path))
    return dest


PROJECT_INCLUDE = f"""include:
  - project: {TEMPLATES_PROJECT}
    ref: {TEMPLATES_VERSION}
    file: function.gitlab-ci.yml
"""

COMPONENT_INCLUDE = f"""include:
  - component: $CI_SERVER_FQDN/{TEMPLATES_PROJECT}/function@{TEMPLATES_VERSION}
"""


def container_args(tools_image: str, docker_host_socket: str) -> list[str]:
    """gitlab-ci-local options for podman: local helper image, no pulls from outside, the engine socket.

    The test job talks to the engine through the socket mounted at /run/faaspub/engine.sock.
    """
    socket_path = docker_host_socket.removeprefix("unix://")
    return [
        *_host_ca_args(),
        "--container-executable",
        "podman",
        "--helper-image",
        tools_image,
        "--pull-policy",
        "if-not-present",
        "--volume",
        f"{socket_path}:/run/faaspub/engine.sock",
        "--shell-isolation",
        # CI_REGISTRY* are predefined on GitLab; gitlab-ci-local has none, so the tests set them.
        "--ignore-predefined-vars",
        "CI_REGISTRY,CI_REGISTRY_IMAGE",
    ]


def pipeline_variables(registry_host: str, tools_image: str, base_image: str) -> dict[str, str]:
    """What a GitLab instance would predefine (CI_REGISTRY*, CI_JOB_TOKEN) plus the test registry setup."""
    return {
        "CI_REGISTRY": registry_host,
        "CI_REGISTRY_IMAGE": f"{registry_host}/group/hello",
        "CI_JOB_TOKEN": "job-token-for-tests",
        "FAASPUB_TOOLS_IMAGE": tools_image,
        "FAASPUB_REGISTRY__INSECURE": "true",
        "FAASPUB_REGISTRY__BASE_IMAGE": base_image,
        "DOCKER_HOST": "unix:///run/faaspub/engine.sock",
    }


def _host_ca_args() -> list[str]:
    """The host's CA bundle for pip inside the jobs, when the host sets one (a TLS-inspecting proxy).

    On GitLab the runner's CA configuration plays this part; the templates themselves stay unchanged.
    """
    bundle = (
        os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    )
    if not bundle or not Path(bundle).is_file():
        return []
    return [
        "--volume",
        f"{bundle}:/etc/faaspub-host-ca.pem:ro",
        "--variable",
        "PIP_CERT=/etc/faaspub-host-ca.pem",
    ]
