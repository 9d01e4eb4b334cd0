"""A durable job queue on the catalogue database.

Jobs are rows in ``jobs``. A worker claims one by leasing it (``locked_until``); a worker that dies
lets its lease run out and the job is claimed again, so every job runs at least once and handlers
must be idempotent. On PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so several workers on
several machines never wait on each other; SQLite serialises writers by itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from publisher.db.models import Job


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


def backoff_s(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to ``base`` seconds)."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


def _now() -> datetime:
    return datetime.now(UTC)


class Queue:
    """Enqueue, claim, complete and retry jobs. One instance per worker process."""

    def __init__(self, factory: sessionmaker[Session], worker_id: str) -> None:
        self._factory = factory
        self.worker_id = worker_id

    @staticmethod
    def enqueue(
        session: Session,
        kind: str,
        payload: dict[str, Any],
        key: str | None = None,
        delay_s: float = 0.0,
        max_attempts: int = 10,
    ) -> int | None:
        """Add a job inside the caller's transaction. A second job with the same ``key`` is a no-op (None).

        ``INSERT … ON CONFLICT DO NOTHING`` rather than a savepoint: pysqlite commits a savepoint
        opened before the transaction's first write on its own, which would break the caller's
        all-or-nothing transaction.
        """
        jobs: Table = Job.__table__  # type: ignore[assignment]
        insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
        now = _now()
        statement = (
            insert(jobs)
            .values(
                kind=kind,
                key=key,
                payload=payload,
                status="queued",
                attempts=0,
                max_attempts=max_attempts,
                run_after=now + timedelta(seconds=delay_s),
                created=now,
                updated=now,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(jobs.c.id)
        )
        job_id: int | None = session.execute(statement).scalar()
        return job_id

    def claim(self, kinds: Sequence[str] | None = None, lease_s: float = 120.0) -> ClaimedJob | None:
        """Lease the oldest runnable job (optionally of ``kinds``), or None when there is none."""
        now = _now()
        with self._factory() as session, session.begin():
            runnable = or_(
                (Job.status == "queued") & (Job.run_after <= now),
                (Job.status == "running") & (Job.locked_until < now),
            )
            query = select(Job).where(runnable).order_by(Job.run_after, Job.id).limit(1)
            if kinds:
                query = query.where(Job.kind.in_(kinds))
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            job = session.scalars(query).first()
            if job is None:
                return None
            claimed = session.execute(
                update(Job)
                .where(Job.id == job.id, runnable)
                .values(
                    status="running",
                    attempts=Job.attempts + 1,
                    locked_by=self.worker_id,
                    locked_until=now + timedelta(seconds=lease_s),
                    updated=now,
                )
                .execution_options(synchronize_session=False)
            )
            # Another worker won the race (SQLite has no SKIP LOCKED): let the caller poll again.
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return ClaimedJob(id=job.id, kind=job.kind, payload=dict(job.payload), attempts=job.attempts + 1)

    def complete(self, job_id: int) -> None:
        self._set(job_id, status="done", locked_by=None, locked_until=None, last_error=None)

    def retry(self, job: ClaimedJob, error: str, delay_s: float | None = None) -> bool:
        """Put ``job`` back with backoff; ``dead`` after ``max_attempts``. True if it runs again."""
        with self._factory() as session, session.begin():
            row = session.get(Job, job.id)
            if row is None:
                return False
            alive = row.attempts < row.max_attempts
            row.status = "queued" if alive else "dead"
            row.last_error = error[:4000]
            row.locked_by = None
            row.locked_until = None
            row.run_after = _now() + timedelta(
                seconds=backoff_s(row.attempts) if delay_s is None else delay_s
            )
            return alive

    def extend(self, job_id: int, lease_s: float = 120.0) -> None:
        """Renew the lease of a long-running job."""
        self._set(job_id, locked_until=_now() + timedelta(seconds=lease_s))

    def depth(self) -> dict[str, int]:
        """Number of jobs per status."""
        with self._factory() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            return {status: count for status, count in rows}

    def oldest_queued_age_s(self) -> float:
        with self._factory() as session:
            oldest = session.scalar(select(func.min(Job.created)).where(Job.status == "queued"))
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (_now() - oldest).total_seconds())

    def _set(self, job_id: int, **values: Any) -> None:
        with self._factory() as session, session.begin():
            session.execute(update(Job).where(Job.id == job_id).values(updated=_now(), **values))
