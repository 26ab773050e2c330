"""Tasks on the real system (`encedeus up`: control plane + agent + dockerd): input
files uploaded and fetched land in the working directory (a 512 MiB one with the
memory of both processes bounded), success keeps the logs after the container is
gone, failure records the exit code, delete removes the container."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from controlplane.client.api import ApiClient, ClientError, UploadFile
from controlplane.events.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.conftest import TEST_IMAGE
from tests.docker_support import labelled_containers, remove_labelled_containers
from tests.e2e.cluster_support import task_logs, wait_finished
from tests.e2e.single_host_support import SESSION_LABEL, SingleHost, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
WEBHOOK_SECRET = "e2e-webhook-secret"
MiB = 1024 * 1024
BIG_INPUT = 512 * MiB


@dataclass
class WebhookInbox:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture(scope="module")
def webhooks() -> Iterator[WebhookInbox]:
    inbox = WebhookInbox(url="")

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            inbox.received.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    inbox.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield inbox
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhooks: WebhookInbox) -> Iterator[SingleHost]:
    root = tmp_path_factory.mktemp("tasks-up")
    config = root / "config.hcl"
    config.write_text(
        "controlplane {\n"
        "  task_fetch_allow_private = true\n"
        f'  webhook_url = "{webhooks.url}"\n'
        f'  webhook_secret = "{WEBHOOK_SECRET}"\n'
        "}\n"
    )
    yield from running_stack(root / "data", "--config", str(config), port_range="31750-31799")


@pytest.fixture(scope="module")
def user(stack: SingleHost) -> ApiClient:
    account = ApiClient(stack.url).call(
        "POST",
        "/v1/auth/register",
        {"username": "tasker", "email": "tasker@example.com", "password": "tasker-pw-1"},
    )
    return ApiClient(stack.url, account["access_token"])


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("served")
    (root / "remote.txt").write_text("from the url\n")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def task_labels(task_id: str) -> dict[str, str]:
    return {"encedeus.task": task_id, SESSION_LABEL[0]: SESSION_LABEL[1]}


def test_success_with_inputs_keeps_logs_after_the_container_is_gone(
    user: ApiClient, file_server: str
) -> None:
    spec = {
        "image": TEST_IMAGE,
        "command": "cat notes.txt sub/remote.txt; pwd; echo finished",
        "files": [{"url": f"{file_server}/remote.txt", "path": "sub/remote.txt"}],
    }
    created = user.upload(
        "/v1/tasks", {"task": json.dumps(spec)}, [UploadFile("files", "notes.txt", b"uploaded\n")]
    )
    assert created["status"] == "Pending"
    user.call("POST", f"/v1/tasks/{created['id']}")
    status = wait_finished(user, created["id"])
    assert status["status"] == "Succeeded", status
    assert status["exit_code"] == 0
    assert status["started_at"] is not None
    assert status["finished_at"] is not None

    output = task_logs(user, created["id"])
    assert output.splitlines() == ["uploaded", "from the url", "/data", "finished"]

    remove_labelled_containers(task_labels(created["id"]))
    assert task_logs(user, created["id"]) == output
    assert task_logs(user, created["id"], tail=1) == "finished\n"

    with pytest.raises(ClientError) as conflict:
        user.call("POST", f"/v1/tasks/{created['id']}")
    assert conflict.value.status == 409


def test_failure_records_exit_code_and_delete_removes_container(user: ApiClient) -> None:
    created = user.call(
        "POST", "/v1/tasks", {"image": TEST_IMAGE, "command": "echo oops >&2; exit 7"}
    )
    user.call("POST", f"/v1/tasks/{created['id']}")
    status = wait_finished(user, created["id"])
    assert status["status"] == "Failed"
    assert status["exit_code"] == 7
    assert "oops" in task_logs(user, created["id"])
    assert len(labelled_containers(task_labels(created["id"]))) == 1

    removed = user.call("DELETE", f"/v1/tasks/{created['id']}")
    assert removed["removed_task"]["id"] == created["id"]
    assert labelled_containers(task_labels(created["id"])) == []
    with pytest.raises(ClientError) as gone:
        user.call("GET", f"/v1/tasks/{created['id']}/status")
    assert gone.value.status == 404


def test_logs_follow_streams_until_the_task_ends(user: ApiClient) -> None:
    created = user.call(
        "POST",
        "/v1/tasks",
        {"image": TEST_IMAGE, "command": "for i in 1 2 3; do echo line$i; sleep 0.5; done"},
    )
    user.call("POST", f"/v1/tasks/{created['id']}")
    followed = task_logs(user, created["id"], follow="true")
    assert followed.splitlines() == ["line1", "line2", "line3"]
    assert wait_finished(user, created["id"])["status"] == "Succeeded"
    user.call("DELETE", f"/v1/tasks/{created['id']}")


def test_another_account_cannot_touch_the_task(stack: SingleHost, user: ApiClient) -> None:
    created = user.call("POST", "/v1/tasks", {"image": TEST_IMAGE, "command": "true"})
    other = ApiClient(stack.url).call(
        "POST",
        "/v1/auth/register",
        {"username": "snoop", "email": "snoop@example.com", "password": "snoop-pw-12"},
    )
    stranger = ApiClient(stack.url, other["access_token"])
    for method in ("GET", "POST", "DELETE"):
        with pytest.raises(ClientError) as refused:
            stranger.call(method, f"/v1/tasks/{created['id']}")
        assert refused.value.status == 404
    user.call("DELETE", f"/v1/tasks/{created['id']}")


async def test_owner_hears_task_events_over_websocket_and_webhook(
    stack: SingleHost, user: ApiClient, webhooks: WebhookInbox
) -> None:
    headers = {"Authorization": f"Bearer {user.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{stack.url}/v1/ws/notifications", headers=headers) as socket,
    ):
        assert (await socket.receive_json(timeout=5))["type"] == "authenticated"
        await socket.send_json({"type": "subscribe", "topics": ["tasks"]})
        assert (await socket.receive_json(timeout=5))["type"] == "subscribed"
        spec = {"image": TEST_IMAGE, "command": "true"}
        created = await asyncio.to_thread(user.call, "POST", "/v1/tasks", spec)
        await asyncio.to_thread(user.call, "POST", f"/v1/tasks/{created['id']}")
        seen: list[str] = []
        while "task_succeeded" not in seen:
            event = await socket.receive_json(timeout=30)
            if event.get("task_id") == created["id"]:
                seen.append(event["type"])
        assert seen == ["task_created", "task_started", "task_succeeded"]

    succeeded: list[tuple[dict[str, str], bytes]] = []
    for _ in range(100):
        succeeded = [
            (h, b) for h, b in webhooks.received
            if json.loads(b).get("task_id") == created["id"]
            and json.loads(b)["type"] == "task_succeeded"
        ]  # fmt: skip
        if succeeded:
            break
        await asyncio.sleep(0.1)
    sent, body = succeeded[0]
    assert verify(WEBHOOK_SECRET, sent[TIMESTAMP_HEADER], body, sent[SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["status"] == "Succeeded"
    profile = await asyncio.to_thread(user.call, "GET", "/v1/user/profile")
    assert payload["user_id"] == profile["id"]
    await asyncio.to_thread(user.call, "DELETE", f"/v1/tasks/{created['id']}")


def test_tasks_wait_in_the_queue_for_room_and_start_in_order(
    stack: SingleHost, user: ApiClient
) -> None:
    token = ApiClient(stack.url).call(
        "POST",
        "/v1/auth/login",
        {"username": stack.admin_username, "password": stack.admin_password},
    )["access_token"]
    [node] = ApiClient(stack.url, token).call("GET", "/v1/nodes")["nodes"]
    whole_node = f"{node['cpu_millis']}m"

    def task(command: str, cpu: str = whole_node) -> str:
        spec = {"image": TEST_IMAGE, "command": command, "resources": {"cpu": cpu}}
        return str(user.call("POST", "/v1/tasks", spec)["id"])

    first, second = task("sleep 2; echo first"), task("echo second")
    user.call("POST", f"/v1/tasks/{first}")
    queued = user.call("POST", f"/v1/tasks/{second}")  # 202: the node is full
    assert queued["status"] == "Pending", queued
    assert queued["queue_position"] >= 1
    assert queued["queue_reason"].startswith("waiting for capacity")

    too_big = task("true", cpu=f"{node['cpu_millis'] * 2}m")
    with pytest.raises(ClientError) as refused:
        user.call("POST", f"/v1/tasks/{too_big}")
    assert (refused.value.status, refused.value.code) == (422, "task_never_fits")

    done = wait_finished(user, second)
    assert done["status"] == "Succeeded", done
    assert wait_finished(user, first)["finished_at"] <= done["started_at"]
    assert task_logs(user, second) == "second\n"


class PeakRss:
    """The highest RSS of each process seen while it samples (every 20 ms, in a thread)."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.baseline = {name: p.memory_info().rss for name, p in processes.items()}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, process in self.processes.items():
                self.peak[name] = max(self.peak[name], process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self) -> dict[str, int]:
        return {name: self.peak[name] - self.baseline[name] for name in self.processes}


