"""`encedeus up`'s pieces without processes: the agent config it writes (read back with
the agent's own loader), the state file, port choice. The whole command runs in
tests/e2e/test_up.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import AgentConfig, load_agent_config
from controlplane.cli import build_parser
from controlplane.config import ControlPlaneConfig
from controlplane.ingress.table import app_url
from controlplane.single_host.stack import UpOptions, controlplane_config, ui_origins
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
