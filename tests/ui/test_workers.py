"""The one worker pattern (``TaskSlot.run``): partial results, cancel, close, errors, priority."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

pytest.importorskip("PySide6")


def _count(n: int, gate: threading.Event | None = None, state=None) -> str:
    """Hands 0..n-1 to ``state.partial``; waits on ``gate`` (if given) before finishing."""
    for k in range(n):
        state.partial(k)
        state.progress((k + 1) / n, f"step {k + 1}")
    if gate is not None:
        while not gate.wait(0.01):
            state.check()
    return f"counted {n}"


def _until_cancelled(started: threading.Event, state=None) -> str:
    state.partial("started")
    started.set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state.progress(0.5)  # raises Cancelled once cancelled
        time.sleep(0.005)
    return "not cancelled"


def _fail(path: str, state=None) -> None:
    from medview.errors import ReadError

    raise ReadError("truncated pixel data", path)


def _my_priority(state=None) -> tuple[int, int]:
    return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class _Log:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, what: str):
        return lambda *a: self.calls.append((what, *a))

    def of(self, what: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == what]


def _run(slot, fn, *args, log: _Log, name: str = "job"):
    kinds = ("result", "partial", "progress", "error", "busy", "finished")
    return slot.run(fn, *args, name=name, **{f"on_{k}": getattr(log, k) for k in kinds})


def test_run_delivers_partials_progress_and_result_in_order(qtbot) -> None:
    from medview.ui.workers import TaskSlot

    slot, log = TaskSlot(), _Log()
    handle = _run(slot, _count, 5, log=log, name="count")
    assert slot.busy and handle is slot.current
    qtbot.waitUntil(lambda: bool(log.of("finished")), timeout=10000)
    assert log.of("partial") == [(k,) for k in range(5)]
    assert log.of("progress")[-1] == (1.0, "step 5")
    assert log.of("result") == [("counted 5",)]
    assert log.of("error") == []
    assert log.of("busy") == [(True, "count"), (False,)]
    # the last partial arrives before the result, the result before the end
    names = [c[0] for c in log.calls if c[0] in ("partial", "result", "finished")]
    assert names == ["partial"] * 5 + ["result", "finished"]
    assert log.of("finished") == [(handle,)] and not handle.cancelled
    assert not slot.busy


def test_cancel_drops_everything_after_it(qtbot) -> None:
    from medview.ui.workers import TaskSlot

    slot, log = TaskSlot(), _Log()
    started = threading.Event()
    handle = _run(slot, _until_cancelled, started, log=log)
    qtbot.waitUntil(lambda: bool(log.of("partial")), timeout=10000)
    slot.cancel()
    assert not slot.busy and slot.current is None and handle.cancelled
    qtbot.waitUntil(lambda: bool(log.of("finished")), timeout=10000)
    assert log.of("result") == [] and log.of("error") == []
    assert log.of("partial") == [("started",)]
    assert log.of("finished") == [(handle,)] and handle.cancelled and not handle.running


def test_a_new_run_cancels_the_old_one(qtbot) -> None:
    from medview.ui.workers import TaskSlot

    slot, first, second = TaskSlot(), _Log(), _Log()
    started = threading.Event()
    old = _run(slot, _until_cancelled, started, log=first, name="old")
    assert started.wait(10)
    new = _run(slot, _count, 3, log=second, name="new")
    assert old.cancelled and slot.current is new
    qtbot.waitUntil(lambda: bool(first.of("finished") and second.of("finished")), timeout=10000)
    assert first.of("result") == [] and second.of("result") == [("counted 3",)]
    # the old task's end does not clear the busy state of the new one
    assert first.of("busy") == [(True, "old")]
    assert second.of("busy") == [(True, "new"), (False,)]


def test_close_refuses_new_runs_and_delivers_nothing_more(qtbot) -> None:
    from medview.ui.workers import TaskSlot, active_tasks

    slot, log = TaskSlot(), _Log()
    gate = threading.Event()
    handle = _run(slot, _count, 2, gate, log=log)
    qtbot.waitUntil(lambda: len(log.of("partial")) == 2, timeout=10000)
    slot.close()
    gate.set()  # the task could finish now, but its owner is gone
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    qtbot.wait(50)
    assert log.of("result") == [] and log.of("finished") == []
    assert log.of("busy") == [(True, "job")]
    assert _run(slot, _count, 1, log=log) is None
    assert handle not in active_tasks()


def test_error_is_one_line_naming_the_file(qtbot, tmp_path) -> None:
    from medview.ui.workers import TaskSlot

    slot, log = TaskSlot(), _Log()
    path = str(tmp_path / "broken.dcm")
    _run(slot, _fail, path, log=log)
    qtbot.waitUntil(lambda: bool(log.of("finished")), timeout=10000)
    assert log.of("result") == []
    ((message,),) = log.of("error")
    assert message == f"{path}: truncated pixel data"
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread nice values: Linux only")
def test_the_runnable_lowers_the_worker_thread_priority(qtbot) -> None:
    from medview.ui.workers import NICE, TaskSlot

    gui_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    slot, log = TaskSlot(), _Log()
    _run(slot, _my_priority, log=log)
    qtbot.waitUntil(lambda: bool(log.of("finished")), timeout=10000)
    ((tid, nice),) = log.of("result")[0]
    assert tid != threading.get_native_id()
    assert nice >= NICE
    # the GUI thread keeps its priority
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == gui_before


def test_a_deleted_owner_gets_nothing_more(qtbot) -> None:
    """A panel deleted without shutdown(): its running task's end never reaches its widgets."""
    import shiboken6
    from PySide6.QtWidgets import QWidget

    from medview.ui.workers import TaskSlot

    owner, log = QWidget(), _Log()
    slot = TaskSlot(owner)
    gate = threading.Event()
    handle = _run(slot, _count, 1, gate, log=log)
    qtbot.waitUntil(lambda: bool(log.of("partial")), timeout=10000)
    shiboken6.delete(owner)  # deletes the slot with it
    assert slot.closed and handle.cancelled
    gate.set()
    qtbot.waitUntil(lambda: not handle.running, timeout=10000)
    qtbot.wait(50)
    assert log.of("busy") == [(True, "job")]
    assert log.of("result") == [] and log.of("finished") == []
