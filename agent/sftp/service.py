"""The agent's SFTP endpoint: listener, logins, live sessions, revalidation, revocation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncssh

from agent.controlplane_client import ControlPlane, ControlPlaneError, SFTPGrant
from agent.sftp.host_key import load_or_create_host_key
from agent.sftp.login import Credential, LiveSession, SFTPLogin, openssh_key_line
from agent.sftp.quota import DiskQuota
from agent.sftp.session import ConfinedSFTPServer
from agent.sftp.tree import ConfinedTree
from agent.sftp.wire import ENCRYPTION_ALGS, SERVER_ALGORITHMS, make_lean
from common.logging import get_logger
from common.login_throttle import LoginThrottle

log = get_logger(__name__)


class SFTPService:
    """SFTP for every server directory under `<data_dir>/volumes`, on `host`:`port`.

    `start` generates the host key on first use (`<data_dir>/sftp_host_ed25519`, 0600)
    and listens; `stop` closes the listener and every session. Every
    `revalidate_interval` seconds each session's credential is checked again with the
    control plane; a refusal (password or keys changed, access lost, server gone)
    ends that session, an outage does not. `revoke` ends sessions at once.
    `file_owner` (uid, gid) owns every file SFTP creates: the container's user;
    `file_owner_of(server_id)`, when given, decides it per server instead (None keeps
    the agent's own ids), at the login that opens the session.
    `volume_of(server_id)` is the volume this node runs a server with (None: the
    server is not known here yet; the grant's volume is opened).
    `disk_limit_of(server_id)` gives the agent's own disk limit of a server (0: none);
    the tighter of it and the control plane's applies. `encryption_algs` defaults to
    AES-GCM only (see agent.sftp.wire); add e.g. "aes128-ctr" for clients without it,
    at a cost in throughput.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        *,
        data_dir: Path,
        host: str = "0.0.0.0",
        port: int = 2022,
        file_owner: tuple[int, int] | None = (0, 0),
        file_owner_of: Callable[[str], tuple[int, int] | None] | None = None,
        revalidate_interval: float = 45.0,
        throttle: LoginThrottle | None = None,
        workers: int = 8,
        encryption_algs: Sequence[str] = ENCRYPTION_ALGS,
        disk_limit_of: Callable[[str], int] | None = None,
        volume_of: Callable[[str], str | None] = lambda _server_id: None,
    ) -> None:
        self._control_plane = control_plane
        self._data_dir = data_dir
        self._host = host
        self._port = port
        self._file_owner_of = file_owner_of or (lambda _server_id: file_owner)
        self._revalidate_interval = revalidate_interval
        self._login = SFTPLogin(control_plane, throttle, volume_of=volume_of)
        self._workers = workers
        self._encryption_algs = list(encryption_algs)
        self._disk_limit_of = disk_limit_of
        self._executor: ThreadPoolExecutor | None = None
        self._server: asyncssh.SSHAcceptor | None = None
        self._revalidator: asyncio.Task[None] | None = None
        self._sessions: set[LiveSession] = set()
        self._quotas: dict[str, DiskQuota] = {}

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def sessions(self) -> frozenset[LiveSession]:
        return frozenset(self._sessions)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="sftp")
        key = await loop.run_in_executor(
            self._executor, load_or_create_host_key, self._data_dir / "sftp_host_ed25519"
        )
        self._server = await asyncssh.create_server(
            lambda: _LoginGate(self),
            self._host,
            self._port,
            server_host_keys=[key],
            sftp_factory=self._sftp_factory,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            line_editor=False,
            login_timeout=60,
            keepalive_interval=30,
            keepalive_count_max=4,
            **{**SERVER_ALGORITHMS, "encryption_algs": self._encryption_algs},
        )
        self._revalidator = asyncio.create_task(self._revalidate_forever(), name="sftp-revalidate")
        log.info("sftp_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._revalidator is not None:
            self._revalidator.cancel()
            await asyncio.gather(self._revalidator, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        closing = [s.conn.wait_closed() for s in self._sessions]
        for session in list(self._sessions):
            self._end(session, "agent stopping")
        if closing:
            # Their SFTP handlers close open files through the pool: let them finish.
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=10)
        if self._executor is not None:
            # Joining the workers blocks: not on the loop.
            await asyncio.to_thread(self._executor.shutdown, wait=True)

    def revoke(self, server_id: str, *, user_id: str | None = None) -> int:
        """End every session on `server_id` (of `user_id` only, when given); returns how many."""
        doomed = [
            s
            for s in self._sessions
            if s.grant.server_id == server_id and user_id in (None, s.grant.user_id)
        ]
        for session in doomed:
            self._end(session, "access revoked")
        return len(doomed)

    async def revalidate_all(self) -> None:
        """Check every live session with the control plane once (the periodic pass)."""
        limit = asyncio.Semaphore(8)

        async def one(session: LiveSession) -> None:
            async with limit:
                await self._revalidate(session)

        await asyncio.gather(*(one(s) for s in list(self._sessions)))

    # -- internals used by _LoginGate ------------------------------------------------------

    async def check_login(
        self, conn: asyncssh.SSHServerConnection, username: str, address: str, cred: Credential
    ) -> LiveSession | None:
        grant = await self._login.check(username, address, cred)
        if grant is None:
            return None
        assert self._executor is not None
        volumes = str(self._data_dir / "volumes")
        owner = self._file_owner_of(grant.server_id)
        try:
            tree = await asyncio.get_running_loop().run_in_executor(
                self._executor,
                lambda: ConfinedTree.open(volumes, grant.volume, owner=owner),
            )
        except OSError as exc:
            log.error("sftp_server_dir_unusable", server_id=grant.server_id, error=str(exc))
            return None
        return LiveSession(conn, username, address, cred, grant, tree)

    def admit(self, session: LiveSession) -> None:
        self._sessions.add(session)
        quota = self._quotas.get(session.grant.server_id)
        if quota is None:
            quota = DiskQuota(self._limit(session.grant), session.tree.disk_usage)
            self._quotas[session.grant.server_id] = quota
        quota.limit_bytes = self._limit(session.grant)
        log.info(
            "sftp_session_started",
            username=session.username,
            server_id=session.grant.server_id,
            client=session.client_address,
            read_only=not session.grant.can_write,
        )

    def discard(self, session: LiveSession) -> None:
        self._sessions.discard(session)
        session.tree.close()
        server_id = session.grant.server_id
        if not any(s.grant.server_id == server_id for s in self._sessions):
            self._quotas.pop(server_id, None)

    # -- internals -----------------------------------------------------------------------

    def _limit(self, grant: SFTPGrant) -> int:
        """The tighter of the control plane's and the agent's limit (0: none)."""
        limits = [grant.disk_limit_bytes]
        if self._disk_limit_of is not None:
            limits.append(self._disk_limit_of(grant.server_id))
        return min((n for n in limits if n > 0), default=0)

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel[bytes]) -> ConfinedSFTPServer:
        session = chan.get_extra_info("encedeus_session")
        assert isinstance(session, LiveSession)
        assert self._executor is not None
        quota = self._quotas[session.grant.server_id]
        return ConfinedSFTPServer(chan, session, quota, self._executor)

    def _end(self, session: LiveSession, reason: str) -> None:
        log.info(
            "sftp_session_ended",
            username=session.username,
            server_id=session.grant.server_id,
            reason=reason,
        )
        session.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)
        self.discard(session)

    async def _revalidate(self, session: LiveSession) -> None:
        if session not in self._sessions:
            return
        try:
            grant = await self._control_plane.sftp_auth(
                session.username,
                client_address=session.client_address,
                password=session.credential.password,
                public_key=session.credential.public_key,
                revalidate=True,
            )
        except ControlPlaneError as exc:
            if exc.definitive:
                self._end(session, f"access withdrawn ({exc.code})")
            else:
                log.warning("sftp_revalidate_control_plane_down", error=str(exc))
            return
        if grant.server_id != session.grant.server_id or not grant.can_read:
            self._end(session, "access withdrawn")
            return
        session.grant = grant
        quota = self._quotas.get(grant.server_id)
        if quota is not None:
            quota.limit_bytes = self._limit(grant)

    async def _revalidate_forever(self) -> None:
        while True:
            await asyncio.sleep(self._revalidate_interval)
            try:
                await self.revalidate_all()
            except Exception:  # a bug here must not stop future passes
                log.exception("sftp_revalidate_failed")


