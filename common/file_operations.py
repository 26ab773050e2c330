"""The bodies of the file API's small operations: the control plane validates them, the
agent validates them again, one definition (docs/protocols/files.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PATH = 4096


class FileOperation(BaseModel):
    """Base of operation bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class FilePath(FileOperation):
    path: str = Field(min_length=1, max_length=MAX_PATH)


class MakeDirectory(FileOperation):
    path: str = Field(min_length=1, max_length=MAX_PATH)
    parents: bool = False


class MoveFiles(FileOperation):
    source: str = Field(min_length=1, max_length=MAX_PATH)
    target: str = Field(min_length=1, max_length=MAX_PATH)


class ChangeMode(FileOperation):
    path: str = Field(min_length=1, max_length=MAX_PATH)
    mode: str = Field(pattern=r"^[0-7]{3,4}$", description="octal, e.g. 0644")


class CompressFiles(FileOperation):
    paths: list[str] = Field(min_length=1, max_length=1000)
    target: str = Field(min_length=1, max_length=MAX_PATH)
    format: Literal["tar.gz", "zip"] = "tar.gz"


class DecompressFile(FileOperation):
    path: str = Field(min_length=1, max_length=MAX_PATH)
    destination: str = Field(default="/", min_length=1, max_length=MAX_PATH)


class PullFile(FileOperation):
    """Fetch `url` (http or https, through the guarded outbound client) into `path`."""

    url: str = Field(min_length=1, max_length=8192)
    path: str = Field(min_length=1, max_length=MAX_PATH)
