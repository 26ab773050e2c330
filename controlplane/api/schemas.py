"""Request and response shapes shared by several resources, and the account rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cached_property
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field

#: seed 001: no spaces. Also no `@` (reserved for aliases such as `@me`) and nothing
#: that would be awkward in an SFTP user name `<username>.<server>`.
USERNAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
#: seed 001: at least 8 characters, no whitespace.
PASSWORD_PATTERN = r"^\S+$"  # noqa: S105


def _lower(value: str) -> str:
    return value.lower()


Username = Annotated[str, Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)]
Password = Annotated[str, Field(min_length=8, max_length=256, pattern=PASSWORD_PATTERN)]
Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(_lower)]


class Request(BaseModel):
    """Base of request bodies: unknown fields are refused, strings kept as sent."""

    model_config = ConfigDict(extra="forbid")


class Snapshot(BaseModel):
    """Base of response models that never change once built (frozen): the endpoint
    layer sends their `json_text`, rendered once however often they are served."""

    model_config = ConfigDict(frozen=True)

    @cached_property
    def json_text(self) -> str:
        """The JSON of the model (`model_dump_json`), computed on first use."""
        return self.model_dump_json()


class MessageResponse(BaseModel):
    """`{"message": "..."}` for actions that return nothing else."""

    message: str


class UserSummary(BaseModel):
    """The account as shown next to tokens."""

    id: uuid.UUID
    username: str
    email: str
    is_admin: bool


class Profile(BaseModel):
    """The account as its owner (or an admin) sees it."""

    id: uuid.UUID
    username: str
    email: str
    is_admin: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime
    last_login: datetime | None
