"""The CI release job's notification (``POST /api/v1/releases`` with ``JOB-TOKEN``).

The job token is the only credential: GitLab is asked which job holds it (``GET /job``), and only
GitLab's answer is trusted (the job's project, pipeline, ref, commit and tag flag); the body, the
job's ``release.json``, is stored for the record and nothing more. The notification queues the same
``gitlab.release`` job, under the same key, as the pipeline webhook, so whichever comes second is a
duplicate. The release job still runs inside its pipeline, so the worker waits for the pipeline to
succeed (see :mod:`publisher.gitlab.release`). The token is never logged, stored or echoed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from publisher.config import Settings
from publisher.db.engine import transaction
from publisher.db.models import WebhookDelivery
from publisher.db.queue import Queue
from publisher.errors import FaaspubError
from publisher.gitlab import events
from publisher.gitlab.auth import ALL_GROUPS, admits
from publisher.gitlab.client import IDENTIFY_RETRIES, GitLab, TransientError
from publisher.gitlab.intake import Answer
from publisher.gitlab.metrics import DELIVERIES

SOURCE = "ci"
EVENT = "ci_release"
MAX_ATTEMPTS = 10  # as for webhook-queued jobs
# Checks that may wait for a free job-token thread; beyond that a notification gets 503 at once.
QUEUED_PER_WORKER = 4


class Refusals:
    """A small negative cache: job tokens GitLab refused, by hash, for ``ttl_s`` (oldest dropped first)."""

    def __init__(self, size: int = 1024, ttl_s: float = 60.0) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def known(self, token: str) -> bool:
        key, now = self._key(token), time.monotonic()
        with self._lock:
            until = self._until.get(key)
            if until is not None and until < now:
                del self._until[key]
                until = None
            return until is not None

    def add(self, token: str) -> None:
        with self._lock:
            self._until[self._key(token)] = time.monotonic() + self.ttl_s
            self._until.move_to_end(self._key(token))
            while len(self._until) > self.size:
                self._until.popitem(last=False)


@dataclass(frozen=True)
class Identity:
    """GitLab's answer about a job token: the job's facts and its project's path."""

    facts: dict[str, Any]
    project: str


