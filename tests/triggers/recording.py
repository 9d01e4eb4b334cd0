"""A fast in-process backend that records each invocation as an activation in the database.

It implements the ``fire`` part of the Backend protocol the way the local backend does (one
activation row per run, carrying the CloudEvent id as its ``cause``), without containers, so crash and
throughput tests exercise the bridge rather than container start-up.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from publisher.db.models import ActivationRecord
from publisher.triggers.store import write_lock


class RecordingBackend:
    """Records runs; ``fail_paths`` makes runs for those event subjects raise (a broken backend)."""

    name = "recording"

    def __init__(
        self, sessions: sessionmaker[Session], fail_paths: set[str] | None = None, delay_s: float = 0.0
    ) -> None:
        self._sessions = sessions
        # Time between the run being recorded and the answer reaching the deliverer (a crash window).
        self.delay_s = delay_s
        self.fail_paths = fail_paths or set()
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def fire(self, namespace: str, function: str, event: Mapping[str, Any]) -> str | None:
        """Run ``function`` for ``event``: one activation row whose cause is the CloudEvent id."""
        started = datetime.now(UTC)
        with self._lock:
            self.calls.append({"function": function, "event": dict(event), "at": time.time()})
        if event.get("subject") in self.fail_paths:
            raise ConnectionError(f"backend unavailable for {event.get('subject')}")
        activation_id = uuid.uuid4().hex
        with write_lock(self._sessions), self._sessions() as session, session.begin():
            session.add(
                ActivationRecord(
                    id=activation_id,
                    namespace=namespace,
                    function=function,
                    version="",
                    digest="",
                    start=started,
                    status="success",
                    result={"subject": event.get("subject")},
                    logs=[],
                    cause=event.get("id"),
                )
            )
        time.sleep(self.delay_s)
        return activation_id
