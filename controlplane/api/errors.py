"""The one error shape of the API and the exceptions that produce it.

Every error body is `{"error": {"code": "<stable_snake_case>", "message": "...",
"details": ...}}`. Raise :class:`ApiError` (or a subclass) anywhere below a handler;
the error middleware renders it, and renders aiohttp's own HTTP errors (unknown
route, wrong method, body too large) the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel


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
