"""``/api/v1``: the catalogue REST API (functions, versions, activations, deliveries) and invocation.

Catalogue reads (functions, versions, activation summaries) are public unless
``server.catalogue_public`` is false, in which case they need a token and show only the token's
namespace. Results, logs, storage events and webhook deliveries need a read token in every mode.
Invoke needs the ``invoke`` scope, rollback and replay ``admin``, on the function's namespace (see
:mod:`publisher.catalogue.auth`). Every error is JSON ``{"error": …, "hint": …}``; the route class
below converts FastAPI's own errors to that shape, so clients handle one format.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from publisher.catalogue import queries
from publisher.catalogue.auth import Grant, Scope, authenticate
from publisher.catalogue.cursor import MAX_LIMIT, CursorError
from publisher.catalogue.schemas import (
    ActivationDetail,
    ErrorOut,
    EventDeliveryOut,
    FunctionDetail,
    FunctionSummary,
    Page,
    ReplayIn,
    RollbackIn,
    VersionOut,
    WebhookDeliveryOut,
)
from publisher.core.context import Context
from publisher.db.engine import transaction
from publisher.errors import FaaspubError
from webhooks.limits import GRANT


class ApiError(Exception):
    """An error answer with its HTTP status (and headers such as ``WWW-Authenticate``)."""

    def __init__(
        self, status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.hint, self.headers = status, message, hint, headers


STATUS_OF: tuple[tuple[type[FaaspubError], int], ...] = (
    (queries.NotFound, 404),
    (queries.Ambiguous, 409),
    (CursorError, 422),
    (FaaspubError, 400),
)


def error_response(status: int, message: str, hint: str | None = None, headers: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


class JsonErrorRoute(APIRoute):
    """Answers every error of its endpoint as ``{"error": …}`` with the right status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return error_response(exc.status, exc.message, exc.hint, exc.headers)
            except RequestValidationError as exc:
                return error_response(422, _validation_message(exc))
            except HTTPException as exc:
                return error_response(exc.status_code, str(exc.detail), headers=exc.headers)
            except FaaspubError as exc:
                status = next(code for kind, code in STATUS_OF if isinstance(exc, kind))
                return error_response(status, exc.message, exc.hint)

        return route


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "The request cannot be carried out"),
        (401, "No token, or an unknown token"),
        (403, "The token lacks the scope or the namespace"),
        (404, "No such function, version or activation"),
        (409, "The name is ambiguous"),
        (422, "Invalid parameters"),
    )
}

router = APIRouter(prefix="/api/v1", tags=["catalogue"], route_class=JsonErrorRoute, responses=ERRORS)
bearer = HTTPBearer(auto_error=False, description="An API token from `faaspub token create`.")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


