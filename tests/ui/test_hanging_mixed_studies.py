"""A CT opened together with radiographs (one command line, or one folder holding
both) is hung by the CT's protocol; the radiographs are listed in the browser.

Found in use (issue 16, item 1): ``medview CT_FOLDER XRAY_FOLDER`` showed the CT 1x1
with the file's window, because a scan holding several studies skipped the hanging
protocols altogether."""

from __future__ import annotations

import shutil

import pydicom
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

pytestmark = pytest.mark.gui
TIMEOUT = 60000


def _idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)


def _check_ct_hung(win, qtbot, n_studies: int) -> None:
    from medview.ui.reading import describe

    _idle(qtbot, win)
    assert (win.area.layout_name, win.protocol_name) == ("mpr", "CT")
    vps = win.area.viewports
    qtbot.waitUntil(lambda: all(v.volume is not None for v in vps[:3]), timeout=TIMEOUT)
    _idle(qtbot, win)
    shot = describe(win)
    assert [v["modality"] for v in shot["viewports"]] == ["CT"] * 3
    assert {(v["window_center"], v["window_width"]) for v in shot["viewports"]} == {(50.0, 350.0)}
    # every study opened is in the browser (patient / study / series rows)
    opened = [k for k in win.browser.items if k.startswith("open:")]
    studies = {win.browser.series[k].study_uid for k in opened}
    assert len(studies) == n_studies
    assert not win.errors


def test_ct_and_radiographs_on_one_command_line_hang_the_ct(make_window, qtbot, ct_dir, xray_dir):
    crs = [xray_dir / "cr_chest_pa_jpeg_baseline.dcm", xray_dir / "cr_chest_pa_monochrome1.dcm"]
    studies = {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in crs}
    win = make_window()
    win.open_paths([str(ct_dir), *map(str, crs)])
    _check_ct_hung(win, qtbot, 1 + len(studies))


def test_a_folder_with_a_radiograph_first_and_a_ct_hangs_the_ct(
    make_window, qtbot, ct_dir, xray_dir, tmp_path
):
    folder = tmp_path / "mixed"
    (folder / "a_xray").mkdir(parents=True)
    shutil.copy(xray_dir / "cr_chest_pa_jpeg_baseline.dcm", folder / "a_xray" / "cr.dcm")
    shutil.copytree(ct_dir, folder / "b_ct")
    win = make_window()
    win.open_paths([str(folder)])
    _check_ct_hung(win, qtbot, 2)
