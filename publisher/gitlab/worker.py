"""The worker loop: claim GitLab jobs from the durable queue and run them.

Run in-process by ``faaspub serve`` (threads) and as separate processes by ``faaspub worker`` for
scale-out on PostgreSQL. A job's lease is renewed while it runs; a worker that dies lets the lease
run out and another worker resumes the job (handlers are idempotent). User-facing errors finish
the job (they are recorded on the release and in commit statuses); anything else is retried with
backoff until ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.db.queue import ClaimedJob, Queue
from publisher.errors import FaaspubError
from publisher.gitlab import events, identity
from publisher.gitlab.client import GitLab
from publisher.gitlab.preview import PreviewWorker
from publisher.gitlab.reconcile import reconcile
from publisher.gitlab.release import ReleaseWorker
from publisher.logs import bound

log = logging.getLogger(__name__)

LEASE_S = 60.0
KINDS = (events.RELEASE, events.STAGING, events.PREVIEW, events.PREVIEW_REMOVE, events.RECONCILE)
Stop = threading.Event | Callable[[], bool]


class Dispatcher:
    """Maps a job kind to its handler; GitLab clients are created on first use."""

    def __init__(self, context: Context) -> None:
        self.context = context

    @cached_property
    def gl(self) -> GitLab:
        return GitLab(self.context.settings.gitlab)

    @cached_property
    def releases(self) -> ReleaseWorker:
        return ReleaseWorker(self.context, self.gl)

    @cached_property
    def previews(self) -> PreviewWorker:
        return PreviewWorker(self.context, self.gl)

    def run(self, kind: str, payload: dict[str, Any]) -> None:
        if kind != events.RECONCILE:
            reason = identity.mismatch(self.gl, payload, list(self.context.settings.gitlab.groups))
            if reason is not None:
                identity.refuse(self.context, payload, reason)
                return
        if kind == events.RELEASE:
            self.releases.handle(payload)
        elif kind == events.STAGING:
            self.previews.staging(payload)
        elif kind == events.PREVIEW:
            self.previews.preview(payload)
        elif kind == events.PREVIEW_REMOVE:
            self.previews.remove(payload)
        elif kind == events.RECONCILE:
            reconcile(self.context, self.gl)
        else:
            raise FaaspubError(f"no handler for job kind {kind!r}")


def _stopper(stop: Stop) -> tuple[Callable[[], bool], Callable[[float], Any]]:
    if isinstance(stop, threading.Event):
        return stop.is_set, stop.wait
    return stop, time.sleep


def run_worker(
    context: Context,
    stop: Stop,
    kinds: Sequence[str] | None = None,
    *,
    poll_s: float = 0.5,
    lease_s: float = LEASE_S,
    worker_id: str | None = None,
) -> None:
    """Claim and run jobs of ``kinds`` (default: every GitLab kind) until ``stop`` is set."""
    stopped, wait = _stopper(stop)
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    queue = Queue(context.sessions, worker_id)
    dispatcher = Dispatcher(context)
    kinds = list(kinds or KINDS)
    log.info("worker %s started for %s", worker_id, ", ".join(kinds))
    scheduled = None
    while not stopped():
        if events.RECONCILE in kinds:
            scheduled = schedule_reconcile(context, scheduled)
        job = queue.claim(kinds, lease_s=lease_s)
        if job is None:
            wait(poll_s)
            continue
        run_job(queue, dispatcher, job, lease_s)
    log.info("worker %s stopped", worker_id)


def run_job(queue: Queue, dispatcher: Dispatcher, job: ClaimedJob, lease_s: float = LEASE_S) -> None:
    """Run one claimed job with a lease heartbeat; complete, retry or give up."""
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(lease_s / 3):
            queue.extend(job.id, lease_s)

    beat = threading.Thread(target=heartbeat, name=f"lease-{job.id}", daemon=True)
    beat.start()
    with bound(job_id=job.id, delivery_id=job.payload.get("delivery_id")):
        try:
            dispatcher.run(job.kind, job.payload)
        except FaaspubError as exc:
            log.warning("job %s (%s) failed: %s", job.id, job.kind, exc)
            queue.complete(job.id)
        except Exception as exc:
            again = queue.retry(job, f"{type(exc).__name__}: {exc}")
            log.warning(
                "job %s (%s) attempt %s failed (%s: %s); %s",
                job.id,
                job.kind,
                job.attempts,
                type(exc).__name__,
                exc,
                "will retry" if again else "giving up",
            )
        else:
            queue.complete(job.id)
        finally:
            done.set()
            beat.join()


def schedule_reconcile(context: Context, last: int | None = None, now: float | None = None) -> int | None:
    """Enqueue this interval's reconciliation job unless ``last`` was this interval; returns the interval.

    Every worker calls this; the job key makes it one job per interval across all processes.
    """
    settings = context.settings.gitlab
    if not settings.url or not settings.groups:
        return None
    bucket = int((time.time() if now is None else now) // settings.reconcile_interval_s)
    if bucket != last:
        with transaction(context.sessions) as session:
            Queue.enqueue(session, events.RECONCILE, {}, key=f"gitlab:reconcile:{bucket}", max_attempts=3)
    return bucket
