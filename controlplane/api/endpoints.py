"""The endpoint layer: routes declared once, with the models that validate them.

A handler is a typed coroutine. Its parameters and return annotation are the whole
declaration; the same pydantic models validate requests, serialise responses and
make up the OpenAPI document (:mod:`controlplane.api.openapi`):

    async def create_api_key(request: web.Request, body: CreateApiKey) -> CreatedApiKey

- `body: Model` — the JSON body, parsed and validated (400 `invalid_json` /
  `validation_error`, 413 when too large).
- `query: Model` — the query string, validated the same way (e.g. `PageQuery`).
- return a `BaseModel` → JSON with the route's `status`; return an aiohttp
  `StreamResponse` (annotate it so) → sent as is (WebSocket, streams, text).

Each route names its :class:`Access` policy (who may call it) and may opt into rate
limiting. Path parameters (`{id}`) are read from `request.match_info`.

Every route is wrapped so that any failure leaves as the error envelope and every
request is counted and timed; a last catch-all route does the same for unknown paths
(404) and wrong methods (405). This is done here rather than in aiohttp middlewares
because each middleware layer costs a coroutine call on every request of the hot path.
"""

from __future__ import annotations

import inspect
import re
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError

from common.json_input import INT64_MAX, INT64_MIN, UntrustedJsonError, load_untrusted_json
from common.logging import get_logger
from controlplane.api.errors import (
    ApiError,
    ValidationFailed,
    error_response,
    http_error_response,
    rate_limited,
)
from controlplane.api.schemas import Snapshot
from controlplane.security.proxies import client_address as forwarded_client
from controlplane.state import CONFIG, METRICS, RATE_LIMITER

log = get_logger(__name__)
UNMATCHED = "unmatched"

