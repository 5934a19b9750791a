"""The one worker mechanism of the GUI: core task functions on a QThreadPool.

A task is a plain core function ``fn(*args, state=TaskState, **kwargs)``
(see :mod:`medview.tasks`). :func:`start_task` runs it on medview's thread pool
and delivers progress, partial results, the result or a one-line error back on
the GUI thread through Qt signals. A :class:`TaskSlot` holds the one active
task of a panel: starting a new one cancels the old, whose late results are
dropped. :func:`shutdown_all` cancels everything and waits (called on quit).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from medview.errors import Cancelled, one_line
from medview.tasks import TaskState

log = logging.getLogger(__name__)

_pool: QThreadPool | None = None
_active: set[TaskHandle] = set()


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
    def __init__(self, handle: TaskHandle, fn: Callable[..., Any], args, kwargs) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._handle = handle
        self._signals = handle._signals
        self._state = handle.state
        self._fn, self._args, self._kwargs = fn, args, kwargs

    def run(self) -> None:  # worker thread
        try:
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


def start_task(fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any) -> TaskHandle:
    """Run ``fn(*args, state=..., **kwargs)`` on the pool; returns its handle."""
    handle = TaskHandle(name or getattr(fn, "__name__", "task"))
    _active.add(handle)
    thread_pool().start(_Runnable(handle, fn, args, kwargs))
    return handle


class TaskSlot(QObject):
    """At most one active task (one per panel): a new start cancels the old.

    :meth:`run` also does the wiring every panel needs (busy indicator, progress,
    result, error), and after :meth:`close` (the panel is going away) nothing new
    starts and nothing more is delivered.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.current: TaskHandle | None = None
        self.closed = False

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None],
        on_progress: Callable[[float, str], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_busy: Callable[..., None] | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> TaskHandle | None:
        """Start ``fn`` and deliver its outcome to the callbacks on the GUI thread.

        ``on_busy(True, name)`` is called at the start and ``on_busy(False)`` when this
        task ends while it is still the slot's current one (a newer task keeps the
        panel busy). Returns the handle, or None once the slot is closed.
        """
        if self.closed:
            return None
        handle = self.start(fn, *args, name=name, **kwargs)
        live = self._live
        handle.result.connect(live(on_result))
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
        return handle

    def _live(self, callback: Callable[..., None]) -> Callable[..., None]:
        return lambda *a: None if self.closed else callback(*a)

    def close(self) -> None:
        """Cancel the current task and refuse new ones (the owner is being torn down)."""
        self.closed = True
        self.cancel()

    def start(
        self, fn: Callable[..., Any], *args: Any, name: str = "", **kwargs: Any
    ) -> TaskHandle:
        self.cancel()
        self.current = start_task(fn, *args, name=name, **kwargs)
        return self.current

    def cancel(self) -> None:
        if self.current is not None and self.current.running:
            self.current.cancel()
        self.current = None

    @property
    def busy(self) -> bool:
        return self.current is not None and self.current.running


def active_tasks() -> list[TaskHandle]:
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
