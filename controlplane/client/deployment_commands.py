"""`encedeus deploy | ls | status | logs | scale | stop | start | restart | rm`."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controlplane.client.api import ApiClient, ClientError
from controlplane.client.commands import (
    add_command,
    add_container_command_flags,
    client_for,
    container_command,
    fail,
    out,
    resolve_deployment,
)
from controlplane.client.render import age, field, short_id, table


def parse_env(pairs: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings as a mapping; a pair without `=` is an error."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ClientError(f"environment variables are KEY=VALUE, not {pair!r}")
        env[key] = value
    return env


def _default_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0] or "app"


def port_argument(value: str) -> dict[str, Any]:
    """`--port 25565`, `25565/udp` or `27015/tcp+udp` as a deployment port."""
    number, slash, protocol = value.partition("/")
    if not number.isdigit() or (slash and protocol not in ("tcp", "udp", "tcp+udp")):
        raise argparse.ArgumentTypeError(f"{value!r} is not PORT or PORT/tcp|udp|tcp+udp")
    return {"port": int(number), "protocol": protocol or "tcp"}


def deploy(args: argparse.Namespace) -> int:
    """Create a deployment and (unless --detach) show progress until it runs."""
    client = client_for(args)
    if (args.image is None) == (args.template is None):
        return fail("give an image or --template NAME")
    body: dict[str, Any] = {
        "app_name": args.name or _default_name(args.image or args.template),
        "replicas": args.replicas,
        "env_vars": parse_env(args.env),
    }
    if args.template:
        body["template"] = args.template
        body["variables"] = parse_env(args.var)
        if args.image_label:
            body["image_label"] = args.image_label
    else:
        body["image"] = args.image
    if args.port:
        body["ports"] = [args.port]
    if args.cpu or args.memory:
        body["resources"] = {k: v for k, v in (("cpu", args.cpu), ("memory", args.memory)) if v}
    if command := container_command(args):
        body["command"] = command
    if args.pull_policy:
        body["pull_policy"] = args.pull_policy
    if args.registry_user:
        body["registry_auth"] = {
            "username": args.registry_user,
            "password": registry_password(),
        }
    try:
        created = client.call("POST", "/v1/deployments", body)
    except ClientError as exc:
        raise _explained(exc, body) from None
    out(f"Deployment {created['app_name']} created ({created['id']})")
    if args.detach:
        return 0
    return wait_until_running(client, created["id"], args.timeout, created["app_name"])


def _explained(exc: ClientError, body: Mapping[str, Any]) -> ClientError:
    """A create error with what to do next: another --name, the template list."""
    if exc.code == "app_name_taken":
        return ClientError(
            f"an app named {body['app_name']!r} exists: choose another with --name "
            f"(HTTP {exc.status})",
            status=exc.status,
            code=exc.code,
        )
    if exc.code == "template_not_found":
        return ClientError(f"{exc} (see `encedeus templates ls`)", status=exc.status, code=exc.code)
    return exc


def registry_password() -> str:
    """ENCEDEUS_REGISTRY_PASSWORD, else a prompt on a terminal or one line of stdin
    (never a command-line argument: those are visible to every user of the machine)."""
    password = os.environ.get("ENCEDEUS_REGISTRY_PASSWORD")
    if password is not None:
        return password
    if sys.stdin.isatty():
        return getpass.getpass("registry password: ")
    return sys.stdin.readline().rstrip("\n")


def pull_line(instance: Mapping[str, Any]) -> str | None:
    """`pulling IMAGE [####......] 12.3/50.0 MiB, 2/5 layers` for a replica whose
    image is being pulled."""
    pull = instance.get("pull")
    if not pull:
        return None
    done, total = int(pull.get("bytes_done", 0)), int(pull.get("bytes_total", 0))
    filled = int(20 * done / total) if total else 0
    bar = "#" * filled + "." * (20 - filled)
    return (
        f"  pulling {pull.get('image', '?')} [{bar}] {done / 2**20:.1f}/{total / 2**20:.1f} MiB, "
        f"{pull.get('layers_done', 0)}/{pull.get('layers_total', 0)} layers"
    )


def _poll_status(
    client: ApiClient, deployment_id: str, timeout: float, settled: Callable[[Any], int | None]
) -> int | None:
    """Read the deployment's status every half second until `settled` returns an exit
    code; None when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = settled(client.call("GET", f"/v1/deployments/{deployment_id}/status"))
        if code is not None:
            return code
        time.sleep(0.5)
    return None


