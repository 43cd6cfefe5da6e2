"""read_stable against files that change the way editors, writers and kubelet change them."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from responder.rules.files import (
    FileReadError,
    FileTooLargeError,
    FileUnstableError,
    content_sha256,
    read_stable,
)

LIMIT = 1 << 20


class Waits:
    """A `wait` that records its calls and makes the next scripted change instead of sleeping."""

    def __init__(self, *changes: Callable[[], None]) -> None:
        self.calls: list[float] = []
        self._changes = list(changes)

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self._changes:
            self._changes.pop(0)()


def append(path: Path, data: bytes) -> Callable[[], None]:
    def change() -> None:
        with path.open("ab") as f:
            f.write(data)

    return change


def rename_over(path: Path, data: bytes) -> Callable[[], None]:
    """An editor's save: write a sibling, then rename it over the original."""

    def change() -> None:
        tmp = path.with_name(path.name + ".swp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return change


def test_unchanged_file_is_returned_after_one_settle_wait(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"rules: []\n")
    waits = Waits()

    assert read_stable(path, max_bytes=LIMIT, settle_s=0.25, wait=waits) == b"rules: []\n"
    assert waits.calls == [0.25]


def test_file_still_being_written_is_reread_until_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"rules:\n")
    waits = Waits(append(path, b"  - name: ip\n"), append(path, b"    reply: x\n"))

    data = read_stable(path, max_bytes=LIMIT, wait=waits)

    assert data == b"rules:\n  - name: ip\n    reply: x\n"
    assert len(waits.calls) == 3


def test_file_changing_on_every_read_raises_unstable(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"x")
    waits = Waits(*(append(path, b"x") for _ in range(10)))

    with pytest.raises(FileUnstableError, match="still changing after 4 re-reads"):
        read_stable(path, max_bytes=LIMIT, attempts=4, wait=waits)
    assert len(waits.calls) == 4


def test_rename_over_with_same_bytes_and_mtime_is_detected_by_inode(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"same")
    old = path.stat()

    def save_identical_copy() -> None:
        rename_over(path, b"same")()
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))

    waits = Waits(save_identical_copy)

    assert read_stable(path, max_bytes=LIMIT, wait=waits) == b"same"
    assert path.stat().st_ino != old.st_ino
    assert len(waits.calls) == 2


def test_rename_over_returns_the_new_content(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"version: 1\n")
    waits = Waits(rename_over(path, b"version: 2\n"))

    assert read_stable(path, max_bytes=LIMIT, wait=waits) == b"version: 2\n"
    assert len(waits.calls) == 2


def make_configmap(root: Path, stamp: str, content: bytes) -> None:
    """kubelet's AtomicWriter layout: rules.yaml -> ..data/rules.yaml, ..data -> ..<stamp>."""
    (root / stamp).mkdir(parents=True)
    (root / stamp / "rules.yaml").write_bytes(content)
    (root / "..data").symlink_to(stamp)
    (root / "rules.yaml").symlink_to("..data/rules.yaml")


def swap_configmap(root: Path, old: str, new: str, content: bytes) -> Callable[[], None]:
    def change() -> None:
        (root / new).mkdir()
        (root / new / "rules.yaml").write_bytes(content)
        (root / "..data_tmp").symlink_to(new)
        os.replace(root / "..data_tmp", root / "..data")
        shutil.rmtree(root / old)

    return change


def test_configmap_symlink_swap_is_followed(tmp_path: Path) -> None:
    make_configmap(tmp_path, "..2026_11_29_01", b"generation: 1\n")
    path = tmp_path / "rules.yaml"
    assert read_stable(path, max_bytes=LIMIT, wait=Waits()) == b"generation: 1\n"
    waits = Waits(swap_configmap(tmp_path, "..2026_11_29_01", "..2026_11_29_02", b"generation: 2\n"))

    assert read_stable(path, max_bytes=LIMIT, wait=waits) == b"generation: 2\n"
    assert len(waits.calls) == 2
    assert not (tmp_path / "..2026_11_29_01").exists()


def test_oversized_file_is_rejected_by_size_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.touch()
    # Sparse: 64 GiB by st_size, no blocks. Reading it would exhaust memory, not pass.
    os.truncate(path, 64 << 30)
    waits = Waits()

    with pytest.raises(FileTooLargeError, match="68719476736 bytes is over the limit of 1048576"):
        read_stable(path, max_bytes=LIMIT, wait=waits)
    assert waits.calls == []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux procfs")
def test_read_is_capped_when_the_size_lies(tmp_path: Path) -> None:
    # procfs reports st_size 0 for files that have content, like a file growing under us.
    with pytest.raises(FileTooLargeError, match="more than the limit of 16 bytes"):
        read_stable(Path("/proc/self/status"), max_bytes=16, wait=Waits())


def test_missing_file_raises_read_error_with_one_line_message(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"

    with pytest.raises(FileReadError) as info:
        read_stable(path, max_bytes=LIMIT, wait=Waits())
    assert str(info.value) == f"{path}: No such file or directory"
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_file_deleted_between_reads_raises_read_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"x")

    with pytest.raises(FileReadError, match="No such file or directory"):
        read_stable(path, max_bytes=LIMIT, wait=Waits(path.unlink))


def test_directory_raises_read_error(tmp_path: Path) -> None:
    with pytest.raises(FileReadError, match="Is a directory"):
        read_stable(tmp_path, max_bytes=LIMIT, wait=Waits())


def test_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    os.mkfifo(path)

    with pytest.raises(FileReadError, match="not a regular file"):
        read_stable(path, max_bytes=LIMIT, wait=Waits())


def test_attempts_below_one_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="attempts"):
        read_stable(tmp_path / "x", max_bytes=LIMIT, attempts=0, wait=Waits())


def test_content_sha256_is_hex_sha256() -> None:
    assert content_sha256(b"") == hashlib.sha256(b"").hexdigest()
    assert content_sha256(b"rules: []\n") == hashlib.sha256(b"rules: []\n").hexdigest()
