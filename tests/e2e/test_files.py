"""The file API through the whole system: `encedeus up`, a real account and deployment,
`encedeus files ls|get|put|rm` streaming to signed agent URLs, a resumed upload, the
REST operations relayed to the agent, and other accounts refused with 404."""

from __future__ import annotations

import hashlib
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from controlplane.client.api import ApiClient, ClientError
from tests.conftest import TEST_IMAGE
from tests.e2e.single_host_support import ENCEDEUS, SingleHost, running_stack
from tests.e2e.test_sftp import account, exec_in, running_replica

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
PASSWORD = "files-password-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    data_dir = tmp_path_factory.mktemp("files-e2e") / "encedeus"
    yield from running_stack(data_dir, port_range="31780-31799")


def cli(host: SingleHost, client: ApiClient, *words: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "ENCEDEUS_URL": host.url,
        "ENCEDEUS_TOKEN": client.token,
        "ENCEDEUS_CREDENTIALS": str(cwd / "credentials.json"),
    }
    done = subprocess.run(
        [ENCEDEUS, "files", *words], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_files_through_the_cli_and_the_api(stack: SingleHost, tmp_path: Path) -> None:
    owner = account(stack, "filesowner", PASSWORD)
    other = account(stack, "filesother", PASSWORD)
    deployment = owner.call(
        "POST",
        "/v1/deployments",
        {
            "app_name": "fileapp",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", "echo from-container > /data/made-inside.txt; sleep 3600"],
        },
    )
    running_replica(owner, deployment["id"])
    files = f"/v1/deployments/{deployment['id']}/replicas/0/files"
    data = os.urandom(6 * 1024 * 1024 + 3)
    (tmp_path / "local.bin").write_bytes(data)

    cli(stack, owner, "put", "local.bin", "fileapp:/big.bin", cwd=tmp_path)
    listing = cli(stack, owner, "ls", "fileapp:/", cwd=tmp_path)
    assert "big.bin" in listing
    assert "made-inside.txt" in listing
    cli(stack, owner, "get", "fileapp:/made-inside.txt", "inside.txt", cwd=tmp_path)
    assert (tmp_path / "inside.txt").read_text() == "from-container\n"
    digest = exec_in(deployment["id"], ["md5sum", "/data/big.bin"])[1].split()[0].decode()
    assert digest == hashlib.md5(data).hexdigest()  # noqa: S324 (a checksum, not security)
    # The upload belongs to the container's unprivileged user: it can append to it.
    assert exec_in(deployment["id"], ["sh", "-c", "echo >> /data/big.bin && id -u"]) == (
        0,
        b"988\n",
    )

    # The signed URL names the agent, not the control plane: bytes go straight there.
    signed = owner.call("POST", f"{files}/upload-url", {"path": "/resumed.bin"})
    assert urlsplit(signed["url"]).port != urlsplit(stack.url).port
    half = urllib.request.Request(signed["url"], data=data[:1_000_000], method="PUT")  # noqa: S310
    with urllib.request.urlopen(half) as response:  # noqa: S310
        assert response.status == 201
    cli(stack, owner, "put", "--resume", "local.bin", "fileapp:/resumed.bin", cwd=tmp_path)
    cli(stack, owner, "get", "fileapp:/resumed.bin", "resumed.bin", cwd=tmp_path)
    assert (tmp_path / "resumed.bin").read_bytes() == data

    owner.call("POST", f"{files}/mkdir", {"path": "/saves/old", "parents": True})
    owner.call("POST", f"{files}/rename", {"source": "/resumed.bin", "target": "/saves/r.bin"})
    stat = owner.call("GET", f"{files}/stat", query={"path": "/saves/r.bin"})
    assert (stat["type"], stat["size"]) == ("file", len(data))
    with pytest.raises(ClientError) as missing:
        owner.call("GET", f"{files}/stat", query={"path": "/nope"})
    assert (missing.value.status, missing.value.code) == (404, "file_not_found")

    cli(stack, owner, "rm", "fileapp:/saves", cwd=tmp_path)
    assert "saves" not in cli(stack, owner, "ls", "fileapp:/", cwd=tmp_path)

    for method, endpoint, body in (
        ("GET", "", None),
        ("POST", "/upload-url", {"path": "/x"}),
        ("GET", "/download-url?path=/big.bin", None),
        ("POST", "/delete", {"path": "/big.bin"}),
    ):
        with pytest.raises(ClientError) as refused:
            other.call(method, f"{files}{endpoint}", body)
        assert refused.value.status == 404, (endpoint, refused.value)
    assert "big.bin" in cli(stack, owner, "ls", "fileapp:/", cwd=tmp_path)
