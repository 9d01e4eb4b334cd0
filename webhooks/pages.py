"""Catalogue web pages: function list and search, a function's page, an activation's logs, deliveries.

Server-rendered HTML (Jinja2) from the same queries as the API; the only script is a small file for
the cite tabs and the invoke form, and the pages work without it. Nothing is loaded from another host.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from publisher.catalogue import queries
from publisher.catalogue.chart import Chart, chart_cache
from publisher.catalogue.cursor import CursorError
from publisher.errors import FaaspubError

HERE = FsPath(__file__).parent
RECENT = 20

router = APIRouter(tags=["pages"], include_in_schema=False)
router.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
templates = Jinja2Templates(directory=HERE / "templates")
# Templates ship with the package; checking their modification time on every render cost a stat()
# per template per page.
templates.env.auto_reload = False


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return queries.aware(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[union-attr]


def _duration(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context, status_code=status)


def _error(request: Request, status: int, message: str, hint: str | None = None) -> HTMLResponse:
    return _render(request, "error.html", status, title=f"{status}", message=message, hint=hint)


def _chart(request: Request, namespace: str, name: str) -> Chart:
    """The function's activity chart from this app's cache (one per app, made on first use)."""
    state = request.app.state
    if getattr(state, "chart", None) is None:
        state.chart = chart_cache(state.context.sessions)
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    chart: Chart = state.chart(namespace, name, minute)
    return chart


def _private(request: Request) -> HTMLResponse | None:
    """Pages cannot send bearer tokens, so a private catalogue has no pages (the API still answers)."""
    if request.app.state.context.settings.server.catalogue_public:
        return None
    return _error(
        request,
        401,
        "this catalogue is private",
        "use the API (/api/v1) with a token that has the read scope",
    )


Text = Annotated[str | None, Query(max_length=200)]
CursorQ = Annotated[str | None, Query(max_length=512)]


@router.get("/", response_class=HTMLResponse)
def index(request: Request, q: Text = None, keyword: Text = None, cursor: CursorQ = None) -> HTMLResponse:
    """The function list with its search box; the facility's standard functions are listed apart."""
    if (denied := _private(request)) is not None:
        return denied
    facility = request.app.state.context.settings.catalogue.facility_namespace
    searching = bool(q or keyword or cursor)
    try:
        with request.app.state.context.sessions() as session:
            listing = queries.list_functions(session, q=q, keyword=keyword, cursor=cursor)
            standard = [] if searching else queries.list_functions(session, namespace=facility).items
            # With the alias version's DOI: what a run of the standard function today cites.
            provided = [
                queries.function_detail(queries.find_function(session, f["name"], facility)) for f in standard
            ]
    except CursorError as exc:
        return _error(request, 422, exc.message, exc.hint)
    if provided:
        others = [f for f in listing.items if f["namespace"] != facility]
        listing = queries.Listing(others, listing.next_cursor)
    return _render(
        request,
        "index.html",
        title="Functions",
        q=q or "",
        keyword=keyword or "",
        listing=listing,
        provided=provided,
        facility=facility,
    )


@router.get("/functions/{namespace}/{name}", response_class=HTMLResponse)
def function_page(request: Request, namespace: str, name: str) -> HTMLResponse:
    """A function: versions, citation, triggers, activity, recent activations and the invoke form."""
    if (denied := _private(request)) is not None:
        return denied
    with request.app.state.context.sessions() as session:
        try:
            fn = queries.find_function(session, name, namespace)
        except FaaspubError as exc:
            return _error(request, 404, exc.message, exc.hint)
        detail = queries.function_detail(fn)
        versions = [queries.version_item(fn, v) for v in queries.sorted_versions(fn)]
        recent = queries.list_activations(session, namespace=namespace, function=name, limit=RECENT)
    chart = _chart(request, namespace, name)
    return _render(
        request,
        "function.html",
        title=f"{name} · {namespace}",
        fn=detail,
        versions=versions,
        activations=recent.items,
        # The SVG is built from numbers and escaped text only.
        chart=Markup(chart.svg),
        chart_total=chart.total,
        chart_failed=chart.failed,
        chart_hours=chart.hours,
    )


@router.get("/functions/{namespace}/{name}/versions/{version}", response_class=HTMLResponse)
def version_page(request: Request, namespace: str, name: str, version: str) -> HTMLResponse:
    """One version: image, provenance (verified or not, by which key), SBOM and citation exports."""
    if (denied := _private(request)) is not None:
        return denied
    with request.app.state.context.sessions() as session:
        try:
            fn = queries.find_function(session, name, namespace)
            detail = queries.version_detail(fn, queries.find_version(fn, version))
        except FaaspubError as exc:
            return _error(request, 404, exc.message, exc.hint)
    return _render(request, "version.html", title=f"{name} {version} · {namespace}", v=detail)


@router.get("/activations/{activation_id}", response_class=HTMLResponse)
def activation_page(request: Request, activation_id: str) -> HTMLResponse:
    """One activation: status, version, duration, result and logs."""
    if (denied := _private(request)) is not None:
        return denied
    with request.app.state.context.sessions() as session:
        try:
            row = queries.get_activation(session, activation_id)
        except FaaspubError as exc:
            return _error(request, 404, exc.message)
        item = queries.activation_item(row, details=True)
    return _render(request, "activation.html", title=f"Activation {activation_id}", a=item)


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request, outcome: Text = None, webhooks: CursorQ = None, dead: CursorQ = None
) -> HTMLResponse:
    """Webhook deliveries and storage-event dead letters, newest first."""
    if (denied := _private(request)) is not None:
        return denied
    try:
        with request.app.state.context.sessions() as session:
            hooks = queries.list_webhook_deliveries(session, outcome=outcome or None, cursor=webhooks)
            letters = queries.list_event_deliveries(session, status="dead", cursor=dead)
    except CursorError as exc:
        return _error(request, 422, exc.message, exc.hint)
    return _render(
        request, "deliveries.html", title="Deliveries", hooks=hooks, letters=letters, outcome=outcome or ""
    )
