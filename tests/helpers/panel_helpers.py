"""Helpers for the side-panel tests (pytest-qt): register a panel so that it is stopped
the way the main window stops it on quit, and wait for its worker tasks."""

from __future__ import annotations

from typing import Any

TIMEOUT_MS = 30_000


def wait_idle(qtbot: Any, timeout: int = TIMEOUT_MS) -> None:
    """Wait until no worker task of the process is running."""
    from medview.ui import workers

    qtbot.waitUntil(lambda: not workers.active_tasks(), timeout=timeout)


def add_panel(qtbot: Any, panel: Any) -> Any:
    """Hand ``panel`` to pytest-qt: before it is closed, its last task's finished signal
    is let in and the panel is shut down (as the main window does on quit)."""

    def before_close(widget: Any) -> None:
        wait_idle(qtbot)
        widget.shutdown()

    qtbot.addWidget(panel, before_close_func=before_close)
    return panel
