"""The worker's own small HTTP app: ``/healthz``, ``/readyz`` and ``/metrics`` for its orchestrator.

``faaspub worker --listen HOST:PORT`` serves it beside the job loop, so that Kubernetes can probe a
worker and Prometheus can scrape what only the worker measures (release stage durations, failures).
"""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from publisher import __version__
from publisher.core.context import Context


def create_worker_app(context: Context) -> FastAPI:
    """Liveness (the process answers), readiness (the database answers) and metrics."""
    app = FastAPI(
        title="faaspub worker", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            with context.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means: send no work here yet
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def serve_in_thread(context: Context, host: str, port: int) -> uvicorn.Server:
    """Start the app on ``host:port`` in a daemon thread; ``server.should_exit = True`` stops it."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_worker_app(context), host=host, port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="worker-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server
