"""Who may use the file API of a server on this node, and how failures answer.

Every request carries a token the control plane signed with the node secret
(`?token=` or `Authorization: Bearer`). The control plane's relayed calls (list, stat
and the small operations) take scope `file-relay`, with `file.read` to read and
`file.write` to write. A signed transfer URL's token is bound to one operation and one
path: scope `file-download` (with `file.read`) only downloads, scope `file-upload`
(with `file.write`) only uploads (PUT, PATCH, HEAD), each only the path signed in its
`details.path`. A read-only grant has no `file.write`, so it can read and nothing else.
"""

from __future__ import annotations

import errno
from typing import Any, Literal

from aiohttp import web

from agent.config import NodeIdentity
from common.tokens import Scope, ServerToken, TokenError, TokenExpiredError, verify_server_token

#: read/write: the control plane's relayed calls; download/upload: signed transfer URLs.
Access = Literal["read", "write", "download", "upload"]
_SCOPE: dict[Access, Literal["file-relay", "file-download", "file-upload"]] = {
    "read": "file-relay",
    "write": "file-relay",
    "download": "file-download",
    "upload": "file-upload",
}
_PERMISSION: dict[Access, str] = {
    "read": "file.read",
    "write": "file.write",
    "download": "file.read",
    "upload": "file.write",
}
_FILE_SCOPES: tuple[Scope, ...] = ("file-relay", "file-download", "file-upload")
_PATH_BOUND: frozenset[Access] = frozenset({"download", "upload"})


class FileApiError(web.HTTPException):
    """An error answered as `{"error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        self.status_code = status
        super().__init__(text=_envelope(code, message, details), content_type="application/json")


def _envelope(code: str, message: str, details: Any) -> str:
    import json

    return json.dumps({"error": {"code": code, "message": message, "details": details}})


def presented_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.query.get("token", "")


def authorize(
    request: web.Request,
    identity: NodeIdentity,
    started_at: float,
    access: Access,
    path: str | None = None,
) -> ServerToken:
    """The verified token of this request for its server, or a 401/403 FileApiError.
    For a download or upload, `path` must be the path signed into the token."""
    token = presented_token(request)
    if not token:
        raise FileApiError(401, "token_required", "a signed file token is required")
    try:
        claims = verify_server_token(
            identity.node_secret,
            token,
            node_id=identity.node_id,
            scope=_SCOPE[access],
            not_before=started_at,
        )
    except TokenExpiredError as exc:
        raise FileApiError(401, "token_expired", str(exc)) from exc
    except TokenError as exc:
        other = _scope_of(identity, token, started_at)
        if other is not None and other != _SCOPE[access]:
            raise FileApiError(
                403, "wrong_operation", f"this token is good only for {other}"
            ) from exc
        raise FileApiError(401, "invalid_token", str(exc)) from exc
    if claims.server_id != request.match_info["server_id"]:
        raise FileApiError(403, "wrong_server", "the token is for another server")
    if not claims.allows(_PERMISSION[access]):
        raise FileApiError(403, "read_only", "this grant may not write files")
    if access in _PATH_BOUND and claims.details.get("path") != path:
        raise FileApiError(403, "wrong_path", "the token is for another path")
    return claims


def _scope_of(identity: NodeIdentity, token: str, started_at: float) -> Scope | None:
    """The file scope `token` is valid for, if any (to answer 403, not 401, for a good
    token used for another operation)."""
    for scope in _FILE_SCOPES:
        try:
            verify_server_token(
                identity.node_secret,
                token,
                node_id=identity.node_id,
                scope=scope,
                not_before=started_at,
            )
        except TokenError:
            continue
        return scope
    return None


_ERRNO_ANSWERS: dict[int, tuple[int, str]] = {
    errno.ENOENT: (404, "file_not_found"),
    errno.EEXIST: (409, "file_exists"),
    errno.ENOTEMPTY: (409, "directory_not_empty"),
    errno.EISDIR: (409, "is_a_directory"),
    errno.ENOTDIR: (409, "not_a_directory"),
    errno.EXDEV: (403, "outside_server_directory"),
    errno.ELOOP: (403, "too_many_links"),
    errno.EACCES: (403, "not_permitted"),
    errno.EPERM: (403, "not_permitted"),
    errno.EINVAL: (400, "invalid_path"),
    errno.EOPNOTSUPP: (400, "not_supported"),
    errno.EDQUOT: (507, "disk_limit_reached"),
    errno.ENOSPC: (507, "disk_full"),
    errno.ENAMETOOLONG: (400, "name_too_long"),
}


def os_error_answer(exc: OSError, path: str) -> FileApiError:
    """The API error for an OSError raised while acting on `path` (never a host path)."""
    status, code = _ERRNO_ANSWERS.get(exc.errno or 0, (500, "file_error"))
    if exc.errno == errno.EXDEV:  # what the confinement (RESOLVE_BENEATH) answers
        message = f"outside the server's directory: {path}"
    else:
        message = f"{exc.strerror or 'file operation failed'}: {path}"
    return FileApiError(status, code, message, {"path": path})
