"""Archives inside a server directory: compress to tar.gz or zip, extract tar, tar.gz, zip.

Extraction can never write outside the server directory: every member is written
through :class:`agent.files.operations.ServerFiles` (the confined tree), and before that
a member whose name is absolute, climbs with `..` or holds a NUL is skipped. Symlinks,
hard links, devices and FIFOs inside an archive are skipped too, so no link an archive
carries can be written through later in the same extraction. Extraction stops with
:class:`ArchiveRefused` when it passes its caps: total bytes written, number of members,
or bytes written per byte of archive (a zip bomb's ratio). Sizes are counted as bytes
are really written, not taken from the archive's headers.

Everything here blocks: call it from a worker thread.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Literal

from agent.files.operations import ServerFiles, encode, join

ArchiveFormat = Literal["tar.gz", "zip"]
CHUNK = 1024 * 1024
GiB = 1024**3


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """Caps of one extraction; `room` is what the disk limit still allows (None: none)."""

    max_bytes: int = 16 * GiB
    max_entries: int = 100_000
    max_ratio: int = 200
    room: int | None = None


class ArchiveRefused(Exception):
    """The archive passed a cap (`code` says which) or is no archive this reads."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class ExtractReport:
    """What an extraction wrote, and the members it skipped (with why)."""

    files: int = 0
    directories: int = 0
    bytes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def safe_member_name(name: str) -> str | None:
    """The member's path relative to the destination, or None when it is absolute,
    climbs out with `..`, is empty or holds a NUL."""
    if "\0" in name:
        return None
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        return None
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


# ---- extraction ----------------------------------------------------------------------


class _Extraction:
    def __init__(self, files: ServerFiles, destination: str, limits: ExtractLimits, size: int):
        self.files, self.destination, self.limits = files, destination, limits
        self.ratio_cap = limits.max_ratio * max(size, 1)
        self.report = ExtractReport()
        self.entries = 0

    def member(self, name: str, kind: str, mode: int, reader: IO[bytes] | None) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ArchiveRefused("too_many_entries", "the archive has too many members")
        safe = safe_member_name(name)
        if safe is None:
            self.report.skipped.append({"name": name, "reason": "unsafe name"})
            return
        if kind not in ("file", "directory"):
            self.report.skipped.append({"name": name, "reason": f"{kind} not extracted"})
            return
        path = join(self.destination, safe)
        try:
            if kind == "directory":
                self.files.mkdir(path, parents=True)
                self.report.directories += 1
            else:
                assert reader is not None
                self._write(path, mode, reader)
        except OSError as exc:
            if exc.errno in (errno.EDQUOT, errno.ENOSPC):
                raise
            self.report.skipped.append({"name": name, "reason": exc.strerror or str(exc)})

    def _write(self, path: str, mode: int, reader: IO[bytes]) -> None:
        parent = posixpath.dirname(path)
        if parent not in ("", "/"):
            self.files.mkdir(parent, parents=True)
        fd = self.files.open_write(path, truncate=True, create_mode=mode & 0o777 or 0o644).fd
        try:
            while chunk := reader.read(CHUNK):
                self._count(len(chunk))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        self.report.files += 1

    def _count(self, size: int) -> None:
        self.report.bytes += size
        total = self.report.bytes
        if total > self.limits.max_bytes:
            raise ArchiveRefused("archive_too_large", "the archive expands past the size cap")
        if total > self.ratio_cap:
            raise ArchiveRefused("archive_ratio", "the archive expands too much for its size")
        if self.limits.room is not None and total > self.limits.room:
            raise OSError(errno.EDQUOT, "disk limit of this server reached")


def extract(
    files: ServerFiles, archive: str, destination: str, limits: ExtractLimits
) -> ExtractReport:
    """Extract a tar (any compression tarfile reads) or zip archive into `destination`
    (made when missing)."""
    fd, info = files.open_read(archive)
    with os.fdopen(fd, "rb") as raw:
        if destination.strip("/"):
            files.mkdir(destination, parents=True)
        run = _Extraction(files, destination, limits, info.st_size)
        if zipfile.is_zipfile(raw):
            raw.seek(0)
            _extract_zip(raw, run)
        else:
            raw.seek(0)
            _extract_tar(raw, run)
    return run.report


