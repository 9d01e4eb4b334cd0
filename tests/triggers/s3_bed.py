"""The service in this process against the session's Ceph RGW, as the S3 trigger tests use it.

The real app (``webhooks.app.create_app`` with its background storage-event consumer) is served by
uvicorn on a loopback port, so RGW's notifications travel over HTTP to ``/hooks/s3``; functions run
on the recording backend, which keeps every CloudEvent it was handed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from publisher.core.context import Context
from tests.infra.ceph import CephRgw, free_port
from tests.triggers.conftest import make_settings, publish_rows, wait_for
from tests.triggers.recording import RecordingBackend
from webhooks.app import create_app

TOKEN = "rgw-topic-token-4f2a"


def s3_storage(tmp_path: Path, rgw: CephRgw, **extra: Any) -> dict[str, Any]:
    """The ``storage.s3`` section an operator writes for this RGW."""
    return {
        "endpoint": rgw.endpoint,
        "credentials_file": str(rgw.credentials_file(tmp_path / "secrets" / "s3-credentials")),
        "webhook_token": TOKEN,
        **extra,
    }


@contextmanager
def served(context: Context, port: int) -> Iterator[str]:
    """``faaspub serve`` in this process: the app with its background consumer, on ``port``."""
    app = create_app(context, background=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=15, what="uvicorn to start")
    assert thread.is_alive(), "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class S3Bed:
    """One bucket of the RGW, bound to functions of a service that may or may not be running."""

    rgw: CephRgw
    bucket: str
    context: Context
    backend: RecordingBackend
    port: int

    @property
    def hook(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/s3"

    def bind(self, function: str, path: str = "", **trigger: Any) -> None:
        """Publish ``function`` bound to ``bucket/path`` (recursive, ``created`` unless told)."""
        binding = {"source": "s3", "path": f"{self.bucket}/{path}".rstrip("/"), "recursive": True, **trigger}
        digest = f"sha256:{function}".ljust(71, "0")
        publish_rows(self.context, function, "1.0.0", digest, [binding])

    @contextmanager
    def running(self) -> Iterator[str]:
        with served(self.context, self.port) as url:
            yield url

    def put(self, key: str, body: bytes) -> None:
        self.rgw.client().put_object(Bucket=self.bucket, Key=key, Body=body)

    def events(self, function: str | None = None) -> list[dict[str, Any]]:
        """The CloudEvents functions were run with (all, or ``function``'s)."""
        with self.backend._lock:
            calls = list(self.backend.calls)
        return [c["event"] for c in calls if function is None or c["function"] == function]

    def runs(self, function: str | None = None) -> Counter[tuple[str, str]]:
        """(type, subject) -> how many times it ran."""
        return Counter((e["type"], e["subject"]) for e in self.events(function))

    def wait_runs(self, count: int, function: str | None = None, timeout: float = 30.0) -> None:
        def enough() -> bool:
            return sum(self.runs(function).values()) >= count

        wait_for(enough, timeout=timeout, what=f"{count} runs (have {dict(self.runs(function))})")
        time.sleep(0.3)  # a run beyond ``count`` would show now


def make_bed(tmp_path: Path, rgw: CephRgw, **s3: Any) -> S3Bed:
    settings = make_settings(tmp_path, s3=s3_storage(tmp_path, rgw, **s3))
    settings.server.workers = 0  # no GitLab release workers: only the storage-event consumer
    context = Context(settings)
    context.engine  # noqa: B018  (migrate)
    backend = RecordingBackend(context.sessions)
    context.__dict__["backend"] = backend
    return S3Bed(rgw, rgw.bucket(), context, backend, free_port())