Handler = Callable[..., Awaitable[BaseModel | web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


class Access(Protocol):
    """Who may call a route. `authorize` raises an ApiError (401/403) to refuse and
    may attach the caller to the request (see `current_user`)."""

    name: str
    #: OpenAPI security requirement for the route ([] = none).
    security: list[dict[str, list[str]]]

    async def authorize(self, request: web.Request) -> None:
        """Admit the request or raise."""


@dataclass(frozen=True)
class Endpoint:
    """One route: method, path, handler and everything the document says about it."""

    method: str
    path: str
    handler: Handler
    access: Access
    status: int = 200
    summary: str = ""
    tag: str = ""
    errors: tuple[int, ...] = ()
    rate_limit: bool = False
    body_model: type[BaseModel] | None = None
    body_required: bool = True
    query_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    operation_id: str = field(default="")


@dataclass(frozen=True)
class _Signature:
    body: type[BaseModel] | None
    body_required: bool
    query: type[BaseModel] | None
    response: type[BaseModel] | None


def _as_model(handler: Handler, name: str, hint: Any) -> tuple[type[BaseModel], bool]:
    """The model of an annotation `Model` or `Model | None` (then not required)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = len(args) == 1 and len(typing.get_args(hint)) == 2
    model = args[0] if optional else hint
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise TypeError(f"{handler.__qualname__}: {name} must be a pydantic model")
    return model, not optional


def _signature_of(handler: Handler) -> _Signature:
    hints = typing.get_type_hints(handler)
    params = inspect.signature(handler).parameters
    unknown = set(params) - {"request", "body", "query"}
    if unknown:
        raise TypeError(f"{handler.__qualname__}: unsupported parameters {sorted(unknown)}")
    body, body_required, query = None, False, None
    if "body" in params:
        body, body_required = _as_model(handler, "body", hints["body"])
    if "query" in params:
        query, _ = _as_model(handler, "query", hints["query"])
    returns = hints.get("return")
    response = returns if inspect.isclass(returns) and issubclass(returns, BaseModel) else None
    return _Signature(body, body_required, query, response)


def _validation_details(exc: ValidationError, where: str) -> list[dict[str, str]]:
    # No `input` in the details: it could echo a password back.
    return [
        {
            "field": ".".join([where, *(str(part) for part in err["loc"])]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def decode_json(request: web.Request, raw: bytes | str, what: str = "request body") -> Any:
    """`raw` decoded by the one untrusted-JSON decoder; 400 `invalid_json` (logged in
    one line, without a traceback) when it is not JSON, nests too deep, or holds
    NaN or an integer beyond 64 bits."""
    try:
        return load_untrusted_json(raw)
    except UntrustedJsonError as exc:
        log.info("invalid_json", method=request.method, path=request.path, reason=str(exc))
        raise ApiError(f"{what} is not valid JSON: {exc}", code="invalid_json") from None


async def _read_json(request: web.Request, *, required: bool) -> Any:
    raw = await request.read()
    if not raw.strip() and not required:
        return None
    data = decode_json(request, raw) if raw else None
    if data is None:
        raise ApiError("a JSON request body is required", code="invalid_json")
    return data


def _validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = _validation_details(exc, where)
        what = "request body is" if where == "body" else "query parameters are"
        raise ValidationFailed(f"{what} invalid", details=details) from exc


async def parse_json(request: web.Request, model: type[M]) -> M:
    """The request body validated as `model` (400 on bad JSON or schema, 413 if big).

    Routes get this for free by annotating `body`; call it for bodies read by hand.
    """
    return _validate(model, await _read_json(request, required=True), "body")


def parse_query(request: web.Request, model: type[M]) -> M:
    """The query string validated as `model` (400 on error). Integers must fit in 64
    bits whatever the model says: they end up in SQL and protobuf fields."""
    query = _validate(model, dict(request.query), "query")
    for name, value in query:
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise ValidationFailed(
                "query parameters are invalid",
                details=[{"field": f"query.{name}", "message": "out of the 64-bit range"}],
            )
    return query


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or from X-Forwarded-For when the peer is one of
    the configured `trusted_proxies`."""
    return forwarded_client(
        request.remote or "unknown",
        request.headers.getall("X-Forwarded-For", []),
        request.app[CONFIG].trusted_proxies,
    )


def _check_rate_limit(request: web.Request, endpoint: Endpoint) -> None:
    limiter = request.app[RATE_LIMITER]
    wait = limiter.hit(f"{endpoint.method} {endpoint.path} {client_address(request)}")
    if wait is not None:
        raise rate_limited(wait)


async def _answer(endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
    if endpoint.rate_limit:
        _check_rate_limit(request, endpoint)
    await endpoint.access.authorize(request)
    kwargs: dict[str, Any] = {}
    if endpoint.query_model is not None:
        kwargs["query"] = parse_query(request, endpoint.query_model)
    if endpoint.body_model is not None:
        data = await _read_json(request, required=endpoint.body_required)
        kwargs["body"] = None if data is None else _validate(endpoint.body_model, data, "body")
    result = await endpoint.handler(request, **kwargs)
    if isinstance(result, web.StreamResponse):
        return result
    text = result.json_text if isinstance(result, Snapshot) else result.model_dump_json()
    return web.Response(status=endpoint.status, text=text, content_type="application/json")


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    """PostgreSQL's "data exception" class (SQLSTATE 22: a NUL character in text, a
    number out of range...) is the request's fault: 400. Anything else is ours: 500,
    logged with its traceback."""
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "") if isinstance(exc, DBAPIError) else ""
    if sqlstate.startswith("22"):
        return ValidationFailed(
            "a value in the request cannot be stored (text with NUL characters, or a "
            "number out of range)"
        ).to_response()
    log.exception("unhandled_error", method=request.method, path=request.path)
    return error_response(500, "internal_error", "internal server error")


def _failure(request: web.Request, exc: Exception) -> web.Response:
    """The error envelope for a failure (redirects are re-raised: they pass through)."""
    if isinstance(exc, ApiError):
        return exc.to_response()
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        return http_error_response(exc)
    return _unexpected(request, exc)


async def _observed(
    request: web.Request, route: str, answer: Awaitable[web.StreamResponse]
) -> web.StreamResponse:
    """Await `answer`, turning every failure into the error envelope; record metrics."""
    started = time.perf_counter()
    try:
        response = await answer
    except Exception as exc:
        response = _failure(request, exc)
    request.app[METRICS].observe(
        request.method, route, response.status, time.perf_counter() - started
    )
    return response


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    route = endpoint.path

    # `_observed` inlined: one coroutine less on every request of every route.
    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await _answer(endpoint, request)
        except Exception as exc:
            response = _failure(request, exc)
        request.app[METRICS].observe(
            request.method, route, response.status, time.perf_counter() - started
        )
        return response

    handle.__qualname__ = endpoint.handler.__qualname__
    return handle


async def _no_such_route(request: web.Request) -> web.StreamResponse:
    # The catch-all route also shadows aiohttp's 405: find out whether another route
    # has this path with other methods.
    allowed: set[str] = set()
    catch_all = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is catch_all:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise web.HTTPNotFound()


async def _unmatched(request: web.Request) -> web.StreamResponse:
    return await _observed(request, UNMATCHED, _no_such_route(request))


class ApiRoutes:
    """The route table under construction; `install` puts it on an application."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        access: Access,
        status: int = 200,
        summary: str = "",
        tag: str = "",
        errors: tuple[int, ...] = (),
        rate_limit: bool = False,
    ) -> None:
        """Declare one route; models come from the handler's annotations."""
        signature = _signature_of(handler)
        self.endpoints.append(
            Endpoint(
                method=method.upper(),
                path=path,
                handler=handler,
                access=access,
                status=status,
                summary=summary or (inspect.getdoc(handler) or "").split("\n")[0],
                tag=tag,
                errors=errors,
                rate_limit=rate_limit,
                body_model=signature.body,
                body_required=signature.body_required,
                query_model=signature.query,
                response_model=signature.response,
                operation_id=re.sub(r"[^a-z0-9]+", "_", f"{method} {path}".lower()).strip("_"),
            )
        )

    def install(self, app: web.Application) -> None:
        """Register every route on `app`'s router, then the catch-all for the rest."""
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))
        app.router.add_route("*", "/{unmatched:.*}", _unmatched)
