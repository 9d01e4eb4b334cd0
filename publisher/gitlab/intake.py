"""Durable webhook intake: a delivery and its job are committed before GitLab gets 2xx.

GitLab never retries a failed delivery and disables a hook after four failures in a row, so the
answer must be fast and must only be 2xx once the work is safely on disk. Unsupported events are
answered 2xx and recorded as ignored; a bad token gets 401 and is recorded (without the body).

Deciding (token, JSON, route) runs on the event loop and costs microseconds. Storing goes through
one writer thread per process that commits everything which arrived while its previous transaction
was committing in one transaction (group commit), then answers each of those requests: every
answer still waits for its own row's commit, but the commit and the connection are shared.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, Connection, Engine, Table, Text, bindparam, cast, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from publisher.config import Settings
from publisher.db.models import Job, WebhookDelivery, utcnow
from publisher.gitlab import events
from publisher.gitlab.auth import Authenticator, admits
from publisher.gitlab.metrics import DELIVERIES

DELIVERIES_TABLE: Table = WebhookDelivery.__table__  # type: ignore[assignment]
JOBS_TABLE: Table = Job.__table__  # type: ignore[assignment]
T = TypeVar("T")
R = TypeVar("R")
WRITER_IDLE_S = 5.0  # the writer thread ends after this long without deliveries (and restarts on demand)


@dataclass(frozen=True)
class Answer:
    """The HTTP answer for one delivery."""

    status: int
    outcome: str
    delivery_id: int | None = None
    detail: str | None = None

    def json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "delivery": self.delivery_id, "detail": self.detail}


@dataclass
class Delivery:
    """One decided delivery waiting to be stored: its ``deliveries`` row and, if we act on it, its job."""

    started: float
    status: int
    row: dict[str, Any]
    route: events.Route | None = None

    def answer(self, delivery_id: int) -> Answer:
        return Answer(self.status, self.row["outcome"], delivery_id, self.row["detail"])


class Intake:
    """Authenticates, routes and stores GitLab deliveries. One per service process."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.auth = Authenticator.from_settings(settings.gitlab)
        self.groups = list(settings.gitlab.groups)
        self.max_body = settings.server.max_body_bytes
        self.engine: Engine = sessions.kw["bind"]
        sqlite = self.engine.dialect.name == "sqlite"
        dialect_insert = sqlite_insert if sqlite else pg_insert
        # The body is stored as the text GitLab sent (it parsed as a JSON object): no second encoding.
        body_text = bindparam("body_text", type_=Text())
        # Duplicates are no-ops rather than errors, so one repeated delivery never aborts a whole group.
        # Both statements also take many rows at once; what they return is matched to rows by key.
        self._insert_deliveries = (
            dialect_insert(DELIVERIES_TABLE)
            .values(body=body_text if sqlite else cast(body_text, JSON))
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(DELIVERIES_TABLE.c.id, DELIVERIES_TABLE.c.idempotency_key)
        )
        self._insert_jobs = (  # the queue's enqueue
            dialect_insert(JOBS_TABLE)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(JOBS_TABLE.c.key)
        )
        self._mark_duplicate = (
            update(DELIVERIES_TABLE)
            .where(DELIVERIES_TABLE.c.id == bindparam("delivery"))
            .values(outcome="duplicate", detail=bindparam("detail"))
        )
        self._writer: GroupCommit[Delivery, Answer] = GroupCommit(self.store)

    async def handle(self, headers: Mapping[str, str], body: bytes, started: float) -> Answer:
        """Decide and store one delivery whose body was read within ``max_body`` bytes."""
        return await self._writer.submit(self.decide(headers, body, started))

    async def refused(self, headers: Mapping[str, str], reason: str, started: float) -> Answer:
        """Record a delivery refused on its headers alone (its body was never read)."""
        event = (headers.get("x-gitlab-event") or "")[:64] or None
        return await self._writer.submit(_delivery(started, 401, "unauthorized", event=event, detail=reason))

    async def too_large(self, headers: Mapping[str, str], started: float) -> Answer:
        detail = f"body larger than server.max_body_bytes ({self.max_body})"
        event = (headers.get("x-gitlab-event") or "")[:64] or None
        return await self._writer.submit(_delivery(started, 413, "too_large", event=event, detail=detail))

    def decide(self, headers: Mapping[str, str], body: bytes, started: float) -> Delivery:
        """Authenticate, parse and route (no I/O)."""
        event_header = (headers.get("x-gitlab-event") or "")[:64] or None
        verdict = self.auth.check(headers, body)
        if not verdict.ok:
            return _delivery(started, 401, "unauthorized", event=event_header, detail=verdict.reason)
        try:
            text = body.decode()  # JSON between systems is UTF-8 (RFC 8259)
            parsed = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        except RecursionError:
            detail = "body is nested too deeply to be a webhook"
            return _delivery(started, 400, "invalid", event=event_header, detail=detail)
        if not isinstance(parsed, dict):
            detail = "body is not a JSON object"
            return _delivery(started, 400, "invalid", event=event_header, detail=detail)
        # A signed delivery is deduplicated by its signed webhook-id, never by an unsigned header.
        if verdict.signed:
            key = headers.get("webhook-id") or None
        else:
            key = headers.get("idempotency-key") or headers.get("webhook-id") or None
        route = events.route(parsed)
        if route.kind is not None and not admits(verdict.groups, self.groups, route.project):
            detail = f"project {route.project!r} is not in a served group for this token"
            route = events.Route(route.event, route.project_id, route.project, detail=detail)
        elif route.kind is not None:
            # The worker checks GitLab's own path of project_id against these before it acts.
            route = replace(route, payload={**route.payload, "groups": sorted(verdict.groups)})
        return _delivery(
            started,
            202 if route.kind else 200,
            "queued" if route.kind else "ignored",
            event=route.event,
            key=key,
            route=route,
            body=text,
        )

    def store(self, batch: list[Delivery]) -> list[Answer]:
        """Store decided deliveries in one transaction; answer nobody before this returns."""
        now = utcnow()
        for delivery in batch:
            elapsed_ms = (time.perf_counter() - delivery.started) * 1000
            delivery.row.update(received=now, answer_ms=elapsed_ms)
        with self.engine.begin() as conn:
            answers = self._insert_together(conn, batch)
        for answer in answers:
            DELIVERIES.labels("gitlab", answer.outcome).inc()
        return answers

    def _insert_together(self, conn: Connection, batch: list[Delivery]) -> list[Answer]:
        """The usual deliveries in two statements (all rows, then all jobs); the others one by one.

        Statements, not rows, cost the time (on PostgreSQL a round trip each). What the database
        returns is matched to rows by key, so only deliveries with an Idempotency-Key and with keys
        not repeated within the batch go together. A delivery without a key, a repeat, and one whose
        key the database already holds take the one-by-one path, which records them as duplicates.
        """
        together, alone = _distinct(batch)
        answers: dict[int, Answer] = {}
        ids: dict[str, int] = {}
        if together:
            rows = [d.row for d in together]
            ids = {key: id_ for id_, key in conn.execute(self._insert_deliveries, rows)}
        jobs: list[tuple[Delivery, events.Route, int]] = []
        for delivery in together:
            delivery_id = ids.get(delivery.row["idempotency_key"])
            if delivery_id is None:
                alone.append(delivery)
            elif delivery.route is None or delivery.route.kind is None:
                answers[id(delivery)] = delivery.answer(delivery_id)
            else:
                jobs.append((delivery, delivery.route, delivery_id))
        queued: set[str] = set()
        if jobs:
            rows = [_job_row(route, delivery_id, d.row["received"]) for d, route, delivery_id in jobs]
            queued = set(conn.execute(self._insert_jobs, rows).scalars())
        for delivery, route, delivery_id in jobs:
            answers[id(delivery)] = self._queued(conn, delivery, route, delivery_id, queued)
        for delivery in alone:
            answers[id(delivery)] = self._insert(conn, delivery)
        return [answers[id(delivery)] for delivery in batch]

    def _insert(self, conn: Connection, delivery: Delivery) -> Answer:
        row, route = delivery.row, delivery.route
        delivery_id = conn.execute(self._insert_deliveries, row).scalar()
        if delivery_id is None:
            # The Idempotency-Key was seen before: GitLab resent an event we already hold.
            duplicate = {
                **row,
                "idempotency_key": None,
                "outcome": "duplicate",
                "detail": f"Idempotency-Key {row['idempotency_key']} already received",
                "body_text": None,
            }
            delivery_id = conn.execute(self._insert_deliveries, duplicate).scalar_one()
            return Answer(200, "duplicate", delivery_id, duplicate["detail"])
        if route is None or route.kind is None:
            return delivery.answer(delivery_id)
        queued = set(conn.execute(self._insert_jobs, _job_row(route, delivery_id, row["received"])).scalars())
        return self._queued(conn, delivery, route, delivery_id, queued)

    def _queued(
        self, conn: Connection, delivery: Delivery, route: events.Route, delivery_id: int, queued: set[str]
    ) -> Answer:
        if route.key in queued:
            return delivery.answer(delivery_id)
        # The job key exists: reconciliation or another hook got there first.
        detail = f"job {route.key} is already queued"
        conn.execute(self._mark_duplicate, {"delivery": delivery_id, "detail": detail})
        return Answer(200, "duplicate", delivery_id, detail)


