"""Issue 10 item 5 in the GUI: honest notices for HU presets on radiographs, one window
for the MPR planes, unnamed studies kept apart (Qt-free part: tests/core/test_honest_exits.py)."""

from __future__ import annotations

import pytest

from tests.core.test_honest_exits import _unnamed_study


@pytest.fixture()
def window(make_window):
    return make_window()


def _idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.busy, timeout=60000)


def test_gui_hu_preset_on_radiograph_notifies_and_keeps_window(window, qtbot, xray_dir):
    window.open_paths([str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")])
    _idle(qtbot, window)
    before = window.active.window
    assert before is not None
    window.apply_preset("lung")
    assert window.active.window == before
    assert any("Hounsfield" in t for _, _, t in window.notifier.history)


def test_gui_command_line_hu_preset_on_radiograph_notifies(window, qtbot, xray_dir):
    window.requested_preset = "bone"
    window.open_paths([str(xray_dir / "nih_00000001_000.png")])
    _idle(qtbot, window)
    assert window.active.window != (400.0, 1800.0)
    assert any("Hounsfield" in t for _, _, t in window.notifier.history)


def test_gui_mpr_planes_share_one_window(window, qtbot, shared_data):
    from medview.imaging.display import volume_window

    window.set_layout("mpr")
    window.open_paths([str(shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz")])
    _idle(qtbot, window)
    vps = window.area.viewports[:3]
    qtbot.waitUntil(lambda: all(v.volume is not None for v in vps), timeout=60000)
    assert {v.plane for v in vps} == {"axial", "coronal", "sagittal"}
    windows = {v.window for v in vps}
    assert windows == {volume_window(vps[0].volume)}


def test_browser_keeps_unnamed_studies_apart(window, qtbot, ct_dir, xray_dir):
    pngs = sorted(str(p) for p in xray_dir.glob("*.png"))
    window.open_paths([str(ct_dir), *pngs])
    _idle(qtbot, window)
    root = window.browser.opened_root
    labels = [root.child(i).text(0) for i in range(root.childCount())]
    # the CT and each radiograph (no name, no ID, nothing linking them) are separate entries
    assert root.childCount() == 1 + len(pngs), labels
    assert all(root.child(i).childCount() == 1 for i in range(root.childCount()))


def test_database_view_keeps_unnamed_studies_apart(window, qtbot, tmp_path):
    from pydicom.data import get_testdata_file

    from medview.io.database import StudyDatabase
    from medview.ui.study_browser import ROLE_TEXT

    src = get_testdata_file("CT_small.dcm")
    uids = {_unnamed_study(src, tmp_path / "a", 1), _unnamed_study(src, tmp_path / "b", 2)}
    db = StudyDatabase()
    assert db.import_path([str(tmp_path / "a"), str(tmp_path / "b")]).studies == 2
    db.close()
    window.browser.refresh_database()
    _idle(qtbot, window)
    root = window.browser.db_root
    assert root.childCount() == 2
    seen = set()
    for i in range(root.childCount()):
        patient = root.child(i)
        assert patient.childCount() == 1
        seen.add(patient.child(0).data(0, ROLE_TEXT + 1))  # the study's tag
    assert seen == {f"s:{u}" for u in uids}