def context_of(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


async def current_grant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Grant | None:
    """The grant of the bearer token; an unknown token is refused here, a missing one later.

    Dependencies are ``async``: FastAPI runs a plain ``def`` one on the thread pool, and those hand-offs
    cost more than the catalogue query itself. Only a token lookup goes to a thread.
    """
    if credentials is None:
        return None
    checked: Grant | None = getattr(request.state, GRANT, None)
    if checked is not None:  # authenticated before the body was read (webhooks.limits)
        return checked
    grant = await run_in_threadpool(_authenticate, context_of(request), credentials.credentials)
    if grant is None:
        raise ApiError(
            401,
            "the token is not valid",
            "create one with faaspub token create",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return grant


def _authenticate(context: Context, token: str) -> Grant | None:
    with transaction(context.sessions) as session:
        return authenticate(session, token)


GrantDep = Annotated[Grant | None, Depends(current_grant)]


def need_token(grant: Grant | None, scope: Scope) -> Grant:
    """The grant; 401 when the request carried no token (checked before looking anything up)."""
    if grant is None:
        raise ApiError(
            401,
            f"this needs a token with the {scope} scope",
            "send Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )
    return grant


def require(grant: Grant | None, namespace: str, scope: Scope) -> Grant:
    """The grant when it has ``scope`` on ``namespace``; else 401 (no token) or 403."""
    grant = need_token(grant, scope)
    if not grant.allows(namespace, scope):
        raise ApiError(403, f"the token has no {scope} right on namespace {namespace}")
    return grant


async def reader(request: Request, grant: GrantDep) -> str | None:
    """The namespace reads are limited to (``None``: all) under the catalogue's read policy."""
    if context_of(request).settings.server.catalogue_public:
        return None
    return need_token(grant, "read").namespaces


ReaderDep = Annotated[str | None, Depends(reader)]


async def private_reader(grant: GrantDep) -> str | None:
    """Like :func:`reader`, but in every mode: results, logs and storage paths are never public."""
    return need_token(grant, "read").namespaces


PrivateReaderDep = Annotated[str | None, Depends(private_reader)]


def visible(requested: str | None, limit_to: str | None) -> str | None:
    """The namespace filter of a listing: what was asked, within what the reader may see."""
    if limit_to is not None and requested not in (None, limit_to):
        raise ApiError(403, f"the token cannot read namespace {requested}")
    return requested or limit_to


def check_visible(namespace: str, limit_to: str | None) -> None:
    if limit_to is not None and namespace != limit_to:
        raise ApiError(403, f"the token cannot read namespace {namespace}")


def paged(request: Request, response: Response, listing: queries.Listing) -> dict[str, Any]:
    """The page body plus its ``next`` link (in the body and as a ``Link`` header)."""
    link = None
    if listing.next_cursor:
        url = request.url.include_query_params(cursor=listing.next_cursor)
        link = f"{url.path}?{url.query}"
        response.headers["Link"] = f'<{link}>; rel="next"'
    return {"items": listing.items, "next_cursor": listing.next_cursor, "next": link}


# GitLab group paths (with subgroups) and function names: letters, digits, ".", "_", "-", "/".
FunctionName = Annotated[
    str,
    Path(
        description="The name, or namespace/name",
        max_length=320,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
    ),
]
Namespace = Annotated[str | None, Query(max_length=255, description="The function's namespace")]


# -- catalogue ---------------------------------------------------------------------------------------


@router.get("/functions", response_model=Page[FunctionSummary], summary="Search functions")
def functions(
    request: Request,
    response: Response,
    limit_to: ReaderDep,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name or description")] = None,
    keyword: Annotated[str | None, Query(max_length=200)] = None,
    namespace: Namespace = None,
    trigger_path: Annotated[str | None, Query(max_length=1024, description="A storage path")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    with context_of(request).sessions() as session:
        listing = queries.list_functions(
            session,
            q=q,
            keyword=keyword,
            namespace=visible(namespace, limit_to),
            trigger_path=trigger_path,
            cursor=cursor,
            limit=limit,
        )
    return paged(request, response, listing)


@router.get("/versions", response_model=Page[VersionOut], summary="Versions across functions, by DOI")
def versions_by_doi(
    request: Request,
    response: Response,
    limit_to: ReaderDep,
    doi: Annotated[str | None, Query(max_length=255, description="A version DOI")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    with context_of(request).sessions() as session:
        listing = queries.list_versions(session, doi=doi, namespace=limit_to, cursor=cursor, limit=limit)
    return paged(request, response, listing)


@router.get(
    "/functions/{name:path}/versions", response_model=Page[VersionOut], summary="Versions of a function"
)
def function_versions(
    request: Request,
    response: Response,
    name: FunctionName,
    limit_to: ReaderDep,
    namespace: Namespace = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    with context_of(request).sessions() as session:
        fn = queries.find_function(session, name, namespace)
        check_visible(fn.namespace, limit_to)
        listing = queries.list_versions(session, fn=fn, cursor=cursor, limit=limit)
    return paged(request, response, listing)


@router.post(
    "/functions/{name:path}/invoke",
    response_model=ActivationDetail,
    summary="Invoke a function (invoke scope)",
)
def invoke(
    request: Request,
    name: FunctionName,
    grant: GrantDep,
    params: Annotated[dict[str, Any] | None, Body(description="The parameters, a JSON object")] = None,
    version: Annotated[
        str | None, Query(max_length=64, description="Run this version, not the alias")
    ] = None,
    namespace: Namespace = None,
) -> dict[str, Any]:
    context = context_of(request)
    need_token(grant, "invoke")
    with context.sessions() as session:
        fn = queries.find_function(session, name, namespace)
        require(grant, fn.namespace, "invoke")
        known = {v.version for v in fn.versions if v.state == "live"}
        if version is not None and version not in known:
            raise queries.NotFound(
                f"function {fn.name} has no version {version}",
                hint=f"versions: {', '.join(sorted(known)) or 'none'}",
            )
        target_ns, target = fn.namespace, fn.name
    activation = context.backend.invoke(
        target_ns, target, params or {}, version=version, blocking=True, cause="api"
    )
    return {
        "namespace": target_ns,
        "id": activation.id,
        "function": activation.function,
        "version": activation.version,
        "digest": activation.digest,
        "start": activation.start,
        "duration_ms": activation.duration_ms,
        "status": activation.status,
        "cause": activation.cause,
        "result": activation.result,
        "logs": activation.logs,
    }


@router.post(
    "/functions/{name:path}/rollback",
    response_model=FunctionDetail,
    summary="Point the function's alias at an earlier version (admin scope)",
)
def rollback(
    request: Request, name: FunctionName, grant: GrantDep, body: RollbackIn, namespace: Namespace = None
) -> dict[str, Any]:
    context = context_of(request)
    target_ns, target = _admin_target(context, grant, name, namespace, body.version)
    context.backend.rollback(target_ns, target, body.version)  # moves the catalogue's alias too
    with context.sessions() as session:
        return queries.function_detail(queries.find_function(session, target, target_ns))


@router.post(
    "/functions/{name:path}/replay",
    status_code=202,
    summary="Reprocess stored files with a version (admin scope)",
)
def replay(
    request: Request, name: FunctionName, grant: GrantDep, body: ReplayIn, namespace: Namespace = None
) -> dict[str, Any]:
    from publisher.triggers.replay import replay as run_replay

    context = context_of(request)
    target_ns, target = _admin_target(context, grant, name, namespace, body.version)
    report = run_replay(
        context,
        target,
        body.path,
        version=body.version,
        since=body.since,
        source=body.source,
        namespace=target_ns,
    )
    return report.as_dict()


def _admin_target(
    context: Context, grant: Grant | None, name: str, namespace: str | None, version: str | None
) -> tuple[str, str]:
    """The (namespace, name) an admin action applies to, after the checks every such action needs."""
    need_token(grant, "admin")
    with context.sessions() as session:
        fn = queries.find_function(session, name, namespace)
        require(grant, fn.namespace, "admin")
        if version is not None and version not in {v.version for v in fn.versions}:
            raise queries.NotFound(f"function {fn.name} has no version {version}")
        return fn.namespace, fn.name


@router.get("/functions/{name:path}", response_model=FunctionDetail, summary="One function")
def function(request: Request, name: FunctionName, limit_to: ReaderDep, namespace: Namespace = None) -> Any:
    with context_of(request).sessions() as session:
        fn = queries.find_function(session, name, namespace)
        check_visible(fn.namespace, limit_to)
        return queries.function_detail(fn)


# -- runs and deliveries -----------------------------------------------------------------------------


@router.get(
    "/activations",
    response_model=Page[ActivationDetail],
    response_model_exclude_unset=True,
    summary="Activations, newest first (results and logs with logs=true)",
)
def activations(
    request: Request,
    response: Response,
    limit_to: ReaderDep,
    grant: GrantDep,
    function: Annotated[str | None, Query(max_length=63)] = None,
    namespace: Namespace = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        Literal[
            "success", "application_error", "developer_error", "system_error", "timeout", "pending", "failed"
        ]
        | None,
        Query(description="One status, or failed for every failure"),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Started at or after (ISO 8601; UTC if no zone)")
    ] = None,
    until: Annotated[datetime | None, Query(description="Started before")] = None,
    logs: Annotated[bool, Query(description="Include results and logs")] = False,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    if logs:  # results and logs need a token in every mode
        limit_to = need_token(grant, "read").namespaces
    with context_of(request).sessions() as session:
        listing = queries.list_activations(
            session,
            namespace=visible(namespace, limit_to),
            function=function,
            version=version,
            status=status,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
            logs=logs,
        )
    return paged(request, response, listing)


@router.get("/activations/{activation_id}", response_model=ActivationDetail, summary="One activation")
def activation(
    request: Request, activation_id: Annotated[str, Path(max_length=64)], limit_to: PrivateReaderDep
) -> dict[str, Any]:
    with context_of(request).sessions() as session:
        row = queries.get_activation(session, activation_id)
        check_visible(row.namespace, limit_to)
        return queries.activation_item(row, details=True)


EventStatus = Literal["pending", "inflight", "done", "dead"]


@router.get("/events", response_model=Page[EventDeliveryOut], summary="Storage-event deliveries")
def events(
    request: Request,
    response: Response,
    limit_to: PrivateReaderDep,
    status: Annotated[EventStatus | None, Query()] = None,
    function: Annotated[str | None, Query(max_length=63)] = None,
    namespace: Namespace = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    return _events(request, response, limit_to, status, function, namespace, cursor, limit)


@router.get("/events/dead", response_model=Page[EventDeliveryOut], summary="Storage-event dead letters")
def dead_letters(
    request: Request,
    response: Response,
    limit_to: PrivateReaderDep,
    function: Annotated[str | None, Query(max_length=63)] = None,
    namespace: Namespace = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    return _events(request, response, limit_to, "dead", function, namespace, cursor, limit)


def _events(
    request: Request,
    response: Response,
    limit_to: str | None,
    status: str | None,
    function: str | None,
    namespace: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    with context_of(request).sessions() as session:
        listing = queries.list_event_deliveries(
            session,
            status=status,
            namespace=visible(namespace, limit_to),
            function=function,
            cursor=cursor,
            limit=limit,
        )
    return paged(request, response, listing)


@router.get("/deliveries", response_model=Page[WebhookDeliveryOut], summary="Received webhook deliveries")
def deliveries(
    request: Request,
    response: Response,
    limit_to: PrivateReaderDep,
    outcome: Annotated[
        str | None, Query(max_length=32, description="queued, ignored, unauthorized, …")
    ] = None,
    source: Annotated[Literal["gitlab", "s3", "ci"] | None, Query()] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    if limit_to is not None:
        # Deliveries belong to the service, not to a namespace: operators (namespace "*") only.
        raise ApiError(403, "webhook deliveries need an operator token (namespace *)")
    with context_of(request).sessions() as session:
        listing = queries.list_webhook_deliveries(
            session, outcome=outcome, source=source, cursor=cursor, limit=limit
        )
    return paged(request, response, listing)
