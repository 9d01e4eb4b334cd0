"""Catalogue web pages: function list and search, a function's page, an activation's logs, deliveries.

Server-rendered HTML (Jinja2) from the same queries as the API; the only script is a small file for
the cite tabs and the invoke form, and the pages work without it. Nothing is loaded from another host.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from publisher.catalogue import queries
from publisher.catalogue.auth import Grant, authenticate
from publisher.catalogue.chart import Chart, chart_cache
from publisher.catalogue.cursor import CursorError
from publisher.db.engine import transaction
from publisher.errors import FaaspubError
from webhooks.headers import http_url

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
templates.env.filters["http_url"] = http_url
# The token a browser sends with page requests after /login (HttpOnly: scripts never see it).
SESSION_COOKIE = "faaspub_token"
SESSION_S = 8 * 3600


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


def _viewer(request: Request) -> Grant | None:
    """The grant of the page request's token: ``Authorization: Bearer`` or the /login cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 512:
        return None
    with transaction(request.app.state.context.sessions) as session:
        return authenticate(session, token)


def _login(request: Request, message: str, status: int = 401) -> HTMLResponse:
    """The token form that lets a browser see results, logs and deliveries."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _render(request, "login.html", status, title="Sign in", message=message, next=target)


def _may_read(request: Request, namespace: str) -> HTMLResponse | None:
    """None when the viewer may read ``namespace`` (``*``: operators only), else the answer to send."""
    grant = _viewer(request)
    if grant is None:
        return _login(request, "results, logs and deliveries need an API token (read scope)")
    if not grant.allows(namespace, "read") or (namespace == "*" and grant.namespaces is not None):
        return _login(request, f"this token cannot read namespace {namespace}", status=403)
    return None


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
        if (denied := _may_read(request, row.namespace)) is not None:
            return denied
        item = queries.activation_item(row, details=True)
    return _render(request, "activation.html", title=f"Activation {activation_id}", a=item)


@router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(
    request: Request, outcome: Text = None, webhooks: CursorQ = None, dead: CursorQ = None
) -> HTMLResponse:
    """Webhook deliveries and storage-event dead letters, newest first."""
    if (denied := _private(request) or _may_read(request, "*")) is not None:
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


@router.post("/login", response_model=None)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> HTMLResponse | RedirectResponse:
    """Keep a valid API token in an HttpOnly, same-site cookie and go back to the page that asked."""
    with transaction(request.app.state.context.sessions) as session:
        grant = authenticate(session, token.strip())
    if grant is None:
        return _render(
            request, "login.html", 401, title="Sign in", message="the token is not valid", next=next
        )
    # Only a path on this site: never an absolute or scheme-relative URL (no open redirect).
    target = next if next.startswith("/") and not next.startswith(("//", "/\\")) else "/"
    answer = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https" or request.app.state.context.settings.server.base_url.startswith(
        "https://"
    )
    answer.set_cookie(
        SESSION_COOKIE, token.strip(), max_age=SESSION_S, httponly=True, samesite="strict", secure=secure
    )
    return answer


@router.post("/logout")
def logout() -> RedirectResponse:
    answer = RedirectResponse("/", status_code=303)
    answer.delete_cookie(SESSION_COOKIE)
    return answer
