"""Reconciliation: find through the API what webhooks did not deliver, and enqueue it.

GitLab drops events while a hook is disabled and never retries a failed delivery. This pass lists
the served groups' projects, their recently finished pipelines and the merge requests of active
previews, and enqueues the same jobs (same keys) the webhooks would have: anything already
received is a no-op.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.db.queue import Queue
from publisher.errors import FaaspubError
from publisher.gitlab import events
from publisher.gitlab.client import GitLab
from publisher.gitlab.store import PreviewRecord

log = logging.getLogger(__name__)

LOOKBACK = timedelta(hours=24)


@dataclass
class Summary:
    """What one pass found and enqueued."""

    projects: int = 0
    pipelines: int = 0
    enqueued: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"projects": self.projects, "pipelines": self.pipelines, "enqueued": self.enqueued}


def reconcile(context: Context, gl: GitLab, lookback: timedelta = LOOKBACK) -> Summary:
    summary = Summary()
    since = (datetime.now(UTC) - lookback).isoformat()
    for group in context.settings.gitlab.groups:
        group_api = gl.api.groups.get(group, lazy=True)
        try:
            projects = gl.call(
                f"projects of {group}",
                group_api.projects.list,
                get_all=True,
                include_subgroups=True,
                archived=False,
            )
        except FaaspubError as exc:
            # One misconfigured group must not stop the pass for the others.
            log.warning("reconciliation skips group %s: %s", group, exc)
            continue
        for project in projects:
            summary.projects += 1
            routes = _pipeline_routes(
                gl, project.id, project.path_with_namespace, project.default_branch, since
            )
            summary.pipelines += len(routes)
            summary.enqueued += _enqueue(context, routes)
    summary.enqueued += _enqueue(context, _closed_previews(context, gl))
    log.info("reconciliation: %s", summary.as_dict())
    return summary


def _pipeline_routes(
    gl: GitLab, project_id: int, path: str, default_branch: str | None, since: str
) -> list[events.Route]:
    base = events.Route(event="pipeline", project_id=project_id, project=path)
    pipelines = gl.call(
        f"pipelines of {path}",
        gl.project(project_id).pipelines.list,
        iterator=True,
        status="success",
        updated_after=since,
        order_by="id",
        sort="desc",
    )
    routes: list[events.Route] = []
    seen_refs: set[str] = set()
    for pipeline in pipelines:
        ref = pipeline.ref
        # Only the newest pipeline of a branch or MR matters; every tag pipeline is a release.
        if ref in seen_refs:
            continue
        seen_refs.add(ref)
        route = events.pipeline_route(
            base,
            pipeline_id=pipeline.id,
            status=pipeline.status,
            ref=ref,
            sha=pipeline.sha,
            tag=bool(getattr(pipeline, "tag", False)) or _is_tag(gl, project_id, ref, pipeline),
            source=str(getattr(pipeline, "source", "")),
            default_branch=default_branch,
            mr_iid=None,
            source_branch=None,
        )
        if route.kind is not None:
            routes.append(route)
    return routes


def _is_tag(gl: GitLab, project_id: int, ref: str, pipeline: object) -> bool:
    # The pipelines list has no "tag" flag on older GitLab; a pipeline's own record has it.
    if events.MR_REF.match(ref):
        return False
    full = gl.pipeline(project_id, int(pipeline.id))  # type: ignore[attr-defined]
    return bool(full.get("tag"))


def _closed_previews(context: Context, gl: GitLab) -> list[events.Route]:
    with context.sessions() as session:
        active = list(session.scalars(select(PreviewRecord).where(PreviewRecord.state == "active")))
    routes = []
    for preview in active:
        mr = gl.call(
            f"merge request !{preview.mr_iid}",
            gl.project(preview.project_id).mergerequests.get,
            preview.mr_iid,
        )
        if mr.state in ("closed", "merged"):
            base = events.Route(event="merge_request", project_id=preview.project_id, project=preview.project)
            routes.append(events.removal_route(base, mr_iid=preview.mr_iid, sha=mr.sha))
    return routes


def _enqueue(context: Context, routes: list[events.Route]) -> int:
    count = 0
    with transaction(context.sessions) as session:
        for route in routes:
            assert route.kind is not None
            if Queue.enqueue(session, route.kind, {**route.payload, "delivery_id": None}, key=route.key):
                log.info("reconciliation enqueued %s (%s)", route.kind, route.key)
                count += 1
    return count
