"""Cookie mode for the web UI's refresh token (docs/ui.md "Tokens in the browser").

A client that sends `X-Refresh-Cookie: 1` on `/v1/auth/login`, `/register` or
`/refresh` gets its refresh token in an HttpOnly, `SameSite=Strict` cookie scoped to
`/v1/auth/refresh` instead of the JSON body (whose `refresh_token` is then empty), and
`/refresh` reads the cookie when that header is present; `/logout` with the header
clears it. The JSON API is unchanged for every other client. Requiring a custom header
besides the SameSite cookie means a cross-site page cannot make the browser use it
(the header needs a CORS preflight that the control plane never grants).

The move happens in `on_response_prepare`, so the handlers keep their declared models.
"""

from __future__ import annotations

import json
from http.cookies import SimpleCookie

from aiohttp import hdrs, web

COOKIE = "encedeus_refresh"
HEADER = "X-Refresh-Cookie"
COOKIE_PATH = "/v1/auth/refresh"
LOGOUT_PATH = "/v1/auth/logout"
ISSUING_PATHS = frozenset({"/v1/auth/login", "/v1/auth/register", COOKIE_PATH})


def wants_cookie(request: web.Request) -> bool:
    """Did the client ask for cookie mode?"""
    return request.headers.get(HEADER) == "1"


def refresh_token_from_cookie(request: web.Request) -> str | None:
    """The refresh token of the cookie, only for a client in cookie mode."""
    return request.cookies.get(COOKIE) if wants_cookie(request) else None


async def move_refresh_token_to_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: in cookie mode, the issued refresh token leaves in the
    cookie rather than the body; logout and a refused refresh clear the cookie."""
    path = request.path
    if path not in ISSUING_PATHS and path != LOGOUT_PATH:
        return
    if not wants_cookie(request) or not isinstance(response, web.Response):
        return
    if path == LOGOUT_PATH or response.status >= 400:
        if path in (LOGOUT_PATH, COOKIE_PATH):
            _set_cookie(response, "", request.secure, expired=True)
        return
    body = json.loads(response.text or "{}")
    token = body.get("refresh_token")
    if not isinstance(token, str) or not token:
        return
    body["refresh_token"] = ""
    encoded = json.dumps(body).encode()
    response.body = encoded
    # The length was fixed with the first body; this hook runs before it is sent.
    response.headers[hdrs.CONTENT_LENGTH] = str(len(encoded))
    _set_cookie(response, token, request.secure)


def _set_cookie(response: web.Response, value: str, secure: bool, expired: bool = False) -> None:
    # Headers, Set-Cookie included, are built before `on_response_prepare` runs: add
    # the header itself rather than `response.set_cookie`.
    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = value
    morsel = jar[COOKIE]
    morsel["path"] = COOKIE_PATH
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    morsel["secure"] = secure
    if expired:
        morsel["max-age"] = 0
        morsel["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
    response.headers.add(hdrs.SET_COOKIE, morsel.OutputString())


def install_refresh_cookie(app: web.Application) -> None:
    """Turn cookie mode on for `app`."""
    app.on_response_prepare.append(move_refresh_token_to_cookie)
