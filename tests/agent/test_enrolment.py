from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.config import AgentConfig, HttpListen, Listen
from agent.enrolment import advertised, http_url, registration
from common.config import ConfigError


@pytest.mark.parametrize(
    ("host", "advertise_host", "expected"),
    [
        ("0.0.0.0", "", "127.0.0.1:2022"),
        ("::", "", "127.0.0.1:2022"),
        ("10.1.2.3", "", "10.1.2.3:2022"),
        ("0.0.0.0", "node-a.example.net", "node-a.example.net:2022"),
        ("0.0.0.0", "fd00::5", "[fd00::5]:2022"),
    ],
)
def test_advertised_address(host: str, advertise_host: str, expected: str) -> None:
    assert advertised(Listen(host=host, port=2022), advertise_host) == expected


def test_port_zero_cannot_be_advertised() -> None:
    with pytest.raises(ConfigError, match="fixed ports"):
        advertised(Listen(host="0.0.0.0", port=0))


@pytest.mark.parametrize(
    ("listen", "advertise_host", "primary", "expected"),
    [
        # A wildcard listen is never handed to browsers as loopback when the host has
        # another address (`encedeus up --host 0.0.0.0`, an agent's defaults).
        ({"host": "0.0.0.0"}, "", "192.0.2.7", "http://192.0.2.7:8081"),
        ({"host": "::"}, "", "192.0.2.7", "http://192.0.2.7:8081"),
        ({"host": "0.0.0.0"}, "", None, "http://127.0.0.1:8081"),
        ({"host": "0.0.0.0"}, "node-a.example.net", "192.0.2.7", "http://node-a.example.net:8081"),
        ({"host": "0.0.0.0"}, "fd00::5", None, "http://[fd00::5]:8081"),
        ({"host": "127.0.0.1"}, "", "192.0.2.7", "http://127.0.0.1:8081"),
        ({"host": "198.51.100.3"}, "", "192.0.2.7", "http://198.51.100.3:8081"),
        # TLS configured: https (and so wss for the sockets).
        ({"host": "0.0.0.0", "cert_file": "c", "key_file": "k"}, "", "192.0.2.7",
         "https://192.0.2.7:8081"),
        # The operator's public URL wins (a reverse proxy, another port, a prefix).
        ({"host": "0.0.0.0", "public_url": "https://panel-node.example.net/agent/"}, "n",
         "192.0.2.7", "https://panel-node.example.net/agent"),
    ],
)  # fmt: skip
def test_the_url_browsers_are_handed(
    listen: dict[str, str], advertise_host: str, primary: str | None, expected: str
) -> None:
    assert http_url(HttpListen(port=1, **listen), 8081, advertise_host, primary) == expected


def test_enrolment_needs_a_fixed_http_port(tmp_path: Path) -> None:
    config = AgentConfig.model_validate({"data_dir": str(tmp_path), "http": {"port": 0}})
    with pytest.raises(ConfigError, match="fixed ports"):
        asyncio.run(registration(config))
