"""A GitLab REST API v4 test server with the endpoints faaspub uses, following contracts.md A.4.

It runs on a random loopback port in a thread, keeps its state in memory for assertions, and
behaves like GitLab where faaspub depends on it: ``PRIVATE-TOKEN`` / ``Authorization: Bearer``
authentication (401 ``{"message":"401 Unauthorized"}``, 403 for a read-only token writing),
resource 404s ``{"message":"404 Project Not Found"}`` and route 404s ``{"error":"404 Not Found"}``,
``page``/``per_page`` pagination with ``X-Total``/``X-Next-Page``/``Link`` headers, the commit
status state machine (400 "Cannot transition status via :run from :running"), required
parameters (400 "… not given"), ``GET /job`` for a CI job token (the fake issues one per job it
creates, valid only while that job runs), job artifacts (single files and the zip), repository archives,
deployments, environments, merge requests and notes, releases, hooks, files, branches and
commits with actions. Faults: :meth:`FakeGitLab.fail` answers 5xx/429 for matching requests;
:meth:`FakeGitLab.hold` blocks a request until released (to kill a worker mid-call).
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import tarfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

STATUS_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "succeed",
    "failed": "drop",
    "canceled": "cancel",
    "skipped": "skip",
}
# Allowed commit-status transitions (GitLab's CommitStatus state machine, simplified).
TRANSITIONS = {
    None: {"pending", "running", "success", "failed", "canceled", "skipped"},
    "pending": {"running", "success", "failed", "canceled", "skipped"},
    "running": {"success", "failed", "canceled"},
    "success": {"pending", "running"},
    "failed": {"pending", "running"},
    "canceled": {"pending", "running"},
    "skipped": {"pending", "running"},
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, {"message": f"404 {what} Not Found"})


def bad_request(message: Any) -> ApiError:
    return ApiError(400, {"message": message})


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    retry_after: int | None = None


@dataclass
class Hold:
    method: str
    pattern: re.Pattern[str]
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Project:
    id: int
    path: str
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=dict)  # name -> sha
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # branch -> path -> content
    archives: dict[str, bytes] = field(default_factory=dict)  # sha -> tar.gz
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    environments: dict[int, dict[str, Any]] = field(default_factory=dict)
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    notes: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # mr iid -> id -> note
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self, base_url: str) -> dict[str, Any]:
        namespace = self.path.rsplit("/", 1)[0]
        return {
            "id": self.id,
            "path_with_namespace": self.path,
            "path": self.path.rsplit("/", 1)[1],
            "name": self.path.rsplit("/", 1)[1],
            "default_branch": self.default_branch,
            "web_url": f"{base_url}/{self.path}",
            "archived": False,
            "namespace": {"full_path": namespace, "kind": "group"},
        }


class FakeGitLab:
    """State plus the HTTP server. Use :func:`start` or the ``gitlab_server`` fixture."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        self.tokens = tokens or {"glpat-test-token": "rw"}
        self.projects: dict[int, Project] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.lock = threading.RLock()
        self._ids = iter(range(1000, 10**9))
        self.server: ThreadingHTTPServer | None = None

    # -- setup helpers for tests ----------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def next_id(self) -> int:
        return next(self._ids)

    def add_project(self, project_id: int, path: str, default_branch: str = "main") -> Project:
        project = Project(project_id, path, default_branch)
        project.branches[default_branch] = "0" * 39 + "1"
        project.files[default_branch] = {}
        self.projects[project_id] = project
        return project

    def add_pipeline(
        self,
        project_id: int,
        *,
        sha: str,
        ref: str,
        tag: bool = False,
        source: str = "push",
        status: str = "success",
        jobs: dict[str, dict[str, bytes]] | None = None,
        tree: dict[str, str] | None = None,
        job_status: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A pipeline with jobs (name -> artifact files) and the repository ``tree`` at ``sha``.

        Jobs succeeded unless ``job_status`` says otherwise (``{"faaspub:release": "running"}``
        for a pipeline still running its release job; see :meth:`finish_pipeline`).
        """
        project = self.projects[project_id]
        pipeline_id = self.next_id()
        pipeline = {
            "id": pipeline_id,
            "iid": pipeline_id,
            "project_id": project_id,
            "sha": sha,
            "ref": ref,
            "tag": tag,
            "source": source,
            "status": status,
            "created_at": now(),
            "updated_at": now(),
            "web_url": f"{self.url}/{project.path}/-/pipelines/{pipeline_id}",
        }
        project.pipelines[pipeline_id] = pipeline
        for name, files in (jobs or {}).items():
            job_id = self.next_id()
            project.jobs[job_id] = {
                "id": job_id,
                "name": name,
                "status": (job_status or {}).get(name, "success"),
                "stage": "test",
                "ref": ref,
                "tag": tag,
                "pipeline": {"id": pipeline_id},
                "web_url": f"{self.url}/{project.path}/-/jobs/{job_id}",
                "artifacts_file": {"filename": "artifacts.zip"},
                "_files": files,
                "_token": f"glcbt-{secrets.token_hex(16)}",
            }
        if tree is not None:
            project.archives[sha] = tar_gz(f"{project.path.rsplit('/', 1)[1]}-{sha}-{sha}", tree)
        return pipeline

    def job_token(self, project_id: int, pipeline_id: int, name: str) -> str:
        """The ``CI_JOB_TOKEN`` of a job (GitLab accepts it only while the job runs)."""
        project = self.projects[project_id]
        job = next(
            j for j in project.jobs.values() if j["pipeline"]["id"] == pipeline_id and j["name"] == name
        )
        token: str = job["_token"]
        return token

    def finish_pipeline(self, project_id: int, pipeline_id: int, status: str = "success") -> None:
        """End a running pipeline: its unfinished jobs and the pipeline take ``status``."""
        with self.lock:
            project = self.projects[project_id]
            for job in project.jobs.values():
                if job["pipeline"]["id"] == pipeline_id and job["status"] in (
                    "created",
                    "pending",
                    "running",
                ):
                    job["status"] = status
            project.pipelines[pipeline_id].update(status=status, updated_at=now())

    def add_merge_request(
        self, project_id: int, iid: int, source_branch: str, sha: str, state: str = "opened"
    ) -> dict[str, Any]:
        project = self.projects[project_id]
        mr = {
            "id": self.next_id(),
            "iid": iid,
            "project_id": project_id,
            "source_branch": source_branch,
            "target_branch": project.default_branch,
            "state": state,
            "sha": sha,
            "title": f"MR {iid}",
            "description": "",
            "created_at": now(),
            "updated_at": now(),
        }
        project.merge_requests[iid] = mr
        return mr

    def fail(
        self, method: str, pattern: str, status: int = 503, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``."""
        with self.lock:
            self.faults.append(Fault(method, re.compile(pattern), status, times, retry_after))

    def hold(self, method: str, pattern: str) -> Hold:
        """Block matching requests until ``hold.release`` is set (``hold.arrived`` tells when one came)."""
        hold = Hold(method, re.compile(pattern))
        with self.lock:
            self.holds.append(hold)
        return hold

    def count(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(1 for m, p in self.requests if m == method and rx.search(p))

    # -- request handling -----------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((method, path))
            hold = next((h for h in self.holds if h.method == method and h.pattern.search(path)), None)
            if hold is not None:
                self.holds.remove(hold)
        if hold is not None:
            hold.arrived.set()
            hold.release.wait(60)
        with self.lock:
            fault = next((f for f in self.faults if f.method == method and f.pattern.search(path)), None)
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return (
                    fault.status,
                    {"Content-Type": "application/json", **extra},
                    json.dumps({"message": f"{fault.status} fault injected"}).encode(),
                )
            self._current = path
            try:
                if method == "GET" and path == "/api/v4/job":
                    result = self.token_job(headers, query)
                else:
                    self._authenticate(method, headers)
                    data = self._parse(headers, body, query)
                    result = self._route(method, path, query, data)
            except ApiError as exc:
                return (
                    exc.status,
                    {"Content-Type": "application/json", **exc.headers},
                    json.dumps(exc.body).encode(),
                )
        status, payload, extra = result
        if isinstance(payload, bytes):
            return status, {"Content-Type": "application/octet-stream", **extra}, payload
        return status, {"Content-Type": "application/json", **extra}, json.dumps(payload).encode()

    def _authenticate(self, method: str, headers: dict[str, str]) -> None:
        token = headers.get("private-token")
        auth = headers.get("authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        scope = self.tokens.get(token or "")
        if scope is None:
            raise ApiError(401, {"message": "401 Unauthorized"})
        if scope == "ro" and method != "GET":
            raise ApiError(403, {"message": "403 Forbidden"})

    def token_job(self, headers: dict[str, str], query: dict[str, str]) -> Any:
        """``GET /job``: the job a CI job token belongs to; only job tokens of running jobs are accepted."""
        auth = headers.get("authorization", "")
        token = headers.get("job-token") or query.get("job_token")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[7:]
        for project in self.projects.values():
            for job in project.jobs.values():
                if token and job["_token"] == token and job["status"] == "running":
                    return 200, self._public_job(project, job), {}
        raise ApiError(401, {"message": "401 Unauthorized"})

    def _public_job(self, project: Project, job: dict[str, Any]) -> dict[str, Any]:
        """A job as the API shows it: the pipeline summary and commit inline, no fake-only fields."""
        pipeline = project.pipelines[job["pipeline"]["id"]]
        public = {k: v for k, v in job.items() if not k.startswith("_")}
        public["pipeline"] = {
            k: pipeline[k] for k in ("id", "iid", "project_id", "sha", "ref", "status", "source", "web_url")
        }
        public["commit"] = {"id": pipeline["sha"], "short_id": pipeline["sha"][:8]}
        public["project"] = {"ci_job_token_scope_enabled": False}
        return public

    @staticmethod
    def _parse(headers: dict[str, str], body: bytes, query: dict[str, str]) -> dict[str, Any]:
        if not body:
            return dict(query)
        ctype = headers.get("content-type", "")
        if "json" in ctype:
            try:
                data = json.loads(body)
            except ValueError:
                raise bad_request("400 (Bad request) body is not valid JSON") from None
            return {**query, **data}
        return {**query, **{k: v[-1] for k, v in parse_qs(body.decode()).items()}}

    def _route(self, method: str, path: str, query: dict[str, str], data: dict[str, Any]) -> Any:
        if not path.startswith("/api/v4/"):
            raise ApiError(404, {"error": "404 Not Found"})
        rest = path[len("/api/v4") :]
        for verb, pattern, handler in self._routes():
            if verb != method:
                continue
            match = re.fullmatch(pattern, rest)
            if match:
                args = [unquote(g) for g in match.groups()]
                return handler(query, data, *args)
        raise ApiError(404, {"error": "404 Not Found"})

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        p = r"/projects/([^/]+)"
        return [
            ("GET", r"/groups/([^/]+)/projects", self.group_projects),
            ("GET", p, self.get_project),
            ("GET", p + r"/pipelines", self.list_pipelines),
            ("GET", p + r"/pipelines/(\d+)", self.get_pipeline),
            ("GET", p + r"/pipelines/(\d+)/jobs", self.pipeline_jobs),
            ("GET", p + r"/jobs/(\d+)/artifacts", self.job_artifacts_zip),
            ("GET", p + r"/jobs/(\d+)/artifacts/(.+)", self.job_artifact),
            ("GET", p + r"/repository/archive(?:\.tar\.gz)?", self.archive),
            ("POST", p + r"/statuses/([0-9a-f]+)", self.create_status),
            ("GET", p + r"/repository/commits/([0-9a-f]+)/statuses", self.list_statuses),
            ("GET", p + r"/environments", self.list_environments),
            ("POST", p + r"/environments", self.create_environment),
            ("GET", p + r"/deployments", self.list_deployments),
            ("POST", p + r"/deployments", self.create_deployment),
            ("PUT", p + r"/deployments/(\d+)", self.update_deployment),
            ("GET", p + r"/merge_requests", self.list_mrs),
            ("POST", p + r"/merge_requests", self.create_mr),
            ("GET", p + r"/merge_requests/(\d+)", self.get_mr),
            ("GET", p + r"/merge_requests/(\d+)/notes", self.list_notes),
            ("POST", p + r"/merge_requests/(\d+)/notes", self.create_note),
            ("GET", p + r"/merge_requests/(\d+)/notes/(\d+)", self.get_note),
            ("PUT", p + r"/merge_requests/(\d+)/notes/(\d+)", self.update_note),
            ("GET", p + r"/releases/([^/]+)", self.get_release),
            ("POST", p + r"/releases", self.create_release),
            ("PUT", p + r"/releases/([^/]+)", self.update_release),
            ("GET", p + r"/hooks", self.list_hooks),
            ("POST", p + r"/hooks", self.create_hook),
            ("GET", p + r"/repository/files/([^/]+)/raw", self.raw_file),
            ("GET", p + r"/repository/files/([^/]+)", self.get_file),
            ("GET", p + r"/repository/branches/([^/]+)", self.get_branch),
            ("POST", p + r"/repository/branches", self.create_branch),
            ("POST", p + r"/repository/commits", self.create_commit),
        ]

    # -- helpers ---------------------------------------------------------------------------------

    def project(self, ident: str) -> Project:
        for project in self.projects.values():
            if ident == str(project.id) or ident == project.path:
                return project
        raise not_found("Project")

    def page(self, items: list[Any], query: dict[str, str]) -> tuple[int, list[Any], dict[str, str]]:
        try:
            page = max(1, int(query.get("page", 1)))
            per_page = min(100, max(1, int(query.get("per_page", 20))))
        except ValueError:
            raise bad_request("400 (Bad request) page is invalid") from None
        total = len(items)
        pages = max(1, -(-total // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {
            "X-Total": str(total),
            "X-Total-Pages": str(pages),
            "X-Per-Page": str(per_page),
            "X-Page": str(page),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        if page < pages:
            rest = "&".join(f"{k}={v}" for k, v in query.items() if k not in ("page", "per_page"))
            headers["Link"] = (
                f'<{self.url}{self._current}?page={page + 1}&per_page={per_page}&{rest}>; rel="next"'
            )
        return 200, chunk, headers

    _current = ""

    @staticmethod
    def require(data: dict[str, Any], *names: str) -> None:
        for name in names:
            if data.get(name) in (None, ""):
                raise bad_request(f'400 (Bad request) "{name}" not given')

    # -- endpoints ------------------------------------------------------------------------------

    def group_projects(self, query: dict[str, str], _data: dict[str, Any], group: str) -> Any:
        found = [p.as_json(self.url) for p in self.projects.values() if p.path.startswith(group + "/")]
        if not found and not any(p.path.startswith(group + "/") for p in self.projects.values()):
            raise not_found("Group")
        return self.page(found, query)

    def get_project(self, _q: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        return 200, self.project(ident).as_json(self.url), {}

    def list_pipelines(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        items = sorted(self.project(ident).pipelines.values(), key=lambda p: -p["id"])
        if "status" in query:
            items = [p for p in items if p["status"] == query["status"]]
        if "updated_after" in query:
            items = [p for p in items if p["updated_at"] >= query["updated_after"][:19]]
        return self.page([{k: v for k, v in p.items() if k != "tag"} for p in items], query)

    def get_pipeline(self, _q: dict[str, str], _d: dict[str, Any], ident: str, pid: str) -> Any:
        pipeline = self.project(ident).pipelines.get(int(pid))
        if pipeline is None:
            raise not_found("Pipeline")
        return 200, pipeline, {}

    def pipeline_jobs(self, query: dict[str, str], _d: dict[str, Any], ident: str, pid: str) -> Any:
        project = self.project(ident)
        if int(pid) not in project.pipelines:
            raise not_found("Pipeline")
        jobs = [
            self._public_job(project, j) for j in project.jobs.values() if j["pipeline"]["id"] == int(pid)
        ]
        return self.page(jobs, query)

    def _job(self, ident: str, job_id: str) -> dict[str, Any]:
        job = self.project(ident).jobs.get(int(job_id))
        if job is None:
            raise not_found("Job")
        return job

    def job_artifacts_zip(self, _q: dict[str, str], _d: dict[str, Any], ident: str, job_id: str) -> Any:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in self._job(ident, job_id)["_files"].items():
                archive.writestr(name, content)
        return 200, buffer.getvalue(), {}

    def job_artifact(self, _q: dict[str, str], _d: dict[str, Any], ident: str, job_id: str, path: str) -> Any:
        files = self._job(ident, job_id)["_files"]
        if path not in files:
            raise not_found("File")
        return 200, files[path], {}

    def archive(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        project = self.project(ident)
        sha = query.get("sha") or project.branches[project.default_branch]
        if sha not in project.archives:
            raise not_found("Commit")
        return 200, project.archives[sha], {}

    def create_status(self, _q: dict[str, str], data: dict[str, Any], ident: str, sha: str) -> Any:
        self.require(data, "state")
        project = self.project(ident)
        state = data["state"]
        if state not in STATUS_EVENTS:
            raise bad_request("state does not have a valid value")
        for key in ("target_url", "description", "ref"):
            if data.get(key) is not None and len(str(data[key])) > 255:
                raise bad_request({key: ["is too long (maximum is 255 characters)"]})
        name = data.get("name") or data.get("context") or "default"
        history = project.statuses.setdefault(sha, [])
        current = next((s for s in reversed(history) if s["name"] == name), None)
        previous = current["status"] if current else None
        if state not in TRANSITIONS[previous]:
            event = STATUS_EVENTS[state]
            raise bad_request(
                f"Cannot transition status via :{event} from :{previous} "
                f'(Reason(s): Status cannot transition via "{event}")'
            )
        status = {
            "id": self.next_id(),
            "sha": sha,
            "ref": data.get("ref"),
            "status": state,
            "name": name,
            "target_url": data.get("target_url"),
            "description": data.get("description"),
            "created_at": now(),
            "allow_failure": False,
        }
        history.append(status)
        return 201, status, {}

    def list_statuses(self, query: dict[str, str], _d: dict[str, Any], ident: str, sha: str) -> Any:
        return self.page(list(self.project(ident).statuses.get(sha, [])), query)

    def list_environments(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        envs = list(self.project(ident).environments.values())
        if "search" in query:
            envs = [e for e in envs if query["search"] in e["name"]]
        return self.page(envs, query)

    def create_environment(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "name")
        project = self.project(ident)
        if any(e["name"] == data["name"] for e in project.environments.values()):
            raise bad_request({"name": ["has already been taken"]})
        env = {
            "id": self.next_id(),
            "name": data["name"],
            "external_url": data.get("external_url"),
            "tier": data.get("tier", "other"),
            "state": "available",
        }
        project.environments[env["id"]] = env
        return 201, env, {}

    def list_deployments(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        items = list(self.project(ident).deployments.values())
        if "environment" in query:
            items = [d for d in items if d["environment"]["name"] == query["environment"]]
        return self.page(items, query)

    def create_deployment(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "environment", "sha", "ref", "tag", "status")
        project = self.project(ident)
        if data["status"] not in ("running", "success", "failed", "canceled"):
            raise bad_request("status does not have a valid value")
        env = next((e for e in project.environments.values() if e["name"] == data["environment"]), None)
        if env is None:
            env = {"id": self.next_id(), "name": data["environment"], "state": "available", "tier": "other"}
            project.environments[env["id"]] = env
        deployment = {
            "id": self.next_id(),
            "iid": len(project.deployments) + 1,
            "sha": data["sha"],
            "ref": data["ref"],
            "status": data["status"],
            "environment": env,
            "created_at": now(),
        }
        project.deployments[deployment["id"]] = deployment
        return 201, deployment, {}

    def update_deployment(self, _q: dict[str, str], data: dict[str, Any], ident: str, dep_id: str) -> Any:
        self.require(data, "status")
        deployment = self.project(ident).deployments.get(int(dep_id))
        if deployment is None:
            raise not_found("Deployment")
        deployment["status"] = data["status"]
        return 200, deployment, {}

    def list_mrs(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        items = list(self.project(ident).merge_requests.values())
        for key in ("state", "source_branch"):
            if key in query and query[key] != "all":
                items = [m for m in items if m[key] == query[key]]
        return self.page(items, query)

    def create_mr(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "source_branch", "target_branch", "title")
        project = self.project(ident)
        if data["source_branch"] not in project.branches:
            raise bad_request(["Source branch does not exist"])
        if any(
            m["source_branch"] == data["source_branch"] and m["state"] == "opened"
            for m in project.merge_requests.values()
        ):
            raise ApiError(
                409, {"message": ["Another open merge request already exists for this source branch"]}
            )
        iid = max(project.merge_requests, default=0) + 1
        mr = self.add_merge_request(
            project.id, iid, data["source_branch"], project.branches[data["source_branch"]]
        )
        mr.update(
            title=data["title"], description=data.get("description", ""), target_branch=data["target_branch"]
        )
        return 201, mr, {}

    def _mr(self, ident: str, iid: str) -> dict[str, Any]:
        mr = self.project(ident).merge_requests.get(int(iid))
        if mr is None:
            raise not_found("Merge Request")
        return mr

    def get_mr(self, _q: dict[str, str], _d: dict[str, Any], ident: str, iid: str) -> Any:
        return 200, self._mr(ident, iid), {}

    def list_notes(self, query: dict[str, str], _d: dict[str, Any], ident: str, iid: str) -> Any:
        self._mr(ident, iid)
        return self.page(list(self.project(ident).notes.get(int(iid), {}).values()), query)

    def create_note(self, _q: dict[str, str], data: dict[str, Any], ident: str, iid: str) -> Any:
        self.require(data, "body")
        mr = self._mr(ident, iid)
        note = {
            "id": self.next_id(),
            "body": data["body"],
            "system": False,
            "noteable_id": mr["id"],
            "noteable_type": "MergeRequest",
            "noteable_iid": mr["iid"],
            "created_at": now(),
            "updated_at": now(),
            "author": {"id": 1, "username": "faaspub-bot"},
        }
        self.project(ident).notes.setdefault(int(iid), {})[note["id"]] = note
        return 201, note, {}

    def _note(self, ident: str, iid: str, note_id: str) -> dict[str, Any]:
        self._mr(ident, iid)
        note = self.project(ident).notes.get(int(iid), {}).get(int(note_id))
        if note is None:
            raise not_found("Note")
        return note

    def get_note(self, _q: dict[str, str], _d: dict[str, Any], ident: str, iid: str, note_id: str) -> Any:
        return 200, self._note(ident, iid, note_id), {}

    def update_note(
        self, _q: dict[str, str], data: dict[str, Any], ident: str, iid: str, note_id: str
    ) -> Any:
        self.require(data, "body")
        note = self._note(ident, iid, note_id)
        note.update(body=data["body"], updated_at=now())
        return 200, note, {}

    def get_release(self, _q: dict[str, str], _d: dict[str, Any], ident: str, tag: str) -> Any:
        release = self.project(ident).releases.get(tag)
        if release is None:
            raise not_found("")
        return 200, release, {}

    def create_release(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "tag_name")
        project = self.project(ident)
        if data["tag_name"] in project.releases:
            raise ApiError(409, {"message": "Release already exists"})
        release = {
            "tag_name": data["tag_name"],
            "name": data.get("name") or data["tag_name"],
            "description": data.get("description", ""),
            "created_at": now(),
        }
        project.releases[data["tag_name"]] = release
        return 201, release, {}

    def update_release(self, _q: dict[str, str], data: dict[str, Any], ident: str, tag: str) -> Any:
        release = self.project(ident).releases.get(tag)
        if release is None:
            raise not_found("")
        release.update({k: data[k] for k in ("name", "description") if k in data})
        return 200, release, {}

    def list_hooks(self, query: dict[str, str], _d: dict[str, Any], ident: str) -> Any:
        hooks = [
            {k: v for k, v in h.items() if k not in ("token", "signing_token")}
            for h in self.project(ident).hooks.values()
        ]
        return self.page(hooks, query)

    def create_hook(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "url")
        if not str(data["url"]).startswith(("http://", "https://")):
            raise bad_request({"url": ["is blocked: Only allowed schemes are http, https"]})
        hook = {"id": self.next_id(), "created_at": now(), **data}
        self.project(ident).hooks[hook["id"]] = hook
        public = {k: v for k, v in hook.items() if k not in ("token", "signing_token")}
        return 201, public, {}

    def _file(self, ident: str, path: str, query: dict[str, str]) -> str:
        if not query.get("ref"):
            raise bad_request('400 (Bad request) "ref" not given')
        project = self.project(ident)
        files = project.files.get(query["ref"])
        if files is None or path not in files:
            raise not_found("File")
        return files[path]

    def raw_file(self, query: dict[str, str], _d: dict[str, Any], ident: str, path: str) -> Any:
        return 200, self._file(ident, path, query).encode(), {}

    def get_file(self, query: dict[str, str], _d: dict[str, Any], ident: str, path: str) -> Any:
        content = self._file(ident, path, query)
        return (
            200,
            {
                "file_name": path.rsplit("/", 1)[-1],
                "file_path": path,
                "size": len(content.encode()),
                "encoding": "base64",
                "content": base64.b64encode(content.encode()).decode(),
                "ref": query["ref"],
            },
            {},
        )

    def get_branch(self, _q: dict[str, str], _d: dict[str, Any], ident: str, name: str) -> Any:
        project = self.project(ident)
        if name not in project.branches:
            raise not_found("Branch")
        return 200, {"name": name, "commit": {"id": project.branches[name]}}, {}

    def create_branch(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "branch", "ref")
        project = self.project(ident)
        if data["branch"] in project.branches:
            raise bad_request("Branch already exists")
        if data["ref"] not in project.branches:
            raise bad_request("Invalid reference name")
        project.branches[data["branch"]] = project.branches[data["ref"]]
        project.files[data["branch"]] = dict(project.files.get(data["ref"], {}))
        return 201, {"name": data["branch"], "commit": {"id": project.branches[data["branch"]]}}, {}

    def create_commit(self, _q: dict[str, str], data: dict[str, Any], ident: str) -> Any:
        self.require(data, "branch", "commit_message", "actions")
        project = self.project(ident)
        if data["branch"] not in project.branches:
            raise bad_request("You can only create or edit files when you are on a branch")
        files = project.files.setdefault(data["branch"], {})
        for action in data["actions"]:
            path, kind = action.get("file_path"), action.get("action")
            content = action.get("content", "")
            if action.get("encoding") == "base64":
                content = base64.b64decode(content).decode()
            if kind == "create" and path in files:
                raise bad_request("A file with this name already exists")
            if kind == "update" and path not in files:
                raise bad_request("A file with this name doesn't exist")
            files[path] = content
        sha = f"{self.next_id():040x}"
        project.branches[data["branch"]] = sha
        commit = {
            "id": sha,
            "message": data["commit_message"],
            "branch": data["branch"],
            "actions": [a.get("file_path") for a in data["actions"]],
        }
        project.commits.append(commit)
        return 201, commit, {}


def tar_gz(prefix: str, tree: dict[str, str]) -> bytes:
    """A repository archive as GitLab serves it: every file under ``prefix/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in sorted(tree.items()):
            data = content.encode()
            info = tarfile.TarInfo(f"{prefix}/{path}")
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _handler(fake: FakeGitLab) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out separately: avoid 40 ms delayed ACKs

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out_headers, payload = fake.handle(self.command, self.path, headers, body)
            try:
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client was killed while we held its request

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


def start(fake: FakeGitLab | None = None) -> FakeGitLab:
    """Serve ``fake`` on a random loopback port in a daemon thread."""
    fake = fake or FakeGitLab()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.server = server
    threading.Thread(target=server.serve_forever, name="fake-gitlab", daemon=True).start()
    return fake


def stop(fake: FakeGitLab) -> None:
    if fake.server is not None:
        for hold in fake.holds:
            hold.release.set()
        fake.server.shutdown()
        fake.server.server_close()
