"""Turn a GitLab webhook body into the job it asks for, or a reason to ignore it.

Routing looks only at the body (``object_kind``/``event_name``): system hooks always send
``X-Gitlab-Event: System Hook``. The job payload keeps ids and refs only; workers read everything
else back from the configured GitLab API, so a body can never point a worker at another server.
Job keys are derived from what happened (project and pipeline ids), so a delivery, its redelivery
and the reconciliation pass all enqueue the same job once. A key also names the project path the
delivery claimed: a delivery that pairs another group's project id with its own group's path gets a
key of its own, so it can never take the place of the real project's job (the worker then refuses it,
see :mod:`publisher.gitlab.identity`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

ZERO_SHA = "0" * 40
MR_REF = re.compile(r"^refs/merge-requests/(\d+)/(?:head|merge|train)$")

RELEASE = "gitlab.release"
STAGING = "gitlab.staging"
PREVIEW = "gitlab.preview"
PREVIEW_REMOVE = "gitlab.preview_remove"
RECONCILE = "gitlab.reconcile"


@dataclass(frozen=True)
class Route:
    """What to do with a delivery: ``kind`` is None when it is ignored (``detail`` says why)."""

    event: str
    project_id: int | None
    project: str | None
    kind: str | None = None
    key: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def route(body: dict[str, Any]) -> Route:
    """Classify one webhook body (project, group or system hook)."""
    event = str(body.get("object_kind") or body.get("event_name") or "unknown")[:64]
    project_obj = _obj(body.get("project"))
    project_id = _int(body.get("project_id")) or _int(project_obj.get("id"))
    project = project_obj.get("path_with_namespace")
    project = project if isinstance(project, str) else None
    base = Route(event=event, project_id=project_id, project=project)
    if project_id is None or project is None:
        return _ignore(base, "no project id or path in the body")
    handler = _ROUTES.get(event)
    if handler is None:
        return _ignore(base, f"event {event!r} is not handled")
    return handler(base, body, project_obj)


def _ignore(base: Route, detail: str) -> Route:
    return Route(base.event, base.project_id, base.project, detail=detail)


def _job(base: Route, kind: str, key: str, **payload: Any) -> Route:
    payload = {"project_id": base.project_id, "project": base.project, **payload}
    return Route(base.event, base.project_id, base.project, kind=kind, key=key, payload=payload)


def project_key(base: Route) -> str:
    """``ID@PATH``: the project as a job key names it (the id and the path the reporter claimed)."""
    return f"{base.project_id}@{base.project}"


def pipeline_key(base: Route, pipeline_id: int) -> str:
    """The job key of everything a pipeline asks for: one job per pipeline, whoever reports it."""
    return f"gitlab:pipeline:{project_key(base)}:{pipeline_id}"


def release_route(base: Route, *, pipeline_id: int, ref: str, sha: str) -> Route:
    """The release job of a tag pipeline (webhook, reconciliation and the CI job's notification).

    The worker checks GitLab's record of the pipeline before it publishes anything.
    """
    key = pipeline_key(base, pipeline_id)
    return _job(base, RELEASE, key, pipeline_id=pipeline_id, sha=sha, ref=ref)


def pipeline_route(
    base: Route,
    *,
    pipeline_id: int,
    status: str,
    ref: str,
    sha: str,
    tag: bool,
    source: str,
    default_branch: str | None,
    mr_iid: int | None,
    source_branch: str | None,
) -> Route:
    """The job for a finished pipeline (shared by the webhook and the reconciliation pass)."""
    if status != "success":
        return _ignore(base, f"pipeline {pipeline_id} is {status}, only successful pipelines are acted on")
    if tag:
        return release_route(base, pipeline_id=pipeline_id, ref=ref, sha=sha)
    key = pipeline_key(base, pipeline_id)
    common = {"pipeline_id": pipeline_id, "sha": sha, "ref": ref}
    if mr_iid is None and (match := MR_REF.match(ref)):
        mr_iid = int(match.group(1))
    if source == "merge_request_event" or mr_iid is not None:
        if mr_iid is None:
            return _ignore(base, "merge-request pipeline without a merge request")
        return _job(base, PREVIEW, key, mr_iid=mr_iid, source_branch=source_branch, **common)
    if default_branch and ref == default_branch:
        return _job(base, STAGING, key, **common)
    return _ignore(
        base, f"pipeline {pipeline_id} on {ref!r} is neither a tag, a merge request nor the default branch"
    )


def _pipeline(base: Route, body: dict[str, Any], project_obj: dict[str, Any]) -> Route:
    attrs = body.get("object_attributes") or {}
    pipeline_id = _int(attrs.get("id"))
    if pipeline_id is None or not isinstance(attrs.get("sha"), str) or not isinstance(attrs.get("ref"), str):
        return _ignore(base, "pipeline event without id, sha or ref")
    mr = _obj(body.get("merge_request"))
    return pipeline_route(
        base,
        pipeline_id=pipeline_id,
        status=str(attrs.get("status")),
        ref=attrs["ref"],
        sha=attrs["sha"],
        tag=attrs.get("tag") is True,
        source=str(attrs.get("source") or ""),
        default_branch=project_obj.get("default_branch"),
        mr_iid=_int(mr.get("iid")),
        source_branch=mr.get("source_branch"),
    )


def removal_route(base: Route, *, mr_iid: int, sha: str | None) -> Route:
    """The job that removes an MR's preview (webhook close/merge and reconciliation)."""
    key = f"gitlab:preview-remove:{project_key(base)}:{mr_iid}:{sha or '-'}"
    return _job(base, PREVIEW_REMOVE, key, mr_iid=mr_iid)


def _merge_request(base: Route, body: dict[str, Any], _project: dict[str, Any]) -> Route:
    attrs = body.get("object_attributes") or {}
    iid = _int(attrs.get("iid"))
    action = attrs.get("action")
    if iid is None:
        return _ignore(base, "merge-request event without iid")
    if action not in ("close", "merge") and attrs.get("state") not in ("closed", "merged"):
        return _ignore(base, f"merge-request action {action!r}: previews follow MR pipelines")
    last = _obj(attrs.get("last_commit"))
    return removal_route(base, mr_iid=iid, sha=last.get("id"))


def _push(base: Route, body: dict[str, Any], _project: dict[str, Any]) -> Route:
    ref, after = body.get("ref"), body.get("after")
    if isinstance(ref, str) and ref.startswith("refs/heads/") and after == ZERO_SHA:
        branch = ref.removeprefix("refs/heads/")
        key = f"gitlab:branch-deleted:{project_key(base)}:{branch}:{body.get('before')}"
        return _job(base, PREVIEW_REMOVE, key, source_branch=branch)
    return _ignore(base, "push events are acted on through their pipelines")


def _repository_update(base: Route, body: dict[str, Any], project_obj: dict[str, Any]) -> Route:
    # A system hook's one-per-push summary: only deleted branches matter here.
    for change in body.get("changes") or []:
        if isinstance(change, dict) and change.get("after") == ZERO_SHA:
            return _push(base, {"ref": change.get("ref"), **change}, project_obj)
    return _ignore(base, "repository update without a deleted branch")


_ROUTES = {
    "pipeline": _pipeline,
    "merge_request": _merge_request,
    "push": _push,
    "repository_update": _repository_update,
}
