"""``POST /hooks/gitlab``: GitLab project, group and system webhooks (see :mod:`publisher.gitlab.intake`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from publisher.core.context import Context
from publisher.gitlab.intake import Intake
from webhooks.bodies import read_bounded
from webhooks.limits import gate

router = APIRouter(tags=["webhooks"])


def _intake(request: Request) -> Intake:
    state = request.app.state
    intake: Intake | None = getattr(state, "gitlab_intake", None)
    if intake is None:
        context: Context = state.context
        intake = state.gitlab_intake = Intake(context.settings, context.sessions)
    return intake


@gate("/hooks/gitlab")
async def refuse_early(request: Request) -> JSONResponse | None:
    """A wrong or missing ``X-Gitlab-Token`` (or a stale signature) is refused before the body is read."""
    intake = _intake(request)
    verdict = intake.auth.precheck(request.headers)
    if verdict is None or verdict.reason is None:
        return None
    answer = await intake.refused(request.headers, verdict.reason, time.perf_counter())
    return JSONResponse(answer.json(), status_code=answer.status)


@router.post("/hooks/gitlab", summary="GitLab project, group and system webhooks")
async def gitlab_hook(request: Request) -> JSONResponse:
    started = time.perf_counter()
    intake = _intake(request)
    body = await read_bounded(request, intake.max_body)
    if body is None:
        answer = await intake.too_large(request.headers, started)
    else:
        answer = await intake.handle(request.headers, body, started)
    return JSONResponse(answer.json(), status_code=answer.status)
