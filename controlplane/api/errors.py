"""The one error shape of the API and the exceptions that produce it.

Every error body is `{"error": {"code": "<stable_snake_case>", "message": "...",
"details": ...}}`. Raise :class:`ApiError` (or a subclass) anywhere below a handler;
the endpoint layer renders it, and renders aiohttp's own HTTP errors (unknown route,
wrong method, body too large) the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from controlplane.security.rate_limit import retry_after_header


class ErrorBody(BaseModel):
    """The inside of the error envelope."""

    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    """`{"error": {...}}`: the body of every non-2xx response."""

    error: ErrorBody


class ApiError(Exception):
    """An error the client caused or must know about, with its HTTP status."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or type(self).code
        self.status = status or type(self).status
        self.details = details
        self.headers = dict(headers or {})

    def to_response(self) -> web.Response:
        """The JSON response for this error."""
        return error_response(self.status, self.code, self.message, self.details, self.headers)


class ValidationFailed(ApiError):
    """400: the request does not match its schema."""

    status, code = 400, "validation_error"


class Unauthorized(ApiError):
    """401: missing, invalid or expired credentials."""

    status, code = 401, "unauthorized"

    def __init__(self, message: str = "authentication required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(ApiError):
    """403: authenticated but not allowed."""

    status, code = 403, "forbidden"


class NotFound(ApiError):
    """404: no such resource (or not one the caller may see)."""

    status, code = 404, "not_found"


class Conflict(ApiError):
    """409: the resource exists already or the state forbids the change."""

    status, code = 409, "conflict"


class Unprocessable(ApiError):
    """422: well-formed but semantically unusable input."""

    status, code = 422, "unprocessable"


class TooManyRequests(ApiError):
    """429: the client's budget is spent; Retry-After says for how long."""

    status, code = 429, "rate_limited"


def rate_limited(wait: float) -> TooManyRequests:
    """The 429 for a budget that allows the next request in `wait` seconds."""
    retry_after = retry_after_header(wait)
    return TooManyRequests(
        "too many requests; slow down",
        headers={"Retry-After": retry_after},
        details={"retry_after_seconds": int(retry_after)},
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A response carrying the error envelope."""
    body = ErrorEnvelope(error=ErrorBody(code=code, message=message, details=details))
    return web.Response(
        status=status,
        text=body.model_dump_json(),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}
_HTTP_MESSAGES = {
    404: "no such route",
    405: "method not allowed on this route",
    413: "request body too large",
}


def http_error_response(exc: web.HTTPException) -> web.Response:
    """The envelope for one of aiohttp's own HTTP errors (status >= 400)."""
    code = _HTTP_CODES.get(exc.status) or (
        re.sub(r"[^a-z0-9]+", "_", (exc.reason or "error").lower()).strip("_") or "error"
    )
    message = _HTTP_MESSAGES.get(exc.status, exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return error_response(exc.status, code, message, None, headers)
