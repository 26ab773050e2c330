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

Each route names its :class:`Access` policy (who may call it) and may name a rate
limit bucket. Path parameters (`{id}`) are read from `request.match_info`.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ValidationError

from controlplane.api.errors import ApiError, TooManyRequests, ValidationFailed
from controlplane.security.rate_limit import retry_after_header
from controlplane.state import RATE_LIMITER

Handler = Callable[..., Awaitable[BaseModel | web.StreamResponse]]


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


async def parse_json(request: web.Request, model: type[BaseModel], *, required: bool = True) -> Any:
    """The request body validated as `model` (400 on bad JSON or schema, 413 if big).

    With `required=False` an empty body gives None.
    """
    raw = await request.read()
    if not raw.strip() and not required:
        return None
    try:
        data = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("request body is not valid JSON", code="invalid_json") from exc
    if data is None:
        raise ApiError("a JSON request body is required", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = _validation_details(exc, "body")
        raise ValidationFailed("request body is invalid", details=details) from exc


def parse_query(request: web.Request, model: type[BaseModel]) -> Any:
    """The query string validated as `model` (400 on error)."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        details = _validation_details(exc, "query")
        raise ValidationFailed("query parameters are invalid", details=details) from exc


def client_address(request: web.Request) -> str:
    """The peer address (no proxy headers are trusted)."""
    return request.remote or "unknown"


def _check_rate_limit(request: web.Request, endpoint: Endpoint) -> None:
    limiter = request.app[RATE_LIMITER]
    wait = limiter.hit(f"{endpoint.method} {endpoint.path} {client_address(request)}")
    if wait is not None:
        raise TooManyRequests(
            "too many requests; slow down",
            headers={"Retry-After": retry_after_header(wait)},
            details={"retry_after_seconds": int(retry_after_header(wait))},
        )


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.rate_limit:
            _check_rate_limit(request, endpoint)
        await endpoint.access.authorize(request)
        kwargs: dict[str, Any] = {}
        if endpoint.query_model is not None:
            kwargs["query"] = parse_query(request, endpoint.query_model)
        if endpoint.body_model is not None:
            kwargs["body"] = await parse_json(
                request, endpoint.body_model, required=endpoint.body_required
            )
        result = await endpoint.handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(
            status=endpoint.status, text=result.model_dump_json(), content_type="application/json"
        )

    handle.__qualname__ = endpoint.handler.__qualname__
    return handle


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
        """Register every route on `app`'s router."""
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))
