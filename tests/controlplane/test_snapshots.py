"""Snapshot responses: frozen, rendered to JSON once, exactly as their model would be."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controlplane.api.authentication import CurrentUser
from controlplane.api.schemas import Profile


def _caller() -> CurrentUser:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return CurrentUser(
        id=uuid.uuid4(), username="ada", email="ada@example.com", is_admin=False,
        is_active=True, created_at=now, updated_at=now, last_login=None,
        api_key_id=uuid.uuid4(),
    )  # fmt: skip


def test_the_callers_profile_is_built_and_rendered_once() -> None:
    caller = _caller()
    profile = caller.profile
    assert caller.profile is profile
    assert profile.json_text is profile.json_text
    plain = Profile.model_validate(profile.model_dump())
    assert profile.json_text == plain.model_dump_json()
    assert "api_key_id" not in profile.json_text


def test_a_snapshot_cannot_change_under_its_rendered_json() -> None:
    profile = _caller().profile
    with pytest.raises(ValidationError):
        profile.username = "changed"  # type: ignore[misc]