def _random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`; their sha256."""
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    with path.open("wb") as out:
        for index in range(size // MiB):
            piece = index.to_bytes(8, "big") + block[8:]  # no two blocks alike
            out.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def test_a_512_mib_input_reaches_the_task_with_memory_bounded_on_both_sides(
    stack: SingleHost, user: ApiClient, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    sha256 = _random_file(source, BIG_INPUT)
    control_plane = psutil.Process(stack.process.pid)
    (agent,) = [
        p for p in control_plane.children(recursive=True) if "skyhook" in " ".join(p.cmdline())
    ]
    spec = {"image": TEST_IMAGE, "command": "wc -c < in/big.bin; sha256sum in/big.bin"}
    with PeakRss({"control plane": control_plane, "agent": agent}) as rss:
        upload = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {user.token}",
             "--form-string", f"task={json.dumps(spec)}",
             "-F", f"files=@{source};filename=in/big.bin", f"{stack.url}/v1/tasks"],
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip
        assert upload.returncode == 0, upload.stdout + upload.stderr
        created = json.loads(upload.stdout)
        assert [(f["path"], f["size"]) for f in created["files"]] == [("in/big.bin", BIG_INPUT)]
        user.call("POST", f"/v1/tasks/{created['id']}")
        status = wait_finished(user, created["id"], timeout=300)
    assert status["status"] == "Succeeded", status
    assert task_logs(user, created["id"]).split() == [str(BIG_INPUT), sha256, "in/big.bin"]
    growth = rss.growth()
    assert all(grown < 64 * MiB for grown in growth.values()), {
        name: f"{grown / MiB:.0f} MiB" for name, grown in growth.items()
    }
    # The staged copy on the node is gone once the file is in place.
    assert not any((stack.data_dir / "agent" / "inputs").glob("*"))
    user.call("DELETE", f"/v1/tasks/{created['id']}")