def _extract_zip(raw: IO[bytes], run: _Extraction) -> None:
    with zipfile.ZipFile(raw) as archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                run.member(info.filename, "directory", mode, None)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no type recorded
                run.member(info.filename, _kind(mode), mode, None)
            else:
                with archive.open(info) as reader:
                    run.member(info.filename, "file", mode, reader)


def _kind(mode: int) -> str:
    return "symlink" if stat.S_ISLNK(mode) else "special file"


def _extract_tar(raw: IO[bytes], run: _Extraction) -> None:
    try:
        archive = tarfile.open(fileobj=raw, mode="r:*")  # noqa: SIM115 (closed below)
    except tarfile.TarError as exc:
        raise ArchiveRefused("not_an_archive", "not a tar, tar.gz or zip archive") from exc
    with archive:
        for member in archive:
            if member.isdir():
                run.member(member.name, "directory", member.mode, None)
            elif member.isreg():
                reader = archive.extractfile(member)
                run.member(member.name, "file", member.mode, reader)
            else:
                kind = "link" if member.issym() or member.islnk() else "special file"
                run.member(member.name, kind, member.mode, None)


# ---- compression ---------------------------------------------------------------------


def compress(files: ServerFiles, sources: list[str], target: str, fmt: ArchiveFormat) -> int:
    """Write `sources` (files or directory trees, named by their base names) into a new
    archive at `target`; returns its size. Symlinks go into a tar as links and are
    left out of a zip; other special files are left out of both."""
    opened = files.open_write(target, exclusive=True)
    own = os.fstat(opened.fd)
    with os.fdopen(opened.fd, "wb") as out:
        if fmt == "zip":
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for source in sources:
                    _add_zip(files, archive, source, _base(source), (own.st_dev, own.st_ino))
        else:
            with tarfile.open(fileobj=out, mode="w:gz") as tar:
                for source in sources:
                    _add_tar(files, tar, source, _base(source), (own.st_dev, own.st_ino))
        out.flush()
        return os.fstat(out.fileno()).st_size


def _base(source: str) -> str:
    base = posixpath.basename(source.rstrip("/"))
    if not base:
        raise OSError(errno.EINVAL, "name a file or directory inside the server directory")
    return base


def _walk(files: ServerFiles, path: str, name: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(path, archive name, lstat) of `path` and everything beneath it, parents first."""
    stack = [(path, name, files.tree.lstat(encode(path)), 0)]
    while stack:
        here, arcname, info, depth = stack.pop()
        yield here, arcname, info
        if stat.S_ISDIR(info.st_mode):
            for child, child_info in files.children(here, depth):
                stack.append((join(here, child), f"{arcname}/{child}", child_info, depth + 1))


def _add_tar(
    files: ServerFiles, tar: tarfile.TarFile, source: str, name: str, skip: tuple[int, int]
) -> None:
    for path, arcname, info in _walk(files, source, name):
        if (info.st_dev, info.st_ino) == skip:
            continue
        entry = tarfile.TarInfo(arcname)
        entry.mode, entry.mtime = stat.S_IMODE(info.st_mode), int(info.st_mtime)
        if stat.S_ISDIR(info.st_mode):
            entry.type = tarfile.DIRTYPE
            tar.addfile(entry)
        elif stat.S_ISLNK(info.st_mode):
            entry.type = tarfile.SYMTYPE
            entry.linkname = os.fsdecode(files.tree.readlink(encode(path)))
            tar.addfile(entry)
        elif stat.S_ISREG(info.st_mode):
            fd, opened = files.open_read(path)
            with os.fdopen(fd, "rb") as reader:
                entry.size = opened.st_size
                tar.addfile(entry, reader)


def _add_zip(
    files: ServerFiles, archive: zipfile.ZipFile, source: str, name: str, skip: tuple[int, int]
) -> None:
    for path, arcname, info in _walk(files, source, name):
        if (info.st_dev, info.st_ino) == skip:
            continue
        if stat.S_ISDIR(info.st_mode):
            archive.writestr(f"{arcname}/", b"")
        elif stat.S_ISREG(info.st_mode):
            entry = zipfile.ZipInfo(arcname, _zip_time(info.st_mtime))
            entry.external_attr = (stat.S_IFREG | stat.S_IMODE(info.st_mode)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            fd, _ = files.open_read(path)
            with os.fdopen(fd, "rb") as reader, archive.open(entry, "w", force_zip64=True) as w:
                while chunk := reader.read(CHUNK):
                    w.write(chunk)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(max(mtime, 315532800))  # zip dates start in 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
