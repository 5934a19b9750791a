"""File > Export cine in the 3D layout writes a full rotation of the 3D view as it is
shown (issue 16, item 6), on a worker, with the view's own renderer."""

from __future__ import annotations

import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")


def test_3d_layout_exports_a_rotation_gif(qtbot, make_3d_window, tmp_path):
    from PIL import Image, ImageSequence

    from medview.ui import reading

    win = make_3d_window(900, 700)
    v3 = win.area.view3d
    qtbot.waitUntil(lambda: not win.busy and v3.frames >= 1, timeout=120000)
    v3.preset_box.setCurrentText("soft tissue")
    qtbot.waitUntil(lambda: not win.busy, timeout=120000)
    out = tmp_path / "turn.gif"
    reading.export_rotation(win, str(out), frames=6)
    qtbot.waitUntil(lambda: not win.busy, timeout=120000)
    assert any(f"{out}: 6 frames written" in t for _, _, t in win.notifier.history)
    with Image.open(out) as im:
        frames = [f.convert("RGB") for f in ImageSequence.Iterator(im)]
    assert len(frames) == 6
    w, h = v3.canvas.width(), v3.canvas.height()
    assert frames[0].size == (w - w % 2, h - h % 2)  # the view's size, even for MP4
    assert not win.errors