def _distinct(batch: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
    """Split a batch into deliveries whose keys (Idempotency-Key, job key) are all distinct, and the rest."""
    together: list[Delivery] = []
    alone: list[Delivery] = []
    keys: set[str] = set()
    job_keys: set[str] = set()
    for delivery in batch:
        key, route = delivery.row["idempotency_key"], delivery.route
        job_key = route.key if route is not None and route.kind is not None else None
        if key is None or key in keys or job_key in job_keys:
            alone.append(delivery)
            continue
        keys.add(key)
        if job_key is not None:
            job_keys.add(job_key)
        together.append(delivery)
    return together, alone


def _job_row(route: events.Route, delivery_id: int, now: datetime) -> dict[str, Any]:
    return {
        "kind": route.kind,
        "key": route.key,
        "payload": {**route.payload, "delivery_id": delivery_id},
        "status": "queued",
        "attempts": 0,
        "max_attempts": 10,
        "run_after": now,
        "locked_by": None,
        "locked_until": None,
        "last_error": None,
        "created": now,
        "updated": now,
    }


def _delivery(
    started: float,
    status: int,
    outcome: str,
    *,
    event: str | None,
    key: str | None = None,
    route: events.Route | None = None,
    body: str | None = None,
    detail: str | None = None,
) -> Delivery:
    row = {
        "source": "gitlab",
        "event": event,
        "idempotency_key": key[:255] if key else None,
        "project": route.project if route else None,
        "outcome": outcome,
        "detail": route.detail if route is not None and detail is None else detail,
        "body_text": body,
    }
    return Delivery(started, status, row, route)


class GroupCommit(Generic[T, R]):
    """Hands items to ``write`` from one thread, in batches of everything that queued up meanwhile.

    ``write`` stores a batch in one transaction and returns one result per item. If the batch fails,
    each item is written on its own, so only the item at fault gets the error. Awaiting callers may
    run on any event loop (the test client starts one per request).
    """

    def __init__(self, write: Callable[[list[T]], list[R]]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[tuple[T, asyncio.AbstractEventLoop, asyncio.Future[R]]] = []
        self._running = False

    async def submit(self, item: T) -> R:
        """The result of writing ``item``, once the transaction that holds it has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        with self._lock:
            self._pending.append((item, loop, future))
            if self._running:
                self._wake.notify()
            else:
                self._running = True
                threading.Thread(target=self._run, name="gitlab-intake-writer", daemon=True).start()
        return await future

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._wake.wait(WRITER_IDLE_S)
                if not self._pending:
                    self._running = False
                    return
                batch, self._pending = self._pending, []
            items = [item for item, _loop, _future in batch]
            results: list[R | Exception]
            try:
                results = list(self._write(items))
            except Exception:
                results = [self._write_alone(item) for item in items]
            for (_item, loop, future), result in zip(batch, results, strict=True):
                # RuntimeError: that caller's event loop is gone; the item is stored all the same.
                with suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, result)

    def _write_alone(self, item: T) -> R | Exception:
        try:
            return self._write([item])[0]
        except Exception as exc:
            return exc


def _settle(future: asyncio.Future[R], result: R | Exception) -> None:
    if future.done():  # the request was cancelled while its delivery was being stored
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
