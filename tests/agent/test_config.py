"""The agent block of config.hcl."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import (
    AgentConfig,
    NodeIdentity,
    load_agent_config,
    load_identity,
    store_identity,
)
from common.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_repository_config_hcl_is_valid() -> None:
    config = load_agent_config(REPO / "config.hcl")
    assert config.grpc.port == 50051
    assert config.http.port == 8081
    assert config.sftp.port == 2022
    assert config.default_pids_limit == 512


def test_unknown_key_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.hcl"
    path.write_text('agent {\n  data_dir = "/x"\n  grcp_port = 1\n}\n')
    with pytest.raises(ConfigError, match=r"grcp_port.*line 3"):
        load_agent_config(path)


def test_nested_blocks_and_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "c.hcl"
    path.write_text("agent {\n  port_range {\n    start = 200\n    end = 100\n  }\n}\n")
    with pytest.raises(ConfigError, match="end must not be below start"):
        load_agent_config(path)
    path.write_text('agent {\n  tls {\n    cert_file = "/c.pem"\n  }\n}\n')
    with pytest.raises(ConfigError, match="set together"):
        load_agent_config(path)
    path.write_text('agent {\n  grpc {\n    host = "127.0.0.1"\n    port = 7\n  }\n}\n')
    assert load_agent_config(path).grpc.port == 7


def test_a_backup_repository_needs_one_password(tmp_path: Path) -> None:
    path = tmp_path / "c.hcl"
    path.write_text('agent {\n  backups {\n    repository = "sftp:b@h:/r"\n  }\n}\n')
    with pytest.raises(ConfigError, match="needs a password"):
        load_agent_config(path)
    path.write_text(
        'agent {\n  backups {\n    repository = "s3:h/b"\n    password = "p"\n'
        '    password_file = "/k"\n  }\n}\n'
    )
    with pytest.raises(ConfigError, match="not both"):
        load_agent_config(path)
    assert load_agent_config(REPO / "config.hcl").backups.repository == ""  # the node's own


def test_identity_from_config_or_file(tmp_path: Path) -> None:
    config = AgentConfig(data_dir=str(tmp_path))
    assert load_identity(config) is None
    store_identity(config, NodeIdentity("node-1", "s3cret"))
    assert load_identity(config) == NodeIdentity("node-1", "s3cret")
    assert (tmp_path / "node.json").stat().st_mode & 0o777 == 0o600
    direct = AgentConfig(data_dir=str(tmp_path), node_id="n2", node_secret="x")
    assert load_identity(direct) == NodeIdentity("n2", "x")
    (tmp_path / "node.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_identity(config)


def test_skyhook_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "c.hcl"
    path.write_text("agent {\n  grpc {\n    port = 1\n    tls = true\n  }\n}\n")
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown key 'grpc.tls' (line 4)" in done.stderr
