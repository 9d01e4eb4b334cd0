"""End to end with real containers: a file closed in a watched directory runs the function on the
local backend (podman), and the activation carries the event and its delivery identity."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from publisher.backends.local import LocalBackend
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.types import ImageRef
from publisher.db.models import ActivationRecord
from publisher.triggers.runner import run_triggers
from publisher.triggers.store import LedgerRow
from tests.backends.images import make_release
from tests.triggers.conftest import wait_for

pytestmark = pytest.mark.containers

ECHO = """
def main(event):
    fields = {"id": event["id"], "type": event["type"], "subject": event["subject"]}
    return {**fields, "size": event["data"]["size"]}
"""


def test_file_close_runs_the_function_in_a_container(
    tmp_path: Path, podman_socket: str, function_image: Callable[..., ImageRef]
) -> None:
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "database": {"url": f"sqlite:///{tmp_path / 'faaspub.db'}"},
            "registry": {"insecure": True},
            "backend": {"kind": "local", "local": {"engine": "docker", "docker_host": podman_socket}},
            "storage": {"local": {"root": str(tmp_path / "data")}},
            "secrets": {"dir": str(tmp_path / "secrets")},
        }
    )
    context = Context(settings)
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    release = make_release(
        "echo-event",
        "1.0.0",
        function_image("echo-event", "1.0.0", ECHO),
        triggers=[{"storage": {"source": "local", "path": "/incoming", "match": "*.csv"}}],
    )
    backend.deploy(release)
    backend.bind(release, release.source.manifest.storage_triggers())
    incoming = tmp_path / "data" / "incoming"
    incoming.mkdir(parents=True)
    stop = threading.Event()
    consumer = threading.Thread(target=run_triggers, args=(context, stop.is_set), daemon=True)
    consumer.start()
    try:
        (incoming / "run1.csv").write_text("a,b\n1,2\n")
        (incoming / "skip.txt").write_text("not matched")

        def finished() -> ActivationRecord | None:
            with context.sessions() as session:
                return session.scalar(select(ActivationRecord).where(ActivationRecord.status == "success"))

        activation = wait_for(finished, timeout=120, what="the function's activation")
    finally:
        stop.set()
        consumer.join(timeout=15)
        backend.close()
    assert activation.result["subject"] == str(incoming / "run1.csv")
    assert activation.result["type"] == "storage.object.created"
    assert activation.result["size"] == 8
    assert activation.cause == activation.result["id"]  # the deliverer's idempotency key
    with context.sessions() as session:
        ledger = session.scalars(select(LedgerRow)).all()
        assert [(row.function, row.cause, row.activation_id) for row in ledger] == [
            ("echo-event", activation.cause, activation.id)
        ]
        assert session.scalar(select(ActivationRecord).where(ActivationRecord.status != "success")) is None
