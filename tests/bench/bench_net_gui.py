"""Benchmark: does the GUI stall while a study arrives? (issue 12 target: a 300-instance
study pushed while the user scrolls another series, no GUI stall over 50 ms.)

Run: ``python3 -m tests.bench.bench_net_gui [--slices 300] [--repeat 2] [--compressed]``.
Needs ../shared/data and dcmtk's ``storescu`` (Debian ``dcmtk``). Not run by pytest.

The main window (offscreen) shows a 60-slice CT series that a timer scrolls back and forth
at 25 slices/s (a user on the mouse wheel), with the GUI's own listener (Network >
Listener settings, loopback) running. A 10 ms precise QTimer on the GUI thread records
its lateness: a stall is how much later than 10 ms a tick came. Two phases alternate, in
one process, so they share the machine's load:

* ``push``: dcmtk ``storescu`` (``TCP_NODELAY=1``, see bench_net.py) sends the N-instance
  CT series to the listener; the phase ends when every instance is in the study browser
  (the live arrivals' last refresh shows N images) and the study-complete notification
  came.
* ``baseline``: the same window, scrolling and timer, for the same time, with nothing
  arriving: what the machine's load and the scrolling alone cost.

Printed per phase: the longest stall, p99, ticks over 50 ms, and for the push the
GUI batches the arrivals came in, the instances per second, and the longest run of any
GUI-thread slot handling arrivals (live arrivals, database refresh, thumbnails), which is
the part of a stall the GUI's own work can cause.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]

from tests.bench.bench_net import DCMTK_ENV, dcmtk, free_port, make_series  # noqa: E402
from tests.helpers.series import build_series  # noqa: E402

STALL_LIMIT_MS = 50.0
#: GUI-thread slots that handle arrivals; their longest run is printed per phase
HANDLERS = [
    (module, cls, slot)
    for module, cls, slots in (
        ("medview.ui.net.live", "LiveArrivals", "on_batch _mark"),
        ("medview.ui.net.listener", "ArrivalBridge", "_drain"),
        ("medview.ui.study_browser", "StudyBrowser", "_db_loaded _thumb_arrived refresh_database"),
    )
    for slot in slots.split()
]
HANDLER_MS: list[float] = []


def _instrument() -> None:
    """Time the arrival handlers on the GUI thread (before the window connects them)."""
    import functools
    import importlib

    for module, cls_name, name in HANDLERS:
        cls = getattr(importlib.import_module(module), cls_name)
        fn = getattr(cls, name)

        def timed(*a, _fn=fn, **k):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                HANDLER_MS.append(1000 * (time.perf_counter() - t))

        setattr(cls, name, functools.wraps(fn)(timed))


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


def _pump(app, until, timeout: float) -> bool:  # noqa: ANN001
    """Run the event loop until ``until()`` (checked every 20 ms) or ``timeout`` s."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout
    check = QTimer()
    check.setInterval(20)
    check.timeout.connect(lambda: loop.quit() if until() or time.monotonic() > deadline else None)
    check.start()
    if not until():
        loop.exec()
    check.stop()
    return bool(until())


class StallMeter:
    """A 10 ms precise timer on the GUI thread and a scroll timer; records lateness."""

    def __init__(self, vp) -> None:  # noqa: ANN001
        from PySide6.QtCore import QElapsedTimer, Qt, QTimer

        self.vp = vp
        self.clock = QElapsedTimer()
        self.stalls: list[float] = []
        self.last = 0
        self.tick_timer = QTimer()
        self.tick_timer.setInterval(10)
        self.tick_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.tick_timer.timeout.connect(self._tick)
        self.scroll_timer = QTimer()
        self.scroll_timer.setInterval(40)
        self.scroll_timer.timeout.connect(self._scroll)
        self.direction = 1
        self.scrolled = 0

    def _tick(self) -> None:
        now = self.clock.nsecsElapsed()
        self.stalls.append((now - self.last) / 1e6 - 10.0)
        self.last = now

    def _scroll(self) -> None:
        vol = self.vp.volume
        if vol is None:
            return
        n = vol.shape[0]
        if not 0 <= self.vp.index + self.direction < n:
            self.direction = -self.direction
        self.vp.scroll(self.direction)
        self.vp.repaint()  # painted now, as a real scroll is
        self.scrolled += 1

    def start(self) -> None:
        HANDLER_MS.clear()
        self.stalls.clear()
        self.scrolled = 0
        self.clock.start()
        self.last = self.clock.nsecsElapsed()
        self.tick_timer.start()
        self.scroll_timer.start()

    def stop(self) -> dict[str, float]:
        self.tick_timer.stop()
        self.scroll_timer.stop()
        s = self.stalls
        return {
            "max_stall_ms": round(max(s), 1) if s else 0.0,
            "p99_stall_ms": round(_pct(s, 0.99), 1),
            "stalls_over_50ms": sum(1 for x in s if x > STALL_LIMIT_MS),
            "ticks": len(s),
            "slices_scrolled": self.scrolled,
            "handlers_max_ms": round(max(HANDLER_MS), 1) if HANDLER_MS else 0.0,
            "handler_calls": len(HANDLER_MS),
        }


