"""Limits on what a file may make medview do: memory budgets and regular files only.

* **Memory budgets** (:func:`image_budget`, :func:`series_budget`): how many bytes one
  decoded file and one assembled series may take, from the RAM available at start-up
  or ``MEDVIEW_MAX_IMAGE_MB`` / ``MEDVIEW_MAX_SERIES_MB``. Sizes declared by a header
  are checked against them *before* anything is allocated (:func:`check_budget`).
* **Decoder memory limit** (:func:`decoder_memory_limit`): the address-space limit a
  decoder worker process sets on itself (``MEDVIEW_DECODER_MEMORY_MB``).
* **Regular files only** (:func:`open_regular`, :func:`special_file_reason`,
  :func:`walk_files`): FIFOs, devices and sockets, and links to them, are never opened
  (opening a FIFO blocks, reading ``/dev/zero`` never ends); a folder walk follows links
  only inside the tree and detects loops.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from medview.errors import FileProblem, ReadError

MIB = 1 << 20
GIB = 1 << 30
#: Default ceiling of the per-image budget (one decoded file, all its frames).
DEFAULT_IMAGE_CAP = 1 * GIB
#: Default ceiling of the per-series budget (one assembled volume).
DEFAULT_SERIES_CAP = 16 * GIB
#: Address space a decoder worker needs besides the image (interpreter, numpy, codecs).
DECODER_BASE = 2 * GIB


def available_memory() -> int:
    """Bytes of RAM available now (``MemAvailable`` on Linux, else physical RAM, else 8 GiB)."""
    try:
        with open("/proc/meminfo", "rb") as fp:
            for line in fp.read(8192).splitlines():
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 * GIB


def _env_mb(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(float(text))
    except ValueError:
        return None
    return value * MIB if value > 0 else None


_available: int | None = None


def _avail() -> int:
    global _available
    if _available is None:
        _available = available_memory()
    return _available


def image_budget() -> int:
    """Bytes one decoded image file may take: ``MEDVIEW_MAX_IMAGE_MB``, else a quarter of
    the available RAM, at most :data:`DEFAULT_IMAGE_CAP`."""
    return _env_mb("MEDVIEW_MAX_IMAGE_MB") or min(DEFAULT_IMAGE_CAP, _avail() // 4)


def series_budget() -> int:
    """Bytes one assembled series may take: ``MEDVIEW_MAX_SERIES_MB``, else half the
    available RAM, at most :data:`DEFAULT_SERIES_CAP`."""
    return _env_mb("MEDVIEW_MAX_SERIES_MB") or min(DEFAULT_SERIES_CAP, _avail() // 2)


def decoder_memory_limit() -> int:
    """Address-space limit of a decoder worker: ``MEDVIEW_DECODER_MEMORY_MB``, else
    :data:`DECODER_BASE` plus three times the per-image budget."""
    return _env_mb("MEDVIEW_DECODER_MEMORY_MB") or DECODER_BASE + 3 * image_budget()


def human_bytes(n: int) -> str:
    """``1.5 GB`` / ``12 MB`` / ``512 bytes``."""
    if n >= GIB:
        return f"{n / GIB:.1f} GB"
    if n >= MIB:
        return f"{n / MIB:.0f} MB"
    return f"{n} bytes"


def check_budget(needed: int, what: str, path: str, series: bool = False) -> None:
    """Raise :class:`ReadError` when ``needed`` bytes exceed the per-image (or per-series)
    budget; ``what`` says what declared the size (``"Rows x Columns x frames"``)."""
    budget, env = (
        (series_budget(), "MEDVIEW_MAX_SERIES_MB")
        if series
        else (image_budget(), "MEDVIEW_MAX_IMAGE_MB")
    )
    if needed > budget:
        raise ReadError(
            f"{what} declares {human_bytes(needed)}, above the memory budget of "
            f"{human_bytes(budget)} per {'series' if series else 'image'} (set {env} to raise it)",
            path,
        )


# -- regular files only -----------------------------------------------------------------


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def special_file_reason(path: str) -> str | None:
    """Why ``path`` is not read (a FIFO, a device, a socket, a broken link), or None for a
    regular file (or a link to one). Never opens the file, so it never blocks."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken link" if os.path.islink(path) else "file not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISREG(st.st_mode):
        return None
    kind = _kind(st.st_mode)
    via = " (through a link)" if os.path.islink(path) else ""
    return f"skipped: {kind}{via}, not a regular file"


def open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file.

    Opened non-blocking first (opening a FIFO would wait for a writer), checked with
    ``fstat`` on the open descriptor (no race with a file swapped after a check), then
    switched back to blocking reads. Raises :class:`ReadError` otherwise.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise ReadError("file not found", path) from exc
    except IsADirectoryError as exc:
        raise ReadError("is a folder, not a file", path) from exc
    except PermissionError as exc:
        raise ReadError("permission denied", path) from exc
    except OSError as exc:
        raise ReadError(f"cannot be opened ({exc.strerror or type(exc).__name__})", path) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise ReadError("is a folder, not a file", path)
            raise ReadError(f"skipped: {_kind(mode)}, not a regular file", path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        # through open() so that the file object's name is the path (pydicom uses it)
        return open(path, "rb", opener=lambda _p, _f: fd)
    except BaseException:
        os.close(fd)
        raise


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk_files(root: str, notes: list[FileProblem]) -> Iterator[str]:
    """Regular files below ``root``, sorted, hidden names skipped.

    Links are followed only when they stay inside ``root`` (after resolving them);
    a link out of the tree, a link to a FIFO/device/socket, a broken link and a
    folder met twice (a loop) are skipped with one note each in ``notes``.
    """
    top = os.path.realpath(root)
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            notes.append(FileProblem(folder, f"cannot be listed ({exc.strerror or exc})"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            notes.append(FileProblem(folder, "skipped: folder loop (a link back to a parent)"))
            continue
        seen_dirs.add(key)
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            if entry.is_symlink() and not _inside(os.path.realpath(path), top):
                notes.append(FileProblem(path, "skipped: a link that leads out of the folder"))
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    subdirs.append(path)
                    continue
            except OSError:
                pass
            reason = special_file_reason(path)
            if reason is None:
                yield path
            else:
                notes.append(FileProblem(path, reason))
        stack.extend(reversed(subdirs))


__all__ = [
    "available_memory",
    "check_budget",
    "decoder_memory_limit",
    "human_bytes",
    "image_budget",
    "open_regular",
    "series_budget",
    "special_file_reason",
    "walk_files",
]
