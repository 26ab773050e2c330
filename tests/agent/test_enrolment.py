from __future__ import annotations

import pytest

from agent.config import Listen
from agent.enrolment import advertised
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
