"""The pure quota rules: how usage is counted and which changes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import ConfigError
from controlplane.config import load_config
from controlplane.quotas import (
    NOTHING,
    QuotaLimits,
    Usage,
    deployment_usage,
    excesses,
    task_usage,
)

MI = 2**20


def test_a_deployment_reserves_its_wanted_replicas_and_a_task_only_resources() -> None:
    assert deployment_usage(3, 500, 256 * MI) == Usage(1, 3, 1500, 768 * MI, 0)
    # Stopped or scaled to zero, it still counts as a deployment.
    assert deployment_usage(0, 500, 256 * MI) == Usage(deployments=1)
    assert task_usage(1000, 512 * MI) == Usage(cpu_millis=1000, memory_bytes=512 * MI)


def test_disk_counts_as_nothing_until_deployments_have_a_disk_size() -> None:
    limits = QuotaLimits(disk_bytes=0)
    assert excesses(limits, NOTHING, NOTHING, deployment_usage(5, 100, MI)) == []


def test_a_change_above_a_limit_names_the_resource_the_limit_and_the_usage() -> None:
    limits = QuotaLimits(memory_bytes=512 * MI, replicas=10)
    usage = deployment_usage(1, 100, 256 * MI)
    (excess,) = excesses(limits, usage, NOTHING, deployment_usage(2, 100, 256 * MI))
    assert excess.describe() == {
        "resource": "memory_bytes",
        "limit": 512 * MI,
        "usage": 256 * MI,
        "requested": 768 * MI,
        "unit": "bytes",
    }
    assert "memory_bytes" in excess.sentence()
    assert str(512 * MI) in excess.sentence()


def test_every_limited_resource_is_checked() -> None:
    limits = QuotaLimits(deployments=0, replicas=0, cpu_millis=0, memory_bytes=0)
    found = excesses(limits, NOTHING, NOTHING, deployment_usage(1, 100, MI))
    assert [e.resource for e in found] == ["deployments", "replicas", "cpu_millis", "memory_bytes"]


def test_changes_that_do_not_raise_a_resource_pass_even_above_the_limit() -> None:
    limits = QuotaLimits(replicas=1, cpu_millis=100)
    before = deployment_usage(4, 100, MI)  # an admin lowered the limits since
    usage = before
    assert excesses(limits, usage, before, deployment_usage(2, 100, MI)) == []  # scale down
    assert excesses(limits, usage, before, before) == []  # start, image change
    # Fewer replicas but more CPU each: only the CPU total is what rises.
    (excess,) = excesses(limits, usage, before, deployment_usage(1, 500, MI))
    assert excess.resource == "cpu_millis"


def test_unlimited_resources_are_never_refused() -> None:
    assert excesses(QuotaLimits(), NOTHING, NOTHING, deployment_usage(10**6, 10**6, 10**12)) == []


def test_the_default_quota_comes_from_a_nested_block_of_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.hcl"
    path.write_text(
        "controlplane {\n  default_quota {\n    deployments = 3\n    memory_bytes = 1073741824\n"
        "    cpu_millis = null\n  }\n}\n"
    )
    config = load_config(path, environ={})
    assert config.default_quota == QuotaLimits(deployments=3, memory_bytes=2**30)
    path.write_text("controlplane {\n  default_quota {\n    gpus = 1\n  }\n}\n")
    with pytest.raises(ConfigError, match="gpus"):
        load_config(path, environ={})
    assert load_config(None, environ={}).default_quota == QuotaLimits()
