"""The GUI part of ``medview --self-test``: build the main window offscreen."""

from __future__ import annotations

import os
from pathlib import Path


class GuiCheckFailed(Exception):
    """The window could not be built, rendered, or its panels did not dock."""


def gui_smoke_check(workdir: Path, timeout_s: float = 60.0) -> str:
    """Build the main window offscreen with its side panels and render it.

    Returns a one-line summary; raises :class:`GuiCheckFailed` naming what is wrong.
    Used by ``medview --self-test`` (the core keeps all Qt imports in ``medview.ui``).
    """
    try:
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:
        raise GuiCheckFailed(f"PySide6 missing ({exc})") from None
    if QApplication.instance() is None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    import logging

    from PySide6.QtCore import QCoreApplication, qInstallMessageHandler

    from medview.ui import app as ui_app
    from medview.ui import workers

    class _Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    qt_messages: list[str] = []
    previous = qInstallMessageHandler(lambda _mode, _ctx, msg: qt_messages.append(msg))
    ui_log = logging.getLogger("medview.ui")
    collect = _Collect()
    ui_log.addHandler(collect)
    # the study browser opens a throw-away database, never the user's
    saved_db = os.environ.get("MEDVIEW_DB")
    os.environ["MEDVIEW_DB"] = str(workdir / "selftest.sqlite")

    def restore() -> None:
        ui_log.removeHandler(collect)
        qInstallMessageHandler(previous)
        if saved_db is None:
            os.environ.pop("MEDVIEW_DB", None)
        else:
            os.environ["MEDVIEW_DB"] = saved_db

    qapp = ui_app._app()
    try:
        win = ui_app.create_window(None, load_panels=True)
    except BaseException:
        restore()
        raise
    try:
        win.resize(800, 600)
        win.show()
        # the side panels and the study list are set up after the first paint
        if not ui_app.wait_until_idle(win, timeout_s=timeout_s, settle_ms=100):
            raise GuiCheckFailed(f"main window still busy after {timeout_s:.0f} s")
        for _ in range(5):
            QCoreApplication.processEvents()
        pix = win.grab()
        if pix.isNull() or pix.width() < 100:
            raise GuiCheckFailed("main window could not be rendered offscreen")
        problems = [m for m in collect.messages if "not docked" in m]
        if problems:
            raise GuiCheckFailed("; ".join(problems))
        platform = qapp.platformName()
        panels = len(getattr(win, "panels", {}))
        if panels == 0:
            raise GuiCheckFailed("no side panel (AI, forecast, suggestions) was docked")
        return (
            f"main window built and rendered ({pix.width()}x{pix.height()}, Qt {platform}, "
            f"{panels} panels)"
        )
    finally:
        win.close()
        workers.shutdown_all()
        restore()
