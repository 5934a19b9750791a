"""Synthetic Qt input for the viewer tests and benchmarks (imports PySide6 when called)."""

from __future__ import annotations

from typing import Any


def wheel_event(x: float, y: float, dy: int, ctrl: bool = False) -> Any:
    """A mouse-wheel event at (``x``, ``y``) turning ``dy`` eighths of a degree (one notch
    is 120; negative is towards the user), with Ctrl held when ``ctrl``."""
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent

    modifier = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    return QWheelEvent(
        QPointF(x, y),
        QPointF(x, y),
        QPoint(0, 0),
        QPoint(0, dy),
        Qt.MouseButton.NoButton,
        modifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )


def warm_main_window(width: int = 1400, height: int = 900) -> tuple[Any, float]:
    """A main window without side panels, its layout pinned to 1x1 (no hanging protocol),
    shown and left to warm up (readers imported, a decoder process started:
    ``medview.ui.main_window.warm_up``) for at least 0.5 s; returns it and the seconds."""
    import time

    from PySide6.QtCore import QCoreApplication

    from medview.ui.main_window import MainWindow

    win = MainWindow(load_panels=False)
    win.pinned_layout = "1x1"
    win.resize(width, height)
    win.show()
    t0 = time.perf_counter()
    while win.busy or time.perf_counter() - t0 < 0.5:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    return win, time.perf_counter() - t0
