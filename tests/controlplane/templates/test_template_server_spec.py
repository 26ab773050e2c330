"""A template-made deployment's ServerSpec (pure): the template resolved into the
deployment's columns, then the spec every deployment gets (ports and protocols
included) plus the template's additions."""

from __future__ import annotations

import uuid
from pathlib import Path

from controlplane.api.deployment_templates import resolution_values
from controlplane.db.tables import Deployment, Replica
from controlplane.reconciler.world import server_spec
from controlplane.templates.hcl import parse_template_hcl
from controlplane.templates.resolve import resolve_template
from controlplane.templates.server_spec import apply_template_record
from protos import agent_pb2 as pb

BUNDLED = Path(__file__).parents[3] / "controlplane" / "templates" / "bundled"


def deployment_for(name: str, **variables: str) -> Deployment:
    """The deployment a create from bundled template `name` stores (no disk asked)."""
    template = parse_template_hcl((BUNDLED / f"{name}.hcl").read_text())
    resolution = resolve_template(template, variables, image_label=None, memory_bytes=2**30)
    values = resolution_values(resolution, None, take_disk=True)
    return Deployment(user_id=uuid.uuid4(), app_name=name, memory_bytes=2**30, **values)


def spec_for(name: str, host_ports: list[int], **variables: str) -> pb.ServerSpec:
    deployment = deployment_for(name, **variables)
    replica = Replica(deployment_id=deployment.id, ordinal=0, host_ports=host_ports)
    return server_spec(deployment, replica, "node")


def test_egg_ports_listen_on_their_host_port_for_each_protocol() -> None:
    spec = spec_for("valheim", [30007], PASSWORD="secret1")
    assert [(p.container_port, p.host_port, p.protocol) for p in spec.ports] == [
        (30007, 30007, "tcp"), (30007, 30007, "udp"),
    ]  # fmt: skip
    assert spec.env["SERVER_PORT"] == "30007"
    assert spec.env["SERVER_MEMORY"] == "1024"
    assert spec.env["STARTUP"].startswith("./valheim_server.x86_64 -nographics -batchmode")
    assert "-port ${SERVER_PORT}" in spec.env["STARTUP"]
    assert list(spec.command) == []
    assert spec.data_mount_path == "/home/container"
    assert spec.install.network
    assert spec.done_pattern == "Game server connected"


def test_config_file_placeholders_are_rendered_for_this_server() -> None:
    spec = spec_for("sh-game", [30002], DIFFICULTY="hard")
    [edit] = spec.config_files
    assert (edit.path, edit.parser) == ("game.properties", "properties")
    assert dict(edit.set) == {"difficulty": "hard", "port": "30002"}
    assert spec.install.script.startswith("set -e")
    assert not spec.install.network
    assert spec.resources.disk_bytes == 64 * 2**20
    assert (deployment_for("sh-game").disk, deployment_for("sh-game").disk_bytes) == (
        "64Mi", 64 * 2**20,
    )  # fmt: skip
    assert list(spec.command) == ["/bin/sh", "-c",
                                  'exec sh ./server.sh "${WORLD_NAME}" ${MAX_PLAYERS}']  # fmt: skip


def test_fixed_container_ports_keep_their_number() -> None:
    spec = spec_for("static-site", [30003])
    assert [(p.container_port, p.host_port) for p in spec.ports] == [(8080, 30003)]
    assert spec.env["SERVER_PORT"] == "8080"


def test_a_deployment_without_a_template_is_left_alone() -> None:
    spec = pb.ServerSpec(id="s", ports=[pb.PortBinding(container_port=80, host_port=30001)])
    apply_template_record(spec, None)
    assert [(p.container_port, p.protocol) for p in spec.ports] == [(80, "")]


def test_a_template_disk_is_the_deployment_disk_unless_the_request_gives_one() -> None:
    template = parse_template_hcl((BUNDLED / "sh-game.hcl").read_text())
    resolution = resolve_template(template, {}, image_label=None, memory_bytes=2**30)
    assert resolution.disk == "64Mi"
    assert "disk" not in resolution_values(resolution, None, take_disk=False)


def test_records_from_before_the_disk_column_keep_their_disk() -> None:
    spec = pb.ServerSpec(id="s")
    apply_template_record(spec, {"disk_bytes": 2**30})
    assert spec.resources.disk_bytes == 2**30
