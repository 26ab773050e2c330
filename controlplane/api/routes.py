"""The whole REST route table, in one place.

Add a resource by writing its module (typed handlers, see `endpoints.py`) and
listing its routes here. More specific paths go before `{id}` patterns.
"""

from __future__ import annotations

from controlplane.api import (
    api_keys,
    auth,
    backups,
    deployment_actions,
    deployment_logs,
    deployment_observe,
    deployment_templates,
    deployments,
    domains,
    events,
    exec_sessions,
    files,
    health,
    metrics,
    moves,
    nodes,
    notifications,
    openapi,
    profile,
    quotas,
    remote,
    repos,
    ssh_keys,
    task_files,
    tasks,
    templates,
    users,
    volumes,
    webhooks,
)
from controlplane.api.authentication import ADMIN, PUBLIC, USER
from controlplane.api.endpoints import ApiRoutes
from controlplane.api.websocket_auth import SOCKET_USER


def build_routes() -> ApiRoutes:
    """Every route of the public API."""
    r = ApiRoutes()
    r.add("GET", "/health", health.health, access=PUBLIC, tag="meta", errors=(503,))
    r.add("GET", "/metrics", metrics.serve_metrics, access=PUBLIC, tag="meta")
    r.add("GET", "/v1/openapi.json", openapi.serve_openapi, access=PUBLIC, tag="meta")

    r.add("POST", "/v1/auth/register", auth.register, access=PUBLIC, status=201, tag="auth",
          errors=(403, 409), rate_limit=True)  # fmt: skip
    r.add("POST", "/v1/auth/login", auth.login, access=PUBLIC, tag="auth",
          errors=(401,), rate_limit=True)  # fmt: skip
    r.add("POST", "/v1/auth/refresh", auth.refresh, access=PUBLIC, tag="auth", errors=(401,))
    r.add("POST", "/v1/auth/logout", auth.logout, access=USER, tag="auth")
    r.add("POST", "/v1/auth/forgot-password", auth.forgot_password, access=PUBLIC, tag="auth",
          rate_limit=True)  # fmt: skip
    r.add("POST", "/v1/auth/reset-password", auth.reset_password, access=PUBLIC, tag="auth",
          rate_limit=True)  # fmt: skip

    r.add("GET", "/v1/user/profile", profile.get_profile, access=USER, tag="profile")
    r.add("PUT", "/v1/user/profile", profile.update_profile, access=USER, tag="profile",
          errors=(409,))  # fmt: skip
    r.add("PUT", "/v1/user/password", profile.change_password, access=USER, tag="profile")
    r.add("GET", "/v1/user/quota", quotas.get_own_quota, access=USER, tag="profile")
    r.add("GET", "/v1/user/ssh-keys", ssh_keys.list_ssh_keys, access=USER, tag="ssh-keys")
    r.add("POST", "/v1/user/ssh-keys", ssh_keys.add_ssh_key, access=USER, status=201,
          tag="ssh-keys", errors=(409, 422))  # fmt: skip
    r.add("DELETE", "/v1/user/ssh-keys/{id}", ssh_keys.delete_ssh_key, access=USER,
          tag="ssh-keys")  # fmt: skip

    r.add("POST", "/v1/api-keys", api_keys.create_api_key, access=USER, status=201,
          tag="api-keys")  # fmt: skip
    r.add("GET", "/v1/api-keys", api_keys.list_api_keys, access=USER, tag="api-keys")
    r.add("DELETE", "/v1/api-keys/{id}", api_keys.revoke_api_key, access=USER, tag="api-keys")

    r.add("GET", "/v1/users", users.list_users, access=ADMIN, tag="users")
    r.add("GET", "/v1/users/@me", profile.get_profile, access=USER, tag="users")
    r.add("PUT", "/v1/users/@me", profile.update_profile, access=USER, tag="users",
          errors=(409,))  # fmt: skip
    r.add("GET", "/v1/users/{id}", users.get_user, access=ADMIN, tag="users")
    r.add("PATCH", "/v1/users/{id}", users.change_user, access=ADMIN, tag="users",
          errors=(404, 409))  # fmt: skip
    r.add("GET", "/v1/users/{id}/quota", quotas.get_quota, access=USER, tag="users",
          errors=(403, 404))  # fmt: skip
    r.add("PUT", "/v1/users/{id}/quota", quotas.set_quota, access=ADMIN, tag="users",
          errors=(404,))  # fmt: skip
    _orchestration_routes(r)
    _template_routes(r)
    r.add("POST", "/v1/tasks", tasks.create_task, access=USER, status=201, tag="tasks",
          errors=(403, 413, 422))  # fmt: skip
    r.add("GET", "/v1/tasks", tasks.list_tasks, access=USER, tag="tasks")
    r.add("GET", "/v1/tasks/{id}", tasks.get_task, access=USER, tag="tasks", errors=(404,))
    r.add("POST", "/v1/tasks/{id}", tasks.start_task, access=USER, status=204, tag="tasks",
          errors=(202, 404, 409, 422, 502, 503))  # fmt: skip
    r.add("GET", "/v1/tasks/{id}/status", tasks.task_status, access=USER, tag="tasks",
          errors=(404,))  # fmt: skip
    r.add("GET", "/v1/tasks/{id}/logs", tasks.task_logs, access=USER, tag="tasks", errors=(404,))
    r.add("DELETE", "/v1/tasks/{id}", tasks.delete_task, access=USER, tag="tasks", errors=(404,))

    r.add("POST", "/v1/repos", repos.add_repo, access=USER, status=201, tag="repos",
          errors=(409, 422, 502, 503))  # fmt: skip
    r.add("GET", "/v1/repos", repos.list_repos, access=USER, tag="repos")
    r.add("PATCH", "/v1/repos", repos.check_repos, access=USER, tag="repos", errors=(429,))
    r.add("GET", "/v1/repos/{id}", repos.get_repo, access=USER, tag="repos", errors=(404,))
    r.add("DELETE", "/v1/repos/{id}", repos.delete_repo, access=USER, tag="repos", errors=(404,))

    r.add("POST", "/v1/webhooks", webhooks.create_webhook, access=USER, status=201,
          tag="notifications", errors=(409, 422))  # fmt: skip
    r.add("GET", "/v1/webhooks", webhooks.list_webhooks, access=USER, tag="notifications")
    r.add("DELETE", "/v1/webhooks/{id}", webhooks.delete_webhook, access=USER,
          tag="notifications", errors=(404,))  # fmt: skip
    r.add("GET", "/v1/webhooks/{id}/deliveries", webhooks.list_deliveries, access=USER,
          tag="notifications", errors=(404,))  # fmt: skip
    r.add("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", webhooks.replay_delivery,
          access=USER, tag="notifications", errors=(404, 409))  # fmt: skip
    r.add("GET", "/v1/events", events.list_events, access=USER, tag="notifications",
          errors=(400, 410))  # fmt: skip
    r.add("GET", "/v1/ws/notifications", notifications.notifications_socket, access=PUBLIC,
          tag="notifications")  # fmt: skip
    r.add("GET", "/v1/ws/health", notifications.health_socket, access=PUBLIC,
          tag="notifications")  # fmt: skip
    r.add("GET", "/v1/notifications/test", notifications.send_test_notification, access=USER,
          tag="notifications")  # fmt: skip
    r.add("GET", "/v1/notifications/stats", notifications.notification_stats, access=USER,
          tag="notifications")  # fmt: skip
    return r


