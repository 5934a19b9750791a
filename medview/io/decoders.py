"""The one decoder process pool shared by scanning, loading, thumbnails and the self-test.

pydicom parses headers and its JPEG / JPEG 2000 / JPEG-LS plugins decode pixels
while holding the GIL, so parallel work on those runs in worker *processes*.
There is one pool per process, started on first use and stopped at exit:

* :func:`decoder_pool` returns it (starting it if needed), or None when decoding
  must stay in-process: ``MEDVIEW_DECODE_WORKERS`` below 2, or the pool broke or
  could not start here.
* :func:`mark_broken` is called by a user of the pool that got
  ``BrokenProcessPool``: the pool is stopped and not started again, and the
  caller carries on in-process.
* :func:`shutdown` stops the worker processes (a later :func:`decoder_pool`
  starts new ones).

Workers run at a lower CPU priority (POSIX nice +:data:`NICE_INCREMENT`) so a
big load never makes the GUI stutter.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: How much the worker processes lower their priority (``os.nice`` increment).
NICE_INCREMENT = 5
#: Upper bound on the default worker count (more rarely helps and costs memory).
MAX_DEFAULT_WORKERS = 8

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_broken = False
_atexit_registered = False


def decode_workers() -> int:
    """Worker processes to use (``MEDVIEW_DECODE_WORKERS``; below 2 means in-process)."""
    env = os.environ.get("MEDVIEW_DECODE_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            pass
    return min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS)


def lower_priority() -> None:
    """Lower this process's CPU priority by :data:`NICE_INCREMENT` (workers' initializer)."""
    try:
        os.nice(NICE_INCREMENT)
    except (AttributeError, OSError):  # no os.nice (Windows) or not permitted
        pass


def decoder_pool() -> ProcessPoolExecutor | None:
    """The shared decoder pool (started on first call), or None to decode in-process."""
    global _pool, _broken, _atexit_registered
    workers = decode_workers()
    if workers < 2 or _broken:
        return None
    with _lock:
        if _pool is not None:
            return _pool
        try:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            method = "forkserver" if sys.platform.startswith("linux") else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":
                ctx.set_forkserver_preload(["medview.io.dicom", "numpy", "pydicom"])
            _pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=lower_priority
            )
        except Exception:  # e.g. no semaphores in a sandbox: decode in-process
            _broken = True
            return None
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return _pool


def mark_broken() -> None:
    """Stop the pool and never start it again in this process (callers go in-process)."""
    global _broken
    _broken = True
    shutdown()


def shutdown() -> None:
    """Stop the worker processes, cancelling queued work (safe to call twice)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = [
    "MAX_DEFAULT_WORKERS",
    "NICE_INCREMENT",
    "decode_workers",
    "decoder_pool",
    "lower_priority",
    "mark_broken",
    "shutdown",
]
