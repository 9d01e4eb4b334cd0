"""The CI release job's notification (``POST /api/v1/releases`` with ``JOB-TOKEN``).

The job token is the only credential: GitLab is asked which job holds it (``GET /job``), and only
GitLab's answer is trusted (the job's project, pipeline, ref, commit and tag flag); the body, the
job's ``release.json``, is stored for the record and nothing more. The notification queues the same
``gitlab.release`` job, under the same key, as the pipeline webhook, so whichever comes second is a
duplicate. The release job still runs inside its pipeline, so the worker waits for the pipeline to
succeed (see :mod:`publisher.gitlab.release`). The token is never logged, stored or echoed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from publisher.config import Settings
from publisher.db.engine import transaction
from publisher.db.models import WebhookDelivery
from publisher.db.queue import Queue
from publisher.errors import FaaspubError
from publisher.gitlab import events
from publisher.gitlab.auth import ALL_GROUPS, admits
from publisher.gitlab.client import GitLab, TransientError
from publisher.gitlab.intake import Answer
from publisher.gitlab.metrics import DELIVERIES

SOURCE = "ci"
EVENT = "ci_release"
MAX_ATTEMPTS = 10  # as for webhook-queued jobs


class ReleaseNotify:
    """Authenticates notifications through the configured GitLab, then stores them with their job.

    One release makes one notification, so a plain transaction per request is enough here (the
    webhook intake batches its commits; this route does not need to).
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.max_body = settings.server.max_body_bytes
        self._gl: GitLab | None = None
        self._gl_lock = threading.Lock()

    def _gitlab(self) -> GitLab:
        with self._gl_lock:
            if self._gl is None:
                self._gl = GitLab(self.settings.gitlab)
            return self._gl

    def handle(self, headers: Mapping[str, str], body: bytes, started: float) -> Answer:
        """Decide and record one notification whose body was read within ``server.max_body_bytes``."""
        token = headers.get("job-token")
        if not token:
            return self._record(started, 401, "unauthorized", detail="missing JOB-TOKEN header")
        try:
            gl = self._gitlab()
            job = gl.job_of_token(token)
            if job is None:
                detail = "GitLab does not accept this JOB-TOKEN (is its job still running?)"
                return self._record(started, 401, "unauthorized", detail=detail)
            facts = _facts(job)
            project = gl.project_path(facts["project_id"])
        except TransientError as exc:
            return self._record(started, 503, "unavailable", detail=f"cannot ask GitLab: {exc}")
        except FaaspubError as exc:
            return self._record(started, 503, "unavailable", detail=exc.message)
        if not admits(frozenset({ALL_GROUPS}), list(self.settings.gitlab.groups), project):
            detail = f"project {project} is not in a served group"
            return self._record(started, 403, "forbidden", project=project, detail=detail)
        try:
            parsed = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
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
