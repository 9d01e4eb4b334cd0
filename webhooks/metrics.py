"""``GET /metrics``: Prometheus text exposition of the default registry."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from publisher.accounting.metrics import watch_usage
from publisher.db.queue import Queue
from publisher.gitlab.metrics import watch_queue

router = APIRouter(tags=["service"])


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    context = getattr(request.app.state, "context", None)
    if context is not None and not getattr(request.app.state, "metrics_queue", False):
        # The queue gauges and usage counters are read from the database at scrape time by collectors.
        watch_queue(Queue(context.sessions, worker_id="metrics"))
        watch_usage(context.sessions)
        request.app.state.metrics_queue = True
    return Response(await run_in_threadpool(generate_latest), media_type=CONTENT_TYPE_LATEST)
