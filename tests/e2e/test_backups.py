"""Backups through the whole system: `encedeus up` (control plane + a real agent on the
real dockerd, restic in the node's own repository), a server that writes its files,
back up, change them, restore, checksums match; the `.tar.gz` download byte for byte;
events; the CLI; another account gets 404."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.client.api import ApiClient, ClientError
from controlplane.config import SQLITE_FILE
from tests.conftest import TEST_IMAGE
from tests.e2e.single_host_support import ENCEDEUS, SingleHost, running_stack
from tests.e2e.test_sftp import account, exec_in, running_replica

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
PASSWORD = "backup-password-1"
# Writes its world once; answers console lines (save-off/save-on) on stdout.
SERVER = (
    "[ -f /data/world/level.dat ] || { mkdir -p /data/world;"
    " head -c 300000 /dev/urandom > /data/world/level.dat; echo v1 > /data/motd; };"
    ' while read l; do echo "console: $l"; done'
)
SUMS = "cd /data && find . -type f | sort | xargs sha256sum"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SingleHost]:
    data_dir = tmp_path_factory.mktemp("backups-e2e") / "encedeus"
    yield from running_stack(data_dir, port_range="31800-31809")


def _sums(deployment_id: str) -> str:
    code, output = exec_in(deployment_id, ["sh", "-c", SUMS])
    assert code == 0, output
    return output.decode()


def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _event(client: ApiClient, kind: str, backup_id: str) -> dict[str, Any] | None:
    page = client.call("GET", "/v1/events", query={"types": kind})
    found = [e for e in page["events"] if e["data"].get("backup_id") == backup_id]
    return found[-1] if found else None


def _cli(host: SingleHost, client: ApiClient, *words: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "ENCEDEUS_URL": host.url,
        "ENCEDEUS_TOKEN": client.token,
        "ENCEDEUS_CREDENTIALS": str(cwd / "credentials.json"),
    }
    done = subprocess.run(
        [ENCEDEUS, "backups", *words], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _node_http_address(stack: SingleHost, address: str) -> str:
    """Set the local node's enrolment http_address in the database; the old one."""
    path = stack.data_dir / "controlplane" / SQLITE_FILE
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        (old,) = db.execute("SELECT http_address FROM nodes").fetchone()
        db.execute("UPDATE nodes SET http_address = ?", (address,))
    return str(old)


