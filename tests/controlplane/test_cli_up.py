"""`encedeus up`'s pieces without processes: the agent config it writes (read back with
the agent's own loader), the state file, port choice. The whole command runs in
tests/e2e/test_up.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.enrolment import http_url
from controlplane.cli import build_parser
from controlplane.config import ControlPlaneConfig
from controlplane.ingress.table import app_url
from controlplane.single_host.addresses import public_host, ui_origins, up_addresses
from controlplane.single_host.stack import UpOptions, controlplane_config
from controlplane.single_host.state import (
    UpState,
    agent_config_text,
    agent_node_file,
    choose_agent_ports,
    load_state,
    new_admin,
    save_state,
)


def _read_back(tmp_path: Path, **identity: Any) -> AgentConfig:
    path = tmp_path / "agent.hcl"
    path.write_text(
        agent_config_text(
            data_dir=tmp_path / 'with "quotes"',
            node_file=agent_node_file(tmp_path),
            controlplane_url="http://127.0.0.1:3000",
            ports={
                "grpc": 1001,
                "http": 1002,
                "sftp": 1003,
                "ingress": 1004,
                "ingress_https": 1005,
            },
            port_range=(31000, 31010),
            labels={"encedeus.test": "abc", "team": "x y"},
            **identity,
        )
    )
    return load_agent_config(path)


def test_generated_agent_config_is_what_the_agent_reads(tmp_path: Path) -> None:
    config = _read_back(tmp_path, join_token="encjoin_t=k")
    assert config.data_dir == str(tmp_path / 'with "quotes"')
    # The agent enrols itself with the token and keeps its identity where `up` looks.
    assert config.join_token == "encjoin_t=k"
    assert config.controlplane_url == "http://127.0.0.1:3000"
    assert (config.node_id, config.node_secret) == ("", "")
    assert config.node_file == agent_node_file(tmp_path)
    assert (config.grpc.host, config.grpc.port) == ("127.0.0.1", 1001)
    assert config.sftp.port == 1003
    assert (config.port_range.start, config.port_range.end) == (31000, 31010)
    assert config.labels == {"encedeus.test": "abc", "team": "x y"}
    assert config.watchdog is False
    # The local agent is the ingress, on loopback, and publishes on loopback only.
    assert config.ingress.enabled
    assert (config.ingress.listen_host, config.ingress.http_port) == ("127.0.0.1", 1004)
    assert config.ingress.https_port == 1005
    assert config.publish_address == "127.0.0.1"


def test_up_serves_apps_under_localhost_at_the_ingress_port(tmp_path: Path) -> None:
    config = controlplane_config(UpOptions(data_dir=tmp_path), ingress_port=8080)
    assert (config.domain_suffix, config.ingress_tls) == ("localhost", "off")
    assert app_url(config, "blog") == "http://blog.localhost:8080"
    own = ControlPlaneConfig(domain_suffix="apps.example.com")
    kept = controlplane_config(UpOptions(data_dir=tmp_path, base_config=own), ingress_port=8080)
    assert app_url(kept, "blog") == "https://blog.apps.example.com"


def test_a_state_file_without_ingress_ports_gets_free_ones() -> None:
    ports = choose_agent_ports({"grpc": 1, "http": 2, "sftp": 3}, prefer_defaults=False)
    assert {k: ports[k] for k in ("grpc", "http", "sftp")} == {"grpc": 1, "http": 2, "sftp": 3}
    assert len(set(ports.values())) == 5


def test_an_identity_an_earlier_up_enrolled_is_kept(tmp_path: Path) -> None:
    config = _read_back(tmp_path, legacy_identity=("n-1", "s3cr=t"))
    assert (config.node_id, config.node_secret, config.join_token) == ("n-1", "s3cr=t", "")
    # Without a token or a secret, an agent restarted by `up` uses its node file.
    assert _read_back(tmp_path).join_token == ""


def test_up_lets_only_its_own_web_ui_open_the_console(tmp_path: Path) -> None:
    """The agent `up` writes accepts console sockets from the UI's origins only."""
    path = tmp_path / "agent.hcl"
    origins = ui_origins("http://127.0.0.1:8080")
    assert origins == ("http://127.0.0.1:8080", "http://localhost:8080")
    path.write_text(
        agent_config_text(
            data_dir=tmp_path,
            node_file=agent_node_file(tmp_path),
            controlplane_url="http://127.0.0.1:8080",
            ports={
                "grpc": 1001,
                "http": 1002,
                "sftp": 1003,
                "ingress": 1004,
                "ingress_https": 1005,
            },
            port_range=(31000, 31010),
            labels={},
            ui_origins=origins,
        )
    )
    assert load_agent_config(path).console.ws_allowed_origins == list(origins)
    assert ui_origins("http://panel.example.test:80") == ("http://panel.example.test:80",)
    assert _read_back(tmp_path).console.ws_allowed_origins == []