def _template_routes(r: ApiRoutes) -> None:
    """Templates: every account reads them, admins add, replace and delete."""
    t = "/v1/templates/{id}"
    r.add("GET", "/v1/templates", templates.list_templates, access=USER, tag="templates")
    r.add("GET", t, templates.get_template, access=USER, tag="templates", errors=(404,))
    r.add("POST", "/v1/templates", templates.create_template, access=ADMIN, status=201,
          tag="templates", errors=(409,))  # fmt: skip
    r.add("PUT", t, templates.replace_template, access=ADMIN, tag="templates",
          errors=(404, 409))  # fmt: skip
    r.add("DELETE", t, templates.delete_template, access=ADMIN, tag="templates",
          errors=(404, 409))  # fmt: skip


def _backup_routes(r: ApiRoutes, d: str) -> None:
    """A deployment's backups and backup policy (owner or admin)."""
    b = f"{d}/backups/{{backup_id}}"
    r.add("POST", f"{d}/backups", backups.create_backup, access=USER, status=202,
          tag="backups", errors=(400, 404, 409, 503))  # fmt: skip
    r.add("GET", f"{d}/backups", backups.list_backups, access=USER, tag="backups",
          errors=(404,))  # fmt: skip
    r.add("GET", b, backups.get_backup, access=USER, tag="backups", errors=(404,))
    r.add("PATCH", b, backups.change_backup, access=USER, tag="backups", errors=(404,))
    r.add("DELETE", b, backups.delete_backup, access=USER, tag="backups",
          errors=(404, 409, 503))  # fmt: skip
    r.add("POST", f"{b}/restore", backups.restore_backup, access=USER, status=202,
          tag="backups", errors=(404, 409, 503))  # fmt: skip
    r.add("GET", f"{b}/download", backups.download_backup, access=USER, tag="backups",
          errors=(404, 409, 503))  # fmt: skip
    r.add("GET", f"{d}/backup-policy", backups.get_backup_policy, access=USER, tag="backups",
          errors=(404,))  # fmt: skip
    r.add("PUT", f"{d}/backup-policy", backups.put_backup_policy, access=USER, tag="backups",
          errors=(404,))  # fmt: skip


