"""The OpenAPI 3.1 document, generated from the route table and its pydantic models.

Nothing here is written by hand per route: the models that validate a request and
serialise its response are the ones the document shows.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaValue, models_json_schema

from controlplane.api.endpoints import Endpoint
from controlplane.api.errors import ErrorEnvelope
from controlplane.state import ROUTES

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Invalid request",
    401: "Missing or invalid credentials",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    422: "Unprocessable input",
    429: "Too many requests",
}

Mode = Literal["validation", "serialization"]


def _error_statuses(endpoint: Endpoint) -> set[int]:
    # Any request can be malformed (bad JSON, bad query, not a WebSocket upgrade).
    statuses = {400, *endpoint.errors}
    if endpoint.body_model:
        statuses.add(413)
    if endpoint.access.security:
        statuses.add(401)
    if endpoint.access.name == "admin":
        statuses.add(403)
    if _PATH_PARAM.search(endpoint.path):
        statuses.add(404)
    if endpoint.rate_limit:
        statuses.add(429)
    return statuses


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        for name, prop in schema.get("properties", {}).items()
    ]


def _operation(endpoint: Endpoint, refs: dict[tuple[type[BaseModel], Mode], Any]) -> Any:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    if endpoint.query_model:
        params += _query_parameters(endpoint.query_model)
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(endpoint.status, "Success")}
    if endpoint.response_model:
        schema = refs[(endpoint.response_model, "serialization")]
        ok["content"] = {"application/json": {"schema": schema}}
    responses: dict[str, Any] = {str(endpoint.status): ok}
    error_schema = refs[(ErrorEnvelope, "serialization")]
    for status in sorted(_error_statuses(endpoint)):
        if status < 400:  # another success (e.g. 202 Accepted): its body is in docs/api.md
            responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Success")}
            continue
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": error_schema}},
        }
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag] if endpoint.tag else [],
        "parameters": params,
        "responses": responses,
        "security": endpoint.access.security,
    }
    if endpoint.body_model:
        schema = refs[(endpoint.body_model, "validation")]
        operation["requestBody"] = {
            "required": endpoint.body_required,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def build_openapi(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `endpoints`."""
    wanted: set[tuple[type[BaseModel], Mode]] = {(ErrorEnvelope, "serialization")}
    for endpoint in endpoints:
        if endpoint.body_model:
            wanted.add((endpoint.body_model, "validation"))
        if endpoint.response_model:
            wanted.add((endpoint.response_model, "serialization"))
    ordered = sorted(wanted, key=lambda item: (item[0].__name__, item[1]))
    schemas, definitions = models_json_schema(ordered, ref_template=_REF)
    refs: dict[tuple[type[BaseModel], Mode], JsonSchemaValue] = {
        (model, mode): schemas[(model, mode)] for model, mode in ordered
    }
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        path = _PATH_PARAM.sub(r"{\1}", endpoint.path)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def serve_openapi(request: web.Request) -> web.Response:
    """GET /v1/openapi.json."""
    from controlplane import __version__

    routes = request.app[ROUTES]
    document = build_openapi(routes.endpoints, title="Encedeus control plane", version=__version__)
    return web.json_response(document)
