"""The one decoder process pool shared by scanning, loading, thumbnails and the self-test.

pydicom parses headers and its JPEG / JPEG 2000 / JPEG-LS plugins decode pixels
while holding the GIL, so parallel work on those runs in worker *processes*.
There is one pool per process, started on first use and stopped at exit:

* :func:`decoder_pool` returns it (starting it if needed), or None when decoding
  must stay in-process: ``MEDVIEW_DECODE_WORKERS=0``, or the pool could never work
  here (it could not start, or broke twice before finishing any task).
* :func:`mark_broken` is called by a user of the pool that got
  ``BrokenProcessPool`` (a worker died: a decoder aborted, panicked or ran out of
  memory): the pool is stopped and the next :func:`decoder_pool` starts a new one.
* :func:`run_isolated` runs one call in a worker and turns a worker's death into a
  one-line :class:`~medview.errors.ReadError` for that file.
* :func:`shutdown` stops the worker processes (a later :func:`decoder_pool`
  starts new ones).

Crash isolation: native decoders (GDCM, the pylibjpeg codecs, OpenJPEG, Pillow,
SimpleITK) run only in these workers, so a file that aborts a decoder costs that
file, not the process. Each worker (:func:`init_worker`) lowers its CPU priority
(POSIX nice +:data:`NICE_INCREMENT`, so a big load never makes the GUI stutter),
limits its own address space (``RLIMIT_AS``,
:func:`medview.io.limits.decoder_memory_limit`) and exits when the process that
started the pool dies (Linux ``PR_SET_PDEATHSIG`` plus a watchdog thread on the
parent's pid), so no orphan outlives a killed medview.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

T = TypeVar("T")

#: How much the worker processes lower their priority (``os.nice`` increment).
NICE_INCREMENT = 5
#: Upper bound on the default worker count (more rarely helps and costs memory).
MAX_DEFAULT_WORKERS = 8

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_broken = False
_atexit_registered = False
#: pools that broke since a pool last finished a task (2 in a row: decode in-process)
_breaks_without_success = 0
_pool_ever_worked = False
#: True inside a decoder worker: it decodes in-process (it is the isolation), never nests a pool
_in_worker = False


def decode_workers() -> int:
    """Worker processes to use (``MEDVIEW_DECODE_WORKERS``; 0 means in-process)."""
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


def _set_parent_death_signal() -> None:
    """Linux: be killed (SIGKILL) when the parent process dies."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch_parent(pid: int) -> None:
    """Exit this process as soon as process ``pid`` is gone (a daemon thread's loop)."""
    import select
    import time

    try:
        fd = os.pidfd_open(pid)  # Linux 5.3+: readable when the process exits
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        select.select([fd], [], [])
        os._exit(0)
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


def init_worker(parent_pid: int | None = None, memory_limit: int | None = None) -> None:
    """A decoder worker's initializer: lower priority, own memory limit, die with the parent.

    ``parent_pid``: the process that started the pool (with the forkserver the
    worker's own parent is the server, so the pool's owner is watched directly);
    ``memory_limit``: bytes of address space (``RLIMIT_AS``), None for no limit.
    """
    global _in_worker
    _in_worker = True
    lower_priority()
    _set_parent_death_signal()
    if memory_limit:
        try:
            import resource

            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            cap = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
        except (ImportError, ValueError, OSError):
            pass
    if parent_pid:
        if os.getppid() != parent_pid and not _alive(parent_pid):
            os._exit(0)
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_context() -> Any:
    """The multiprocessing context of medview's worker processes (the decoder pool, the
    receiver's indexing process): ``forkserver`` on Linux, whose server preloads the
    DICOM reader, numpy and pydicom for every process forked from it (set here, so
    whichever user starts the server first), else ``spawn``."""
    import multiprocessing as mp

    if not sys.platform.startswith("linux"):
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["medview.io.dicom", "numpy", "pydicom"])
    return ctx


def decoder_pool() -> ProcessPoolExecutor | None:
    """The shared decoder pool (started on first call), or None to decode in-process."""
    global _pool, _broken, _atexit_registered
    workers = decode_workers()
    if workers < 1 or _broken or _in_worker:
        return None
    with _lock:
        if _pool is not None:
            return _pool
        try:
            from concurrent.futures import ProcessPoolExecutor

            ctx = process_context()
            from medview.io.limits import decoder_memory_limit

            _pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=ctx,
                initializer=init_worker,
                initargs=(os.getpid(), decoder_memory_limit()),
            )
        except Exception:  # e.g. no semaphores in a sandbox: decode in-process
            _broken = True
            return None
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        return _pool


def mark_broken() -> None:
    """A worker died: stop this pool; the next :func:`decoder_pool` starts a fresh one.

    When pools keep breaking before any task finished (twice in a row), processes do
    not work here at all (e.g. ``__main__`` cannot be re-imported): from then on
    :func:`decoder_pool` returns None and callers decode in-process.
    """
    global _broken, _breaks_without_success
    _breaks_without_success += 1
    if _breaks_without_success >= 2 and not _pool_ever_worked:
        _broken = True
    shutdown()


def mark_working() -> None:
    """A task finished on the pool: pools work here, a later break is the file's fault."""
    global _breaks_without_success, _pool_ever_worked
    _breaks_without_success = 0
    _pool_ever_worked = True


def crash_reason(exc: BaseException) -> str:
    """The one-line reason for a file whose decoder worker died."""
    return (
        "the decoder process died on this file (it crashed or ran out of its memory "
        f"limit; {type(exc).__name__}): skipped"
    )


def run_isolated(fn: Callable[..., T], path: str, *args: Any) -> T:
    """``fn(path, *args)`` in a decoder worker (in-process when there is no pool).

    A worker that dies (a decoder aborts or panics, or hits the memory limit) becomes
    a :class:`~medview.errors.ReadError` naming ``path``; the pool is replaced.
    """
    from concurrent.futures.process import BrokenProcessPool

    from medview.errors import ReadError

    pool = decoder_pool()
    if pool is None:
        return fn(path, *args)
    try:
        result = pool.submit(fn, path, *args).result()
    except BrokenProcessPool as exc:
        mark_broken()
        raise ReadError(crash_reason(exc), path) from exc
    mark_working()
    return result


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
    "crash_reason",
    "decode_workers",
    "decoder_pool",
    "init_worker",
    "lower_priority",
    "mark_broken",
    "mark_working",
    "run_isolated",
    "shutdown",
]
