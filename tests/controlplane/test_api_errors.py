"""One error envelope for everything, request limits, rate limiting, health, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import PASSWORD, error_code, register
from tests.controlplane.conftest import ConfigFactory, start_client

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")


async def test_unknown_routes_and_methods_use_the_envelope(api: Client) -> None:
    missing = await api.get("/v1/nope")
    assert missing.status == 404
    assert await error_code(missing) == "not_found"
    wrong_method = await api.patch("/v1/auth/login")
    assert wrong_method.status == 405
    assert await error_code(wrong_method) == "method_not_allowed"
    assert "POST" in wrong_method.headers["Allow"]


async def test_bodies_that_are_not_json_are_400(api: Client) -> None:
    for data in (b"{not json", b"\xff\xfe", b"", b"[1, 2]", b"null"):
        response = await api.post(
            "/v1/auth/login", data=data, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400, data
        assert await error_code(response) in {"invalid_json", "validation_error"}


async def test_unknown_fields_are_refused(api: Client) -> None:
    body = {"username": "x", "password": PASSWORD, "is_admin": True}
    response = await api.post("/v1/auth/login", json=body)
    assert response.status == 400
    payload = await response.json()
    assert payload["error"]["details"][0]["field"] == "body.is_admin"


async def test_validation_details_never_echo_the_password(api: Client) -> None:
    secret = "has space secret"
    response = await api.post(
        "/v1/auth/register", json={"username": "bob", "email": "b@example.com", "password": secret}
    )
    assert response.status == 400
    assert secret not in await response.text()


async def test_oversized_bodies_are_413(make_config: ConfigFactory) -> None:
    client = await start_client(make_config(max_request_bytes=2048))
    try:
        response = await client.post(
            "/v1/auth/login", json={"username": "x" * 4096, "password": PASSWORD}
        )
        assert response.status == 413
        assert await error_code(response) == "payload_too_large"
    finally:
        await client.close()


async def test_login_is_rate_limited_per_client(make_config: ConfigFactory) -> None:
    client = await start_client(make_config(auth_rate_limit=3, auth_rate_window_seconds=60))
    try:
        body = {"username": "nobody", "password": PASSWORD}
        statuses = [(await client.post("/v1/auth/login", json=body)).status for _ in range(3)]
        assert statuses == [401, 401, 401]
        limited = await client.post("/v1/auth/login", json=body)
        assert limited.status == 429
        assert await error_code(limited) == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Other endpoints have their own budget.
        forgot = await client.post("/v1/auth/forgot-password", json={"email": "a@example.com"})
        assert forgot.status == 200
    finally:
        await client.close()


async def test_forwarded_clients_get_their_own_budget_only_behind_trusted_proxies(
    make_config: ConfigFactory,
) -> None:
    body = {"username": "nobody", "password": PASSWORD}

    async def statuses(client: Client, *forwarded: str) -> list[int]:
        return [
            (await client.post("/v1/auth/login", json=body, headers={"X-Forwarded-For": f})).status
            for f in forwarded
        ]

    # Header text only: documentation addresses (TEST-NET-3), nothing is contacted.
    proxied = await start_client(make_config(auth_rate_limit=2, trusted_proxies=["127.0.0.0/8"]))
    try:
        assert await statuses(proxied, "203.0.113.5", "203.0.113.5") == [401, 401]
        assert await statuses(proxied, "203.0.113.5") == [429]
        assert await statuses(proxied, "203.0.113.6, 127.0.0.1") == [401]
        # What the client wrote left of the address the proxy saw proves nothing.
        assert await statuses(proxied, "203.0.113.9, 203.0.113.5") == [429]
    finally:
        await proxied.close()

    direct = await start_client(make_config(auth_rate_limit=2))
    try:
        assert await statuses(direct, "203.0.113.5", "203.0.113.6") == [401, 401]
        assert await statuses(direct, "203.0.113.7") == [429]  # the header is ignored
    finally:
        await direct.close()


async def test_health_and_metrics(api: Client) -> None:
    await register(api)
    health = await api.get("/health")
    assert health.status == 200
    assert (await health.json())["status"] == "healthy"
    await api.get("/v1/nope")
    metrics = await api.get("/metrics")
    assert metrics.status == 200
    text = await metrics.text()
    assert 'encedeus_http_requests_total{method="POST",route="/v1/auth/register",status="201"}' in (
        text
    )
    assert "encedeus_http_request_duration_seconds_bucket" in text
    assert 'encedeus_http_errors_total{method="GET",route="unmatched",status="404"}' in text
