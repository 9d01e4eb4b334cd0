"""``HEAD``/``POST /hooks/s3``: S3 bucket notifications (MinIO webhook target, Ceph RGW, AWS via SNS).

Authentication by the token of ``storage.s3.webhook_token[_file]``, in whichever form the sender can
send it (see :func:`refusal`); every delivery is recorded (a refused one without its body). The
events and the delivery record are stored in one transaction before the 2xx goes out, so a
notification the sender considers delivered is never lost; a body that is not JSON gets 400, one
without records is answered 200 and recorded as ignored (retrying it would not help).

Senders wait for the answer (Ceph RGW's upload does not return before it), so the route only
stores: a few milliseconds. A notification that was refused or could not be stored is a gap the S3
source closes by listing the buckets again soon.
"""

from __future__ import annotations

import binascii
import hmac
import logging
import time
from base64 import b64decode
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


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def refusal(token: str | None, authorization: str | None, query_token: str | None) -> str | None:
    """None when the request carries ``token``, else why not (never naming the token itself).

    Each sender sends what it can: MinIO ``Authorization: Bearer <token>`` (or its ``auth_token``
    verbatim when that already has a scheme); Ceph RGW and AWS SNS a ``?token=`` in the push
    endpoint's query string, or ``Authorization: Basic`` with the token as the password of a
    ``user:token@`` endpoint. Compared in constant time.
    """
    if not token:
        return "no storage.s3 webhook token is configured"
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                password = b64decode(credentials, validate=True).decode("utf-8").partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                return "malformed Basic credentials"
            return None if _same(password, token) else "wrong token"
        return None if _same(authorization, token if " " in token else f"Bearer {token}") else "wrong token"
    if query_token is not None:
        return None if _same(query_token, token) else "wrong token"
    return "no token (Authorization header or ?token= in the push endpoint)"


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


def _refused(context: Context, started: float, reason: str) -> JSONResponse:
    intake_for(context).missed("s3").set()
    metrics.reject("unauthorized")
    return _record(context, started, 401, "unauthorized", reason)


def _handle(context: Context, body: bytes | None, started: float) -> JSONResponse:
    intake = intake_for(context)
    if body is None:
        intake.missed("s3").set()
        metrics.reject("too_large")
        limit = context.settings.server.max_body_bytes
        return _record(
            context, started, 413, "too_large", f"body larger than server.max_body_bytes ({limit})"
        )
    try:
        parsed = parse(body, context.settings.storage.s3.endpoint)
    except S3BodyError as exc:
        log.warning("S3 notification not stored (%s); see GET /api/v1/deliveries", exc.reason)
        metrics.reject(exc.reason)
        if exc.reason == "not_json":
            intake.missed("s3").set()
            return _record(context, started, 400, "invalid", str(exc))
        return _record(context, started, 200, "ignored", str(exc), body=exc.body)
    for reason in parsed.ignored:
        log.info("S3 record ignored: %s", reason)
        metrics.reject("unsupported_record")
    if parsed.malformed:
        intake.missed("s3").set()
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


def authorize(context: Context, request: Request) -> str | None:
    """:func:`refusal` for this request and the configured token; before the body is read."""
    s3 = context.settings.storage.s3
    token = read_secret(s3.webhook_token, s3.webhook_token_file, "storage.s3 webhook token")
    return refusal(token, request.headers.get("authorization"), request.query_params.get("token"))


@router.head("/hooks/s3", summary="Liveness check of the S3 notification endpoint (MinIO probes it)")
def s3_alive() -> Response:
    return Response(status_code=200)


@router.post("/hooks/s3", summary="S3 bucket notifications (MinIO, Ceph RGW, AWS-style records)")
async def s3_hook(request: Request) -> JSONResponse:
    started = time.perf_counter()
    context: Context = request.app.state.context
    try:
        refused = authorize(context, request)
        if refused:
            return await run_in_threadpool(_refused, context, started, refused)
        body = await read_bounded(request, context.settings.server.max_body_bytes)
        return await run_in_threadpool(_handle, context, body, started)
    except Exception:
        intake_for(context).missed("s3").set()  # not stored: the sender will not retry, a listing will
        raise
