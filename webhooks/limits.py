"""Bounded input on every route: a body-size limit, and authentication before any body is read.

A pure ASGI middleware (no per-request task or buffering of its own), so the webhook intake keeps
its answer times. For every request:

* a declared ``Content-Length`` above ``server.max_body_bytes`` is answered 413 before a byte of the
  body is read; a body without a declared length is counted as it streams and cut off past the
  limit. The webhook routes (:data:`RECORDING_ROUTES`) answer oversized bodies themselves, because
  they record every refusal (they read with :func:`webhooks.bodies.read_bounded`);
* a request with a body to ``/api/`` must carry a valid API token, checked before the body is read;
  the grant is kept in the request state, so the route does not look it up a second time. The CI
  release notification authenticates with its ``JOB-TOKEN`` in its own route, also before its body;
* a webhook route registers a :func:`gate`: its own credential check on the headers, which runs
  here before the body is read and answers (and records) a refusal itself.

Anything that reads a body through this middleware never holds more than the limit (plus one chunk).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.catalogue.auth import Grant, authenticate
from publisher.core.context import Context
from publisher.db.engine import transaction

# These routes read their bodies with read_bounded and record oversized and unauthenticated
# deliveries themselves (GitLab and S3 look at the delivery log; CI jobs at their answer).
RECORDING_ROUTES = ("/hooks/", "/api/v1/releases")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A route reading through read_bounded stops at limit + 1 byte; the middleware's own cut-off sits
# above that, so the route's answer (and its record) always comes first.
SLACK = 64 * 1024
GRANT = "grant"

# A route's check of its credentials on the headers alone: the refusal to send, or None to go on.
Gate = Callable[[Request], Awaitable[Response | None]]
GATES: dict[str, Gate] = {}


def gate(path: str) -> Callable[[Gate], Gate]:
    """Register ``function`` as the gate of the route at ``path`` (used as a decorator)."""

    def register(function: Gate) -> Gate:
        GATES[path] = function
        return function

    return register


async def _answer(send: Send, status: int, error: str, hint: str | None, headers: dict[str, str]) -> None:
    body = json.dumps({"error": error, "hint": hint}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    # The unread body stays unread: the connection is closed rather than drained.
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _bearer(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _grant(context: Context, token: str) -> Grant | None:
    with transaction(context.sessions) as session:
        return authenticate(session, token)


class RequestLimits:
    """The middleware; ``app.add_middleware(RequestLimits)``. Reads settings from ``app.state.context``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        context: Context = scope["app"].state.context
        limit = context.settings.server.max_body_bytes
        path: str = scope["path"]
        headers = Headers(scope=scope)
        recording = path.startswith(RECORDING_ROUTES)
        if path.startswith("/api/") and not recording:
            refused = await self._authenticate(context, scope, headers)
            if refused is not None:
                await _answer(send, 401, *refused)
                return
        declared = headers.get("content-length", "")
        if not recording and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"body larger than server.max_body_bytes ({limit})", None, {})
            return
        check = GATES.get(path)
        if check is not None and (refusal := await check(Request(scope))) is not None:
            await refusal(scope, receive, send)
            return
        cap = limit + SLACK if recording else limit
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # Answered like any HTTP error of the route (JSON on /api and /hooks).
                    raise HTTPException(413, f"body larger than server.max_body_bytes ({limit})")
            return message

        await self.app(scope, bounded, send)

    @staticmethod
    async def _authenticate(
        context: Context, scope: Scope, headers: Headers
    ) -> tuple[str, str | None, dict[str, str]] | None:
        token = _bearer(headers)
        if token is None:
            return (
                "this needs a token",
                "send Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        grant = await run_in_threadpool(_grant, context, token)
        if grant is None:
            return (
                "the token is not valid",
                "create one with faaspub token create",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        state: dict[str, Any] = scope.setdefault("state", {})
        state[GRANT] = grant
        return None
