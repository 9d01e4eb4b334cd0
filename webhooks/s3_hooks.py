"""``HEAD``/``POST /hooks/s3``: S3 bucket notifications (MinIO webhook target, Ceph RGW, AWS-style).

Bearer-token authentication (``storage.s3.webhook_token[_file]``, compared in constant time); every
delivery is recorded (a wrong token too, without its body). The events and the delivery record are
stored in one transaction before the 2xx goes out, so a notification MinIO considers delivered is
never lost; a body that is not JSON gets 400, one without records is answered 200 and recorded as
ignored (retrying it would not help).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from publisher.config import read_secret
from publisher.core.context import Context
from publisher.db.models import WebhookDelivery
from publisher.gitlab.metrics import DELIVERIES
from publisher.triggers import metrics
from publisher.triggers.runner import intake_for
from publisher.triggers.s3 import S3BodyError, parse
from publisher.triggers.store import write_lock
from webhooks.bodies import read_bounded

router = APIRouter(tags=["webhooks"])
log = logging.getLogger(__name__)


def _authorized(context: Context, header: str | None) -> str | None:
    """None when the Authorization header carries the configured token, else the reason."""
    s3 = context.settings.storage.s3
    token = read_secret(s3.webhook_token, s3.webhook_token_file, "storage.s3 webhook token")
    if not token:
        return "no storage.s3 webhook token is configured"
    if not header:
        return "no Authorization header"
    # MinIO sends "Bearer <token>", or the token verbatim when it already carries a scheme.
    expected = token if " " in token else f"Bearer {token}"
    if not hmac.compare_digest(header.encode("utf-8"), expected.encode("utf-8")):
        return "wrong token"
    return None


def _record(
    context: Context,
    started: float,
    status: int,
    outcome: str,
    detail: str | None,
    body: Any = None,
    event: str | None = None,
) -> JSONResponse:
    with context.sessions() as session, session.begin():
        row = WebhookDelivery(
            source="s3",
            event=event,
            outcome=outcome,
            detail=detail,
            body=body,
            answer_ms=(time.perf_counter() - started) * 1000,
        )
        session.add(row)
        session.flush()
        delivery = row.id
    DELIVERIES.labels("s3", outcome).inc()
    return JSONResponse({"outcome": outcome, "delivery": delivery, "detail": detail}, status_code=status)


def _handle(context: Context, authorization: str | None, body: bytes | None, started: float) -> JSONResponse:
    refused = _authorized(context, authorization)
    if refused:
        metrics.reject("unauthorized")
        return _record(context, started, 401, "unauthorized", refused)
    if body is None:
        limit = context.settings.server.max_body_bytes
        metrics.reject("too_large")
        return _record(
            context, started, 413, "too_large", f"body larger than server.max_body_bytes ({limit})"
        )
    try:
        parsed = parse(body, context.settings.storage.s3.endpoint)
    except S3BodyError as exc:
        log.warning("S3 notification rejected: %s", exc)
        metrics.reject(exc.reason)
        if exc.reason == "not_json":
            return _record(context, started, 400, "invalid", str(exc))
        return _record(context, started, 200, "ignored", str(exc))
    for reason in parsed.ignored:
        log.info("S3 record ignored: %s", reason)
        metrics.reject("unsupported_record")
    intake = intake_for(context)
    detail = "; ".join(parsed.ignored) or None
    outcome = "queued" if parsed.events else "ignored"
    with write_lock(context.sessions), context.sessions() as session, session.begin():
        queued = intake.accept_in(session, parsed.events)
        row = WebhookDelivery(
            source="s3",
            event=parsed.name,
            outcome=outcome,
            detail=detail,
            body=parsed.body,
            answer_ms=(time.perf_counter() - started) * 1000,
        )
        session.add(row)
        session.flush()
        delivery = row.id
    intake.notify(queued)
    DELIVERIES.labels("s3", outcome).inc()
    return JSONResponse(
        {"outcome": outcome, "delivery": delivery, "events": len(parsed.events), "queued": queued},
        status_code=200,
    )


@router.head("/hooks/s3", summary="Liveness check of the S3 notification endpoint (MinIO probes it)")
def s3_alive() -> Response:
    return Response(status_code=200)


@router.post("/hooks/s3", summary="S3 bucket notifications (MinIO, Ceph RGW, AWS-style records)")
async def s3_hook(request: Request) -> JSONResponse:
    started = time.perf_counter()
    context: Context = request.app.state.context
    body = await read_bounded(request, context.settings.server.max_body_bytes)
    return await run_in_threadpool(_handle, context, request.headers.get("authorization"), body, started)
