"""A GSPS is applied in the viewer and can be switched off (the GSPS model:
tests/core/test_viewer_gsps.py)."""

from __future__ import annotations

import pytest

from tests.core import test_viewer_gsps as core

study = core.study  # the core file's fixture, shared


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gsps_applied_in_the_viewer_and_switched_off(qtbot, medview_home, monkeypatch, study):
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    from PySide6.QtCore import QPointF

    from medview.ui.main_window import MainWindow
    from medview.ui.reading import describe

    folder, _sop = study
    win = MainWindow(load_panels=False)
    qtbot.addWidget(win)
    win.resize(1200, 900)
    win.show()
    try:
        win.open_paths([str(folder)])
        vp = win.area.viewports[0]
        qtbot.waitUntil(lambda: vp.gsps is not None and not win.busy, timeout=60000)
        assert vp.window == (100.0, 80.0)  # the presentation state's window
        assert not win.errors  # the PR file has no pixels by design: not an error
        assert describe(win)["viewports"][0]["gsps"] == "READ1"
        vp.repaint()
        shown = vp.grab().toImage()
        # the shutter blackens the image's left columns (1..49); the line is drawn in yellow
        t = vp.transform()
        left = t.map(QPointF(20, 500))
        assert shown.pixelColor(int(left.x()), int(left.y())).lightness() == 0
        win.actions_by_id["gsps"].trigger()  # off
        assert not vp.gsps_visible and vp.window != (100.0, 80.0)
        assert describe(win)["viewports"][0]["gsps"] is None
        vp.repaint()
        off = vp.grab().toImage()
        assert off.pixelColor(int(left.x()), int(left.y())).lightness() > 0
    finally:
        win.close()