def wait_until_running(
    client: ApiClient, deployment_id: str, timeout: float, app_name: str = "APP"
) -> int:
    """Poll the status until every replica is ready; 1 on failure or timeout. The
    deployment's error is printed as soon as the control plane records one; a final
    one (status `failed`) ends the wait at once."""
    shown = ""
    reported = ""

    def settled(status: Any) -> int | None:
        nonlocal shown, reported
        replicas = status.get("replicas", {})
        ready, desired = int(replicas.get("ready", 0)), int(replicas.get("desired", 0))
        line = f"  {status.get('status', '?')}: {ready}/{desired} replicas ready"
        pulls = [p for i in status.get("instances", []) if (p := pull_line(i))]
        line = "\n".join([line, *pulls])
        if line != shown:
            out(line)
            shown = line
        if status.get("status") == "failed":
            return _fail_with(client, deployment_id, app_name)
        if desired and ready >= desired:
            out("Running.")
            return 0
        error = _recorded_error(client.call("GET", f"/v1/deployments/{deployment_id}"))
        if error and error != reported:
            out(f"  waiting: {error}; retrying (Ctrl-C to stop waiting; the deployment stays)")
            reported = error
        return None

    code = _poll_status(client, deployment_id, timeout, settled)
    if code is None:
        return fail(f"not running after {timeout:g}s (see `encedeus status {app_name}`)")
    return code


def _recorded_error(detail: Mapping[str, Any]) -> str:
    """`message (code)` of the deployment's recorded error; empty when it has none."""
    message = detail.get("error_message") or ""
    code = detail.get("error_code")
    return f"{message} ({code})" if message and code else message


def wait_until_stopped(client: ApiClient, deployment_id: str, timeout: float) -> int:
    """Poll the status until no replica runs (stop commands may take their timeout)."""

    def settled(status: Any) -> int | None:
        if any(i.get("state") != "offline" for i in status.get("instances", [])):
            return None
        out("Stopped.")
        return 0

    code = _poll_status(client, deployment_id, timeout, settled)
    if code is None:
        sys.stderr.write(f"error: replicas still running after {timeout:g}s\n")
        return 1
    return code


def _fail_with(client: ApiClient, deployment_id: str, app_name: str) -> int:
    detail = client.call("GET", f"/v1/deployments/{deployment_id}")
    reason = _recorded_error(detail) or f"see `encedeus status {app_name}`"
    return fail(f"the deployment failed: {reason}")


def list_deployments(args: argparse.Namespace) -> int:
    """A table of your deployments."""
    client = client_for(args)
    query = {"page": args.page, "limit": args.limit, "status": args.status}
    answer = client.call("GET", "/v1/deployments", query=query)
    rows = answer.get("deployments", [])
    table(
        rows,
        [
            ("ID", lambda r: short_id(r.get("id"))),
            ("NAME", field("app_name")),
            ("IMAGE", field("image")),
            ("STATUS", field("status")),
            ("REPLICAS", field("replicas")),
            ("URL", field("url")),
            ("CREATED", lambda r: age(r.get("created_at"))),
        ],
        sys.stdout,
    )
    pages = answer.get("pagination", {})
    if pages.get("total_pages", 1) > 1:
        out(f"page {pages.get('page')} of {pages.get('total_pages')} ({pages.get('total')} total)")
    return 0


def print_log_line(raw: bytes | str) -> None:
    """One streamed log line: a JSON object with `message`, or plain text."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    text = text.rstrip("\n")
    if text.startswith("{"):
        try:
            entry = json.loads(text)
            text = str(entry.get("message", entry.get("text", text)))
        except ValueError:
            pass
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def logs(args: argparse.Namespace) -> int:
    """Print a deployment's logs; with -f keep following."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    path = f"/v1/deployments/{deployment['id']}/logs"
    if args.follow:
        for line in client.stream(path, query={"tail": args.tail, "follow": "true"}):
            print_log_line(line)
        return 0
    answer = client.call("GET", path, query={"tail": args.tail})
    for entry in answer.get("logs", []):
        print_log_line(json.dumps(entry) if isinstance(entry, dict) else str(entry))
    return 0


def status(args: argparse.Namespace) -> int:
    """A deployment's replicas: server id, node, state, and the SFTP login of each."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    answer = client.call("GET", f"/v1/deployments/{deployment['id']}/status")
    username = client.call("GET", "/v1/user/profile")["username"]
    counts = answer["replicas"]
    out(
        f"{deployment['app_name']}: {answer['status']}, health {answer['health']}, "
        f"{counts['ready']}/{counts['desired']} ready, restarts {answer['restart_count']}"
    )
    detail = client.call("GET", f"/v1/deployments/{deployment['id']}")
    if detail.get("url"):  # None when the app has no web port
        out(f"  url: {detail['url']}/")
    if detail.get("error_message"):
        out(f"  last error: {detail['error_message']}")
    table(
        answer.get("instances", []),
        [
            ("SERVER", field("id")),
            ("NODE", lambda r: short_id(r.get("node_id"))),
            ("STATE", field("state")),
            ("HEALTH", field("health")),
            ("PORTS", published_ports),
            ("SFTP LOGIN", lambda r: f"{username}.{str(r.get('id'))[:8]}"),
        ],
        sys.stdout,
    )
    return 0


def published_ports(replica: Mapping[str, Any]) -> str:
    """`30000->8080,30001->25565/udp,...`: the node's port, then the container's (and
    its protocol unless TCP)."""
    published = replica.get("ports") or []
    return (
        ",".join(
            f"{p['host_port']}->{p['container_port']}"
            + ("" if p.get("protocol", "tcp") == "tcp" else f"/{p['protocol']}")
            for p in published
        )
        or "-"
    )


def scale(args: argparse.Namespace) -> int:
    """Set the number of replicas."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    body = {"replicas": args.replicas}
    answer = client.call("PATCH", f"/v1/deployments/{deployment['id']}/scale", body)
    out(f"{deployment['app_name']} scaled to {answer.get('replicas', args.replicas)} replicas")
    return 0


