"""Config-file edits of templates: each parser, and confinement beneath the data
directory (a symlink leading out is refused, never followed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from agent.fleet.config_edits import apply_config_edits, edited_text, set_path
from protos import agent_pb2 as pb
from tests.fifo_support import finishes_within


def edit(parser: str, values: dict[str, str], path: str = "f") -> pb.ConfigFileEdit:
    return pb.ConfigFileEdit(path=path, parser=parser, set=values)


def test_properties_replace_keys_and_append_missing_ones() -> None:
    text = "# comment\nserver-port=25565\nmotd = Hello\nquery.port:1\n"
    result = edited_text(text, edit("properties", {"server-port": "30001", "new": "x",
                                                   "query.port": "30001"}))  # fmt: skip
    assert result == "# comment\nserver-port=30001\nmotd = Hello\nquery.port=30001\nnew=x\n"


def test_ini_sets_keys_in_their_sections() -> None:
    text = "top=1\n[server]\nport = 1\nname = a\n[other]\nx=y\n"
    result = edited_text(
        text, edit("ini", {"server.port": "2", "server.extra": "e", "top": "0", "new.k": "v"})
    )
    assert result == (
        "top = 0\n[server]\nport = 2\nname = a\nextra = e\n[other]\nx=y\n[new]\nk = v\n"
    )


def test_yaml_and_json_set_dotted_paths_with_types() -> None:
    text = (
        "listeners:\n- host: 0.0.0.0:1\n  motd: hi\n"
        "servers:\n  a: {address: x}\n  b: {address: y}\n"
    )
    result = yaml.safe_load(edited_text(text, edit("yaml", {
        "listeners.0.host": "0.0.0.0:30001", "servers.*.address": "z", "online": "true",
        "limits.players": "20",
    })))  # fmt: skip
    assert result == {
        "listeners": [{"host": "0.0.0.0:30001", "motd": "hi"}],
        "servers": {"a": {"address": "z"}, "b": {"address": "z"}},
        "online": True,
        "limits": {"players": 20},
    }
    assert json.loads(edited_text("", edit("json", {"a.b": "c"}))) == {"a": {"b": "c"}}
    assert set_path([1, 2], ["5"], "x") == [1, 2]  # an index out of range changes nothing


def test_plain_files_replace_whole_lines_by_prefix() -> None:
    text = "port 1\nname a\nport-extra 3\n"
    assert edited_text(text, edit("file", {"port ": "port 30001"})) == (
        "port 30001\nname a\nport-extra 3\n"
    )


def test_edits_are_written_beneath_the_directory_as_its_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "conf").mkdir(parents=True)
    (data / "conf" / "a.properties").write_text("a=1\n")
    owner = (os.getuid() + 1234, os.getgid() + 1234)
    problems = apply_config_edits(str(data), [
        edit("properties", {"a": "2"}, "conf/a.properties"),
        edit("json", {"x": "1"}, "new.json"),
        edit("file", {"x": "y"}, "missing.txt"),
    ], owner)  # fmt: skip
    assert problems == []
    assert (data / "conf" / "a.properties").read_text() == "a=2\n"
    assert json.loads((data / "new.json").read_text()) == {"x": 1}
    assert not (data / "missing.txt").exists()
    stat = (data / "new.json").stat()
    assert (stat.st_uid, stat.st_gid) == owner


@pytest.mark.parametrize(
    "link_target", ["../outside.properties", "/etc/hostname", "../outside-dir"]
)
def test_symlinks_out_of_the_directory_are_never_followed(tmp_path: Path, link_target: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "outside.properties"
    outside.write_text("secret=1\n")
    (tmp_path / "outside-dir").mkdir()
    (data / "server.properties").symlink_to(link_target)
    (data / "conf").symlink_to("../outside-dir")
    problems = apply_config_edits(str(data), [
        edit("properties", {"secret": "2"}, "server.properties"),
        edit("properties", {"k": "v"}, "conf/x.properties"),
        edit("properties", {"k": "v"}, "../escape.properties"),
    ], (os.getuid(), os.getgid()))  # fmt: skip
    assert len(problems) == 3
    assert outside.read_text() == "secret=1\n"
    assert list((tmp_path / "outside-dir").iterdir()) == []
    assert not (tmp_path / "escape.properties").exists()


def test_an_unreadable_file_is_reported_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "c.yml").write_text("a: [unclosed\n")
    [problem] = apply_config_edits(str(data), [edit("yaml", {"a": "1"}, "c.yml")], (0, 0))
    assert problem.startswith("config file c.yml not edited:")
    assert (data / "c.yml").read_text() == "a: [unclosed\n"


@pytest.mark.parametrize("parser", ["properties", "file"])
def test_a_fifo_at_the_config_path_is_refused_without_blocking(tmp_path: Path, parser: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "server.properties")
    edits = [edit(parser, {"a": "1"}, "server.properties")]
    owner = (os.getuid(), os.getgid())
    problems = finishes_within(
        2.0, lambda: apply_config_edits(str(data), edits, owner), data / "server.properties"
    )
    assert len(problems) == 1
    assert "not a regular file" in problems[0]
