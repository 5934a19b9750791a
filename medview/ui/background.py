"""Keep background work from starving the GUI thread of CPU (Qt-free).

On Linux the nice value is per thread and is inherited by processes forked from
that thread. Worker tasks call :func:`lower_thread_priority` first: the worker
thread then yields the CPU to the GUI thread, and so do the core's decoder
processes, which are started from the loading thread. Measured on a busy 2-core
machine: the GUI event loop's longest stall while a 300-slice JPEG 2000 series
decoded went from 50-130 ms to under 40 ms (tests/bench/bench_viewer.py).
"""

from __future__ import annotations

import os
import sys
import threading

NICE = 10
_done: set[int] = set()


def lower_thread_priority(nice: int = NICE) -> bool:
    """Raise this thread's nice value to at least ``nice`` (Linux only). True if set."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is threading.main_thread()
    ):
        return False
    tid = threading.get_native_id()
    if tid in _done:
        return True
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return False
    _done.add(tid)
    return True
