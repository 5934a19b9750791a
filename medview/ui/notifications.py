"""Non-modal notifications: toasts in the corner of the window plus a message log.

Errors (a file that cannot be read, a failed task) appear as a toast naming the
file and the reason; nothing blocks, nothing shows a traceback. Every message is
also kept in the "Messages" dock so it can be read later.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QLabel, QListWidget, QVBoxLayout, QWidget

from medview.errors import printable

log = logging.getLogger(__name__)


class _Toast(QFrame):
    closed = Signal(object)

    def __init__(self, parent: QWidget, text: str, level: str, seconds: float) -> None:
        super().__init__(parent)
        self.setObjectName("toast")
        bg = {"error": "#7a1f1f", "warning": "#6b5316"}.get(level, "#2b3a4a")
        self.setStyleSheet(
            f"QFrame#toast {{ background: {bg}; border: 1px solid #888; border-radius: 4px; }}"
            "QLabel { color: white; }"
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 10, 6)
        label = QLabel(text, self)
        label.setTextFormat(Qt.TextFormat.PlainText)  # text from a file is never markup
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(label)
        label.setMinimumWidth(320)
        self.setMaximumWidth(520)
        self.setToolTip("click to dismiss")
        QTimer.singleShot(int(seconds * 1000), self._close)

    def mousePressEvent(self, e) -> None:  # noqa: N802
        self._close()

    def _close(self) -> None:
        if self.isVisible():
            self.hide()
        self.closed.emit(self)
        self.deleteLater()


class Notifier(QObject):
    """Shows toasts over ``host`` (bottom right) and records every message."""

    posted = Signal(str, str)  # level, text

    def __init__(self, host: QWidget, max_visible: int = 4) -> None:
        super().__init__(host)
        self.host = host
        self.max_visible = max_visible
        self._toasts: list[_Toast] = []
        self.history: list[tuple[float, str, str]] = []
        host.installEventFilter(self)

    def notify(self, text: str, level: str = "error", seconds: float = 8.0) -> None:
        # one line, control characters and escape sequences written out (issue 18)
        text = printable(" ".join(str(text).split()), 2000)
        if not text:
            return
        self.history.append((time.time(), level, text))
        # the text can name a patient (arrivals, records): it stays out of the log
        log.info("%s notification shown (%d characters)", level, len(text))
        self.posted.emit(level, text)
        if text in self.visible_texts():
            return  # the same message is already on screen
        toast = _Toast(self.host, text, level, seconds)
        toast.closed.connect(self._forget)
        self._toasts.append(toast)
        while len(self._toasts) > self.max_visible:
            old = self._toasts.pop(0)
            old.hide()
            old.deleteLater()
        toast.show()
        self._layout()

    def visible_texts(self) -> list[str]:
        return [t.findChild(QLabel).text() for t in self._toasts if t.isVisible()]

    def _forget(self, toast: _Toast) -> None:
        if toast in self._toasts:
            self._toasts.remove(toast)
        self._layout()

    def _layout(self) -> None:
        y = self.host.height() - 34
        for t in reversed(self._toasts):
            t.adjustSize()
            y -= t.height()
            t.move(self.host.width() - t.width() - 16, max(0, y))
            t.raise_()
            y -= 6

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.host and event.type() == QEvent.Type.Resize:
            self._layout()
        return False


class MessageLog(QListWidget):
    """The "Messages" dock: every notification with its time."""

    def add(self, level: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.addItem(f"{stamp}  {level}: {text}")
        self.scrollToBottom()
