"""Reading POST /v1/tasks: a JSON body, or a multipart form with uploaded files.

Multipart: a `task` (or `spec`) part holding the JSON spec, or the fields `image`,
`command`, `name`, `env` (JSON object) one by one; every part with a filename is an
input file placed at that (relative) path. Uploads are streamed into the input store
(controlplane/tasks/input_store.py) chunk by chunk with a running total, so neither a
multi-GiB file nor an oversized form is ever held in memory; what a failed request
stored is discarded before it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BadContentDispositionHeader, BadContentDispositionParam
from pydantic import ValidationError

from common.logging import get_logger
from common.outbound import OutboundFailed, OutboundRefused, OutboundTooLarge
from controlplane.api.context import database
from controlplane.api.endpoints import decode_json
from controlplane.api.errors import ApiError, Unprocessable, ValidationFailed
from controlplane.config import ControlPlaneConfig
from controlplane.tasks.fetch import describe, task_fetch_policy
from controlplane.tasks.input_store import InputStore, InputTooLarge
from controlplane.tasks.inputs import (
    InputError,
    InputFile,
    TaskSpec,
    gather_inputs,
    safe_relative_path,
)

#: What aiohttp raises for a part it cannot parse. The Content-Disposition ones are
#: warnings that become exceptions when warnings are errors (as under pytest); when they
#: stay warnings the part has no name and is refused as an unexpected field.
MALFORMED_PART = (
    ValueError,
    HttpProcessingError,
    BadContentDispositionHeader,
    BadContentDispositionParam,
)
log = get_logger(__name__)
SPEC_FIELDS = ("image", "command", "name", "env", "containerImage", "runCommand",
               "repo", "release_asset", "releaseAsset", "tag", "retries")  # fmt: skip
MAX_FIELD_BYTES = 256 * 1024
PART_READ_BYTES = 256 * 1024


def _validated(data: Any) -> TaskSpec:
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(["body", *map(str, e["loc"])]), "message": e["msg"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationFailed("the task is invalid", details=details) from exc


def _json_object(request: web.Request, raw: bytes | str, what: str) -> dict[str, Any]:
    data = decode_json(request, raw, what)
    if not isinstance(data, dict):
        raise ValidationFailed(f"{what} must be a JSON object")
    return data


async def _read_part(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                f"{what} is larger than the {limit} bytes allowed",
                code="payload_too_large",
                status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def _part_pieces(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(PART_READ_BYTES):
        yield chunk


async def _store_upload(
    part: BodyPartReader, store: InputStore, remaining: int, uploads: list[InputFile]
) -> int:
    """Stream one file part into the store, appended to `uploads`; the bytes left."""
    # aiohttp's client (and some others) percent-encode `/` in filenames.
    path = safe_relative_path(unquote(part.filename or ""))
    try:
        stored = await store.receive(_part_pieces(part), limit=remaining)
    except InputTooLarge:
        raise ApiError(
            f"the uploaded files are larger than the {remaining} bytes allowed",
            code="payload_too_large",
            status=413,
        ) from None
    kind = part.headers.get("Content-Type", "")
    uploads.append(InputFile(path, mime_type=kind, stored=stored))
    return remaining - stored.size


async def _read_multipart(
    request: web.Request, max_total: int, uploads: list[InputFile]
) -> dict[str, Any]:
    """The spec fields of a multipart form; its files are appended to `uploads` as
    they are stored (so that the caller can discard them when the request fails)."""
    reader = await request.multipart()
    store = InputStore(database(request))
    fields: dict[str, Any] = {}
    remaining = max_total
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError("nested multipart bodies are not supported", code="invalid_form")
        if part.filename:
            remaining = await _store_upload(part, store, remaining, uploads)
        elif part.name in ("task", "spec"):
            raw = await _read_part(part, MAX_FIELD_BYTES, "the task field")
            fields.update(_json_object(request, raw, "the task field"))
        elif part.name in SPEC_FIELDS:
            value = (await _read_part(part, MAX_FIELD_BYTES, part.name)).decode(errors="replace")
            env = part.name == "env"
            fields[part.name] = _json_object(request, value, "env") if env else value
        else:
            raise ApiError(f"unexpected form field {part.name!r}", code="invalid_form")
    return fields


async def discard_stored(request: web.Request, files: Sequence[InputFile]) -> None:
    """Delete what `files` put in the input store and no task adopted."""
    ids = [f.stored.id for f in files if f.stored is not None]
    await asyncio.shield(InputStore(database(request)).discard(ids))


async def read_task_request(
    request: web.Request, config: ControlPlaneConfig
) -> tuple[TaskSpec, list[InputFile]]:
    """The validated spec and every input file (uploaded, inline, fetched). Uploads
    are in the input store, staged: the caller adopts them or calls
    :func:`discard_stored`; when this raises, they are discarded already."""
    uploads: list[InputFile] = []
    try:
        return await _read_task_request(request, config, uploads)
    except BaseException:
        await discard_stored(request, uploads)
        raise


async def _read_task_request(
    request: web.Request, config: ControlPlaneConfig, uploads: list[InputFile]
) -> tuple[TaskSpec, list[InputFile]]:
    if request.content_type.startswith("multipart/"):
        try:
            data = await _read_multipart(request, config.task_input_max_bytes, uploads)
        except InputError as exc:
            raise ApiError(str(exc), code="invalid_input_file", status=exc.status) from exc
        except MALFORMED_PART as exc:  # no boundary, malformed parts
            log.info("invalid_form", method=request.method, path=request.path, reason=str(exc))
            raise ApiError(f"malformed multipart body: {exc}", code="invalid_form") from None
    else:
        raw = await request.read()
        if not raw:
            raise ApiError("a JSON request body is required", code="invalid_json")
        data = _json_object(request, raw, "the request body")
    spec = _validated(data)
    try:
        files = await gather_inputs(
            spec, uploads, task_fetch_policy(config), config.task_input_max_bytes
        )
    except InputError as exc:
        raise input_api_error(exc) from exc
    except (OutboundTooLarge, OutboundRefused, OutboundFailed) as exc:
        raise fetch_api_error(exc) from exc
    return spec, files


def input_api_error(exc: InputError) -> ApiError:
    """The API error for input files that cannot be used."""
    code = "payload_too_large" if exc.status == 413 else "invalid_input_file"
    return ApiError(str(exc), code=code, status=exc.status)


def fetch_api_error(exc: OutboundTooLarge | OutboundRefused | OutboundFailed) -> ApiError:
    """The API error for an input file that could not be fetched."""
    if isinstance(exc, OutboundTooLarge):
        return ApiError(str(exc), code="input_too_large", status=413, details=describe(exc))
    code = "url_refused" if isinstance(exc, OutboundRefused) else "url_fetch_failed"
    return Unprocessable(str(exc), code=code, details=describe(exc))
