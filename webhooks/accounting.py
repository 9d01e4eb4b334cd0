"""``GET /api/v1/accounting``: runs, GB-seconds, failures and bytes read by day, namespace and function.

For operators: a token of namespace ``*`` (any scope) sees every namespace; a namespace's ``admin``
token sees its own. Figures come from :mod:`publisher.accounting.usage`, the same sums the
Prometheus counters and the catalogue's namespace page show.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from publisher.accounting.usage import usage
from publisher.catalogue.auth import ANY_NAMESPACE
from publisher.catalogue.queries import aware
from webhooks.api import ERRORS, ApiError, GrantDep, JsonErrorRoute, context_of, need_token

DEFAULT_DAYS = 30

router = APIRouter(prefix="/api/v1", tags=["accounting"], route_class=JsonErrorRoute, responses=ERRORS)


class UsageOut(BaseModel):
    """One namespace and function on one day (UTC)."""

    namespace: str
    function: str
    day: date
    runs: int
    failures: int
    gb_seconds: float
    bytes_read: int


class AccountingOut(BaseModel):
    """Usage between ``since`` (inclusive) and ``until`` (exclusive)."""

    since: datetime
    until: datetime
    items: list[UsageOut]


@router.get(
    "/accounting",
    response_model=AccountingOut,
    summary="Usage by day, namespace and function (operator token, or a namespace's admin token)",
)
def accounting(
    request: Request,
    grant: GrantDep,
    namespace: Annotated[str | None, Query(max_length=255)] = None,
    function: Annotated[str | None, Query(max_length=63)] = None,
    since: Annotated[
        datetime | None, Query(description=f"Start (ISO 8601, UTC if no zone); default {DEFAULT_DAYS} days")
    ] = None,
    until: Annotated[datetime | None, Query(description="End, exclusive; default now")] = None,
) -> dict[str, Any]:
    grant = need_token(grant, "read")
    if grant.namespace != ANY_NAMESPACE:
        if not grant.allows(grant.namespace, "admin"):
            raise ApiError(403, "accounting needs an operator token (namespace *) or a namespace admin token")
        if namespace not in (None, grant.namespace):
            raise ApiError(403, f"the token cannot read the accounting of namespace {namespace}")
        namespace = grant.namespace
    until = aware(until) or datetime.now(UTC)
    try:
        since = aware(since) or until - timedelta(days=DEFAULT_DAYS)
    except OverflowError:
        raise ApiError(422, "until is too early for the default period; give since as well") from None
    if since >= until:
        raise ApiError(422, "since must be before until")
    with context_of(request).sessions() as session:
        rows = usage(session, namespace=namespace, function=function, since=since, until=until)
    return {"since": since, "until": until, "items": [row.to_dict() for row in rows]}
