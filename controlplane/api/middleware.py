"""The error middleware: every failure leaves as the JSON error envelope."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from common.logging import get_logger
from controlplane.api.errors import ApiError, error_response

log = get_logger(__name__)

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


def _code_for(exc: web.HTTPException) -> str:
    code = _HTTP_CODES.get(exc.status)
    if code:
        return code
    return re.sub(r"[^a-z0-9]+", "_", (exc.reason or "error").lower()).strip("_") or "error"


def _message_for(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        return "method not allowed on this route"
    if exc.status == 413:
        return "request body too large"
    return exc.reason


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Render ApiError, aiohttp's HTTP errors and crashes as the error envelope."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, _code_for(exc), _message_for(exc), None, headers)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return error_response(500, "internal_error", "internal server error")
