"""Reading config files the way they really change: rename-over saves, ConfigMap symlink swaps,
writers caught mid-write. Blocking I/O only (call it via `asyncio.to_thread`); parses nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A FIFO at the config path would otherwise block open() forever; regular files ignore the flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class FileReadError(Exception):
    """The file could not be read; str() is a one-line `path: reason` message."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FileTooLargeError(FileReadError):
    """The file is over the byte limit (by its size, or by what a read returned)."""


class FileUnstableError(FileReadError):
    """Two consecutive reads never agreed: something kept changing the file."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    device: int
    inode: int
    size: int
    mtime_ns: int
    sha256: str
    # False when the file changed while we read it (size or mtime moved, or a short read).
    complete: bool
    data: bytes = field(compare=False, repr=False)


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of `data`, the identity of a config file's content."""
    return hashlib.sha256(data).hexdigest()


def read_stable(
    path: Path,
    *,
    max_bytes: int,
    settle_s: float = 0.05,
    attempts: int = 5,
    wait: Callable[[float], None] = time.sleep,
) -> bytes:
    """Return the file's bytes once two reads `settle_s` apart agree.

    Agreement means the same device, inode, size, mtime_ns and SHA-256, so a rename-over or a
    ConfigMap `..data` swap between the reads forces another read. The path is opened afresh each
    time (symlinks resolved anew, no fd kept). Raises FileTooLargeError, FileUnstableError after
    `attempts` disagreements, and FileReadError for anything the OS refuses.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    previous = _read_once(path, max_bytes)
    for _ in range(attempts):
        wait(settle_s)
        current = _read_once(path, max_bytes)
        if current.complete and current == previous:
            return current.data
        previous = current
    raise FileUnstableError(path, f"still changing after {attempts} re-reads {settle_s:g} s apart")


FUTURE_MTIME_SLACK_S = 2.0


def wait_until_settled(
    paths: Sequence[Path],
    settle_s: float,
    *,
    max_wait_s: float = 30.0,
    wall_clock: Callable[[], float] = time.time,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    """Return once none of `paths` was modified in the last `settle_s` seconds.

    An editor or `cp` writing the file in pieces keeps moving its mtime; a reload that read it
    mid-write would load part of it. Saving by atomic rename (write a temporary file, then
    `mv` it over) is the only full guarantee; this window catches writers that pause less than
    `settle_s` between writes. Raises FileUnstableError after `max_wait_s`. Missing files are
    skipped (the read that follows reports them).
    """
    deadline = wall_clock() + max_wait_s
    while True:
        now = wall_clock()
        # An mtime in the future (a skewed clock, `touch -d`) says nothing about a writer now.
        recent = [m for m in (_mtime(path) for path in paths) if m <= now + FUTURE_MTIME_SLACK_S]
        quiet_for = now - max(recent, default=0.0)
        if quiet_for >= settle_s:
            return
        if wall_clock() + (settle_s - quiet_for) > deadline:
            where = paths[0] if paths else Path(".")
            raise FileUnstableError(where, f"still being written after {max_wait_s:g} s")
        wait(settle_s - quiet_for)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_once(path: Path, max_bytes: int) -> _Snapshot:
    try:
        fd = os.open(path, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as f:
            before = os.fstat(f.fileno())
            _check_readable(path, before, max_bytes)
            data = f.read(max_bytes + 1)
            after = os.fstat(f.fileno())
    except OSError as e:
        raise FileReadError(path, e.strerror or str(e)) from e
    if len(data) > max_bytes:
        raise FileTooLargeError(path, f"more than the limit of {max_bytes} bytes")
    return _Snapshot(
        device=before.st_dev,
        inode=before.st_ino,
        size=before.st_size,
        mtime_ns=before.st_mtime_ns,
        sha256=content_sha256(data),
        complete=len(data) == before.st_size and _same_version(before, after),
        data=data,
    )


def _check_readable(path: Path, st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise FileReadError(path, "not a regular file")
    if st.st_size > max_bytes:
        raise FileTooLargeError(path, f"{st.st_size} bytes is over the limit of {max_bytes}")


def _same_version(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)
