"""GUI entry point: ``medview [PATH ...] [--screenshot FILE.png] [--layout L] [--preset P]``.

``--screenshot FILE.png`` also writes ``FILE.json`` (:mod:`medview.viewer.snapshot`).

Kept light on purpose: only Qt and the window modules are imported before the
window is on screen; readers, torch and SimpleITK load when first needed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger(__name__)

SCREENSHOT_SIZE = (1600, 960)
GUI_SWITCH_INTERVAL_S = 0.001
SCREENSHOT_TIMEOUT_S = float(os.environ.get("MEDVIEW_SCREENSHOT_TIMEOUT", "300"))


def _app():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        # Workers are threads of this process: hand the GIL back to the GUI thread
        # after 1 ms instead of 5 ms (measured: lower event-loop stalls while a
        # series is scanned and loaded, tests/bench/bench_viewer.py).
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
        app = QApplication(sys.argv[:1])
        app.setApplicationName("medview")
        app.setOrganizationName("medview")
        app.setStyle("Fusion")
        _dark_palette(app)
    return app


def _dark_palette(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    pal = QPalette()
    base, text = QColor(37, 37, 38), QColor(220, 220, 220)
    pal.setColor(QPalette.ColorRole.Window, QColor(45, 45, 48))
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, base)
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(50, 50, 52))
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, QColor(55, 55, 58))
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(60, 60, 60))
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.Highlight, QColor(0, 110, 190))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 140, 140))
    app.setPalette(pal)


def create_window(args: Any | None = None, load_panels: bool = True):
    """Build the main window and apply the CLI options (no event loop)."""
    from medview.ui.main_window import MainWindow

    win = MainWindow(load_panels=load_panels)
    layout = getattr(args, "layout", None)
    if layout:
        win.pinned_layout = layout  # no hanging protocol: the layout asked for
        win.set_layout(layout)
    preset = getattr(args, "preset", None)
    if preset:
        from medview.ui.presets import resolve_preset

        if resolve_preset(preset) is None:
            win.notify(f"unknown window preset: {preset}", "warning")
        else:
            win.requested_preset = preset
    projection = getattr(args, "projection", None)
    if projection:
        win.requested_projection = (projection, getattr(args, "slab", None))
    paths = list(getattr(args, "paths", None) or [])
    if paths:
        win.open_paths(paths)
    return win


def preset_problem(name: str | None) -> str:
    """Why ``--preset NAME`` cannot be used (an unknown name), else ``""``."""
    if not name:
        return ""
    from medview.ui.presets import all_presets, resolve_preset

    if resolve_preset(name) is not None:
        return ""
    names = ", ".join([*all_presets(), "file", "auto"])
    return f"unknown window preset {name!r}; choose from {names}"


def _slab_problem(args: Any) -> str:
    """Why ``--projection`` / ``--slab`` cannot be used, else ``""``."""
    slab = getattr(args, "slab", None)
    if slab is not None and not getattr(args, "projection", None):
        return "--slab needs --projection mip|minip|avg"
    if slab is not None and not slab > 0:
        return f"--slab must be a thickness in mm above 0, not {slab:g}"
    return ""


def wait_until_idle(win, timeout_s: float = SCREENSHOT_TIMEOUT_S, settle_ms: int = 300) -> bool:
    """Process events until nothing is loading (and stays so for ``settle_ms``)."""
    from PySide6.QtCore import QCoreApplication, QEventLoop

    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if win.busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif (time.monotonic() - quiet_since) * 1000 >= settle_ms:
            return True
        time.sleep(0.01)
    return False


def save_screenshot(win, path: str) -> bool:
    from PySide6.QtCore import QCoreApplication

    for _ in range(5):
        QCoreApplication.processEvents()
    pix = win.grab()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return bool(pix.save(path, "PNG"))


def _save_screenshot_json(win, shot: str) -> bool:
    """``FILE.json`` beside ``FILE.png``: layout and per viewport what it shows
    (:mod:`medview.viewer.snapshot`); a one-line reason when it cannot be written."""
    from medview.ui.reading import json_path_for, write_screenshot_json

    try:
        write_screenshot_json(win, shot)
    except OSError as exc:
        print(f"{json_path_for(shot)}: could not write ({exc.strerror or exc})", file=sys.stderr)
        return False
    return True


def run_gui(args: Any) -> int:
    """Start the workstation; with ``--screenshot`` save the window and exit.

    Exit status with ``--screenshot``: 0 saved with no error, 1 saved but some
    file could not be opened (errors on stderr), 2 screenshot not written. An
    unknown ``--preset`` exits 2 with one line before any window opens.
    """
    logging.basicConfig(level=os.environ.get("MEDVIEW_LOGLEVEL", "WARNING"))
    problem = preset_problem(getattr(args, "preset", None)) or _slab_problem(args)
    if problem:
        print(f"medview: {problem}", file=sys.stderr)
        return 2
    shot = getattr(args, "screenshot", None)
    if shot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = _app()
    from medview.ui import workers

    win = create_window(args, load_panels=os.environ.get("MEDVIEW_SCREENSHOT_PANELS") != "0")
    if shot:
        win.resize(*SCREENSHOT_SIZE)
    win.show()
    if shot:
        idle = wait_until_idle(win)
        if not idle:
            print(
                f"medview: still loading after {SCREENSHOT_TIMEOUT_S:.0f} s; saving anyway",
                file=sys.stderr,
            )
        ok = save_screenshot(win, shot)
        if ok:
            ok = _save_screenshot_json(win, shot)
        for err in win.errors:
            print(f"medview: {err}", file=sys.stderr)
        win.close()
        workers.shutdown_all()
        _stop_decoders()
        if not ok:
            print(f"{shot}: could not write the screenshot", file=sys.stderr)
            return 2
        print(shot)
        return 1 if win.errors else 0
    if os.environ.get("MEDVIEW_STARTUP_PROBE"):
        _startup_probe(app, win)
    app.aboutToQuit.connect(lambda: workers.shutdown_all())
    rc = app.exec()
    workers.shutdown_all()
    _stop_decoders()
    return int(rc)


def _startup_probe(app, win) -> None:
    """``MEDVIEW_STARTUP_PROBE=1`` (tests/bench/bench_startup.py): on the main window's
    first paint print ``medview-startup-shown <epoch seconds>`` and quit."""
    from PySide6.QtCore import QEvent, QObject, QTimer

    class _Probe(QObject):
        done = False

        def eventFilter(self, obj, event):  # noqa: N802 - Qt override
            if event.type() == QEvent.Type.Paint and not self.done:
                self.done = True
                print(f"medview-startup-shown {time.time():.6f}", flush=True)
                QTimer.singleShot(0, app.quit)
            return False

    win._startup_probe = _Probe(win)
    win.installEventFilter(win._startup_probe)


def _stop_decoders() -> None:
    """Stop the decoder processes if this run started any (no import otherwise)."""
    if "medview.io.decoders" in sys.modules:
        from medview.io import decoders

        decoders.shutdown()
