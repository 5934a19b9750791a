"""The one worker mechanism of the GUI: core task functions on a QThreadPool.

A task is a plain core function ``fn(*args, state=TaskState, **kwargs)``
(see :mod:`medview.tasks`). The one public way to run it is :meth:`TaskSlot.run`:
a slot holds the one active task of its owner (a panel, a viewport), starting a
new one cancels the old, whose late results are dropped, and progress, partial
results, the result or a one-line error arrive on the GUI thread through the
callbacks given to ``run``. :func:`shutdown_all` cancels everything and waits
(called on quit).

Every task runs at a lower priority than the GUI thread (:func:`lower_thread_priority`,
done by the runnable itself, so core task functions need not know about it). On
Linux the nice value is per thread and is inherited by processes forked from that
thread, so the core's decoder processes, started from a loading task, yield the CPU
too. Measured on a busy 2-core machine: the GUI event loop's longest stall while a
300-slice JPEG 2000 series decoded went from 50-130 ms to under 40 ms
(tests/bench/bench_viewer.py).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from medview.errors import Cancelled, one_line
from medview.tasks import TaskState

log = logging.getLogger(__name__)

_pool: QThreadPool | None = None
_active: set[TaskHandle] = set()

#: nice value of the worker threads (the GUI thread keeps 0)
NICE = 10
_lowered: set[int] = set()


def lower_thread_priority(nice: int = NICE) -> bool:
    """Raise this thread's nice value to at least ``nice`` (Linux only). True if set.

    Never on the main thread (the GUI's). Called by every worker runnable before
    its task; harmless to call again.
    """
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is threading.main_thread()
    ):
        return False
    tid = threading.get_native_id()
    if tid in _lowered:
        return True
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    _lowered.add(tid)
    return True


def thread_pool() -> QThreadPool:
    """medview's own pool (kept apart from Qt's global pool so we can wait on it)."""
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(max(2, QThreadPool.globalInstance().maxThreadCount()))
        _pool.setExpiryTimeout(2000)
    return _pool


class _Signals(QObject):
    progress = Signal(float, str)
    partial = Signal(object)
    result = Signal(object)
    error = Signal(str)
    done = Signal()


class TaskHandle(QObject):
    """A running task. Connect to its signals; call :meth:`cancel` to stop it.

    ``progress(fraction, message)``, ``partial(obj)``, ``result(obj)``,
    ``error(message)`` and ``finished()`` are emitted on the GUI thread; after
    :meth:`cancel`, only ``finished`` still arrives.
    """

    progress = Signal(float, str)
    partial = Signal(object)
    result = Signal(object)
    error = Signal(str)
    finished = Signal()

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self._signals = _Signals()
        self.state = TaskState(
            on_progress=lambda f, m: self._signals.progress.emit(f, m),
            on_partial=lambda v: self._signals.partial.emit(v),
        )
        self.running = True
        s = self._signals
        s.progress.connect(self._relay_progress)
        s.partial.connect(self._relay_partial)
        s.result.connect(self._relay_result)
        s.error.connect(self._relay_error)
        s.done.connect(self._on_done)

    def cancel(self) -> None:
        self.state.cancel()

    @property
    def cancelled(self) -> bool:
        return self.state.cancelled

    # relays drop anything that arrives after a cancel
    def _relay_progress(self, f: float, m: str) -> None:
        if not self.cancelled:
            self.progress.emit(f, m)

    def _relay_partial(self, v: object) -> None:
        if not self.cancelled:
            self.partial.emit(v)

    def _relay_result(self, v: object) -> None:
        if not self.cancelled:
            self.result.emit(v)

    def _relay_error(self, m: str) -> None:
        if not self.cancelled:
            self.error.emit(m)

    def _on_done(self) -> None:
        self.running = False
        _active.discard(self)
        self.finished.emit()


class _Runnable(QRunnable):
    def __init__(
        self,
        handle: TaskHandle,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._handle = handle
        self._signals = handle._signals
        self._state = handle.state
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def run(self) -> None:  # worker thread
        try:
            lower_thread_priority()
            self._state.check()
            value = self._fn(*self._args, state=self._state, **self._kwargs)
            self._signals.result.emit(value)
        except Cancelled:
            pass
        except Exception as exc:  # reported as a notification, never a crash
            log.debug("task %s failed:\n%s", self._handle.name, traceback.format_exc())
            self._signals.error.emit(one_line(exc))
        finally:
            self._signals.done.emit()


def _start_task(fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> TaskHandle:
    """Run ``fn(*args, state=..., **kwargs)`` on the pool; returns its handle."""
    handle = TaskHandle(name or getattr(fn, "__name__", "task"))
    _active.add(handle)
    thread_pool().start(_Runnable(handle, fn, args, kwargs))
    return handle


class TaskSlot(QObject):
    """At most one active task (one per panel or viewport): a new run cancels the old.

    :meth:`run` is the one way to start a task: it does the wiring every owner needs
    (busy indicator, progress, partial results, result, error, end), and after
    :meth:`close` (the owner is going away) nothing new starts and nothing more is
    delivered.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.current: TaskHandle | None = None
        self.closed = False
        # the owner (parent) may be deleted without close(): then nothing more is
        # delivered to its (deleted) widgets either
        self.destroyed.connect(lambda *_: self._owner_gone())

    def _owner_gone(self) -> None:
        self.closed = True
        if self.current is not None:
            self.current.cancel()
            self.current = None

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_busy: Callable[..., None] | None = None,
        on_finished: Callable[[TaskHandle], None] | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> TaskHandle | None:
        """Start ``fn(*args, state=..., **kwargs)``; its outcome goes to the callbacks.

        All callbacks run on the GUI thread. ``on_partial(value)`` gets what the task
        hands to ``state.partial``; ``on_progress(fraction, message)`` its progress;
        then either ``on_result(value)`` or ``on_error(one_line_message)`` (nothing
        after a cancel). ``on_busy(True, name)`` is called at the start and
        ``on_busy(False)`` when this task ends while it is still the slot's current
        one (a newer task keeps the owner busy). ``on_finished(handle)`` is called
        when the task ends in any way, cancelled included (``handle.cancelled``
        tells), unless the slot was closed meanwhile. Returns the handle (for a
        status-bar tracker), or None once the slot is closed.
        """
        if self.closed:
            return None
        handle = self._start(fn, *args, name=name, **kwargs)
        live = self._live
        if on_result is not None:
            handle.result.connect(live(on_result))
        if on_partial is not None:
            handle.partial.connect(live(on_partial))
        if on_progress is not None:
            handle.progress.connect(live(on_progress))
        if on_error is not None:
            handle.error.connect(live(on_error))
        if on_busy is not None:
            on_busy(True, name)
            handle.finished.connect(
                lambda h=handle: (
                    None if self.closed or self.current not in (h, None) else on_busy(False)
                )
            )
        if on_finished is not None:
            handle.finished.connect(lambda h=handle: None if self.closed else on_finished(h))
        return handle

    def _live(self, callback: Callable[..., None]) -> Callable[..., None]:
        return lambda *a: None if self.closed else callback(*a)

    def close(self) -> None:
        """Cancel the current task and refuse new ones (the owner is being torn down)."""
        self.closed = True
        self.cancel()

    def _start(
        self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any
    ) -> TaskHandle:
        self.cancel()
        self.current = _start_task(fn, *args, name=name, **kwargs)
        return self.current

    def cancel(self) -> None:
        """Cancel the current task (its late results are dropped)."""
        if self.current is not None and self.current.running:
            self.current.cancel()
        self.current = None

    @property
    def busy(self) -> bool:
        """A task of this slot is running."""
        return self.current is not None and self.current.running


def active_tasks() -> list[TaskHandle]:
    """The tasks still running (tests check that none is left)."""
    return [h for h in _active if h.running]


def shutdown_all(timeout_ms: int = 10000) -> bool:
    """Cancel every task and wait for the pool to drain. True if it drained."""
    for handle in list(_active):
        handle.cancel()
    if _pool is None:
        return True
    drained = _pool.waitForDone(timeout_ms)
    if drained:
        # the pool is empty, so nothing runs any more; the queued "done" signals may
        # not have reached the GUI thread yet (e.g. when called from closeEvent)
        for handle in list(_active):
            handle.running = False
        _active.clear()
    return drained
