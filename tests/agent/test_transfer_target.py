"""Where a volume transfer goes: the target agent's enrolled address, a URL since
agents serve HTTPS (`http(s)://host:port[/prefix]`), or `host:port` from older ones."""

from __future__ import annotations

import http.client

import pytest

from agent.fleet.volume_transfer import TransferFailed, target_connection


@pytest.mark.parametrize(
    ("address", "kind", "host", "port", "prefix"),
    [
        ("http://127.0.0.1:8443", http.client.HTTPConnection, "127.0.0.1", 8443, ""),
        ("https://node-b.example:9000/agent/", http.client.HTTPSConnection,
         "node-b.example", 9000, "/agent"),
        ("127.0.0.1:8081", http.client.HTTPConnection, "127.0.0.1", 8081, ""),
        ("[::1]:8081", http.client.HTTPConnection, "::1", 8081, ""),
    ],
)  # fmt: skip
def test_the_target_is_read_from_a_url_or_host_and_port(
    address: str, kind: type, host: str, port: int, prefix: str
) -> None:
    connection, path_prefix = target_connection(address)
    assert type(connection) is kind
    assert (connection.host, connection.port, path_prefix) == (host, port, prefix)


@pytest.mark.parametrize("address", ["ftp://127.0.0.1:21", "http://:8080", ""])
def test_an_unusable_target_is_a_clear_failure(address: str) -> None:
    with pytest.raises(TransferFailed, match="not usable"):
        target_connection(address)
