"""/v1/repos against a local forge that speaks GitHub's releases API: add, list, check
for new releases, remove; tokens sealed at rest and sent only to the forge; rate-limit
answers reported without a storm of retries; tasks that name a release asset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from sqlmodel import select

from common.outbound import OutboundPolicy
from controlplane.db.tables.repos import Repo
from controlplane.repos.forge import ForgeClient, ForgeDenied, ForgeRateLimited, RepoNotFound
from controlplane.state import DATABASE
from controlplane.tasks.inputs import MAX_FILES
from tests.controlplane.accounts_support import Account, create_api_key, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.forge_support import FakeForgeState, fake_forge

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


@pytest.fixture
async def forge() -> AsyncIterator[FakeForgeState]:
    async with fake_forge() as state:
        state.publish("acme/tool", "v1.0.0", {"tool.sh": b"echo one\n", "notes.txt": b"n"})
        yield state


@pytest.fixture
async def client(make_config: ConfigFactory, forge: FakeForgeState) -> AsyncIterator[Client]:
    config = make_config(
        forge_api_url=forge.base_url,
        task_fetch_allow_private=True,
        forge_anonymous_cache_seconds=0,
        repo_check_interval_seconds=0,
    )
    client = await start_client(config)
    try:
        yield client
    finally:
        await client.close()


async def _add(client: Client, user: Account, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/repos", json=body, headers=user.headers)
    answer: dict[str, Any] = await response.json()
    assert response.status == 201, answer
    return answer


async def test_add_list_check_and_remove(client: Client, forge: FakeForgeState) -> None:
    user = await register(client)
    added = await _add(client, user, ownerName="acme", name="tool")  # seed 003's field name
    assert added["message"] == "Repo successfully added"
    assert (added["owner_name"], added["name"], added["latest_version"]) == (
        "acme",
        "tool",
        "v1.0.0",
    )
    assert {a["name"] for a in added["latest_release_assets"]} == {"tool.sh", "notes.txt"}
    assert added["has_token"] is False

    again = await client.post("/v1/repos", json={"owner_name": "acme", "name": "tool"},
                              headers=user.headers)  # fmt: skip
    assert again.status == 409
    assert await error_code(again) == "repo_exists"

    unchanged = await (await client.patch("/v1/repos", headers=user.headers)).json()
    assert unchanged["updated"] == []
    assert [r["outcome"] for r in unchanged["results"]] == ["unchanged"]

    forge.publish("acme/tool", "v1.1.0", {"tool.sh": b"echo two\n"})
    checked = await client.patch("/v1/repos", headers=user.headers)
    report = await checked.json()
    assert checked.status == 200, report
    assert report["updated"] == [added["id"]]
    (result,) = report["results"]
    assert (result["outcome"], result["previous_version"], result["latest_version"]) == (
        "updated", "v1.0.0", "v1.1.0",
    )  # fmt: skip

    listed = await (await client.get("/v1/repos", headers=user.headers)).json()
    assert listed["pagination"]["total"] == 1
    (repo,) = listed["repos"]
    assert repo["latest_version"] == "v1.1.0"
    assert [a["name"] for a in repo["latest_release_assets"]] == ["tool.sh"]
    assert repo["latest_release_assets"][0]["url"].endswith("/download/v1.1.0/tool.sh")

    removed = await client.delete(f"/v1/repos/{added['id']}", headers=user.headers)
    body = await removed.json()
    assert removed.status == 200, body
    assert body["removed_repo"]["id"] == added["id"]
    assert (await client.get(f"/v1/repos/{added['id']}", headers=user.headers)).status == 404


async def test_refusals(client: Client, forge: FakeForgeState) -> None:
    user = await register(client)
    other = await register(client)
    forge.releases["acme/empty"] = []
    cases = [
        ({"owner_name": "acme", "name": "nope"}, 422, "repo_not_found"),
        ({"owner_name": "acme", "name": "empty"}, 422, "no_releases"),
        ({"owner_name": "acme/x", "name": "tool"}, 400, "validation_error"),
        ({"owner_name": "acme", "name": "../tool"}, 400, "validation_error"),
        ({"owner_name": "acme"}, 400, "validation_error"),
        ({"owner_name": "acme", "name": "tool", "colour": 1}, 400, "validation_error"),
    ]
    for body, status, code in cases:
        response = await client.post("/v1/repos", json=body, headers=user.headers)
        assert response.status == status, body
        assert await error_code(response) == code, body
    mine = await _add(client, user, owner_name="acme", name="tool")
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/v1/repos/{mine['id']}", headers=other.headers)
        assert response.status == 404
    assert (await (await client.get("/v1/repos", headers=other.headers)).json())["repos"] == []


async def test_token_is_sealed_at_rest_and_sent_only_to_the_forge(
    client: Client, forge: FakeForgeState
) -> None:
    forge.publish("acme/secret", "v2", {"run.sh": b"echo private\n"})
    forge.private["acme/secret"] = "ghp_private-token"
    user = await register(client)
    without = await client.post("/v1/repos", json={"owner_name": "acme", "name": "secret"},
                                headers=user.headers)  # fmt: skip
    assert await error_code(without) == "repo_not_found"
    # Seed 003's form: access_token for us, the raw forge token in `authorization`.
    seed_headers = {"access_token": user.access_token, "authorization": "ghp_private-token"}
    response = await client.post("/v1/repos", json={"ownerName": "acme", "name": "secret"},
                                 headers=seed_headers)  # fmt: skip
    added = await response.json()
    assert response.status == 201, added
    assert added["has_token"] is True
    assert "token" not in added
    async with client.app[DATABASE].session() as session:
        row = (await session.exec(select(Repo).where(Repo.name == "secret"))).one()
    assert row.token_sealed
    assert "ghp_private-token" not in row.token_sealed

    forge.seen.clear()
    task = await client.post("/v1/tasks", headers=user.headers, json={
        "image": "busybox", "command": "sh run.sh", "repo": added["id"], "releaseAsset": "run.sh",
    })  # fmt: skip
    created = await task.json()
    assert task.status == 201, created
    assert [f["path"] for f in created["files"]] == ["run.sh"]
    # The API asset URL got the token; the signed download URL it redirected to did not.
    by_path = {seen.path: seen for seen in forge.seen}
    api_download = next(s for p, s in by_path.items() if "/releases/assets/" in p)
    assert api_download.authorization == "Bearer ghp_private-token"
    assert api_download.accept == "application/octet-stream"
    signed = next(s for p, s in by_path.items() if p.startswith("/signed/"))
    assert signed.authorization == ""


async def test_rate_limit_is_reported_and_not_retried(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    for name in ("one", "two", "three"):
        forge.publish(f"acme/{name}", "v1", {"a": b"a"})
        await _add(client, user, owner_name="acme", name=name)
    forge.rate_limited = True
    forge.seen.clear()
    checked = await client.patch("/v1/repos", headers=user.headers)
    report = await checked.json()
    assert checked.status == 200, report
    assert [r["outcome"] for r in report["results"]] == ["skipped"] * 3
    assert "rate limit" in report["results"][0]["error"]
    assert len(forge.api_calls()) == 1  # the first answer stops the others
    refused = await client.post("/v1/repos", json={"owner_name": "acme", "name": "tool"},
                                headers=user.headers)  # fmt: skip
    assert refused.status == 503
    assert await error_code(refused) == "forge_rate_limited"
    assert int(refused.headers["Retry-After"]) > 60
    assert len(forge.api_calls()) == 1


async def test_task_takes_a_release_asset_by_latest_or_tag(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    other = await register(client)
    repo = await _add(client, user, owner_name="acme", name="tool")
    forge.publish("acme/tool", "v2.0.0", {"tool.sh": b"echo two\n"})

    async def create(account: Account = user, **fields: Any) -> Any:
        body = {"image": "busybox", "command": "sh tool.sh", **fields}
        return await client.post("/v1/tasks", json=body, headers=account.headers)

    # Without a tag: the latest release the watch list has seen (v1.0.0, not yet v2).
    latest = await create(repo=repo["id"], releaseAsset="tool.sh")
    task = await latest.json()
    assert latest.status == 201, task
    assert (task["repo"], task["release_asset"], task["release_tag"]) == (
        repo["id"], "tool.sh", "v1.0.0",
    )  # fmt: skip
    assert task["files"][0]["size"] == len(b"echo one\n")
    tagged = await (await create(repo=repo["id"], release_asset="tool.sh", tag="v2.0.0")).json()
    assert (tagged["release_tag"], tagged["files"][0]["size"]) == ("v2.0.0", len(b"echo two\n"))

    missing = await create(repo=repo["id"], releaseAsset="tool.exe")
    assert missing.status == 422
    envelope = await missing.json()
    assert envelope["error"]["code"] == "release_asset_not_found"
    assert "tool.exe" in envelope["error"]["message"]
    assert set(envelope["error"]["details"]["available"]) == {"tool.sh", "notes.txt"}
    for fields, status, code in [
        ({"repo": repo["id"], "releaseAsset": "tool.sh", "tag": "v9"}, 422, "release_not_found"),
        ({"releaseAsset": "tool.sh"}, 400, "validation_error"),
        ({"repo": repo["id"]}, 400, "validation_error"),
        ({"repo": "not-an-id", "releaseAsset": "tool.sh"}, 400, "validation_error"),
        ({"repo": repo["id"], "releaseAsset": "tool.sh", "files": [
            {"path": "tool.sh", "content": "x"}]}, 400, "invalid_input_file"),
    ]:  # fmt: skip
        response = await create(**fields)
        assert response.status == status, fields
        assert await error_code(response) == code, fields
    foreign = await create(account=other, repo=repo["id"], releaseAsset="tool.sh")
    assert foreign.status == 422
    assert await error_code(foreign) == "repo_not_found"


async def test_our_own_credentials_never_reach_the_forge(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    key = await create_api_key(client, user)
    for token in (user.access_token, key):
        body = {"owner_name": "acme", "name": "tool", "token": token}
        refused = await client.post("/v1/repos", json=body, headers=user.headers)
        assert refused.status == 400
        assert await error_code(refused) == "invalid_forge_token"
    # A seed client sending its own credential in both headers has no forge token.
    both = {"access_token": user.access_token, "Authorization": f"Bearer {user.access_token}"}
    added = await client.post("/v1/repos", json={"ownerName": "acme", "name": "tool"},
                              headers=both)  # fmt: skip
    assert added.status == 201, await added.text()
    assert (await added.json())["has_token"] is False
    assert all(seen.authorization == "" for seen in forge.seen)


async def test_token_goes_only_to_the_forge_origin() -> None:
    """An asset whose API URL is on another origin (a forge answer cannot widen where
    the token goes) is fetched by its public URL, without the token."""
    async with fake_forge() as forge, fake_forge() as elsewhere:
        elsewhere.publish("acme/tool", "v1", {"tool.sh": b"echo hi\n"})
        listed = await ForgeClient(elsewhere.base_url, 5).latest_release("acme", "tool")
        assert listed is not None
        (asset,) = listed.assets
        content = await ForgeClient(forge.base_url, 5).download(
            asset, "ghp_secret", OutboundPolicy(allow_private=True, timeout_seconds=5)
        )
    assert content == b"echo hi\n"
    assert [seen.authorization for seen in elsewhere.seen] == ["", ""]
    assert forge.seen == []


async def test_secondary_rate_limit_and_plain_refusals() -> None:
    """GitHub's secondary limit (403 + Retry-After) blocks that credential only; a 403
    without rate-limit headers is a refusal of access, not a reason to wait."""
    async with fake_forge() as forge:
        forge.publish("acme/tool", "v1", {"a": b"a"})
        client = ForgeClient(forge.base_url, 5)
        forge.refusal_headers = {"Retry-After": "30"}
        with pytest.raises(ForgeRateLimited) as limited:
            await client.latest_release("acme", "tool", "tok-a")
        assert 29 <= limited.value.retry_after <= 30
        calls = len(forge.seen)
        with pytest.raises(ForgeRateLimited):
            await client.latest_release("acme", "tool", "tok-a")
        assert len(forge.seen) == calls  # not asked again
        forge.refusal_headers = {}
        with pytest.raises(ForgeDenied):  # another credential is still asked
            await client.latest_release("acme", "tool", "tok-b")
        forge.refusal_headers = None
        release = await client.latest_release("acme", "tool", "tok-b")
        assert release is not None
        assert release.tag == "v1"


async def test_multipart_task_names_a_release_asset_beside_uploads(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    repo = await _add(client, user, owner_name="acme", name="tool")
    form = FormData()
    form.add_field("image", "busybox")
    form.add_field("command", "sh tool.sh data.txt")
    form.add_field("repo", repo["id"])
    form.add_field("releaseAsset", "tool.sh")
    form.add_field("files", b"payload", filename="data.txt")
    response = await client.post("/v1/tasks", data=form, headers=user.headers)
    task = await response.json()
    assert response.status == 201, task
    assert sorted(f["path"] for f in task["files"]) == ["data.txt", "tool.sh"]
    assert task["release_tag"] == "v1.0.0"


async def test_a_forge_that_does_not_answer_is_asked_once(make_config: ConfigFactory) -> None:
    async with fake_forge() as gone:
        config = make_config(forge_api_url=gone.base_url, forge_anonymous_cache_seconds=0)
        client = await start_client(config)
        try:
            user = await register(client)
            for name in ("one", "two", "three"):
                gone.publish(f"acme/{name}", "v1", {"a": b"a"})
                await _add(client, user, owner_name="acme", name=name)
        except BaseException:
            await client.close()
            raise
    try:  # the forge has stopped: connections are refused
        checked = await client.patch("/v1/repos", headers=user.headers)
        report = await checked.json()
        assert checked.status == 200, report
        assert [r["outcome"] for r in report["results"]] == ["failed", "skipped", "skipped"]
        assert report["results"][1]["error"].startswith("not asked: ")
        assert [r["latest_version"] for r in report["results"]] == ["v1"] * 3
        added = await client.post("/v1/repos", json={"owner_name": "acme", "name": "four"},
                                  headers=user.headers)  # fmt: skip
        assert added.status == 502
        assert await error_code(added) == "forge_unavailable"
    finally:
        await client.close()


async def test_the_asset_counts_towards_the_input_file_limit(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    repo = await _add(client, user, owner_name="acme", name="tool")
    files = [{"path": f"f{i}", "content": "x"} for i in range(MAX_FILES)]
    body = {"image": "busybox", "files": files, "repo": repo["id"], "releaseAsset": "tool.sh"}
    response = await client.post("/v1/tasks", json=body, headers=user.headers)
    assert response.status == 400
    assert await error_code(response) == "invalid_input_file"
    body["files"] = files[1:]
    assert (await client.post("/v1/tasks", json=body, headers=user.headers)).status == 201


@pytest.mark.parametrize(
    "body",
    [
        {"owner_name": "..", "name": "tool"},
        {"owner_name": "acme", "name": ".."},
        {"owner_name": ".", "name": "tool"},
        {"ownerName": "acme", "name": "."},
        {"owner": "..", "name": ".."},
    ],
)
async def test_dot_segments_are_not_repository_names(
    client: Client, forge: FakeForgeState, body: dict[str, str]
) -> None:
    user = await register(client)
    response = await client.post("/v1/repos", json=body, headers=user.headers)
    assert response.status == 400
    assert await error_code(response) == "validation_error"
    assert forge.seen == []


async def test_the_forge_client_never_builds_a_path_from_dot_segments() -> None:
    """Whatever reaches it (a row stored before names were checked), the forge client
    refuses a dot segment instead of asking a normalised path."""
    async with fake_forge() as forge:
        client = ForgeClient(forge.base_url, 5)
        for owner, name in ((".", "x"), ("..", "x"), ("x", "."), ("x", "..")):
            with pytest.raises(RepoNotFound):
                await client.latest_release(owner, name)
            with pytest.raises(RepoNotFound):
                await client.release_by_tag(owner, name, "v1")
    assert forge.seen == []


BAD_TOKENS = [
    "ghp_a\r\nX-Injected: 1",
    "ghp_a\nb",
    "ghp a",
    "ghp_\x00",
    "ghp_é",
    "x" * 256,
    "x" * 3000,
]


@pytest.mark.parametrize("token", BAD_TOKENS)
async def test_a_malformed_forge_token_is_refused_in_the_body(
    client: Client, forge: FakeForgeState, token: str
) -> None:
    user = await register(client)
    body = {"owner_name": "acme", "name": "tool", "token": token}
    response = await client.post("/v1/repos", json=body, headers=user.headers)
    assert response.status == 422, await response.text()
    assert await error_code(response) == "invalid_forge_token"
    assert forge.seen == []
    async with client.app[DATABASE].session() as session:
        assert (await session.exec(select(Repo))).all() == []


@pytest.mark.parametrize("token", [t for t in BAD_TOKENS if "\n" not in t and "\x00" not in t])
async def test_a_malformed_forge_token_is_refused_in_the_seed_header(
    client: Client, forge: FakeForgeState, token: str
) -> None:
    user = await register(client)
    headers = {"access_token": user.access_token, "Authorization": f"Bearer {token}"}
    body = {"ownerName": "acme", "name": "tool"}
    response = await client.post("/v1/repos", json=body, headers=headers)
    assert response.status == 422, await response.text()
    assert await error_code(response) == "invalid_forge_token"
    assert forge.seen == []


async def test_a_token_of_the_longest_allowed_form_is_kept(
    client: Client, forge: FakeForgeState
) -> None:
    user = await register(client)
    token = "t" * 255
    forge.private["acme/tool"] = token
    added = await _add(client, user, owner_name="acme", name="tool", token=token)
    assert added["has_token"] is True
    assert forge.seen[0].authorization == f"Bearer {token}"


@pytest.mark.parametrize("token", BAD_TOKENS)
async def test_the_forge_client_never_sends_a_malformed_token(token: str) -> None:
    """A token stored before tokens were checked is refused, never put in a header."""
    async with fake_forge() as forge:
        forge.publish("acme/tool", "v1", {"a": b"a"})
        with pytest.raises(ForgeDenied):
            await ForgeClient(forge.base_url, 5).latest_release("acme", "tool", token)
    assert forge.seen == []
