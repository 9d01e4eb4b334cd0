"""The ASGI application behind ``faaspub serve``.

It holds one :class:`publisher.core.context.Context` in ``app.state.context``; each route module
is an ``APIRouter`` with one job (GitLab intake, S3 intake, catalogue API, pages, metrics). Background
work (release workers, storage-event consumers) runs in threads started by the lifespan, and stops
with the service.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from publisher import __version__
from publisher.core.context import Context
from publisher.errors import FaaspubError
from publisher.logs import hide_query_strings
from webhooks.headers import SecurityHeaders
from webhooks.limits import RequestLimits

log = logging.getLogger("faaspub.service")

ROUTERS = (
    "webhooks.gitlab_hooks",
    "webhooks.releases",
    "webhooks.s3_hooks",
    "webhooks.metrics",
    "webhooks.api",
    "webhooks.accounting",
    "webhooks.pages",
    "webhooks.namespace_pages",
)

# Background loops: (name, "module:function"), each called as function(context, stop_event.is_set).
BACKGROUND = (
    ("worker", "publisher.gitlab.worker:run_worker"),
    ("triggers", "publisher.triggers.runner:run_triggers"),
)


def _start_background(context: Context, stop: threading.Event) -> list[threading.Thread]:
    threads = []
    count = {"worker": context.settings.server.workers, "triggers": 1}
    for name, spec in BACKGROUND:
        module, _, attr = spec.partition(":")
        loop: Callable[..., Any] = getattr(importlib.import_module(module), attr)
        for i in range(count[name]):
            thread = threading.Thread(
                target=loop, args=(context, stop.is_set), name=f"{name}-{i}", daemon=True
            )
            thread.start()
            threads.append(thread)
    return threads


def create_app(context: Context | None = None, background: bool = False) -> FastAPI:
    """The service app. ``background=True`` also runs release workers and storage-event consumers."""
    context = context or Context()
    hide_query_strings()  # webhook tokens may travel in query strings (S3 push endpoints)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.engine  # noqa: B018  (create or upgrade the schema before the first request)
        # What start-up created (modules, schemas, routes) lives as long as the process: frozen, the
        # collector's full passes skip it and stay at milliseconds instead of 100+ ms pauses under load.
        gc.collect()
        gc.freeze()
        stop = threading.Event()
        threads = _start_background(context, stop) if background else []
        try:
            yield
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)

    app = FastAPI(
        title="faaspub",
        version=__version__,
        description="Publish scientific functions: webhooks, catalogue and invocation API.",
        lifespan=lifespan,
        # The interactive docs pages load their scripts from a CDN; the description is at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @app.exception_handler(FaaspubError)
    async def faaspub_error(_request: Request, exc: FaaspubError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/hooks/")):
            message = "no such route" if exc.status_code == 404 else str(exc.detail)
            return JSONResponse(
                {"error": message, "hint": None}, status_code=exc.status_code, headers=exc.headers
            )
        return await http_exception_handler(request, exc)

    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)
    # Outermost last: every answer gets the browser protections, early refusals included.
    app.add_middleware(RequestLimits)
    app.add_middleware(SecurityHeaders)
    return app
