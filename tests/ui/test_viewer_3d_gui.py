"""The 3-D layout renders the real CT in the main window (the VTK rendering itself:
tests/core/test_viewer_3d.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")


def test_layout_3d_renders_in_the_window(qtbot, make_3d_window):
    """`medview CT --layout 3d`: the 3D view renders a frame on a worker; the screenshot
    JSON says what it shows."""
    from medview.ui.reading import describe

    win = make_3d_window(1200, 800)
    qtbot.waitUntil(lambda: not win.busy, timeout=120000)
    v3 = win.area.view3d
    qtbot.waitUntil(lambda: v3.frames >= 1, timeout=120000)
    shot = describe(win)
    assert shot["layout"] == "3d" and shot["view3d"]["preset"] == "bone"
    assert shot["view3d"]["frames"] >= 1 and shot["viewports"][0]["modality"] == "CT"
    img = v3.canvas.grab().toImage()
    grey = [
        img.pixelColor(x, y).lightness()
        for x in range(0, img.width(), 8)
        for y in range(0, img.height(), 8)
    ]
    assert max(grey) > 100  # the rendered slab is on screen
    v3.preset_box.setCurrentText("soft tissue")
    qtbot.waitUntil(lambda: not win.busy, timeout=120000)
    assert describe(win)["view3d"]["preset"] == "soft tissue"