def _orchestration_routes(r: ApiRoutes) -> None:
    """Nodes (admin, plus the agent's enrolment), deployments (owner only), and the
    agent-facing /v1/remote calls (node secret)."""
    r.add("POST", "/v1/nodes/enroll", nodes.enroll_node, access=PUBLIC, tag="nodes",
          errors=(401,), rate_limit=True)  # fmt: skip
    r.add("POST", "/v1/nodes", nodes.create_node, access=ADMIN, status=201, tag="nodes",
          errors=(409,))  # fmt: skip
    r.add("GET", "/v1/nodes", nodes.list_nodes, access=ADMIN, tag="nodes")
    r.add("GET", "/v1/nodes/{id}", nodes.get_node, access=ADMIN, tag="nodes", errors=(404,))
    r.add("DELETE", "/v1/nodes/{id}", nodes.delete_node, access=ADMIN, tag="nodes",
          errors=(404,))  # fmt: skip
    r.add("POST", "/v1/nodes/{id}/drain", nodes.drain_node, access=ADMIN, tag="nodes",
          errors=(404,))  # fmt: skip
    r.add("DELETE", "/v1/nodes/{id}/drain", nodes.undrain_node, access=ADMIN, tag="nodes",
          errors=(404,))  # fmt: skip
    r.add("GET", "/v1/nodes/{id}/orphaned-volumes", volumes.node_orphaned_volumes,
          access=ADMIN, tag="nodes", errors=(404,))  # fmt: skip
    r.add("POST", "/v1/remote/sftp/auth", remote.sftp_auth, access=PUBLIC, tag="remote",
          errors=(401, 404))  # fmt: skip
    r.add("POST", "/v1/remote/exec-sessions/{id}/end", exec_sessions.end_exec_session,
          access=PUBLIC, tag="remote", errors=(401, 404, 409))  # fmt: skip
    r.add("GET", "/v1/remote/task-files/{id}", task_files.fetch_task_file, access=PUBLIC,
          tag="remote", errors=(401, 404))  # fmt: skip

    d = "/v1/deployments/{id}"
    r.add("POST", "/v1/deployments", deployments.create_deployment, access=USER, status=201,
          tag="deployments", errors=(403, 409, 422))  # fmt: skip
    r.add("GET", "/v1/deployments", deployments.list_deployments, access=USER,
          tag="deployments")  # fmt: skip
    r.add("GET", d, deployments.get_deployment, access=USER, tag="deployments", errors=(404,))
    r.add("PUT", d, deployments.update_deployment, access=USER, tag="deployments",
          errors=(403, 404, 422))  # fmt: skip
    r.add("DELETE", d, deployments.delete_deployment, access=USER, tag="deployments",
          errors=(404,))  # fmt: skip
    r.add("PATCH", f"{d}/scale", deployments.scale_deployment, access=USER,
          tag="deployments", errors=(403, 404))  # fmt: skip
    r.add("PUT", f"{d}/variables", deployment_templates.update_variables, access=USER,
          tag="deployments", errors=(403, 404, 409, 422))  # fmt: skip
    r.add("POST", f"{d}/reinstall", deployment_templates.reinstall_deployment, access=USER,
          tag="deployments", errors=(404, 409))  # fmt: skip
    for verb, handler in (
        ("start", deployment_actions.start_deployment),
        ("stop", deployment_actions.stop_deployment),
        ("restart", deployment_actions.restart_deployment),
        ("kill", deployment_actions.kill_deployment),
    ):
        r.add("POST", f"{d}/{verb}", handler, access=USER, tag="deployments",
              errors=(404, 409))  # fmt: skip
    r.add("POST", f"{d}/domains", domains.add_domain, access=USER, status=201,
          tag="domains", errors=(404, 409))  # fmt: skip
    r.add("GET", f"{d}/domains", domains.list_domains, access=USER, tag="domains",
          errors=(404,))  # fmt: skip
    r.add("POST", f"{d}/domains/{{domain}}/verify", domains.verify_domain_claim, access=USER,
          tag="domains", errors=(404, 409, 422))  # fmt: skip
    r.add("DELETE", f"{d}/domains/{{domain}}", domains.delete_domain, access=USER,
          tag="domains", errors=(404,))  # fmt: skip
    r.add("GET", "/v1/ingress/ask", domains.ask, access=PUBLIC, tag="domains", errors=(404,))
    r.add("POST", f"{d}/command", deployment_actions.send_command, access=USER,
          tag="deployments", errors=(404, 409))  # fmt: skip
    r.add("GET", f"{d}/console", deployment_actions.console_access, access=USER,
          tag="deployments", errors=(404, 503))  # fmt: skip
    r.add("GET", f"{d}/replicas/{{ordinal}}/exec", exec_sessions.exec_access, access=USER,
          tag="deployments", errors=(404, 503))  # fmt: skip
    r.add("GET", f"{d}/exec-sessions", exec_sessions.list_exec_sessions, access=USER,
          tag="deployments", errors=(404,))  # fmt: skip
    f = f"{d}/replicas/{{ordinal}}/files"
    r.add("GET", f, files.list_files, access=USER, tag="files", errors=(404, 503))
    r.add("GET", f"{f}/stat", files.stat_file, access=USER, tag="files", errors=(404, 503))
    r.add("POST", f"{f}/upload-url", files.upload_url, access=USER, tag="files",
          errors=(403, 404, 503))  # fmt: skip
    r.add("GET", f"{f}/download-url", files.download_url, access=USER, tag="files",
          errors=(404, 503))  # fmt: skip
    for operation, operate in (
        ("mkdir", files.make_directory),
        ("rename", files.rename_file),
        ("copy", files.copy_file),
        ("delete", files.delete_file),
        ("chmod", files.change_mode),
        ("compress", files.compress_files),
        ("decompress", files.decompress_file),
        ("pull", files.pull_file),
    ):
        r.add("POST", f"{f}/{operation}", operate, access=USER, tag="files",
              errors=(403, 404, 409, 413, 422, 502, 503, 507))  # fmt: skip
    _backup_routes(r, d)
    r.add("GET", f"{d}/status", deployment_observe.deployment_status, access=USER,
          tag="deployments", errors=(404,))  # fmt: skip
    r.add("GET", f"{d}/orphaned-volumes", volumes.deployment_orphaned_volumes, access=USER,
          tag="deployments", errors=(404,))  # fmt: skip
    r.add("POST", f"{d}/replicas/{{ordinal}}/move", moves.move_replica, access=USER,
          status=202, tag="deployments", errors=(404, 409))  # fmt: skip
    r.add("GET", f"{d}/metrics", deployment_observe.deployment_metrics, access=USER,
          tag="deployments", errors=(404,))  # fmt: skip
    r.add("GET", f"{d}/logs", deployment_logs.deployment_logs, access=USER,
          tag="deployments", errors=(404,))  # fmt: skip
    r.add("GET", f"{d}/logs/stream", deployment_logs.deployment_logs_stream,
          access=SOCKET_USER, tag="deployments", errors=(404,))  # fmt: skip