def test_state_round_trip_is_private(tmp_path: Path) -> None:
    state = UpState(agent_ports={"grpc": 1}, node_id="n", join_token="t", admin=new_admin())
    save_state(tmp_path, state)
    assert oct((tmp_path / "up.json").stat().st_mode & 0o777) == "0o600"
    assert load_state(tmp_path) == state
    assert json.loads((tmp_path / "up.json").read_text())["admin"]["username"] == "admin"
    assert load_state(tmp_path / "missing") == UpState()


def test_saved_ports_win_and_fresh_ones_are_distinct() -> None:
    saved = {"grpc": 5, "http": 6, "sftp": 7, "ingress": 8, "ingress_https": 9}
    assert choose_agent_ports(saved, prefer_defaults=True) == saved
    fresh = choose_agent_ports({}, prefer_defaults=False)
    assert sorted(fresh) == ["grpc", "http", "ingress", "ingress_https", "sftp"]
    assert len(set(fresh.values())) == 5


@pytest.mark.parametrize("bad", ["30000", "2-1", "a-b", "0-10"])
def test_port_range_flag_is_checked(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--port-range", bad])
    assert "START-END" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "advertise", "primary", "ui", "agent_url"),
    [
        # On loopback (the default) everything stays on 127.0.0.1.
        ("127.0.0.1", "", "192.0.2.7", "http://127.0.0.1:3000", "http://127.0.0.1:8081"),
        # `--host 0.0.0.0`: browsers get this host's primary address, never loopback.
        ("0.0.0.0", "", "192.0.2.7", "http://192.0.2.7:3000", "http://192.0.2.7:8081"),
        ("0.0.0.0", "panel.example.net", "192.0.2.7", "http://panel.example.net:3000",
         "http://panel.example.net:8081"),
        ("::", "fd00::5", None, "http://[fd00::5]:3000", "http://[fd00::5]:8081"),
        ("198.51.100.3", "", None, "http://198.51.100.3:3000", "http://198.51.100.3:8081"),
        # No address but loopback: what else could it say.
        ("0.0.0.0", "", None, "http://127.0.0.1:3000", "http://127.0.0.1:8081"),
    ],
)  # fmt: skip
def test_up_hands_browsers_an_address_they_can_reach(
    tmp_path: Path, host: str, advertise: str, primary: str | None, ui: str, agent_url: str
) -> None:
    addresses = up_addresses(host, advertise, (3000, 8081), primary)
    assert addresses.public_url == ui
    assert addresses.local_url == ("http://127.0.0.1:3000" if host in ("0.0.0.0", "::")
                                   else f"http://{host}:3000")  # fmt: skip
    # The agent's browser port listens where the control plane does, and says so.
    path = tmp_path / "agent.hcl"
    path.write_text(
        agent_config_text(
            data_dir=tmp_path,
            node_file=agent_node_file(tmp_path),
            controlplane_url=addresses.local_url,
            ports={"grpc": 1, "http": 8081, "sftp": 3, "ingress": 4, "ingress_https": 5},
            port_range=(31000, 31010),
            labels={},
            ui_origins=ui_origins(addresses.local_url, addresses.public_url),
            http_host=addresses.agent_http_host,
            http_public_url=addresses.agent_http_url,
        )
    )
    config = load_agent_config(path)
    assert config.http.host == host
    # What the agent hands out for the console, exec and files (agent.enrolment).
    assert http_url(config.http, 8081, config.advertise_host, primary) == agent_url
    assert config.grpc.host == "127.0.0.1"  # the control plane is on this machine
    assert ui.removesuffix("/") in config.console.ws_allowed_origins
    assert "http://127.0.0.1:3000" in config.console.ws_allowed_origins or host == "198.51.100.3"


def test_the_public_host() -> None:
    assert public_host("0.0.0.0", "", "192.0.2.7") == "192.0.2.7"
    assert public_host("0.0.0.0", "node-a", "192.0.2.7") == "node-a"
    assert public_host("127.0.0.1", "", "192.0.2.7") == "127.0.0.1"


def test_up_takes_the_advertised_host() -> None:
    args = build_parser().parse_args(["up", "--host", "0.0.0.0", "--advertise-host", "node-a"])
    assert (args.host, args.advertise_host) == ("0.0.0.0", "node-a")