def test_backup_change_restore_download(stack: SingleHost, tmp_path: Path) -> None:
    owner = account(stack, "backupowner", PASSWORD)
    other = account(stack, "backupother", PASSWORD)
    deployment = owner.call(
        "POST",
        "/v1/deployments",
        {"app_name": "backupapp", "image": TEST_IMAGE, "command": ["sh", "-c", SERVER]},
    )
    base = f"/v1/deployments/{deployment['id']}"
    running_replica(owner, deployment["id"])
    owner.call("PUT", f"{base}/backup-policy", {
        "commands": {"before": ["save-off"], "after": ["save-on"]}, "keep_last": 5,
    })  # fmt: skip
    original = _until(lambda: "level.dat" in (s := _sums(deployment["id"])) and s, "the world")

    # Through the CLI: create waits until the snapshot is written.
    printed = _cli(stack, owner, "create", "backupapp", "--name", "first", cwd=tmp_path)
    assert "completed" in printed, printed
    (backup,) = owner.call("GET", f"{base}/backups")["backups"]
    assert (backup["name"], backup["state"]) == ("first", "completed")
    assert backup["checksum"].startswith("sha256:")
    assert backup["size_bytes"] >= 300_000
    assert _event(owner, "backup_completed", backup["id"]) is not None
    logs = owner.call("GET", f"{base}/logs", query={"tail": 50})
    assert "console: save-off" in str(logs)
    assert "console: save-on" in str(logs)
    assert "first" in _cli(stack, owner, "ls", "backupapp", cwd=tmp_path)

    # Other accounts see nothing of it.
    for method, path in (("GET", f"{base}/backups"), ("GET", f"{base}/backups/{backup['id']}"),
                         ("GET", f"{base}/backups/{backup['id']}/download"),
                         ("POST", f"{base}/backups/{backup['id']}/restore")):  # fmt: skip
        with pytest.raises(ClientError) as refused:
            other.call(method, path, {} if method == "POST" else None)
        assert refused.value.status == 404

    # The world is damaged and a file appears; a wiping restore brings back the backup.
    exec_in(deployment["id"], ["sh", "-c", "echo griefed > /data/world/level.dat; touch /data/x"])
    assert _sums(deployment["id"]) != original
    answer = owner.call("POST", f"{base}/backups/{backup['id']}/restore", {"wipe": True})
    assert answer["message"] == "restore started"
    restored = _until(lambda: _event(owner, "restore_completed", backup["id"]), "the restore")
    assert restored["data"]["restarted"] is True
    running_replica(owner, deployment["id"])
    assert _until(lambda: _sums(deployment["id"]) == original, "the restored files")

    # The download: the files of the backup, byte for byte.
    target = tmp_path / "first.tar.gz"
    _cli(stack, owner, "download", "backupapp", "first", "-o", str(target), cwd=tmp_path)
    with tarfile.open(target, mode="r:gz") as archive:
        downloaded = {
            m.name: hashlib.sha256(archive.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }
    expected = {
        line.split()[1].removeprefix("./"): line.split()[0] for line in original.splitlines()
    }
    assert downloaded == expected
    # An enrolment address from before the agent served TLS or had a public URL: the
    # URL handed out is the one the agent reports (no token sent where it is not).
    enrolled = _node_http_address(stack, "127.0.0.1:1")
    try:
        url = owner.call("GET", f"{base}/backups/{backup['id']}/download")["url"]
        assert not url.startswith("http://127.0.0.1:1/")
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (loopback)
            assert response.read(2) == b"\x1f\x8b"  # gzip
    finally:
        _node_http_address(stack, enrolled)

    # A locked backup is not deleted; unlocked, it is (and its snapshot with it).
    owner.call("PATCH", f"{base}/backups/{backup['id']}", {"locked": True})
    with pytest.raises(ClientError) as locked:
        owner.call("DELETE", f"{base}/backups/{backup['id']}")
    assert (locked.value.status, locked.value.code) == (409, "backup_locked")
    owner.call("PATCH", f"{base}/backups/{backup['id']}", {"locked": False})
    url = owner.call("GET", f"{base}/backups/{backup['id']}/download")["url"]
    owner.call("DELETE", f"{base}/backups/{backup['id']}")
    assert owner.call("GET", f"{base}/backups")["backups"] == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(url, timeout=60)  # noqa: S310 (the agent's loopback URL)
    gone.value.close()
    assert gone.value.code == 404


def test_bad_policies_and_slots_are_refused(stack: SingleHost) -> None:
    owner = account(stack, "backuprules", PASSWORD)
    deployment = owner.call(
        "POST", "/v1/deployments", {"app_name": "rulesapp", "image": TEST_IMAGE,
                                    "command": ["sleep", "3600"]},
    )  # fmt: skip
    base = f"/v1/deployments/{deployment['id']}"
    with pytest.raises(ClientError) as bad_cron:
        owner.call("PUT", f"{base}/backup-policy", {"schedule": "61 * * * *"})
    assert bad_cron.value.status == 400
    assert "minute" in str(bad_cron.value)
    policy = owner.call("PUT", f"{base}/backup-policy", {"schedule": "@daily", "keep_daily": 7})
    assert policy["next_run_at"].endswith("T00:00:00Z")
    with pytest.raises(ClientError) as no_slot:
        owner.call("POST", f"{base}/backups", {"ordinal": 3})
    assert (no_slot.value.status, no_slot.value.code) == (400, "no_such_slot")
