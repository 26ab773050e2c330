"""schemathesis against the live server's own /v1/openapi.json: no 5xx, and every
response matches the document (status, content type, headers, body schema)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import create_api_key, register
from tests.controlplane.conftest import ConfigFactory, start_client
from tests.controlplane.forge_support import fake_forge

Client = TestClient[Any, Any]
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


async def test_openapi_document_is_generated_from_the_models(api: Client) -> None:
    document = await (await api.get("/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    register_op = document["paths"]["/v1/auth/register"]["post"]
    schema_ref = register_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    register_schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]
    assert register_schema["properties"]["password"]["minLength"] == 8
    assert set(register_op["responses"]) >= {"201", "400", "409", "429"}
    assert document["paths"]["/v1/user/profile"]["get"]["security"] == [{"bearer": []}]


@pytest.fixture
async def api_with_forge(make_config: ConfigFactory) -> AsyncIterator[Client]:
    """A control plane whose forge (for /v1/repos) is a local stand-in: an unreachable
    forge is a 502, which schemathesis would count as a server error."""
    async with fake_forge() as forge:
        client = await start_client(make_config(forge_api_url=forge.base_url))
        try:
            yield client
        finally:
            await client.close()


async def test_schemathesis_finds_no_server_errors_or_drift(
    api_with_forge: Client, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    api = api_with_forge
    admin = await register(api)
    key = await create_api_key(api, admin)
    # The coverage phase enumerates every boundary case (slow); once is enough.
    on_sqlite = request.node.callspec.params["database_url"] == "sqlite"
    phases = "examples,coverage,fuzzing" if on_sqlite else "examples,fuzzing"
    process = await asyncio.create_subprocess_exec(
        SCHEMATHESIS, "run", str(api.make_url("/v1/openapi.json")),
        "--header", f"Authorization: Bearer {key}",
        "--checks", CHECKS,
        "--phases", phases,
        "--max-examples", "8",
        "--workers", "2",
        "--generation-database", "none",
        "--seed", "20261122",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 240)
    assert process.returncode == 0, output.decode(errors="replace")[-6000:]
