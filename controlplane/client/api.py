"""The REST API as the `encedeus` client commands see it: plain HTTP, nothing else.

The client is synchronous (a command line program has no event loop to block) and
uses only the standard library, so every command works against any control plane it
can reach. Errors come back as :class:`ClientError` carrying the API's error code.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

DEFAULT_TIMEOUT = 30.0


class ClientError(Exception):
    """A request that failed: `status` 0 when the server could not be reached."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class UploadFile:
    """A file part of a multipart request."""

    field: str
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def error_from(exc: HTTPError) -> ClientError:
    """The ClientError of an HTTP error answer (the API's envelope when it has one)."""
    raw = exc.read()
    try:
        body = json.loads(raw)
        error = body.get("error", {})
        message = error.get("message") or body.get("message") or raw.decode(errors="replace")
        code = error.get("code", "")
        problems = [
            f"{d.get('field')}: {d.get('message')}"
            for d in error.get("details") or []
            if isinstance(d, dict) and d.get("field")
        ]
        if problems:
            message = f"{message}: {'; '.join(problems)}"
    except (ValueError, AttributeError):
        message, code = raw.decode(errors="replace") or exc.reason, ""
    return ClientError(f"{message} (HTTP {exc.code})", status=exc.code, code=code)


def _quoted(filename: str) -> str:
    # A quote must not end the header value early: send it as a quoted-pair, which
    # aiohttp's parser reads back; a line break cannot be carried at all.
    if "\r" in filename or "\n" in filename:
        raise ClientError(f"a file name cannot contain a line break: {filename!r}")
    return filename.replace('"', '\\"')


def multipart_body(fields: Mapping[str, str], files: Sequence[UploadFile]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for upload in files:
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{upload.field}"; '
            f'filename="{_quoted(upload.filename)}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        )
        parts.append(header.encode() + upload.content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class ApiClient:
    """Calls `base_url`/v1/... with `token` as Bearer (access token or API key)."""

    def __init__(self, base_url: str, token: str = "", timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        content_type: str = "",
    ) -> Request:
        url = self.base_url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"the control plane URL must be http(s): {self.base_url}")
        headers = {"Accept": "application/json", "User-Agent": "encedeus-cli"}
        if content_type:
            headers["Content-Type"] = content_type
        request = Request(url, data=body, method=method, headers=headers)  # noqa: S310
        if self.token:
            # Unredirected: urllib follows redirects, and the credential must never
            # travel to wherever a redirect points (another host, plain HTTP).
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        return request

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send JSON `payload` (if any); return the decoded JSON answer (None if empty)."""
        body = None if payload is None else json.dumps(payload).encode()
        request = self._request(
            method, path, query=query, body=body, content_type="application/json" if body else ""
        )
        return self._send(request)

    def send_text(
        self,
        method: str,
        path: str,
        text: str | None = None,
        *,
        content_type: str = "text/plain",
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send `text` as is (HCL, YAML, ...); the JSON answer decoded, or the text of
        a non-JSON answer."""
        body = None if text is None else text.encode()
        request = self._request(method, path, query=query, body=body, content_type=content_type)
        return self._send(request, json_answer=False)

    def upload(self, path: str, fields: Mapping[str, str], files: Sequence[UploadFile]) -> Any:
        """POST a multipart form; return the decoded JSON answer."""
        body, content_type = multipart_body(fields, files)
        return self._send(self._request("POST", path, body=body, content_type=content_type))

    def _refusal(self, request: Request, exc: HTTPError) -> ClientError:
        # Without a credential a 401 means "log in first", except from login itself.
        if exc.code == 401 and not self.token and "/v1/auth/" not in request.full_url:
            return ClientError("not logged in: run `encedeus login`", status=401)
        return error_from(exc)

    def _send(self, request: Request, *, json_answer: bool = True) -> Any:
        try:
            with urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
                kind = response.headers.get_content_type()
        except HTTPError as exc:
            raise self._refusal(request, exc) from None
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach {self.base_url}: {reason}") from None
        if not json_answer and kind != "application/json":
            return raw.decode("utf-8", errors="replace")
        return json.loads(raw) if raw.strip() else None

    def stream(self, path: str, *, query: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        """GET `path` and yield the body line by line as it arrives (no overall timeout)."""
        request = self._request("GET", path, query=query)
        try:
            response = urlopen(request, timeout=None)  # noqa: S310
        except HTTPError as exc:
            raise self._refusal(request, exc) from None
        except (URLError, OSError) as exc:
            raise ClientError(f"cannot reach {self.base_url}: {exc}") from None
        with response:
            yield from response
