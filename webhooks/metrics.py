"""``GET /metrics``: Prometheus text exposition of the default registry.

Open by default (queue depths and outcome counts, no paths or names); with
``server.metrics_token_file`` set, only a scraper sending that bearer token gets an answer.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from publisher.accounting.metrics import watch_usage
from publisher.config import read_secret
from publisher.db.queue import Queue
from publisher.gitlab.metrics import watch_queue

router = APIRouter(tags=["service"])


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    context = getattr(request.app.state, "context", None)
    server = context.settings.server if context is not None else None
    token = server and read_secret(server.metrics_token, server.metrics_token_file, "server.metrics_token")
    if token:
        offered = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(offered, f"Bearer {token}".encode()):
            return JSONResponse(
                {"error": "/metrics needs the metrics token", "hint": "send Authorization: Bearer <token>"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    if context is not None and not getattr(request.app.state, "metrics_queue", False):
        # The queue gauges and usage counters are read from the database at scrape time by collectors.
        watch_queue(Queue(context.sessions, worker_id="metrics"))
        watch_usage(context.sessions)
        request.app.state.metrics_queue = True
    return Response(await run_in_threadpool(generate_latest), media_type=CONTENT_TYPE_LATEST)
