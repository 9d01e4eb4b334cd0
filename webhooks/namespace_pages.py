"""The catalogue's namespace page: its functions and its usage (runs, GB-seconds, failures, bytes read).

Usage on the page is the same sum as ``GET /api/v1/accounting`` over the activations that the
catalogue already shows (pages exist only while ``server.catalogue_public`` is true).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse

from publisher.accounting.usage import usage
from publisher.catalogue import queries
from publisher.catalogue.cursor import MAX_LIMIT
from webhooks.pages import _private, _render

USAGE_DAYS = 30

router = APIRouter(tags=["pages"], include_in_schema=False)


@router.get("/namespaces/{namespace}", response_class=HTMLResponse)
def namespace_page(request: Request, namespace: str = Path(max_length=255)) -> HTMLResponse:
    """A namespace: its functions and a table of its usage per day and function."""
    if (denied := _private(request)) is not None:
        return denied
    now = datetime.now(UTC)
    since = now - timedelta(days=USAGE_DAYS)
    with request.app.state.context.sessions() as session:
        functions = queries.list_functions(session, namespace=namespace, limit=MAX_LIMIT)
        rows = usage(session, namespace=namespace, since=since, until=now)
    facility = request.app.state.context.settings.catalogue.facility_namespace
    return _render(
        request,
        "namespace.html",
        title=f"Namespace {namespace}",
        namespace=namespace,
        facility=namespace == facility,
        functions=functions.items,
        usage=sorted(rows, key=lambda r: (r.day, r.function), reverse=True),
        days=USAGE_DAYS,
        totals={
            "runs": sum(r.runs for r in rows),
            "failures": sum(r.failures for r in rows),
            "gb_seconds": sum(r.gb_seconds for r in rows),
            "bytes_read": sum(r.bytes_read for r in rows),
        },
    )
