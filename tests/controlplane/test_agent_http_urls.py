"""The agent URLs the control plane hands out: the scheme the agent reports (https
gives wss), its current URL over the one it enrolled with, old `host:port` addresses
read as http."""

from __future__ import annotations

import pytest

from controlplane.agents.http_urls import agent_http_base, socket_url


@pytest.mark.parametrize(
    ("reported", "enrolled", "base", "socket"),
    [
        ("https://192.0.2.7:8081", "127.0.0.1:8081", "https://192.0.2.7:8081",
         "wss://192.0.2.7:8081/api/servers/s/ws"),
        ("", "https://node-a.example.net:8081/", "https://node-a.example.net:8081",
         "wss://node-a.example.net:8081/api/servers/s/ws"),
        ("", "127.0.0.1:8081", "http://127.0.0.1:8081", "ws://127.0.0.1:8081/api/servers/s/ws"),
        ("http://[fd00::5]:8081", "", "http://[fd00::5]:8081",
         "ws://[fd00::5]:8081/api/servers/s/ws"),
        ("https://proxy.example.net/agent-a", "", "https://proxy.example.net/agent-a",
         "wss://proxy.example.net/agent-a/api/servers/s/ws"),
    ],
)  # fmt: skip
def test_agent_urls(reported: str, enrolled: str, base: str, socket: str) -> None:
    assert agent_http_base(reported, enrolled) == base
    assert socket_url(base, "/api/servers/s/ws") == socket


def test_no_address_is_no_url() -> None:
    assert agent_http_base("", "") == ""