def _action(name: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        client = client_for(args)
        deployment = resolve_deployment(client, args.deployment)
        answer = client.call("POST", f"/v1/deployments/{deployment['id']}/{name}")
        if name == "stop" and not args.detach:  # its replicas get their stop timeout
            out(f"stopping (up to {_stop_timeout(client, deployment):g}s)…")
            return wait_until_stopped(client, deployment["id"], args.timeout)
        out((answer or {}).get("message") or f"{deployment['app_name']}: {name} requested")
        if args.detach:
            return 0
        return wait_until_running(client, deployment["id"], args.timeout, deployment["app_name"])

    run.__doc__ = f"{name.capitalize()} a deployment."
    return run


def _stop_timeout(client: ApiClient, deployment: Mapping[str, Any]) -> float:
    """Seconds a replica is given to stop before it is killed (the deployment's
    stop_timeout)."""
    detail = client.call("GET", f"/v1/deployments/{deployment['id']}")
    return float(detail.get("stop_timeout") or 0)


def remove(args: argparse.Namespace) -> int:
    """Delete a deployment and its containers; its data too with --delete-data."""
    client = client_for(args)
    deployment = resolve_deployment(client, args.deployment)
    query = {"delete_data": "true"} if args.delete_data else None
    answer = client.call("DELETE", f"/v1/deployments/{deployment['id']}", query=query) or {}
    name = deployment["app_name"]
    out(answer.get("message") or f"{name} deleted")
    if answer.get("data_deleted"):
        out("Its data was deleted.")
    elif args.delete_data:
        out("Its data is deleted when every node that holds a copy is back.")
    else:
        out(
            "Its data was kept on its nodes (an admin finds it under GET "
            "/v1/nodes/NODE/orphaned-volumes); `encedeus rm --delete-data APP` deletes "
            "an app's data with it."
        )
    return 0


def add_commands(subparsers: Any) -> None:
    """Add the deployment commands."""
    parser = add_command(subparsers, "deploy", deploy, "run an image or a template")
    parser.add_argument("image", nargs="?", help="the image (or give --template)")
    parser.add_argument("--template", "-t", help="a template id (encedeus templates ls)")
    parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE",
                        help="a template variable")  # fmt: skip
    parser.add_argument("--image-label", help="which of the template's images")
    add_container_command_flags(parser)
    parser.add_argument("--name", help="app name (default: from the image)")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--port", type=port_argument, metavar="PORT[/PROTOCOL]",
                        help="container port to publish; /udp or /tcp+udp for UDP")  # fmt: skip
    parser.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cpu", help='CPU, e.g. "500m" or "1"')
    parser.add_argument("--memory", help='memory, e.g. "128Mi"')
    parser.add_argument(
        "--pull-policy", choices=("if_not_present", "always", "never"), help="when to pull"
    )
    parser.add_argument(
        "--registry-user",
        help="registry username; the password comes from ENCEDEUS_REGISTRY_PASSWORD or stdin",
    )
    parser.add_argument("--detach", "-d", action="store_true", help="do not wait")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait")

    parser = add_command(subparsers, "ls", list_deployments, "list your deployments")
    parser.add_argument("--status", help="pending, running, stopped or failed")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50)

    parser = add_command(subparsers, "logs", logs, "show a deployment's logs")
    parser.add_argument("deployment", help="app name or id")
    parser.add_argument("--follow", "-f", action="store_true")
    parser.add_argument("--tail", type=int, default=100)

    parser = add_command(subparsers, "status", status, "show a deployment's replicas")
    parser.add_argument("deployment", help="app name or id")

    parser = add_command(subparsers, "scale", scale, "set a deployment's replicas")
    parser.add_argument("deployment")
    parser.add_argument("replicas", type=int)

    for name in ("stop", "start", "restart"):
        parser = add_command(subparsers, name, _action(name), f"{name} a deployment")
        parser.add_argument("deployment")
        parser.add_argument("--detach", "-d", action="store_true", help="do not wait")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")

    parser = add_command(subparsers, "rm", remove, "delete a deployment")
    parser.add_argument("deployment")
    parser.add_argument(
        "--delete-data", action="store_true", help="also delete the replicas' data directories"
    )
