"""Moving a volume's data from this agent to another (docs/stateful.md, "Transfers").

The wire, agent to agent over the receiving agent's HTTP port:
`PUT /api/volumes/{volume_id}/transfer`, `Authorization: Bearer <transfer token>`,
chunked body of frames. A frame is one type byte and a 4-byte big-endian length, then
the payload: `D` carries the next bytes of the stream (GNU tar of the volume's
directory, `--numeric-owner`, compressed by zstd on the fly), `E` ends it with the
32-byte SHA-256 of every `D` payload. The receiver hashes what arrives, unpacks it
into a staging directory and installs it as the volume only when the digest matches
and both zstd and tar ended cleanly; a stream that breaks off (no `E`) or does not
match leaves nothing behind. It answers `{"sha256", "bytes"}`.

:class:`VolumeSender` is blocking (subprocesses and a socket): run it in a thread.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import struct
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from agent.fleet.volume_images import is_own_filesystem, used_bytes

FRAME_HEADER = struct.Struct(">cI")
FRAME_DATA, FRAME_END = b"D", b"E"
CHUNK = 1 << 20
MAX_FRAME = 4 << 20
TRANSFER_ROUTE = "/api/volumes/{volume_id}/transfer"
CONNECT_TIMEOUT = 10.0


class TransferFailed(Exception):
    """The transfer did not complete (the message says where and why)."""


def volume_bytes(data_dir: Path) -> int:
    """What a volume holds: statfs of its image, else a walk of its directory."""
    if is_own_filesystem(data_dir):
        return used_bytes(data_dir)
    total = 0
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def frame(kind: bytes, payload: bytes) -> bytes:
    """One frame of the transfer stream."""
    return FRAME_HEADER.pack(kind, len(payload)) + payload


def target_connection(address: str) -> tuple[http.client.HTTPConnection, str]:
    """A connection to the target agent's HTTP port and the path prefix before its
    routes. `address` is what the target enrolled with: `http(s)://host:port[/prefix]`,
    or `host:port` from older agents (plain http). https is checked against the
    system's certificate authorities."""
    parts = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransferFailed(f"the target agent's address is not usable: {address!r}")
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=CONNECT_TIMEOUT,
            context=ssl.create_default_context(),
        )  # fmt: skip
    else:
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port or 80, timeout=CONNECT_TIMEOUT
        )
    return connection, parts.path.rstrip("/")


class VolumeSender:
    """Streams `data_dir` to the agent at `target_address` (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        volume_id: str,
        target_address: str,
        token: str,
        on_progress: Callable[[int], None] = lambda sent: None,
    ) -> None:
        self.data_dir, self.volume_id = data_dir, volume_id
        self.target_address, self.token = target_address, token
        self.on_progress = on_progress

    def run(self) -> tuple[int, str]:
        """Send everything; (bytes sent, hex SHA-256) as the target confirmed them."""
        connection, prefix = target_connection(self.target_address)
        tar = subprocess.Popen(  # noqa: S603
            ["tar", "-C", str(self.data_dir), "--numeric-owner", "-cf", "-", "."],  # noqa: S607
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert tar.stdout is not None
        zstd = subprocess.Popen(
            ["zstd", "-1", "-T0", "-q", "-c"],  # noqa: S607
            stdin=tar.stdout,
            stdout=subprocess.PIPE,
        )
        tar.stdout.close()  # zstd holds it: tar sees SIGPIPE if zstd dies
        try:
            return self._stream(connection, prefix, tar, zstd)
        finally:
            for process in (zstd, tar):
                if process.poll() is None:
                    process.kill()
                process.wait()
            for stream in (zstd.stdout, tar.stderr):
                if stream is not None:
                    stream.close()
            connection.close()

    def _stream(
        self,
        connection: http.client.HTTPConnection,
        prefix: str,
        tar: subprocess.Popen[bytes],
        zstd: subprocess.Popen[bytes],
    ) -> tuple[int, str]:
        assert zstd.stdout is not None
        path = prefix + TRANSFER_ROUTE.format(volume_id=self.volume_id)
        try:
            connection.putrequest("PUT", path, skip_accept_encoding=True)
            connection.putheader("Authorization", f"Bearer {self.token}")
            connection.putheader("Content-Type", "application/octet-stream")
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
        except OSError as exc:
            raise TransferFailed(f"the target agent cannot be reached: {exc}") from exc
        digest, sent = hashlib.sha256(), 0
        try:
            while chunk := zstd.stdout.read(CHUNK):
                digest.update(chunk)
                _send_chunk(connection, frame(FRAME_DATA, chunk))
                sent += len(chunk)
                self.on_progress(sent)
            if zstd.wait() != 0 or tar.wait() != 0:
                error = (tar.stderr.read() if tar.stderr else b"").decode(errors="replace")
                raise TransferFailed(f"reading the volume failed: {error.strip()[:300]}")
            _send_chunk(connection, frame(FRAME_END, digest.digest()))
            connection.send(b"0\r\n\r\n")
        except OSError as exc:
            # The target may have answered (a refusal) and closed before reading it all.
            try:
                self._confirmed(connection, "")
            except TransferFailed as refusal:
                if "refused" in str(refusal):
                    raise refusal from exc
            raise TransferFailed(f"the stream to the target broke off: {exc}") from exc
        return sent, self._confirmed(connection, digest.hexdigest())

    def _confirmed(self, connection: http.client.HTTPConnection, sha256: str) -> str:
        try:
            response = connection.getresponse()
            body = response.read(64 * 1024)
        except (OSError, http.client.HTTPException) as exc:
            raise TransferFailed(f"the target did not answer: {exc}") from exc
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if response.status != 200:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            message = error.get("message") if isinstance(error, dict) else None
            raise TransferFailed(f"the target refused the transfer: {message or response.status}")
        if answer.get("sha256") != sha256:
            raise TransferFailed("the target received something else than was sent")
        return sha256


def _send_chunk(connection: http.client.HTTPConnection, data: bytes) -> None:
    connection.send(b"%x\r\n" % len(data) + data + b"\r\n")
