"""/v1/templates: list and show (every account), add, replace, delete (admins).

The bundled templates are listed first and are read-only; the others live in the
`templates` table. A deployment keeps the resolved template it was made from, so
changing or deleting a template changes no running server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from controlplane.api.context import current_user, database
from controlplane.api.errors import ApiError, Conflict, NotFound
from controlplane.api.pagination import PageQuery, Pagination
from controlplane.db.tables import TemplateRow
from controlplane.templates.catalog import bundled_templates, template_from_body
from controlplane.templates.eggs import template_to_egg
from controlplane.templates.hcl import TemplateError, template_to_hcl
from controlplane.templates.model import Template


class TemplateSummary(BaseModel):
    """A template in a list."""

    id: str
    version: str
    name: str
    description: str
    bundled: bool


class TemplateList(BaseModel):
    """A page of templates: bundled ones first, then the others by id."""

    templates: list[TemplateSummary]
    pagination: Pagination


class TemplateDetails(BaseModel):
    """One template; for non-admins without the variables they may not see."""

    template: dict[str, Any]
    bundled: bool
    warnings: list[str] = Field(default_factory=list)


class TemplateQuery(BaseModel):
    """`format=hcl` or `format=egg` answers the template in that form instead."""

    format: Literal["json", "hcl", "egg"] = "json"


class DeletedTemplate(BaseModel):
    """The answer to delete."""

    message: str
    template_id: str


def _summary(template: Template, bundled: bool) -> TemplateSummary:
    return TemplateSummary(
        id=template.id,
        version=template.version,
        name=template.name,
        description=template.description,
        bundled=bundled,
    )


async def find_template(request: web.Request, template_id: str) -> tuple[Template, bool, list[str]]:
    """The template named `template_id`, whether it is bundled, and its import
    warnings; 404 when there is none."""
    bundled = await asyncio.to_thread(bundled_templates)
    if template_id in bundled:
        return bundled[template_id], True, []
    async with database(request).session() as session:
        row = await session.get(TemplateRow, template_id)
    if row is None:
        raise NotFound(f"no template {template_id!r}", code="template_not_found")
    return Template.model_validate(row.document), False, list(row.warnings)


async def list_templates(request: web.Request, query: PageQuery) -> TemplateList:
    """Every template, bundled ones first."""
    bundled = [_summary(t, True) for t in (await asyncio.to_thread(bundled_templates)).values()]
    async with database(request).session() as session:
        total = (await session.exec(select(func.count()).select_from(TemplateRow))).one()
        rows = (
            await session.exec(select(TemplateRow).order_by(col(TemplateRow.id)))
        ).all() if query.offset + query.limit > len(bundled) else []  # fmt: skip
    every = bundled + [_summary(Template.model_validate(r.document), False) for r in rows]
    page = every[query.offset : query.offset + query.limit]
    return TemplateList(templates=page, pagination=Pagination.of(query, len(bundled) + total))


async def get_template(request: web.Request, query: TemplateQuery) -> web.StreamResponse:
    """One template as JSON, HCL or a PTDL_v2 egg."""
    template, bundled, warnings = await find_template(request, request.match_info["id"])
    if not current_user(request).is_admin:
        hidden = [v for v in template.variables if v.user_viewable]
        template = template.model_copy(update={"variables": hidden})
    if query.format == "hcl":
        return web.Response(text=template_to_hcl(template), content_type="text/plain")
    if query.format == "egg":
        return web.json_response(template_to_egg(template))
    details = TemplateDetails(template=template.model_dump(), bundled=bundled, warnings=warnings)
    return web.Response(text=details.model_dump_json(), content_type="application/json")


async def _template_of_request(
    request: web.Request, template_id: str | None
) -> tuple[Template, list[str]]:
    text = (await request.read()).decode("utf-8", errors="replace")
    try:
        # Parsing (lark, pydantic) of a body up to the size limit: not on the event loop.
        return await asyncio.to_thread(
            template_from_body, text, request.content_type, template_id=template_id
        )
    except TemplateError as exc:
        raise ApiError(str(exc), code="invalid_template", details=exc.problems) from None


def _answer(template: Template, warnings: list[str], status: int) -> web.Response:
    body = TemplateDetails(template=template.model_dump(), bundled=False, warnings=warnings)
    return web.Response(status=status, text=body.model_dump_json(), content_type="application/json")


async def create_template(request: web.Request) -> web.StreamResponse:
    """Add a template from HCL or an egg / template in JSON or YAML (`?id=` names an
    imported egg). 409 when the id is taken; the answer lists import warnings."""
    template, warnings = await _template_of_request(request, request.query.get("id"))
    if template.id in await asyncio.to_thread(bundled_templates):
        raise Conflict(
            f"{template.id!r} is a bundled template: import it under another id (?id=, "
            "`encedeus templates import --id NEW FILE`)",
            code="template_exists",
        )
    async with database(request).transaction() as session:
        if await session.get(TemplateRow, template.id) is not None:
            raise Conflict(
                f"template {template.id!r} exists: import it under another id (?id=, "
                "`encedeus templates import --id NEW FILE`) or replace it (--replace)",
                code="template_exists",
            )
        session.add(_row(template, warnings, request))
    return _answer(template, warnings, 201)


async def replace_template(request: web.Request) -> web.StreamResponse:
    """Replace a template added over the API; running servers keep what they had."""
    template_id = request.match_info["id"]
    template, warnings = await _template_of_request(request, template_id)
    if template.id != template_id:
        raise ApiError(f"the body is template {template.id!r}, not {template_id!r}",
                       code="template_id_mismatch")  # fmt: skip
    async with _editable(request, template_id) as (session, row):
        row.version, row.name = template.version, template.name
        row.document, row.warnings = template.model_dump(), warnings
        row.updated_at = datetime.now(UTC)
        session.add(row)
    return _answer(template, warnings, 200)


async def delete_template(request: web.Request) -> DeletedTemplate:
    """Delete a template added over the API; deployments made from it keep running."""
    template_id = request.match_info["id"]
    async with _editable(request, template_id) as (session, row):
        await session.delete(row)
    return DeletedTemplate(message="Template deleted", template_id=template_id)


@contextlib.asynccontextmanager
async def _editable(
    request: web.Request, template_id: str
) -> AsyncIterator[tuple[AsyncSession, TemplateRow]]:
    """A transaction and the row of a template added over the API (409 for bundled
    ones, 404 for none)."""
    if template_id in await asyncio.to_thread(bundled_templates):
        raise Conflict("bundled templates are read-only", code="template_read_only")
    async with database(request).transaction() as session:
        row = await session.get(TemplateRow, template_id)
        if row is None:
            raise NotFound(f"no template {template_id!r}", code="template_not_found")
        yield session, row


def _row(template: Template, warnings: list[str], request: web.Request) -> TemplateRow:
    return TemplateRow(
        id=template.id,
        version=template.version,
        name=template.name,
        document=template.model_dump(),
        warnings=warnings,
        created_by=current_user(request).id,
    )