class _LoginGate(asyncssh.SSHServer):
    """One SSH connection's authentication: every method of login goes to SFTPService."""

    def __init__(self, service: SFTPService) -> None:
        self._service = service
        self._conn: asyncssh.SSHServerConnection | None = None
        self._address = ""
        self._pending: LiveSession | None = None
        self._session: LiveSession | None = None
        self._vouched_keys: dict[tuple[str, str], LiveSession] = {}

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        make_lean(conn)
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            self._service.discard(self._session)
        for candidate in _unadmitted(self._pending, self._vouched_keys.values()):
            candidate.tree.close()
        self._pending = None
        self._vouched_keys.clear()

    def begin_auth(self, username: str) -> bool:
        return True  # every account needs a password or key

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        return await self._try(username, Credential(password=password))

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        line = openssh_key_line(key)
        # OpenSSH asks "would this key do?" before signing: one control plane call.
        cached = self._vouched_keys.get((username, line))
        if cached is not None:
            self._set_pending(cached)
            return True
        ok = await self._try(username, Credential(public_key=line))
        if ok and self._pending is not None:
            self._vouched_keys[(username, line)] = self._pending
        return ok

    async def _try(self, username: str, credential: Credential) -> bool:
        assert self._conn is not None
        session = await self._service.check_login(self._conn, username, self._address, credential)
        self._set_pending(session)
        return session is not None

    def _set_pending(self, session: LiveSession | None) -> None:
        old = self._pending
        if old is not None and old is not session and old not in self._vouched_keys.values():
            old.tree.close()
        self._pending = session

    def auth_completed(self) -> None:
        # asyncssh checks methods one at a time: the last accepted one is what succeeded.
        assert self._conn is not None
        assert self._pending is not None
        self._session, self._pending = self._pending, None
        for candidate in _unadmitted(None, self._vouched_keys.values()):
            if candidate is not self._session:
                candidate.tree.close()
        self._vouched_keys.clear()
        self._conn.set_extra_info(encedeus_session=self._session)
        self._service.admit(self._session)


def _unadmitted(pending: LiveSession | None, others: Iterable[LiveSession]) -> list[LiveSession]:
    seen: dict[int, LiveSession] = {}
    for candidate in [pending, *others]:
        if candidate is not None:
            seen[id(candidate)] = candidate
    return list(seen.values())
