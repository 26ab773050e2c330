"""/v1/templates and deployments made from templates, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.controlplane.accounts_support import error_code, expect_json, register

EGGS = Path(__file__).parent / "templates" / "eggs"
HCL = {"Content-Type": "text/plain"}
CUSTOM = """
id = "custom"
version = "1"
name = "Custom"
images = { one = "encedeus/busybox:latest", two = "encedeus/busybox:other" }
startup = "echo {{GREETING}}"
variable "GREETING" {
  default = "hello"
  rules {
    max = 10
  }
}
variable "SECRET_SEED" {
  default = "42"
  user_viewable = false
  user_editable = false
}
"""


async def test_bundled_templates_are_listed_and_read_only(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    listed = await expect_json(await api.get("/v1/templates?limit=100", headers=admin.headers))
    ids = [t["id"] for t in listed["templates"]]
    assert {"sh-game", "static-site", "batch-job", "paper", "valheim"} <= set(ids)
    assert all(t["bundled"] for t in listed["templates"])
    shown = await expect_json(await api.get("/v1/templates/sh-game", headers=admin.headers))
    assert shown["template"]["done"] == "is ready for players"
    hcl = await api.get("/v1/templates/sh-game?format=hcl", headers=admin.headers)
    assert 'id = "sh-game"' in await hcl.text()
    egg = await expect_json(await api.get("/v1/templates/paper?format=egg", headers=admin.headers))
    assert egg["meta"]["version"] == "PTDL_v2"
    refused = await api.delete("/v1/templates/sh-game", headers=admin.headers)
    assert refused.status == 409
    assert await error_code(refused) == "template_read_only"
    missing = await api.get("/v1/templates/nope", headers=admin.headers)
    assert missing.status == 404


async def test_admins_add_replace_and_delete_templates(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    user = await register(api)
    denied = await api.post("/v1/templates", data=CUSTOM, headers={**user.headers, **HCL})
    assert denied.status == 403
    created = await expect_json(
        await api.post("/v1/templates", data=CUSTOM, headers={**admin.headers, **HCL}), 201
    )
    assert created["template"]["id"] == "custom"
    again = await api.post("/v1/templates", data=CUSTOM, headers={**admin.headers, **HCL})
    assert await error_code(again) == "template_exists"
    seen = await expect_json(await api.get("/v1/templates/custom", headers=user.headers))
    assert [v["env"] for v in seen["template"]["variables"]] == ["GREETING"]
    changed = CUSTOM.replace('version = "1"', 'version = "2"')
    replaced = await expect_json(
        await api.put("/v1/templates/custom", data=changed, headers={**admin.headers, **HCL})
    )
    assert replaced["template"]["version"] == "2"
    deleted = await api.delete("/v1/templates/custom", headers=admin.headers)
    assert deleted.status == 200
    assert (await api.get("/v1/templates/custom", headers=admin.headers)).status == 404


async def test_eggs_import_with_their_warnings(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    paper = (EGGS / "egg-paper.json").read_text()
    created = await expect_json(
        await api.post("/v1/templates?id=my-paper", data=paper,
                       headers={**admin.headers, "Content-Type": "application/json"}), 201
    )  # fmt: skip
    assert created["template"]["id"] == "my-paper"
    assert created["template"]["egg"] is True
    assert created["warnings"] == [
        "features eula, java_version, pid_limit are panel UI features and are not converted"
    ]
    valheim = (EGGS / "egg-valheim.yaml").read_text().replace("name: Valheim", "name: Valheim 2")
    created = await expect_json(
        await api.post("/v1/templates", data=valheim,
                       headers={**admin.headers, "Content-Type": "application/yaml"}), 201
    )  # fmt: skip
    assert created["template"]["id"] == "valheim-2"
    shown = await expect_json(await api.get("/v1/templates/valheim-2", headers=admin.headers))
    assert any("Crossplay" in w for w in shown["warnings"])


async def test_bad_templates_are_refused_naming_the_problem(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    bad = CUSTOM.replace("max = 10", 'regex = "(?<=x)y"')
    response = await api.post("/v1/templates", data=bad, headers={**admin.headers, **HCL})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_template"
    assert body["error"]["details"][0].startswith("variable GREETING.rules.regex")
    for data, kind in (("id = ", "text/plain"), ("{", "application/json"), ("x", "image/png")):
        response = await api.post(
            "/v1/templates", data=data, headers={**admin.headers, "Content-Type": kind}
        )
        assert await error_code(response) == "invalid_template"


async def test_a_deployment_from_a_template_keeps_what_it_resolved(
    api: TestClient[Any, Any],
) -> None:
    admin = await register(api)
    await api.post("/v1/templates", data=CUSTOM, headers={**admin.headers, **HCL})
    bad = await api.post(
        "/v1/deployments",
        json={"app_name": "g", "template": "custom", "variables": {"GREETING": "far too long"}},
        headers=admin.headers,
    )
    assert bad.status == 422
    assert (await bad.json())["error"]["details"] == {
        "GREETING": "must be at most 10 characters long"
    }
    locked = await api.post(
        "/v1/deployments",
        json={"app_name": "g", "template": "custom", "variables": {"SECRET_SEED": "1"}},
        headers=admin.headers,
    )
    assert (await locked.json())["error"]["details"] == {"SECRET_SEED": "cannot be changed"}
    created = await expect_json(
        await api.post(
            "/v1/deployments",
            json={"app_name": "g", "template": "custom", "variables": {"GREETING": "hi"},
                  "image_label": "two", "replicas": 0, "env_vars": {"EXTRA": "1"}},
            headers=admin.headers,
        ),
        201,
    )  # fmt: skip
    url = f"/v1/deployments/{created['id']}"
    details = await expect_json(await api.get(url, headers=admin.headers))
    assert details["image"] == "encedeus/busybox:other"
    assert details["command"] == ["/bin/sh", "-c", "echo ${GREETING}"]
    assert details["env_vars"] == {
        "GREETING": "hi", "SECRET_SEED": "42", "SERVER_IP": "0.0.0.0", "SERVER_MEMORY": "128",
        "EXTRA": "1",
    }  # fmt: skip
    assert details["template"] == {
        "id": "custom", "version": "1", "image_label": "two",
        "variables": {"GREETING": "hi", "SECRET_SEED": "42"},
    }  # fmt: skip
    user = await register(api)
    body = {"app_name": "g-user", "template": "custom", "replicas": 0}
    own = await expect_json(await api.post("/v1/deployments", json=body, headers=user.headers), 201)
    seen = await expect_json(await api.get(f"/v1/deployments/{own['id']}", headers=user.headers))
    assert seen["template"]["variables"] == {"GREETING": "hello"}  # SECRET_SEED is hidden
    assert "SECRET_SEED" not in seen["env_vars"]
    changed = CUSTOM.replace('version = "1"', 'version = "2"').replace("echo", "printf")
    await api.put("/v1/templates/custom", data=changed, headers={**admin.headers, **HCL})
    unchanged = await expect_json(await api.get(url, headers=admin.headers))
    assert unchanged["command"] == details["command"]
    assert unchanged["template"]["version"] == "1"
    updated = await api.put(f"{url}/variables", json={"variables": {"GREETING": "yo"}},
                            headers=admin.headers)  # fmt: skip
    assert updated.status == 200, await updated.text()
    after = await expect_json(await api.get(url, headers=admin.headers))
    assert after["command"] == ["/bin/sh", "-c", "printf ${GREETING}"]
    assert after["template"]["version"] == "2"
    assert after["env_vars"]["GREETING"] == "yo"
    assert after["env_vars"]["EXTRA"] == "1"
    assert after["generation"] == details["generation"] + 1
    unknown = await api.post("/v1/deployments", json={"app_name": "u", "template": "nope"},
                             headers=admin.headers)  # fmt: skip
    assert unknown.status == 422
    assert await error_code(unknown) == "template_not_found"
    no_script = await api.post(f"{url}/reinstall", headers=admin.headers)
    assert await error_code(no_script) == "no_install_script"


async def test_image_and_template_are_exclusive(api: TestClient[Any, Any]) -> None:
    admin = await register(api)
    for body in ({"app_name": "x"}, {"app_name": "x", "image": "a", "template": "sh-game"},
                 {"app_name": "x", "image": "a", "variables": {"A": "1"}}):  # fmt: skip
        response = await api.post("/v1/deployments", json=body, headers=admin.headers)
        assert response.status == 400, body
    plain = await expect_json(
        await api.post("/v1/deployments", json={"app_name": "p", "image": "a", "replicas": 0},
                       headers=admin.headers), 201
    )  # fmt: skip
    response = await api.put(f"/v1/deployments/{plain['id']}/variables", json={},
                             headers=admin.headers)  # fmt: skip
    assert await error_code(response) == "not_from_template"
