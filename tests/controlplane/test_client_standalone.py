"""The `encedeus` client stands alone: its commands load nothing of the server, and a
server command without the server's dependencies says which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from controlplane.cli import build_parser, main

# What a client command may load of this repository; everything else of
# controlplane/, and agent/ and protos/, is the server's or the agent's.
CLIENT_MODULES = {
    "common",
    "common.private_files",
    "controlplane",
    "controlplane.cli",
    "controlplane.cli.server_commands",
}
# The server's and the agent's third-party dependencies (the `server`/`agent` extras).
SERVER_PACKAGES = {
    "aiohttp", "alembic", "argon2", "asyncpg", "asyncssh", "docker", "google", "grpc",
    "hcl2", "jwt", "psutil", "pydantic", "sqlalchemy", "sqlmodel", "structlog",
}  # fmt: skip

# Runs in a fresh interpreter: parse every command's --help, run `ls` and `deploy`
# against a closed port, print the modules loaded.
CLIENT_RUN = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from controlplane.cli import main
    runs = [["--help"], ["ls"], ["deploy", "img", "-c", "true"]]
    runs += [["tasks", "run", "img", "--", "true"]]
    runs += [["exec", "app", "--", "sh"], ["console", "app"]]
    names = ("ls", "deploy", "logs", "login", "nodes", "tasks", "exec", "console")
    runs += [[name, "--help"] for name in names]
    for argv in runs:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                main(argv)
            except SystemExit:
                pass
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_client_commands_import_nothing_of_the_server() -> None:
    env = {"ENCEDEUS_URL": "http://127.0.0.1:9", "ENCEDEUS_CREDENTIALS": "/nonexistent/c"}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_RUN], capture_output=True, text=True, check=True,
        env=env, timeout=60,
    )  # fmt: skip
    loaded = set(json.loads(done.stdout))
    ours = {m for m in loaded if m.split(".")[0] in ("agent", "common", "controlplane", "protos")}
    foreign = ours - CLIENT_MODULES - {m for m in ours if m.startswith("controlplane.client")}
    assert not foreign, f"the client loaded server modules: {sorted(foreign)}"
    assert "controlplane.client.deployment_commands" in loaded  # the commands did run
    assert "controlplane.client.websocket" in loaded
    third_party = {m for m in loaded if m.split(".")[0] in SERVER_PACKAGES}
    assert not third_party, f"the client loaded server dependencies: {sorted(third_party)}"


@pytest.mark.parametrize(
    ("argv", "extra"),
    [(["user", "create", "--username", "a", "--email", "a@b.c"], "server"), (["up"], "all")],
)
def test_server_command_without_its_extra_names_it(argv: list[str], extra: str) -> None:
    # sqlalchemy absent, as where only the client is installed.
    program = "import sys; sys.modules['sqlalchemy'] = None\n" + textwrap.dedent(
        f"""
        from controlplane.cli import main
        sys.exit(main({argv!r}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "sqlalchemy is missing" in done.stderr
    assert f"pip install 'encedeus[{extra}]'" in done.stderr


def test_only_deploy_and_tasks_take_a_command_after_the_separator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["ls", "--", "echo", "hi"])
    assert "takes no command after --" in capsys.readouterr().err
    parser = build_parser()
    args = parser.parse_args(["deploy", "img", "-c", "echo a; uname"])
    assert (args.shell_command, args.container_argv) == ("echo a; uname", [])
