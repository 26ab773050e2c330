"""Every call the agent makes to the control plane, in one place.

The wire contracts are in docs/protocols/ (sftp.md for `sftp_auth`, exec.md for
`exec_ended`). Calls are
authenticated with `Authorization: Bearer <node secret>`; errors come back in the
shared envelope `{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

SFTP_AUTH_PATH = "/v1/remote/sftp/auth"
ENROLL_PATH = "/v1/nodes/enroll"
EXEC_END_PATH = "/v1/remote/exec-sessions/{session_id}/end"
TASK_FILE_PREFIX = "/v1/remote/task-files/"
# A task input file may be GiBs: no total deadline, but the control plane must keep
# sending (seconds without a byte).
INPUT_READ_TIMEOUT = 60.0
PERMISSION_FILE_READ = "file.read"
PERMISSION_FILE_WRITE = "file.write"


@dataclass(frozen=True, slots=True)
class SFTPGrant:
    """What the control plane allows one account on one server over SFTP."""

    server_id: str
    user_id: str
    permissions: frozenset[str]
    read_only: bool = False
    disk_limit_bytes: int = 0  # 0: no limit
    volume_id: str = ""  # the slot's volume; empty (older control planes): the server id

    @property
    def volume(self) -> str:
        """The name of the data directory the grant opens."""
        return self.volume_id or self.server_id

    @property
    def can_read(self) -> bool:
        return PERMISSION_FILE_READ in self.permissions

    @property
    def can_write(self) -> bool:
        return PERMISSION_FILE_WRITE in self.permissions and not self.read_only


class ControlPlaneError(Exception):
    """A call the control plane answered with an error, or could not answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def definitive(self) -> bool:
        """True when the answer is a refusal (401/403/404), not an outage."""
        return self.status in (401, 403, 404)


