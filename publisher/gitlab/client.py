"""A small wrapper around python-gitlab: one configured server, retries, and the calls the workers make.

Only ``gitlab.url`` is ever contacted, and projects are addressed by numeric id: nothing from a
webhook body becomes a URL. 5xx answers, connection errors and 429 are retried with exponential
backoff (python-gitlab honours ``Retry-After``). The token is read with
:func:`publisher.config.read_secret` and lives only inside the python-gitlab session headers.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabHttpError
from gitlab.v4.objects import Project

from publisher.config import GitLabSettings, read_secret
from publisher.errors import FaaspubError

log = logging.getLogger(__name__)

STATUS_NAME = "faaspub"
MAX_RETRIES = 8
# A CI job waits on the identity check of its notification: one quick retry, then it is told.
IDENTIFY_RETRIES = 1


# Downloads go to files in chunks, never whole into memory, and stop at these sizes.
CHUNK = 64 * 1024
ARTIFACT_LIMIT = 16 << 20  # build.json, release.json, junit.xml
ARCHIVE_LIMIT = 256 << 20  # a function repository at one commit, compressed
TREE_LIMIT = 1 << 30  # ... and unpacked


def save(chunks: Iterable[bytes], dest: Path, limit: int, what: str) -> None:
    """Write ``chunks`` to ``dest`` (through a temporary file); refuse more than ``limit`` bytes."""
    part = dest.with_name(dest.name + ".part")
    size = 0
    try:
        with open(part, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FaaspubError(f"{what} is larger than {limit >> 20} MiB", hint="it is not read")
                out.write(chunk)
        part.replace(dest)
    finally:
        part.unlink(missing_ok=True)


class TransientError(Exception):
    """GitLab (or another service) failed in a way that a later attempt may not."""


def is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "response_code", None)
    return code is None or code == 429 or code >= 500


def explain(exc: GitlabError, what: str) -> Exception:
    """A retryable error for 5xx/429/connection failures, else a user-facing one naming ``what``."""
    if is_transient(exc):
        return TransientError(f"{what}: GitLab answered {exc.response_code or 'no response'}")
    hint = {
        401: "the gitlab.token is invalid or expired",
        403: "the gitlab.token lacks the api scope or Maintainer role on this project",
        404: "the project, ref or file does not exist (or the token cannot see it)",
    }.get(exc.response_code or 0)
    return FaaspubError(f"{what}: GitLab answered {exc.response_code}: {exc.error_message}", hint=hint)


class GitLab:
    """The configured GitLab server."""

    def __init__(self, settings: GitLabSettings, timeout_s: float = 30.0) -> None:
        if not settings.url:
            raise FaaspubError("gitlab.url is not set", hint="set [gitlab] url in faaspub.toml")
        token = read_secret(settings.token, settings.token_file, "gitlab.token")
        if not token:
            raise FaaspubError(
                "no GitLab API token", hint="set gitlab.token_file to a file with a PAT (api scope)"
            )
        self.url = settings.url.rstrip("/")
        self.timeout_s = timeout_s
        self.api = gitlab.Gitlab(
            self.url,
            private_token=token,
            timeout=timeout_s,
            retry_transient_errors=True,
            keep_base_url=True,
            per_page=100,
        )

    def __repr__(self) -> str:
        return f"GitLab({self.url!r})"

    def project(self, project_id: int) -> Project:
        return self.api.projects.get(project_id, lazy=True)

    def call(self, what: str, fn: Any, *args: Any, retries: int = MAX_RETRIES, **kwargs: Any) -> Any:
        """Run one python-gitlab call, turning its errors into transient or user-facing ones."""
        try:
            return fn(*args, max_retries=retries, **kwargs)
        except GitlabError as exc:
            raise explain(exc, what) from None
        except requests.RequestException as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None

    # -- reads --------------------------------------------------------------------------------

    def project_path(self, project_id: int, retries: int = MAX_RETRIES) -> str:
        """``group/…/project`` of a project id, as GitLab (not a request body) says."""
        project = self.call(f"project {project_id}", self.api.projects.get, project_id, retries=retries)
        return str(project.path_with_namespace)

    def job_of_token(self, job_token: str) -> dict[str, Any] | None:
        """GitLab's record of the CI job holding ``job_token`` (``GET /job``), or None if GitLab refuses it.

        The token is sent once, in the ``JOB-TOKEN`` header of a client that is discarded after
        the call; GitLab only accepts it while its job runs. Outages raise :class:`TransientError`.
        """
        api = gitlab.Gitlab(
            self.url,
            job_token=job_token,
            timeout=self.timeout_s,
            retry_transient_errors=True,
            keep_base_url=True,
        )
        try:
            answer = api.http_get("/job", max_retries=IDENTIFY_RETRIES)
        except GitlabError as exc:
            if exc.response_code in (401, 403):
                return None
            raise explain(exc, "the job of a JOB-TOKEN") from None
        except requests.RequestException as exc:
            raise TransientError(f"the job of a JOB-TOKEN: {type(exc).__name__}") from None
        finally:
            api.session.close()
        return answer if isinstance(answer, dict) else None

    def pipeline(self, project_id: int, pipeline_id: int) -> dict[str, Any]:
        pipeline = self.call(f"pipeline {pipeline_id}", self.project(project_id).pipelines.get, pipeline_id)
        return dict(pipeline.attributes)

    def pipeline_jobs(self, project_id: int, pipeline_id: int) -> list[dict[str, Any]]:
        pipeline = self.project(project_id).pipelines.get(pipeline_id, lazy=True)
        jobs = self.call(f"jobs of pipeline {pipeline_id}", pipeline.jobs.list, get_all=True)
        return [dict(job.attributes) for job in jobs]

    def job_artifact(self, project_id: int, job_id: int, path: str, dest: Path) -> bool:
        """Save one file of a job's artifacts to ``dest`` (at most :data:`ARTIFACT_LIMIT` bytes).

        False when the job has no such file.
        """
        job = self.project(project_id).jobs.get(job_id, lazy=True)
        what = f"artifact {path} of job {job_id}"
        try:
            chunks = job.artifact(path, iterator=True, chunk_size=CHUNK, max_retries=MAX_RETRIES)
        except GitlabHttpError as exc:
            if exc.response_code == 404:
                return False
            raise explain(exc, what) from None
        save(chunks, dest, ARTIFACT_LIMIT, what)
        return True

    def source_archive(self, project_id: int, sha: str, dest: Path) -> None:
        """Save the repository at ``sha`` as a tar.gz (at most :data:`ARCHIVE_LIMIT` bytes) to ``dest``."""
        what = f"archive of {sha[:12]}"
        archive = self.project(project_id).repository_archive
        save(self.call(what, archive, sha=sha, iterator=True, chunk_size=CHUNK), dest, ARCHIVE_LIMIT, what)

    @staticmethod
    def unpack(archive: Path, dest: Path) -> None:
        """Extract a repository archive; the ``data`` filter refuses links and paths leaving ``dest``.

        The members' sizes are added up first: a small archive that unpacks to more than
        :data:`TREE_LIMIT` bytes is refused before anything is written.
        """
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, mode="r:*") as tar:
            if sum(member.size for member in tar.getmembers()) > TREE_LIMIT:
                raise FaaspubError(f"the repository unpacks to more than {TREE_LIMIT >> 20} MiB")
            tar.extractall(dest, filter="data")

    # -- writes -------------------------------------------------------------------------------

    def set_status(
        self,
        project_id: int,
        sha: str,
        state: str,
        description: str,
        *,
        ref: str | None = None,
        target_url: str | None = None,
    ) -> None:
        """Post the ``faaspub`` commit status; an unchanged state (GitLab's 400 transition error) is fine."""
        data: dict[str, Any] = {"state": state, "name": STATUS_NAME, "description": description[:255]}
        if ref:
            data["ref"] = ref
        if target_url:
            data["target_url"] = target_url[:255]
        commit = self.project(project_id).commits.get(sha, lazy=True)
        try:
            commit.statuses.create(data, max_retries=MAX_RETRIES)
        except GitlabError as exc:
            if exc.response_code == 400 and "transition" in str(exc.error_message):
                return
            raise explain(exc, f"commit status on {sha[:12]}") from None
