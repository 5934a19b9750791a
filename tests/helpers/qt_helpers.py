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
