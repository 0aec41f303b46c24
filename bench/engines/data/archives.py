"""Safe extraction of zip and tar archives (plain, gzip, bzip2, xz) for ``data fetch``.

Every member is checked before anything is written: its name stays inside the target (no absolute path, no
``..``, no drive letter or backslash tricks), it is a regular file or a folder (no symbolic or hard link, no
device, no FIFO), names are unique, and the archive as a whole stays under the limits (total uncompressed bytes,
member count, compression ratio) so an archive bomb is refused before it fills the disk. While extracting, the
bytes actually written are counted against the declared sizes, so a zip that lies about its sizes is caught too.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from protocols.errors import UserError

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may extract to. ``max_ratio``: total uncompressed bytes / archive file bytes (PNG and
    JPEG data barely compress, so a real test set is far below it; a bomb is far above it)."""

    max_bytes: int = 20 << 30
    max_members: int = 200_000
    max_ratio: float = 100.0


@dataclass(frozen=True)
class _Member:
    name: str
    is_dir: bool
    size: int


def archive_kind(path: Path) -> str | None:
    """``zip``, ``tar`` or None, from the file's content (not its name)."""
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        return "tar" if tarfile.is_tarfile(path) else None
    except (OSError, tarfile.TarError):
        return None


def safe_member_name(raw: str, archive: Path) -> str:
    """The member's relative POSIX path; a UserError when it could land outside the target."""
    text = raw
    if "\\" in text or text.startswith("/") or (len(text) > 1 and text[1] == ":") or "\x00" in text:
        raise UserError(f"{archive.name}: member {raw!r} has an absolute or non-portable path; refused")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{archive.name}: member {raw!r} points outside the target folder (zip-slip); refused")
    if not parts:
        raise UserError(f"{archive.name}: member {raw!r} has an empty name; refused")
    return "/".join(parts)


def _zip_members(archive: Path, handle: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in handle.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise UserError(f"{archive.name}: member {info.filename!r} is a symbolic link; links are refused")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UserError(f"{archive.name}: member {info.filename!r} is not a regular file or folder; refused")
        if info.flag_bits & 0x1:
            raise UserError(f"{archive.name}: member {info.filename!r} is encrypted; refused")
        members.append(_Member(safe_member_name(info.filename, archive), info.is_dir(), info.file_size))
    return members


def _tar_members(archive: Path, handle: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in handle.getmembers():
        if info.issym() or info.islnk():
            raise UserError(f"{archive.name}: member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} "
                            "link; links are refused")
        if not (info.isreg() or info.isdir()):
            raise UserError(f"{archive.name}: member {info.name!r} is a device, FIFO or other special file; refused")
        members.append(_Member(safe_member_name(info.name, archive), info.isdir(), info.size))
    return members


def _check_limits(archive: Path, members: list[_Member], limits: ArchiveLimits) -> None:
    if len(members) > limits.max_members:
        raise UserError(f"{archive.name}: {len(members)} members, more than the limit {limits.max_members}; refused")
    total = sum(m.size for m in members if not m.is_dir)
    if total > limits.max_bytes:
        raise UserError(f"{archive.name}: extracts to {total} bytes, more than the limit {limits.max_bytes}; refused")
    packed = max(archive.stat().st_size, 1)
    if total / packed > limits.max_ratio:
        raise UserError(f"{archive.name}: compression ratio {total / packed:.0f}:1 is above {limits.max_ratio:.0f}:1 "
                        "(an archive bomb?); refused")
    files = [m.name for m in members if not m.is_dir]
    seen: set[str] = set()
    for name in files:
        if name in seen:
            raise UserError(f"{archive.name}: member {name!r} appears twice; refused")
        seen.add(name)
    ancestors = {"/".join(m.name.split("/")[:i]) for m in members for i in range(1, m.name.count("/") + 1)}
    clashes = [n for n in files if n in ancestors or n in {m.name for m in members if m.is_dir}]
    if clashes:
        raise UserError(f"{archive.name}: {clashes[0]!r} is both a file and a folder; refused")


def _copy_limited(source: IO[bytes], target: Path, declared: int, budget: list[int], name: str) -> None:
    """Copy at most ``declared`` bytes (and at most what is left of the total budget) from ``source``."""
    written = 0
    with open(target, "xb") as out:
        while chunk := source.read(_CHUNK_BYTES):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > declared or budget[0] < 0:
                raise UserError(f"member {name!r} extracts to more bytes than the archive declares; refused")
            out.write(chunk)
    if written != declared:
        raise UserError(f"member {name!r} is truncated ({written} of {declared} bytes); the archive is damaged")


def _streams(archive: Path, kind: str) -> Iterator[tuple[_Member, IO[bytes] | None]]:
    if kind == "zip":
        with zipfile.ZipFile(archive) as handle:
            for info, member in zip(handle.infolist(), _zip_members(archive, handle), strict=True):
                if member.is_dir:
                    yield member, None
                else:
                    with handle.open(info) as stream:
                        yield member, stream
        return
    with tarfile.open(archive) as tar:
        for tar_info, member in zip(tar.getmembers(), _tar_members(archive, tar), strict=True):
            yield member, (None if member.is_dir else tar.extractfile(tar_info))


def safe_extract(archive: Path, target: Path, limits: ArchiveLimits = ArchiveLimits()) -> int:
    """Extract ``archive`` (zip or tar) into the existing folder ``target`` after checking every member; returns
    the number of files written. A UserError names the first offending member; the caller removes ``target``."""
    kind = archive_kind(archive)
    if kind is None:
        raise UserError(f"{archive.name} is not a zip or tar archive (an HTML page or a damaged download?)")
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                members = _zip_members(archive, handle)
        else:
            with tarfile.open(archive) as handle:
                members = _tar_members(archive, handle)
        _check_limits(archive, members, limits)
        budget = [sum(m.size for m in members if not m.is_dir)]
        root = target.resolve()
        count = 0
        for member, stream in _streams(archive, kind):
            path = root.joinpath(*member.name.split("/"))
            if root not in path.resolve().parents and path.resolve() != root:
                raise UserError(f"{archive.name}: member {member.name!r} points outside the target folder; refused")
            if stream is None:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            _copy_limited(stream, path, member.size, budget, member.name)
            count += 1
        return count
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise UserError(f"{archive.name} is damaged or truncated ({type(error).__name__}: {error})") from error