class ReleaseNotify:
    """Authenticates notifications through the configured GitLab, then stores them with their job.

    Job-token checks run on a pool of their own (``gitlab.job_token_checks`` threads) with a short
    timeout (``gitlab.job_token_timeout_s``), so a GitLab that does not answer cannot take the
    threads every other route needs; when the pool's queue is full a notification gets 503 at once,
    and tokens GitLab refused are remembered for a minute. One release makes one notification, so a
    plain transaction per request is enough for storing (the webhook intake batches its commits).
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.max_body = settings.server.max_body_bytes
        self.timeout_s = settings.gitlab.job_token_timeout_s
        workers = settings.gitlab.job_token_checks
        self._checks = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job-token")
        self._slots = threading.BoundedSemaphore(QUEUED_PER_WORKER * workers)
        self.refusals = Refusals()
        self._gl: GitLab | None = None
        self._gl_lock = threading.Lock()

    def _gitlab(self) -> GitLab:
        with self._gl_lock:
            if self._gl is None:
                self._gl = GitLab(self.settings.gitlab, timeout_s=self.timeout_s)
            return self._gl

    async def identify(self, headers: Mapping[str, str], started: float) -> Identity | Answer:
        """Who holds the ``JOB-TOKEN`` (asked before any body is read), or the recorded refusal."""
        token = headers.get("job-token")
        if not token:
            return await self._refuse(started, 401, "unauthorized", "missing JOB-TOKEN header")
        if self.refusals.known(token):
            detail = "GitLab does not accept this JOB-TOKEN (is its job still running?)"
            return await self._refuse(started, 401, "unauthorized", detail)
        if not self._slots.acquire(blocking=False):
            detail = "too many JOB-TOKEN checks are waiting for GitLab; retry later"
            return await self._refuse(started, 503, "unavailable", detail)
        try:
            future = asyncio.wrap_future(self._checks.submit(self._ask, token))
            found = await asyncio.wait_for(future, timeout=3 * self.timeout_s)
        except TimeoutError:
            found = f"cannot ask GitLab: no answer within {3 * self.timeout_s:.0f}s"
        finally:
            self._slots.release()
        if isinstance(found, Identity):
            return found
        status, outcome = (
            (401, "unauthorized") if found.startswith("GitLab does not") else (503, "unavailable")
        )
        return await self._refuse(started, status, outcome, found)

    def _ask(self, token: str) -> Identity | str:
        try:
            gl = self._gitlab()
            job = gl.job_of_token(token)
            if job is None:
                self.refusals.add(token)
                return "GitLab does not accept this JOB-TOKEN (is its job still running?)"
            facts = _facts(job)
            return Identity(facts, gl.project_path(facts["project_id"], retries=IDENTIFY_RETRIES))
        except TransientError as exc:
            return f"cannot ask GitLab: {exc}"
        except FaaspubError as exc:
            return exc.message

    async def _refuse(self, started: float, status: int, outcome: str, detail: str) -> Answer:
        return await asyncio.to_thread(partial(self._record, started, status, outcome, detail=detail))

    def handle(self, identity: Identity, body: bytes, started: float) -> Answer:
        """Decide and record one notification whose body was read within ``server.max_body_bytes``."""
        facts, project = identity.facts, identity.project
        if not admits(frozenset({ALL_GROUPS}), list(self.settings.gitlab.groups), project):
            detail = f"project {project} is not in a served group"
            return self._record(started, 403, "forbidden", project=project, detail=detail)
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            detail = "body is not a JSON object"
            return self._record(started, 400, "invalid", project=project, detail=detail)
        if not facts["tag"]:
            detail = f"ref {facts['ref']!r} is not a tag: only tag pipelines are released"
            return self._record(started, 200, "ignored", project=project, detail=detail, body=parsed)
        route = events.release_route(
            events.Route(EVENT, facts["project_id"], project),
            pipeline_id=facts["pipeline_id"],
            ref=facts["ref"],
            sha=facts["sha"],
        )
        return self._record(started, 202, "queued", project=project, body=parsed, route=route)

    def too_large(self, started: float) -> Answer:
        detail = f"body larger than server.max_body_bytes ({self.max_body})"
        return self._record(started, 413, "too_large", detail=detail)

    def _record(
        self,
        started: float,
        status: int,
        outcome: str,
        *,
        detail: str | None = None,
        project: str | None = None,
        body: Any = None,
        route: events.Route | None = None,
    ) -> Answer:
        """Store the delivery and, for ``route``, its job in one transaction (refusals without body)."""
        with transaction(self.sessions) as session:
            row = WebhookDelivery(
                source=SOURCE,
                event=EVENT,
                project=project,
                outcome=outcome,
                detail=detail,
                body=body,
                answer_ms=(time.perf_counter() - started) * 1000,
            )
            session.add(row)
            session.flush()
            if route is not None and route.kind is not None:
                payload = {**route.payload, "delivery_id": row.id}
                if (
                    Queue.enqueue(session, route.kind, payload, key=route.key, max_attempts=MAX_ATTEMPTS)
                    is None
                ):
                    # The pipeline webhook (or reconciliation, or an earlier notification) came first.
                    status, row.outcome, row.detail = 200, "duplicate", f"job {route.key} is already queued"
            answer = Answer(status, row.outcome, row.id, row.detail)
        DELIVERIES.labels(SOURCE, answer.outcome).inc()
        return answer


def _facts(job: dict[str, Any]) -> dict[str, Any]:
    """Project, pipeline, ref, commit and tag flag of a ``GET /job`` answer."""
    pipeline = job.get("pipeline")
    pipeline = pipeline if isinstance(pipeline, dict) else {}
    facts = {
        "project_id": pipeline.get("project_id"),
        "pipeline_id": pipeline.get("id"),
        "ref": job.get("ref") or pipeline.get("ref"),
        "sha": pipeline.get("sha"),
        "tag": job.get("tag") is True,
    }
    if not (
        isinstance(facts["project_id"], int)
        and isinstance(facts["pipeline_id"], int)
        and isinstance(facts["ref"], str)
        and isinstance(facts["sha"], str)
    ):
        raise TransientError("GitLab's job record lacks pipeline.project_id, pipeline.id, ref or sha")
    return facts
