"""The client never sends its credential to where a redirect points."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.client.api import ApiClient, UploadFile

TOKEN = "enc_secret_token"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's headers; redirects everything if `target` is set."""

    seen: list[dict[str, str]]
    target: str

    def _answer(self) -> None:
        self.seen.append(dict(self.headers.items()))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.target:
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


def _serve(host: str, target: str) -> tuple[http.server.HTTPServer, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen, "target": target})
    server = http.server.HTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def redirect_to_other_host() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    other, other_seen = _serve("127.0.0.2", "")
    target = f"http://127.0.0.2:{other.server_address[1]}"
    first, first_seen = _serve("127.0.0.1", target)
    try:
        yield f"http://127.0.0.1:{first.server_address[1]}", first_seen, other_seen
    finally:
        for server in (first, other):
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("kind", ["call_get", "call_post", "upload", "stream"])
def test_the_credential_does_not_follow_a_redirect(
    redirect_to_other_host: tuple[str, list[dict[str, str]], list[dict[str, str]]], kind: str
) -> None:
    url, first_seen, other_seen = redirect_to_other_host
    client = ApiClient(url, TOKEN, timeout=5)
    if kind == "call_get":
        client.call("GET", "/v1/user/profile")
    elif kind == "call_post":
        client.call("POST", "/v1/tasks", {"image": "x"})
    elif kind == "upload":
        client.upload("/v1/files", {}, [UploadFile("file", "a", b"x", "text/plain")])
    else:
        list(client.stream("/v1/tasks/x/logs"))
    assert other_seen, "the redirect was followed"
    assert first_seen[0]["Authorization"] == f"Bearer {TOKEN}"
    for headers in other_seen:
        assert "Authorization" not in headers
        assert TOKEN not in str(headers)