def _setup(app, tmp: Path):  # noqa: ANN001, ANN202
    from medview.ui.main_window import MainWindow

    win = MainWindow(load_panels=False)
    win.resize(1400, 900)
    win.show()
    if not _pump(app, lambda: getattr(win, "net", None) is not None and not win.busy, 60):
        raise SystemExit("the window did not finish starting")
    scroll = build_series(tmp / "scroll", 60, compressed=False)
    win.open_paths([str(scroll)])
    win.set_layout("1x1")
    vp = win.area.viewports[0]
    ok = _pump(app, lambda: not win.busy and vp.volume is not None and not vp.loading, 120)
    if not ok or vp.volume.shape[0] != 60:
        raise SystemExit("the series to scroll did not load")
    return win, vp


def _listen(app, win, port: int) -> None:  # noqa: ANN001
    from medview.ui.net.listener import save_listener_settings

    win.net.listener.apply(save_listener_settings({"enabled": True, "port": port}))
    if not _pump(app, lambda: win.net.listener.running, 60):
        raise SystemExit(f"the GUI's listener did not start on port {port}")


def _push(app, win, meter: StallMeter, port: int, files: list[Path]) -> dict:  # noqa: ANN001
    import pydicom

    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    live = win.net.live
    received0, batches0 = live.received_total, win.net.listener.bridge.batches
    notes0 = len(win.notifier.history)
    n = len(files)

    def browser_count() -> int:
        item = win.browser.items.get(f"db:{series_uid}")
        text = item.text(1).split()[0] if item is not None else "0"
        return int(text) if text.isdigit() else 0

    def done() -> bool:
        notified = any("received" in t for _, _, t in win.notifier.history[notes0:])
        return proc.poll() is not None and notified and browser_count() >= n

    meter.start()
    t0 = time.perf_counter()
    args = [dcmtk("storescu"), "-aet", "BENCHPUSH", "-aec", "MEDVIEW", "-xv"]
    proc = subprocess.Popen(
        [*args, "127.0.0.1", str(port), *map(str, files)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    ok = _pump(app, done, 300)
    elapsed = time.perf_counter() - t0
    res = meter.stop()
    if proc.poll() is None:
        proc.kill()
    if proc.wait() != 0:
        raise SystemExit(f"storescu failed: {proc.stderr.read().strip()[-300:]}")
    if not ok:
        raise SystemExit(f"the browser shows {browser_count()}/{n} instances after 300 s")
    res |= {
        "seconds": round(elapsed, 2),
        "instances": live.received_total - received0,
        "gui_batches": win.net.listener.bridge.batches - batches0,
        "instances_per_s": round((live.received_total - received0) / elapsed, 1),
    }
    return res


def _baseline(app, meter: StallMeter, seconds: float) -> dict:  # noqa: ANN001
    meter.start()
    end = time.monotonic() + seconds
    _pump(app, lambda: time.monotonic() >= end, seconds + 5)
    return meter.stop() | {"seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--compressed", action="store_true", help="JPEG 2000 lossless")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="medview-bench-netgui-"))
    os.environ["MEDVIEW_HOME"] = str(tmp / "home")
    os.environ.pop("MEDVIEW_DB", None)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    rows: list[tuple[str, dict]] = []
    try:
        _instrument()
        win, vp = _setup(app, tmp)
        port = free_port()
        _listen(app, win, port)
        meter = StallMeter(vp)
        for r in range(args.repeat):
            files = make_series(tmp / f"push{r}", args.slices, args.compressed)
            push = _push(app, win, meter, port, files)
            rows.append(("push", push))
            rows.append(("baseline", _baseline(app, meter, push["seconds"])))
        win.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # 0.3 to 0.6 GB a run

    kind = "JPEG 2000 lossless" if args.compressed else "uncompressed"
    print(f"{args.slices}-instance {kind} CT pushed by dcmtk storescu into the GUI's listener")
    print("while a 60-slice series is scrolled at 25 slices/s; 10 ms timer lateness (ms)")
    head = f"{'phase':9} {'s':>6} {'max':>7} {'p99':>6} {'>50ms':>6} {'ticks':>6} {'batches':>8}"
    print(head + f" {'inst/s':>7} {'handlers max':>12} {'calls':>6}")
    for name, r in rows:
        print(
            f"{name:9} {r['seconds']:6.2f} {r['max_stall_ms']:7.1f} {r['p99_stall_ms']:6.1f} "
            f"{r['stalls_over_50ms']:6d} {r['ticks']:6d} {r.get('gui_batches', ''):>8} "
            f"{r.get('instances_per_s', ''):>7} {r['handlers_max_ms']:12.1f} {r['handler_calls']:6d}"
        )
    push_max = [r["max_stall_ms"] for n, r in rows if n == "push"]
    base_max = [r["max_stall_ms"] for n, r in rows if n == "baseline"]
    summary = {
        "push_max_stall_ms": max(push_max),
        "baseline_max_stall_ms": max(base_max),
        "ratio_push_to_baseline_p99": round(
            statistics.median(r["p99_stall_ms"] for n, r in rows if n == "push")
            / max(0.1, statistics.median(r["p99_stall_ms"] for n, r in rows if n == "baseline")),
            2,
        ),
        "stall<=50ms": max(push_max) <= STALL_LIMIT_MS,
        "arrival_handlers_max_ms": max(r["handlers_max_ms"] for n, r in rows if n == "push"),
    }
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
