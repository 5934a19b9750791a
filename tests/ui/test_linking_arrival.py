"""A volume that arrives in a linked viewport after linking joins the link.

Compare with prior links the two viewports as soon as it asks for the prior, and the
prior (a series still loading, or one retrieved from a PACS node) reaches its viewport
later: it used to keep its own protocol window (e.g. 300/40 beside the current 350/50)
and its own zoom until the user touched the other side.
"""

from __future__ import annotations

import pytest

from tests.ui.test_gui import TIMEOUT, _raised_copy, idle


def test_volume_arriving_after_linking_takes_the_first_views_window_zoom_and_position(
    make_window, qtbot, ct_dir, tmp_path
):

    shifted = _raised_copy(sorted(ct_dir.glob("*.dcm")), tmp_path / "shifted", 1, 100)
    win = make_window()
    win.set_layout("1x2")
    left, right = win.area.viewports[:2]
    win.open_paths([str(ct_dir)], target=left)
    idle(qtbot, win)
    left.set_window(-600.0, 1500.0)
    left.set_index(7)
    left.view.zoom, left.view.fit_mode = 2.5, False
    for key in ("link_scroll", "link_view"):  # linked while the right side is empty
        win.actions_by_id[key].trigger()
    assert win.actions_by_id["link_view"].isChecked()
    win.open_paths([str(shifted)], target=right)
    qtbot.waitUntil(lambda: right.volume is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    assert right.window == (-600.0, 1500.0)
    assert right.view.zoom == pytest.approx(left.view.zoom)
    assert right.slice_position() == pytest.approx(left.slice_position(), abs=1e-3)
    right.set_window(40.0, 400.0)  # and it stays linked both ways
    assert left.window == (40.0, 400.0)
