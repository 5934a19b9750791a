"""Atomic writes of the study store (medview.net.atomic): a file appears whole or not at
all, with files without a name (Linux O_TMPFILE) or through the rename fallback."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from medview.net import atomic
from medview.net.atomic import AtomicWriter

LINUX = sys.platform.startswith("linux")


def _writer(tmp_path: Path) -> AtomicWriter:
    return AtomicWriter(tmp_path / "st", tmp_path / "st" / ".incoming")


def _writer_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool) -> AtomicWriter:
    """A writer on the unnamed-file path, or on the rename fallback."""
    if not unnamed:
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    elif not LINUX:
        pytest.skip("O_TMPFILE is Linux's")
    w = _writer(tmp_path)
    assert w.unnamed is unnamed
    return w


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.skipif(not LINUX, reason="O_TMPFILE and /proc/self/fd are Linux's")
def test_unnamed_file_is_linked_whole_and_leaves_nothing_else(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    dest = w.root / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    w.write(dest, [b"head", bytearray(b"-"), memoryview(b"x" * 600_000)])
    assert dest.read_bytes() == b"head-" + b"x" * 600_000
    assert w.unnamed  # the unnamed path was used, not the fallback
    assert _files(w.root) == ["1.2/1.2.3/1.2.3.4.dcm"]
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "rename"])
def test_rewrite_replaces_whole_and_removed_folder_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    w = _writer_on(tmp_path, monkeypatch, unnamed)
    dest = w.root / "s" / "a.dcm"
    w.write(dest, [b"first version"])
    w.write(dest, [b"second"])  # the same instance sent again
    assert dest.read_bytes() == b"second"
    for p in dest.parent.iterdir():
        p.unlink()
    dest.parent.rmdir()  # removed while the writer remembers the folder
    w.write(dest, [b"third"])
    assert dest.read_bytes() == b"third"
    assert _files(w.root) == ["s/a.dcm"]
    assert w.unnamed is unnamed


@pytest.mark.skipif(not LINUX, reason="O_TMPFILE and /proc/self/fd are Linux's")
def test_a_link_the_system_refuses_falls_back_to_rename_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _writer(tmp_path)
    real_link = os.link
    calls: list[str] = []

    def refusing_link(src: str, dst: object, **kw: object) -> None:
        calls.append(src)
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", refusing_link)
    w.write(w.root / "s" / "a.dcm", [b"data a"])
    w.write(w.root / "s" / "b.dcm", [b"data b"])
    monkeypatch.setattr(os, "link", real_link)
    assert len(calls) == 1  # tried once, then the writer stays on the fallback
    assert not w.unnamed
    assert (w.root / "s" / "a.dcm").read_bytes() == b"data a"
    assert _files(w.root) == ["s/a.dcm", "s/b.dcm"]


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed", "rename"])
def test_a_failed_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unnamed: bool
) -> None:
    w = _writer_on(tmp_path, monkeypatch, unnamed)
    fds = _open_fds() if LINUX else 0

    def disk_full(fd: int, parts: object) -> None:
        os.write(fd, b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_all", disk_full)
    with pytest.raises(OSError, match="No space"):
        w.write(w.root / "s" / "a.dcm", [b"whole file"])
    assert _files(w.root) == []
    if LINUX:
        assert _open_fds() == fds


@pytest.mark.skipif(not LINUX, reason="O_TMPFILE and /proc/self/fd are Linux's")
def test_files_made_ahead_are_used_then_closed_without_trace(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    fds = _open_fds()
    assert w.make_ahead(4)
    for i in range(20):
        w.write(w.root / "s" / f"{i}.dcm", [f"instance {i}".encode()])
    w.close()
    assert _files(w.root) == sorted(f"s/{i}.dcm" for i in range(20))
    assert (w.root / "s" / "7.dcm").read_bytes() == b"instance 7"
    # the helper thread has ended and every made-ahead file is closed (and gone)
    assert _open_fds() == fds
    w.write(w.root / "s" / "after.dcm", [b"still writes"])
    assert (w.root / "s" / "after.dcm").read_bytes() == b"still writes"


def test_make_ahead_is_refused_without_unnamed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    w = _writer(tmp_path)
    assert not w.make_ahead(4)
    w.write(w.root / "a.dcm", [b"ok"])
    assert (w.root / "a.dcm").read_bytes() == b"ok"


def test_clean_deletes_what_a_crash_left(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    for name in ("123-abc-0.part", "123-abc-1.part"):
        (w.incoming / name).write_bytes(b"half an instance")
    (w.incoming / "keep.txt").write_text("not ours")
    assert w.clean() == 2
    assert [p.name for p in w.incoming.iterdir()] == ["keep.txt"]


def test_more_parts_than_one_writev_takes(tmp_path: Path) -> None:
    """A dataset received in many small PDUs: thousands of parts (over Linux's IOV_MAX of
    1024, some empty, one bigger than the rest) are written whole, in order."""
    parts = [bytes([i % 251]) * (i % 7) for i in range(3000)] + [os.urandom(100_000)]
    dest = tmp_path / "s" / "many.dcm"
    AtomicWriter(tmp_path, tmp_path / ".incoming").write(dest, [memoryview(p) for p in parts])
    assert dest.read_bytes() == b"".join(parts)