class ControlPlane(Protocol):
    """The control plane as the agent sees it.

    Every method raises ControlPlaneError: `definitive` for a refusal (credentials,
    access, unknown server), otherwise for an outage (network, timeout, 5xx).
    """

    async def sftp_auth(
        self,
        username: str,
        *,
        client_address: str,
        password: str | None = None,
        public_key: str | None = None,
        revalidate: bool = False,
    ) -> SFTPGrant:
        """Check an SFTP login (exactly one of password / public_key) and return the grant."""
        ...

    async def enroll(self, join_token: str, registration: dict[str, Any]) -> tuple[str, str]:
        """Exchange the one-time join token for (node id, node secret). `registration`
        carries grpc_address, http_address, sftp_address, fingerprint, port range."""
        ...

    async def exec_ended(
        self, session_id: str, *, started_at: float | None, exit_code: int | None, reason: str
    ) -> None:
        """Record the end of exec session `session_id` (the exec token's `jti`):
        when its command started (epoch seconds; None if it never did), its exit code
        (None if unknown) and why it ended (`exited`, `disconnected`, `failed: ...`)."""
        ...

    def task_input(self, source: str) -> AbstractAsyncContextManager[aiohttp.StreamReader]:
        """The body of a task's input file named by a CreateServer `source` (a path
        under /v1/remote/task-files/), streamed; errors while it is read, too, come
        out as ControlPlaneError."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


def _error_of(status: int, answer: object) -> ControlPlaneError:
    """The ControlPlaneError for a non-200 answer (its JSON envelope, if any)."""
    error = answer.get("error") if isinstance(answer, dict) else None
    error = error if isinstance(error, dict) else {}
    return ControlPlaneError(
        status, str(error.get("code", "http_error")), str(error.get("message", ""))
    )


class HttpControlPlane:
    """ControlPlane over HTTP (aiohttp) against `base_url`.

    `node_secret` may be replaced after enrolment (assign the attribute).
    """

    def __init__(self, base_url: str, node_secret: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.node_secret = node_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _post(self, path: str, body: dict[str, Any], *, bearer: str) -> dict[str, Any]:
        """POST JSON and return the JSON answer, or raise ControlPlaneError."""
        headers = {"Authorization": f"Bearer {bearer}"}
        try:
            async with self._http().post(
                self.base_url + path, json=body, headers=headers
            ) as response:
                status = response.status
                try:
                    answer = await response.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ControlPlaneError(0, "unreachable", str(exc) or type(exc).__name__) from exc
        if status != 200:
            raise _error_of(status, answer)
        if not isinstance(answer, dict):
            raise ControlPlaneError(status, "bad_answer", "expected a JSON object")
        return answer

    async def sftp_auth(
        self,
        username: str,
        *,
        client_address: str,
        password: str | None = None,
        public_key: str | None = None,
        revalidate: bool = False,
    ) -> SFTPGrant:
        if (password is None) == (public_key is None):
            raise ValueError("give exactly one of password and public_key")
        body: dict[str, Any] = {
            "username": username,
            "client_address": client_address,
            "revalidate": revalidate,
        }
        if password is not None:
            body["password"] = password
        else:
            body["public_key"] = public_key
        answer = await self._post(SFTP_AUTH_PATH, body, bearer=self.node_secret)
        return parse_sftp_grant(answer)

    async def exec_ended(
        self, session_id: str, *, started_at: float | None, exit_code: int | None, reason: str
    ) -> None:
        body = {"started_at": started_at, "exit_code": exit_code, "reason": reason[:200]}
        path = EXEC_END_PATH.format(session_id=quote(session_id, safe=""))
        await self._post(path, body, bearer=self.node_secret)

    @contextlib.asynccontextmanager
    async def task_input(self, source: str) -> AsyncIterator[aiohttp.StreamReader]:
        if not source.startswith(TASK_FILE_PREFIX) or "?" in source or "#" in source:
            raise ControlPlaneError(0, "bad_source", f"not a task input file: {source!r}")
        headers = {"Authorization": f"Bearer {self.node_secret}"}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout.total, sock_read=INPUT_READ_TIMEOUT
        )
        try:
            async with self._http().get(
                self.base_url + source, headers=headers, timeout=timeout
            ) as response:
                if response.status != 200:
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = None
                    raise _error_of(response.status, answer)
                yield response.content
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ControlPlaneError(0, "unreachable", str(exc) or type(exc).__name__) from exc

    async def enroll(self, join_token: str, registration: dict[str, Any]) -> tuple[str, str]:
        answer = await self._post(
            ENROLL_PATH, {**registration, "join_token": join_token}, bearer=join_token
        )
        node_id, secret = answer.get("node_id"), answer.get("node_secret")
        if not (isinstance(node_id, str) and node_id and isinstance(secret, str) and secret):
            raise ControlPlaneError(200, "bad_answer", "enrolment answer lacks node_id/node_secret")
        self.node_secret = secret
        return node_id, secret


def parse_sftp_grant(answer: dict[str, Any]) -> SFTPGrant:
    """The grant in a 200 answer of /v1/remote/sftp/auth (see docs/protocols/sftp.md)."""
    try:
        server_id = answer["server_id"]
        user_id = answer["user_id"]
        permissions = answer.get("permissions", [PERMISSION_FILE_READ, PERMISSION_FILE_WRITE])
        read_only = answer.get("read_only", False)
        limit = answer.get("disk_limit_bytes", 0) or 0
        volume_id = answer.get("volume_id") or ""
        if not (
            isinstance(server_id, str)
            and server_id
            and isinstance(volume_id, str)
            and isinstance(permissions, list)
            and all(isinstance(p, str) for p in permissions)
            and isinstance(read_only, bool)
            and isinstance(limit, int)
            and limit >= 0
        ):
            raise TypeError
    except (KeyError, TypeError) as exc:
        raise ControlPlaneError(200, "bad_answer", "malformed SFTP grant") from exc
    return SFTPGrant(
        server_id=server_id,
        user_id=str(user_id),
        permissions=frozenset(permissions),
        read_only=read_only,
        disk_limit_bytes=limit,
        volume_id=volume_id,
    )
