"""A new user's first window: an empty viewport says how to open a study (it was plain
black; found while running README's set-up as a new user)."""

from __future__ import annotations

from medview.ui.viewport import items


def test_empty_viewport_says_how_to_open_a_study(make_window, ct_dir, qtbot):
    w = make_window()
    vp = w.area.viewports[0]
    assert vp.volume is None
    assert items.centre_text(vp) == items.EMPTY_HINT
    assert "Ctrl+O" in items.EMPTY_HINT
    img = vp.grab().toImage()
    cx, cy = img.width() // 2, img.height() // 2
    lit = [
        img.pixelColor(x, y).lightness()
        for x in range(cx - 150, cx + 150, 2)
        for y in range(cy - 40, cy + 40, 2)
    ]
    assert max(lit) > 80  # the hint is drawn (the empty viewport was plain black)

    w.open_paths([str(ct_dir)])
    qtbot.waitUntil(lambda: w.area.viewports[0].volume is not None, timeout=60000)
    assert items.centre_text(w.area.viewports[0]) in ("", w.area.viewports[0].message)
    assert items.EMPTY_HINT not in items.centre_text(w.area.viewports[0])
