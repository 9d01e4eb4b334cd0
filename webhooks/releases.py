"""``POST /api/v1/releases``: the CI release job's notification (see :mod:`publisher.gitlab.notify`).

``faaspub release-info --notify URL`` in the ``faaspub:release`` job sends its ``release.json``
here with the job's ``CI_JOB_TOKEN`` in the ``JOB-TOKEN`` header.
"""

from __future__ import annotations

import time
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from publisher.core.context import Context
from publisher.gitlab.intake import Answer
from publisher.gitlab.notify import ReleaseNotify
from webhooks.bodies import read_bounded

router = APIRouter(tags=["webhooks"])


def _notify(request: Request) -> ReleaseNotify:
    state = request.app.state
    notify: ReleaseNotify | None = getattr(state, "release_notify", None)
    if notify is None:
        context: Context = state.context
        notify = state.release_notify = ReleaseNotify(context.settings, context.sessions)
    return notify


@router.post(
    "/api/v1/releases",
    status_code=202,
    summary="Release notification of a CI job (JOB-TOKEN header); queues the tag's release",
)
async def release_notification(request: Request) -> JSONResponse:
    started = time.perf_counter()
    notify = _notify(request)
    # GitLab is asked who holds the token (on the notifier's own threads) before the body is read.
    identity = await notify.identify(request.headers, started)
    if isinstance(identity, Answer):
        return JSONResponse(identity.json(), status_code=identity.status)
    body = await read_bounded(request, notify.max_body)
    if body is None:
        work = partial(notify.too_large, started)
    else:
        work = partial(notify.handle, identity, body, started)
    answer = await run_in_threadpool(work)
    return JSONResponse(answer.json(), status_code=answer.status)
