"""Where the GUI thread stalls while a series is scanned and loaded (issue 16). Not run
by pytest.

    python3 -m tests.bench.stall_probe FOLDER [--handlers]

Opens FOLDER in the main window (offscreen, pinned 1x1 as bench_viewer does) with a
10 ms timer on the GUI thread; a watchdog thread samples the GUI thread's Python stack
(and the innermost frame of every other thread) each 5 ms while the timer is more than
30 ms late. Prints the longest stalls, the samples taken during the five longest, and
the garbage collections over 5 ms. A stall whose samples show the GUI thread in trivial
code, or in Qt's event loop, with every other thread waiting, is the machine's load.

``--handlers`` also times every Python handler that Qt calls on the GUI thread (slots,
paint and wheel events, timers: each Python frame entered from the event loop, through
``sys.setprofile`` on that thread only) while the series is opened and loaded, scrolled
with the wheel, shown in MPR (coronal and sagittal reformats) and scrolled there, and
lists each handler over 10 ms (phase, ms, where). The profiler slows Python code on the
GUI thread, so its times are upper bounds; the stall figures of that run are not the
benchmark's (bench_viewer.py runs without it).
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
import traceback


def _where(frame, depth: int) -> list[str]:
    return [
        f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}"
        for f in reversed(traceback.extract_stack(frame)[-depth:])
        if "frozen" not in f.filename
    ]


def _handler_timer(loop_codes: set, tick_code, slow: list, phase: list):
    """A ``sys.setprofile`` function timing each Python frame that the event loop (called
    from one of ``loop_codes``) enters; those over 10 ms go to ``slow`` as (phase, ms,
    where)."""
    starts: dict[int, float] = {}

    def prof(frame, event, _arg) -> None:
        if event not in ("call", "return"):
            return
        back = frame.f_back
        code = frame.f_code
        if back is None or back.f_code not in loop_codes or code is tick_code:
            return
        if code in loop_codes:
            return
        if event == "call":
            starts[id(frame)] = time.perf_counter()
        elif (t := starts.pop(id(frame), None)) is not None:
            ms = (time.perf_counter() - t) * 1000
            if ms > 10:
                where = f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}:{code.co_name}"
                slow.append((phase[0], ms, where))

    return prof


def _pump(beat: list, seconds: float = 0.0) -> None:
    from PySide6.QtCore import QCoreApplication

    end = time.perf_counter() + seconds
    while True:
        QCoreApplication.processEvents()
        beat[0] = time.perf_counter()
        if time.perf_counter() >= end:
            return
        time.sleep(0.001)


def _scroll_and_reformat(win, phase: list, beat: list) -> None:
    """Wheel through 300 slices, switch to MPR, wheel through the coronal and sagittal
    reformats (200 each), each event through the event loop."""
    from PySide6.QtCore import QCoreApplication

    from tests.helpers.qt_helpers import wheel_event

    vp = win.active
    phase[0] = "scroll"
    for _ in range(300):
        QCoreApplication.postEvent(vp, wheel_event(200, 200, -120))
        _pump(beat)
    phase[0] = "mpr"
    win.set_layout("mpr")
    _pump(beat, 1.0)
    while win.busy:
        _pump(beat, 0.01)
    for v in win.area.viewports[1:3]:
        phase[0] = f"scroll {v.plane}"
        for _ in range(200):
            QCoreApplication.postEvent(v, wheel_event(100, 100, -120))
            _pump(beat)
    phase[0] = "idle"
    _pump(beat, 0.5)


def main() -> int:  # noqa: PLR0915 - one measurement, read top to bottom
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("MEDVIEW_HOME", tempfile.mkdtemp(prefix="medview-probe-home-"))
    folder = sys.argv[1]
    handlers = "--handlers" in sys.argv[2:]
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer

    from medview.ui.app import _app
    from medview.ui.workers import shutdown_all
    from tests.helpers.qt_helpers import warm_main_window

    app = _app()
    win, _warm_s = warm_main_window()
    main_id = threading.get_ident()
    beat = [time.perf_counter()]
    gcs: list[tuple[int, float, str]] = []
    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[threading.get_ident()] = time.perf_counter()
        elif (t0 := started.pop(threading.get_ident(), None)) is not None:
            ms = (time.perf_counter() - t0) * 1000
            gcs.append((info["generation"], ms, threading.current_thread().name))

    gc.callbacks.append(on_gc)
    stop = [False]
    samples: list[tuple[float, list[str], list[str]]] = []

    def watchdog() -> None:
        me = threading.get_ident()
        while not stop[0]:
            time.sleep(0.005)
            if time.perf_counter() - beat[0] > 0.03:
                frames = sys._current_frames()
                others = [_where(f, 1)[0] for tid, f in frames.items() if tid not in (main_id, me)]
                samples.append((time.perf_counter(), _where(frames[main_id], 40), others))

    stalls: list[tuple[float, float]] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.nsecsElapsed()]

    def tick() -> None:
        now = clock.nsecsElapsed()
        stalls.append(((now - last[0]) / 1e6 - 10.0, time.perf_counter()))
        last[0] = now
        beat[0] = time.perf_counter()

    timer = QTimer()
    timer.setInterval(10)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    threading.Thread(target=watchdog, daemon=True).start()
    slow: list[tuple[str, float, str]] = []
    phase = ["open+load"]
    # the set_layout call of _scroll_and_reformat is what a click does: timed too
    loop_codes = {sys._getframe().f_code, _pump.__code__, _scroll_and_reformat.__code__}
    if handlers:
        sys.setprofile(_handler_timer(loop_codes, tick.__code__, slow, phase))
    timer.start()
    t0 = time.perf_counter()
    win.open_paths([folder])
    vp = win.active
    while win.busy or vp.volume is None or vp.loaded is not None:
        _pump(beat)
    print(f"loaded in {time.perf_counter() - t0:.2f} s")
    if handlers:
        _scroll_and_reformat(win, phase, beat)
        sys.setprofile(None)
        print(f"Python handlers on the GUI thread over 10 ms ({len(slow)}):")
        for ph, ms, where in sorted(slow, key=lambda x: -x[1])[:40]:
            print(f"  {ph:12s} {ms:7.1f} ms  {where}")
    timer.stop()
    stop[0] = True
    worst = sorted(stalls, reverse=True)[:10]
    print("longest stalls, ms (ending at s):", [(round(s), round(at - t0, 2)) for s, at in worst])
    print("collections over 5 ms (generation, ms, thread):", [g for g in gcs if g[1] > 5])
    waiting = ("wait", "select", "_worker")
    for ms, at in worst[:5]:
        print(f"=== {ms:.0f} ms ending at {at - t0:.2f} s")
        for when, stack, others in samples:
            if at - ms / 1000 - 0.02 <= when <= at:
                busy = [o for o in others if not any(w in o for w in waiting)]
                print(f"  {when - t0:.3f} GUI: {' <- '.join(stack[:10])}")
                print(f"        other threads not waiting: {', '.join(busy) or 'none'}")
    win.close()
    shutdown_all()
    from medview.io import decoders

    decoders.shutdown()
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
