"""A change that loses a race with the deployment's deletion answers 404, not 500."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.api import deployments as deployments_api
from controlplane.db.tables import Deployment
from controlplane.quota_enforcement import enforce_quota
from tests.controlplane.accounts_support import error_code, register

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE
async def test_a_scale_racing_a_delete_is_a_404(
    api: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await register(api)
    made = await api.post(
        "/v1/deployments",
        json={"app_name": f"race-{uuid.uuid4().hex[:6]}", "image": "encedeus/busybox:latest"},
        headers=owner.headers,
    )
    assert made.status == 201, await made.text()
    deployment_id = uuid.UUID((await made.json())["id"])

    async def deleted_meanwhile(session: AsyncSession, *args: Any) -> None:
        await enforce_quota(session, *args)
        # What a DELETE committed between this change's read and its write leaves.
        # (synchronize_session off: the ORM must not know, as with another process.)
        await session.exec(
            delete(Deployment)
            .where(col(Deployment.id) == deployment_id)
            .execution_options(synchronize_session=False)
        )

    monkeypatch.setattr(deployments_api, "enforce_quota", deleted_meanwhile)
    answer = await api.patch(
        f"/v1/deployments/{deployment_id}/scale", json={"replicas": 0}, headers=owner.headers
    )
    assert answer.status == 404, await answer.text()
    assert await error_code(answer) == "deployment_not_found"
