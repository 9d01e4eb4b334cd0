"""Received webhook deliveries, for ``GET /api/v1/deliveries`` (cursor pagination by id, newest first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from publisher.db.models import WebhookDelivery

MAX_LIMIT = 200


@dataclass(frozen=True)
class Page:
    """One page of deliveries; pass ``next_cursor`` as ``cursor`` for the next (older) page."""

    items: list[dict[str, Any]]
    next_cursor: int | None


def list_deliveries(
    session: Session,
    *,
    cursor: int | None = None,
    limit: int = 50,
    outcome: str | None = None,
    source: str | None = None,
    include_body: bool = False,
) -> Page:
    """Deliveries with ``id < cursor`` (newest first), optionally of one ``outcome`` and ``source``."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(WebhookDelivery.id < cursor)
    if outcome:
        query = query.where(WebhookDelivery.outcome == outcome)
    if source:
        query = query.where(WebhookDelivery.source == source)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([as_dict(row, include_body) for row in rows], rows[-1].id if more and rows else None)


def as_dict(row: WebhookDelivery, include_body: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "source": row.source,
        "event": row.event,
        "idempotency_key": row.idempotency_key,
        "project": row.project,
        "outcome": row.outcome,
        "detail": row.detail,
        "received": row.received.isoformat() if row.received else None,
        "answer_ms": row.answer_ms,
    }
    if include_body:
        item["body"] = row.body
    return item
