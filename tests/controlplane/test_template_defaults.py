"""What a template gives a deployment through the API: its ports with their protocols
(the deployment's own `ports`/`port_protocols`, as for one made from an image) and its
disk size default as `resources.disk` unless the request gives one. Runs on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import Account, expect_json, register

Client = TestClient[Any, Any]
pytestmark = pytest.mark.usefixtures("blocking_guard")
TEMPLATE = """
id = "udp-game"
name = "UDP game"
images = { busybox = "encedeus/busybox:latest" }
startup = "sleep 3600"
disk = "2Gi"
port "game" {
  protocols = ["tcp", "udp"]
}
port "query" {
  protocols = ["udp"]
  container_port = 27016
}
"""


async def create(api: Client, owner: Account, **extra: Any) -> Any:
    body = {"app_name": "game", "template": "udp-game", "replicas": 0, **extra}
    created = await expect_json(await api.post("/v1/deployments", json=body,
                                               headers=owner.headers), 201)  # fmt: skip
    return await expect_json(await api.get(f"/v1/deployments/{created['id']}",
                                           headers=owner.headers))  # fmt: skip


async def test_a_template_gives_its_ports_protocols_and_disk(api: Client) -> None:
    admin = await register(api)
    await expect_json(await api.post("/v1/templates", data=TEMPLATE,
                      headers={**admin.headers, "Content-Type": "text/plain"}), 201)  # fmt: skip
    shown = await create(api, admin)
    assert shown["ports"] == [0, 27016]  # 0: the host port it is given (egg contract)
    assert shown["port_protocols"] == ["tcp+udp", "udp"]
    assert shown["resources"]["disk"] == "2Gi"
    await expect_json(await api.delete(f"/v1/deployments/{shown['id']}",
                                       headers=admin.headers))  # fmt: skip
    own_disk = await create(api, admin, resources={"memory": "64Mi", "disk": "512Mi"})
    assert own_disk["resources"]["disk"] == "512Mi"
    await expect_json(await api.delete(f"/v1/deployments/{own_disk['id']}",
                                       headers=admin.headers))  # fmt: skip
    no_disk = await create(api, admin, resources={"memory": "64Mi"})
    assert no_disk["resources"]["disk"] == "2Gi"


async def test_a_template_disk_that_is_no_disk_quantity_is_refused(api: Client) -> None:
    admin = await register(api)
    bad = TEMPLATE.replace('disk = "2Gi"', 'disk = "8Mi"')  # below disk's 16Mi minimum
    refused = await api.post("/v1/templates", data=bad,
                             headers={**admin.headers, "Content-Type": "text/plain"})  # fmt: skip
    assert refused.status == 400, await refused.text()
    body = await refused.json()
    assert body["error"]["code"] == "invalid_template"
    assert "16Mi" in str(body["error"])
