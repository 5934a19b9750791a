"""Qt-free task state: progress, partial results and cancellation.

Long computations (decoding, volume assembly, inference, training, forecasting)
are plain functions taking a :class:`TaskState` as their ``state`` argument.
They call :meth:`TaskState.progress` now and then, which also raises
:class:`~medview.errors.Cancelled` once someone called :meth:`TaskState.cancel`.
The GUI wraps such functions in workers (:mod:`medview.ui.workers`); scripts and
tests call them directly, with or without a state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from medview.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
PartialCallback = Callable[[Any], None]


class TaskState:
    """Shared between a running task and whoever started it. Thread-safe.

    Parameters
    ----------
    on_progress:
        Called as ``on_progress(fraction, message)`` from the task's thread.
    on_partial:
        Called with partial results (e.g. the first decoded slice).
    """

    def __init__(
        self,
        on_progress: ProgressCallback | None = None,
        on_partial: PartialCallback | None = None,
    ) -> None:
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._on_progress = on_progress
        self._on_partial = on_partial
        self.fraction = 0.0
        self.message = ""

    # -- controller side ---------------------------------------------------
    def cancel(self) -> None:
        """Ask the task to stop at its next check."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- task side ---------------------------------------------------------
    def check(self) -> None:
        """Raise :class:`Cancelled` if the task was cancelled."""
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1] and check for cancellation."""
        self.check()
        with self._lock:
            self.fraction = min(max(float(fraction), 0.0), 1.0)
            if message:
                self.message = message
        if self._on_progress is not None:
            self._on_progress(self.fraction, self.message)

    def partial(self, value: Any) -> None:
        """Hand a partial result to the controller (e.g. the first slice)."""
        if self._on_partial is not None:
            self._on_partial(value)


def ensure_state(state: TaskState | None) -> TaskState:
    """Return ``state`` or a fresh no-op state, so tasks can always call it."""
    return state if state is not None else TaskState()
