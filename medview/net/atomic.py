"""Atomic file writes for the study store: no reader, and no crash, ever sees half a file.

On Linux each file is written without a name (``O_TMPFILE`` in the store's file system)
and then linked under its final name (``linkat`` of ``/proc/self/fd/N``): a file appears
whole or not at all, and one that a crash interrupts vanishes by itself. Elsewhere, or on
a file system without ``O_TMPFILE`` (the first failure switches a writer over for good),
it is written to ``<incoming>/*.part`` and renamed into place; :meth:`AtomicWriter.clean`
deletes the ``.part`` files a crash left.

With :meth:`AtomicWriter.make_ahead` a daemon thread keeps a few unnamed files made in
advance, so that a receiver does not create a file between receiving an instance and
answering: creating a file (allocating its inode) took 0.04 to 1.4 ms on the development
VM's ext4 (the most when many files had been deleted in the last 30 s), writing 530 KB
into it about 0.13 ms (docs/net.md).

Python's standard library has no atomic-write helper (``tempfile`` + ``os.replace`` is
the usual recipe, used here as the fallback); ``O_TMPFILE`` is used through ``os.open``.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

Chunk = bytes | bytearray | memoryview  # a part of the file's content
MAX_IOV = 512  # parts per writev (POSIX guarantees IOV_MAX >= 16; Linux has 1024)

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_ROOT_FD: list[int] = []


class AtomicWriter:
    """Writes whole files under ``root`` (files without a name are made there);
    ``incoming`` holds the temporary files of the fallback (created if missing)."""

    def __init__(self, root: Path, incoming: Path) -> None:
        self.root = root
        self.incoming = incoming
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._folders: set[Path] = set()
        self._serial = itertools.count()
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # unique per writer
        self._spares: _Spares | None = None
        self.unnamed = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")

    def clean(self) -> int:
        """Delete the fallback's temporary files left by a crash (never renamed)."""
        n = 0
        for p in self.incoming.glob("*.part"):
            try:
                p.unlink()
                n += 1
            except OSError:
                pass
        return n

    def write(self, dest: Path, parts: Sequence[Chunk], written: int | None = None) -> None:
        """Write ``parts`` as the file ``dest`` (replacing one there), creating its
        folder; ``OSError`` when the disk refuses (nothing is left behind then).

        ``written``: a file from :meth:`take_unnamed` that already holds exactly
        ``parts`` (written as they arrived): it is given the name, not written again.
        It is closed either way."""
        folder = dest.parent
        if folder not in self._folders:  # one mkdir per folder, not per file
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        fd, todo = (written, ()) if written is not None else (self.take_unnamed(), parts)
        if fd is not None:
            try:
                write_all(fd, todo)
                if self._link(fd, dest):
                    return
            finally:
                os.close(fd)
        self._write_renamed(dest, parts)

    def take_unnamed(self) -> int | None:
        """A file without a name, open for writing (one made ahead when there is one;
        the caller closes it, or hands it to :meth:`write`); None where there are none."""
        fd = self._spares.take() if self._spares is not None else None
        return fd if fd is not None else self.new_unnamed()

    def new_unnamed(self) -> int | None:
        """A new file without a name on the root's file system, open for writing; None
        where the system or the file system has none."""
        if not self.unnamed:
            return None
        try:
            return os.open(self.root, _O_TMPFILE | os.O_WRONLY | _O_CLOEXEC, 0o644)
        except OSError:
            self.unnamed = False
            return None

    def make_ahead(self, count: int = 8) -> bool:
        """Keep up to ``count`` unnamed files made ahead by a helper thread (until
        :meth:`close`); False where files cannot be made without a name."""
        if self._spares is None and count > 0:
            fd = self.new_unnamed()
            if fd is None:
                return False
            os.close(fd)
            self._spares = _Spares(self.new_unnamed, count)
        return self._spares is not None

    def close(self) -> None:
        """Stop making files ahead and close those made (they vanish); writes still work
        after this, each making its own file."""
        spares, self._spares = self._spares, None
        if spares is not None:
            spares.close()

    def _link(self, fd: int, dest: Path) -> bool:
        """Give the unnamed file ``fd`` the name ``dest`` (replacing a file there);
        False, and no more unnamed files for this writer, when the system cannot."""
        src = f"/proc/self/fd/{fd}"
        for attempt in range(2):
            try:
                os.link(src, dest, src_dir_fd=_root_fd(), follow_symlinks=True)
                return True
            except FileExistsError:  # written again (e.g. sent twice): replace it whole
                tmp = self._temp_path()
                os.link(src, tmp, src_dir_fd=_root_fd(), follow_symlinks=True)
                os.replace(tmp, dest)
                return True
            except FileNotFoundError:
                if attempt or not os.path.exists(src):
                    break
                dest.parent.mkdir(parents=True, exist_ok=True)  # removed meanwhile
            except OSError:  # e.g. linking across file systems
                break
        self.unnamed = False
        return False

    def _temp_path(self) -> Path:
        return self.incoming / f"{self._tag}-{next(self._serial)}.part"

    def _write_renamed(self, dest: Path, parts: Sequence[Chunk]) -> None:
        tmp = self._temp_path()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o644)
            try:
                write_all(fd, parts)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, dest)
            except FileNotFoundError:  # the folder was removed meanwhile
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
        except BaseException:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise


def _root_fd() -> int:
    """A descriptor of ``/``, kept open: ``os.link`` follows the ``/proc/self/fd`` link
    (``linkat`` with ``AT_SYMLINK_FOLLOW``) only when given a directory descriptor."""
    if not _ROOT_FD:
        _ROOT_FD.append(os.open("/", os.O_RDONLY | _O_CLOEXEC))
    return _ROOT_FD[0]


class _Spares:
    """Unnamed files made ahead by a daemon thread, which refills the pool when half of
    it has been taken (one wake-up per ``count // 2`` files)."""

    def __init__(self, make: Callable[[], int | None], count: int) -> None:
        self._make = make
        self._count = count
        self._ready: collections.deque[int] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._wake.set()
        threading.Thread(target=self._run, name="medview-net-spares", daemon=True).start()

    def take(self) -> int | None:
        """A made-ahead file's descriptor, or None when none is ready."""
        try:
            fd = self._ready.popleft()
        except IndexError:
            self._wake.set()
            return None
        if len(self._ready) <= self._count // 2:
            self._wake.set()
        return fd

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                while not self._closed and len(self._ready) < self._count:
                    fd = self._make()
                    if fd is None:
                        break
                    self._ready.append(fd)
                if self._closed:
                    return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.set()
            while self._ready:
                os.close(self._ready.popleft())


def write_all(fd: int, parts: Sequence[Chunk]) -> None:
    """Write every byte of ``parts`` (``writev`` of up to :data:`MAX_IOV` parts at a time
    where the platform has it)."""
    views = [memoryview(b) for b in parts if len(b)]
    writev = getattr(os, "writev", None)
    i = 0
    while i < len(views):
        if writev is not None:
            n = writev(fd, views[i : i + MAX_IOV])
        else:
            n = os.write(fd, views[i])
        while i < len(views) and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = views[i][n:]
