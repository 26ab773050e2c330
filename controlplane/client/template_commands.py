"""`encedeus templates ls | show | import FILE`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from controlplane.client.commands import add_command, client_for, fail, out
from controlplane.client.render import field, table

# An egg or template file's suffix -> the Content-Type the API reads it as.
CONTENT_TYPES = {".json": "application/json", ".yaml": "application/yaml",
                 ".yml": "application/yaml"}  # fmt: skip


def list_templates(args: argparse.Namespace) -> int:
    """A table of the templates."""
    client = client_for(args)
    answer = client.call("GET", "/v1/templates", query={"page": args.page, "limit": args.limit})
    table(
        answer.get("templates", []),
        [
            ("ID", field("id")),
            ("VERSION", field("version")),
            ("NAME", field("name")),
            ("BUNDLED", lambda r: "yes" if r.get("bundled") else ""),
        ],
        sys.stdout,
    )
    return 0


def show(args: argparse.Namespace) -> int:
    """A template as HCL (default), JSON or a PTDL_v2 egg."""
    client = client_for(args)
    answer = client.send_text("GET", f"/v1/templates/{args.template}", None,
                              query={"format": args.format})  # fmt: skip
    out(answer.rstrip("\n") if isinstance(answer, str) else json.dumps(answer, indent=2))
    return 0


def import_template(args: argparse.Namespace) -> int:
    """Add a template from an HCL file or an egg (JSON/YAML); print what the import
    could not convert."""
    client = client_for(args)
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return fail(f"cannot read {args.file}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        return fail(f"cannot read {args.file}: not UTF-8 text")
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "text/plain")
    method, url = ("PUT", f"/v1/templates/{args.id}") if args.replace else ("POST", "/v1/templates")
    query: dict[str, Any] = {"id": args.id} if args.id and not args.replace else {}
    answer = client.send_text(method, url, text,
                              content_type=content_type, query=query)  # fmt: skip
    template = answer.get("template", {})
    out(f"Template {template.get('id')} version {template.get('version')} imported")
    for warning in answer.get("warnings", []):
        out(f"  not converted: {warning}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Register `templates` and its subcommands."""
    parser = subparsers.add_parser("templates", help="server templates (eggs)")
    commands = parser.add_subparsers(dest="templates_command", required=True)
    sub = add_command(commands, "ls", list_templates, "list the templates")
    sub.add_argument("--page", type=int, default=1)
    sub.add_argument("--limit", type=int, default=100)
    sub = add_command(commands, "show", show, "show a template")
    sub.add_argument("template")
    sub.add_argument("--format", choices=("hcl", "json", "egg"), default="hcl")
    sub = add_command(commands, "import", import_template, "add a template from HCL or an egg")
    sub.add_argument("file", help=".hcl, or an egg as .json / .yaml")
    sub.add_argument("--id", help="the template id (default: from the file)")
    sub.add_argument("--replace", action="store_true", help="replace template --id")
