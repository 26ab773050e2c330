from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from common.config import ConfigError, load_section, parse_hcl


class Reserved(BaseModel):
    model_config = ConfigDict(extra="forbid")
    memory_mb: int = 0


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data_dir: str = "/tmp"
    port: int = 1
    reserved: Reserved = Reserved()
    labels: dict[str, str] = {}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.hcl"
    path.write_text(text)
    return path


def test_parse_unquotes_strings_and_unwraps_blocks() -> None:
    doc = parse_hcl('agent {\n  data_dir = "/var/lib/x\\ty"\n  reserved { memory_mb = 5 }\n}\n')
    assert doc == {"agent": {"data_dir": "/var/lib/x\ty", "reserved": {"memory_mb": 5}}}


def test_load_section_validates_and_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, 'agent {\n  port = 8081\n  labels = { zone = "a" }\n}\n')
    cfg = load_section(path, "agent", Section, {"data_dir": "/srv"})
    assert (cfg.port, cfg.data_dir, cfg.labels) == (8081, "/srv", {"zone": "a"})


def test_unknown_key_names_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "controlplane {\n}\nagent {\n  port = 1\n  bogus = 2\n}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'bogus' \(line 5\)"):
        load_section(path, "agent", Section)


def test_nested_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "agent {\n  reserved {\n    cpu = 1\n  }\n}\n")
    with pytest.raises(ConfigError, match=r"reserved.cpu.*line 3"):
        load_section(path, "agent", Section)


def test_wrong_type_and_unknown_block(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"port.*line 2"):
        load_section(write(tmp_path, 'agent {\n  port = "x"\n}\n'), "agent", Section)
    with pytest.raises(ConfigError, match=r"unknown top-level block 'agnet' \(line 1\)"):
        load_section(write(tmp_path, "agnet {\n}\n"), "agent", Section)


def test_missing_file_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_section(tmp_path / "nope.hcl", "agent", Section)
    with pytest.raises(ConfigError, match="invalid HCL"):
        load_section(write(tmp_path, "agent {\n  port = \n"), "agent", Section)


def test_no_file_gives_defaults() -> None:
    assert load_section(None, "agent", Section).port == 1
