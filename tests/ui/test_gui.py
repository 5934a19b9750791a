"""Main-window tests (offscreen, pytest-qt): opening the real CT off the GUI
thread, first slice before the volume, MPR crosshair sync, corrupt files as
notifications, cancel, measurements stored per SOPInstanceUID, tag search,
settings, side-panel docking and ``--screenshot``.

The autouse fixture in conftest.py fails any test that leaves a thread running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60000


def idle(qtbot, win, timeout: int = TIMEOUT) -> None:
    qtbot.waitUntil(lambda: not win.busy, timeout=timeout)


def _opened(make_window, qtbot, path: Path):
    """A new window with ``path`` opened and loaded."""
    win = make_window()
    win.open_paths([str(path)])
    idle(qtbot, win)
    return win


@pytest.fixture()
def big_series(tmp_path, ct_dir):
    """A 60-slice JPEG 2000 series made from the real slices (tests/helpers/series.py)."""
    from tests.helpers.series import build_series

    return build_series(tmp_path / "big", 60, compressed=True)


def test_open_ct_first_slice_before_volume(make_window, qtbot, ct_dir):
    win = make_window()
    vp = win.active
    seen = []
    vp.image_changed.connect(lambda: seen.append((vp.volume is not None, vp.loading, vp.loaded)))
    win.open_paths([str(ct_dir)])
    assert win.progress.isVisible()  # progress + cancel in the status bar
    idle(qtbot, win)
    # the first image shown came from a volume still loading (first slice only)
    shown = [x for x in seen if x[0]]
    assert shown[0][1] and shown[0][2] >= 1 and shown[-1] == (True, False, None)
    assert vp.volume.shape == (20, 512, 512)
    assert not vp.loading and vp.loaded is None
    # the CT protocol's soft-tissue window (CT_PRESETS["mediastinum"]), not the file's 40/300
    assert vp.window == pytest.approx((50.0, 350.0)) and win.protocol_name == "CT"
    # browser lists patient / study / series with a thumbnail
    assert len([k for k in win.browser.items if k.startswith("open:")]) == 1
    key = next(k for k in win.browser.items if k.startswith("open:"))
    qtbot.waitUntil(lambda: key in win.browser.thumbs, timeout=TIMEOUT)
    assert not win.browser.items[key].icon(0).isNull()
    # tag browser follows the shown slice
    path = vp.volume.instances[vp.index].path  # debounced: the last slice shown wins
    qtbot.waitUntil(lambda: win.tags.dataset is not None and win.tags.path == path, timeout=TIMEOUT)
    assert not win.errors
    assert not win.progress.isVisible()


def test_scroll_updates_overlay_and_tags(make_window, qtbot, ct_dir):
    win = _opened(make_window, qtbot, ct_dir)
    vp = win.active
    vp.set_index(5)
    assert "Im: 6/20" in vp.overlay_lines()["bl"][0]
    z = vp.volume.voxel_to_patient(0, 0, 5)[2]
    assert f"Pos: {z:.1f} mm" in vp.overlay_lines()["bl"]
    qtbot.waitUntil(lambda: win.tags.path == vp.volume.instances[5].path, timeout=TIMEOUT)


def test_mpr_layout_and_crosshair_sync(make_window, qtbot, ct_dir):
    win = make_window()
    win.set_layout("mpr")
    win.open_paths([str(ct_dir)])
    idle(qtbot, win)
    ax, co, sa = win.area.viewports[:3]
    assert [v.plane for v in (ax, co, sa)] == ["axial", "coronal", "sagittal"]
    assert all(v.volume is ax.volume for v in (co, sa))
    assert ax.index == 10 and co.index == 256 and sa.index == 256
    # click with the crosshair tool on the axial: coronal/sagittal follow
    win.set_tool("crosshair")
    target = ax.transform().map(QPointF(100.5, 300.5))
    QTest.mouseClick(
        ax, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, target.toPoint()
    )
    i, j, k = ax.crosshair
    assert co.index == round(j) and sa.index == round(i) and abs(i - 100) <= 1 and abs(j - 300) <= 1
    assert co.crosshair == ax.crosshair == sa.crosshair
    # scrolling the axial moves the crosshair's k in the others
    ax.set_index(3)
    assert co.crosshair[2] == 3.0 and sa.crosshair[2] == 3.0
    # window/level is shared in MPR
    ax.set_window(-600, 1500)
    assert co.window == sa.window == (-600.0, 1500.0)
    # leaving MPR restores a plain axial viewport
    win.set_layout("1x1")
    assert win.area.viewports[0].plane == "axial" and win.area.viewports[0].crosshair is None


def test_corrupt_file_notifies_and_the_rest_opens(make_window, qtbot, ct_dir, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    files = sorted(ct_dir.glob("*.dcm"))[:6]
    for f in files:
        shutil.copy(f, folder / f.name)
    (folder / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(200))
    (folder / "notes.txt").write_text("not an image")
    win = make_window()
    win.open_paths([str(folder)])
    idle(qtbot, win)
    assert win.active.volume is not None and win.active.volume.shape[0] == 6
    msgs = [t for _, _, t in win.notifier.history]
    assert any("broken.dcm" in m for m in msgs), msgs
    broken = next(m for m in msgs if "broken.dcm" in m)
    assert ": " in broken and "\n" not in broken  # one line: the file and the reason
    assert any("broken.dcm" in t for t in win.notifier.visible_texts())


def test_cancel_during_loading_keeps_arrived_slices(make_window, qtbot, big_series):
    win = make_window()
    vp = win.active
    win.open_paths([str(big_series)])
    qtbot.waitUntil(lambda: vp.loaded is not None, timeout=TIMEOUT)
    assert vp.loading
    qtbot.mouseClick(win.progress.cancel_button, Qt.MouseButton.LeftButton)
    idle(qtbot, win)
    assert not vp.loading
    assert vp.load_text.startswith("cancelled:") or vp.loaded is None
    if vp.loaded is not None:  # scrolling stays within the slices that arrived
        vp.set_index(59)
        assert vp.index == vp.loaded - 1 < 59


def test_opening_another_series_cancels_the_pending_load(make_window, qtbot, big_series, ct_dir):
    win = make_window()
    vp = win.active
    win.open_paths([str(big_series)])
    qtbot.waitUntil(lambda: vp.loading, timeout=TIMEOUT)
    first = win.slots[vp].current
    win.open_paths([str(ct_dir)])
    idle(qtbot, win)
    assert first is None or first.cancelled or not first.running
    assert vp.volume.shape == (20, 512, 512)


def test_close_while_loading_leaves_no_thread(make_window, qtbot, big_series):
    win = make_window()
    win.open_paths([str(big_series)])
    qtbot.waitUntil(lambda: win.active.loading, timeout=TIMEOUT)
    win.close()
    from medview.ui import workers

    assert not workers.active_tasks()


def test_measurements_stored_restored_and_deleted(make_window, qtbot, ct_dir):
    from medview.io.database import StudyDatabase

    win = _opened(make_window, qtbot, ct_dir)
    vp = win.active
    vp.set_index(4)
    win.set_tool("ruler")
    a, b = vp.transform().map(QPointF(100, 100)), vp.transform().map(QPointF(300, 100))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a.toPoint())
    QTest.mouseMove(vp, b.toPoint())
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b.toPoint())
    m = vp.measurements[0]
    sop = vp.volume.instances[4].sop_uid
    assert m.image_key == sop and m.db_id is not None
    rows = StudyDatabase().measurements(sop)
    assert len(rows) == 1 and rows[0]["kind"] == "ruler"
    assert rows[0]["data"]["stats"]["length"] == pytest.approx(m.stats["length"])
    win.close()

    win2 = make_window()
    win2.open_paths([str(ct_dir)])
    idle(qtbot, win2)
    vp2 = win2.active
    qtbot.waitUntil(lambda: len(vp2.measurements) == 1, timeout=TIMEOUT)
    r = vp2.measurements[0]
    assert r.index == 4 and r.db_id == m.db_id
    assert r.stats["length"] == pytest.approx(m.stats["length"], rel=1e-4)
    vp2.delete_measurement(r)
    assert StudyDatabase().measurements(sop) == []


def test_tag_browser_search_and_copy(qtbot, in_process_decoding):
    from pydicom.data import get_testdata_file
    from PySide6.QtGui import QGuiApplication

    from medview.io import read_dataset
    from medview.ui.panels.tags import TagBrowser

    path = get_testdata_file("CT_small.dcm", download=False)
    tb = TagBrowser()
    qtbot.addWidget(tb)
    tb.show_file(path)
    qtbot.waitUntil(lambda: tb.dataset is not None, timeout=TIMEOUT)
    ds = read_dataset(path)
    for query in ("PatientID", "0010,0020", "(0010,0020)", "00100020", str(ds.PatientID)):
        tb.filter.setText(query)
        tb.apply_filter()
        assert "PatientID" in tb.matching_keywords(), query
    tb.filter.setText("PatientID")
    tb.apply_filter()
    assert "StudyDate" not in tb.matching_keywords()
    tb.tree.clearSelection()
    tb.copy_selection()
    text = QGuiApplication.clipboard().text()
    assert "(0010,0020)\tPatientID\tLO\t" + str(ds.PatientID) in text
    # sequences are browsable: an SQ row has item children with elements
    tb.filter.setText("")
    tb.apply_filter()
    sq = [
        tb.tree.topLevelItem(i)
        for i in range(tb.tree.topLevelItemCount())
        if tb.tree.topLevelItem(i).text(2) == "SQ"
    ]
    if sq:
        assert sq[0].childCount() >= 1 and sq[0].child(0).childCount() >= 1
    # every element of the data set has a row
    assert tb.tree.topLevelItemCount() == len(ds) + len(ds.file_meta)


def test_settings_layout_and_recent_persist(make_window, qtbot, ct_dir):
    from medview.ui import presets, settings

    win = make_window()
    win.set_layout("2x2")
    win.open_paths([str(ct_dir)])
    idle(qtbot, win)
    win.close()
    assert settings.recent_paths()[0] == os.path.abspath(str(ct_dir))
    win2 = make_window()
    # the layout is no longer sticky: each study's hanging protocol picks it
    assert win2.area.layout_name == "1x1"
    assert win2.recent_menu.actions()[0].text() == os.path.abspath(str(ct_dir))
    presets.save_user_preset("my lung", -500, 1400)
    assert presets.resolve_preset("my lung") == (-500.0, 1400.0)


def test_shortcuts_are_unique_and_listed(make_window):
    from medview.ui.actions import MOUSE_HELP, SHORTCUTS
    from medview.ui.layout import ShortcutsDialog

    win = make_window()
    keys = [k for _, k, _ in SHORTCUTS]
    assert len(keys) == len(set(keys))
    for action_id, key, _ in SHORTCUTS:
        assert win.actions_by_id[action_id].shortcut().toString() == key
    dlg = ShortcutsDialog(win)
    from PySide6.QtWidgets import QTableWidget

    table = dlg.findChild(QTableWidget)
    assert table.rowCount() == len(SHORTCUTS) + len(MOUSE_HELP)
    dlg.close()


def test_preset_shortcut_and_unknown_preset(make_window, qtbot, ct_dir):
    win = _opened(make_window, qtbot, ct_dir)
    win.actions_by_id["preset_bone"].trigger()
    assert win.active.window == (400.0, 1800.0)
    assert win.apply_preset("nonsense") is False
    assert any("unknown window preset" in t for _, _, t in win.notifier.history)


def test_command_line_preset_reaches_every_ct_viewport_only(make_window, qtbot, ct_dir, xray_dir):
    """`medview CR CT --layout 1x2 --preset lung`: the CT gets the lung window; a lung
    window in HU would wash out the radiograph, which keeps its own."""
    win = make_window()
    win.set_layout("1x2")
    win.pinned_layout = "1x2"  # as `--layout` does (ui.app): no hanging protocol
    win.requested_preset = "lung"
    win.open_paths([str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm"), str(ct_dir)])
    idle(qtbot, win)
    qtbot.waitUntil(
        lambda: all(v.volume is not None for v in win.area.visible_viewports()), timeout=TIMEOUT
    )
    by_unit = {vp.volume.unit: vp for vp in win.area.visible_viewports()}
    assert by_unit["HU"].window == (-600.0, 1500.0)
    assert by_unit[""].window != (-600.0, 1500.0)


def test_sample_study_opens(make_window, qtbot):
    from medview.viewer.session import sample_studies

    if not sample_studies():
        pytest.skip("pydicom test files not installed")
    win = make_window()
    win.open_sample()
    idle(qtbot, win)
    vol = win.active.volume
    assert vol is not None and vol.array.size > 0
    assert win.active.rendered() is not None


def test_database_import_and_browse(make_window, qtbot, ct_dir):
    win = make_window()
    win.import_path(str(ct_dir))
    qtbot.waitUntil(lambda: any(k.startswith("db:") for k in win.browser.items), timeout=TIMEOUT)
    idle(qtbot, win)
    key = next(k for k in win.browser.items if k.startswith("db:"))
    assert len(win.browser.series[key].instances) == 20  # a SeriesInfo, like opened series
    qtbot.waitUntil(lambda: key in win.browser.thumbs, timeout=TIMEOUT)  # from its files
    win.load_into(win.active, key)
    idle(qtbot, win)
    assert win.active.volume.shape == (20, 512, 512)
    # search narrows the tree (no study matches this text)
    win.browser.search.setText("zz-no-such-patient")
    qtbot.waitUntil(
        lambda: not any(k.startswith("db:") for k in win.browser.items), timeout=TIMEOUT
    )


def test_side_panels_dock_lazily_and_overlay_reaches_viewport(
    make_window, qtbot, monkeypatch, ct_dir
):
    from PySide6.QtCore import Signal
    from PySide6.QtWidgets import QWidget

    from medview.ui.context import Overlay

    class FakeAI(QWidget):
        notify = Signal(str)
        overlay_changed = Signal(object)
        finding = Signal(str, str)

        def __init__(self, parent=None):
            super().__init__(parent)
            self.contexts = []

        def set_study_context(self, ctx):
            self.contexts.append(ctx)

        def shutdown(self):
            pass

    class FakeSuggest(FakeAI):
        def __init__(self, parent=None, patients=None):  # shares the records (PanelSpec)
            super().__init__(parent)
            self.conditions = []

        def add_working_condition(self, code, display):
            self.conditions.append((code, display))

    ai_mod = types.ModuleType("medview.ui.panels.ai_panel")
    ai_mod.AIPanel = FakeAI
    sug_mod = types.ModuleType("medview.ui.panels.suggest_panel")
    sug_mod.SuggestionsPanel = FakeSuggest
    broken = types.ModuleType("medview.ui.panels.forecast_panel")  # no ForecastPanel: left out
    monkeypatch.setitem(sys.modules, "medview.ui.panels.ai_panel", ai_mod)
    monkeypatch.setitem(sys.modules, "medview.ui.panels.suggest_panel", sug_mod)
    monkeypatch.setitem(sys.modules, "medview.ui.panels.forecast_panel", broken)
    win = make_window(load_panels=True)
    qtbot.waitUntil(lambda: "ai" in win.panels, timeout=5000)
    assert set(win.panels) == {"ai", "suggest", "notes", "labelmap"}
    win.open_paths([str(ct_dir)])
    idle(qtbot, win)
    ai = win.panels["ai"]
    qtbot.waitUntil(lambda: ai.contexts and ai.contexts[-1].volume is not None, timeout=5000)
    ctx = ai.contexts[-1]
    assert ctx.image_key == win.active.volume.instances[win.active.index].sop_uid
    ai.overlay_changed.emit(Overlay(heatmap=np.full((512, 512), 0.5, np.float32)))
    assert win.active.ai_overlay is not None
    ai.finding.emit("233604007", "Pneumonia")
    assert win.panels["suggest"].conditions == [("233604007", "Pneumonia")]


def test_screenshot_command(tmp_path, ct_dir):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVIEW_HOME=str(tmp_path / "home"))
    env.pop("DISPLAY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medview",
            str(ct_dir),
            "--layout",
            "mpr",
            "--preset",
            "lung",
            "--screenshot",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    from PySide6.QtGui import QImage

    img = QImage(str(out))
    assert (img.width(), img.height()) == (1600, 960)
    # the window is not blank: the viewports show the CT
    grey = [
        img.pixelColor(x, y).lightness() for x in range(300, 900, 20) for y in range(200, 800, 20)
    ]
    assert max(grey) > 150 and np.std(grey) > 20
    # FILE.json beside it says what each viewport shows (docs/viewer.md)
    import json

    from medview.io import scan

    shot = json.loads(out.with_suffix(".json").read_text())
    series = scan(str(ct_dir)).series[0]  # the UID `medview info` reports
    assert shot["layout"] == "mpr" and shot["active"] == 0 and shot["maximized"] is None
    vps = shot["viewports"]
    assert [v["plane"] for v in vps] == ["axial", "coronal", "sagittal"]
    assert {v["series_uid"] for v in vps} == {series.series_uid}
    assert [v["count"] for v in vps] == [series.slices, series.rows, series.columns]
    for v in vps:  # the middle slice, 1-based as shown and 0-based
        assert v["index"] == v["index0"] + 1 and v["index0"] == v["count"] // 2
        assert (v["window_center"], v["window_width"]) == (-600.0, 1500.0)  # --preset lung
        assert v["projection"] is None and v["slab"] is None and v["zoom"] > 0


def test_screenshot_reports_bad_path(tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", MEDVIEW_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "medview", str(tmp_path / "missing"), "--screenshot", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 1
    assert "missing: no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.exists()


def test_start_up_is_light():
    from tests.helpers.imports import loaded_after

    heavy = ("torch", "SimpleITK", "sklearn", "pyqtgraph")
    assert loaded_after("import medview.ui.app, medview.ui.main_window", heavy) == []


def test_drop_files_and_series_onto_a_viewport(make_window, qtbot, ct_dir):
    from PySide6.QtCore import QMimeData, QUrl

    win = make_window()
    win.set_layout("1x2")
    right = win.area.viewports[1]
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(ct_dir))])
    win.handle_drop(md, right)
    idle(qtbot, win)
    assert right.volume is not None and right.volume.shape == (20, 512, 512)
    assert win.active is right
    key = next(k for k in win.browser.items if k.startswith("open:"))
    left = win.area.viewports[0]
    md2 = QMimeData()
    md2.setData("application/x-medview-series", key.encode())
    win.handle_drop(md2, left)
    idle(qtbot, win)
    assert left.volume is right.volume  # the loaded volume is reused from the cache


def test_measurement_shows_in_every_viewport_of_the_series(make_window, qtbot, ct_dir):
    from medview.imaging.measure import Measurement

    win = _opened(make_window, qtbot, ct_dir)
    win.set_layout("1x2")  # the CT opened in MPR (its protocol); two axial viewports now
    left, right = win.area.viewports[:2]
    key = next(k for k in win.browser.items if k.startswith("open:"))
    win.load_into(right, key)
    idle(qtbot, win)
    assert right.volume is left.volume
    m = Measurement("ruler", [(10.0, 10.0), (110.0, 10.0)], index=left.index, plane="axial")
    m.image_key = left.volume.instances[left.index].sop_uid
    left.add_measurement(m)
    assert m in right.measurements and m.db_id is not None
    left.delete_measurement(m)
    assert m not in right.measurements


def test_open_dicomdir_lists_every_series(make_window, qtbot):
    from pydicom.data import get_testdata_file

    path = get_testdata_file("DICOMDIR", download=False)
    if not path:
        pytest.skip("pydicom's DICOMDIR test set is not installed")
    from medview.io import scan

    expected = len(scan(path).series)
    win = make_window()
    win.set_layout("2x2")
    win.open_paths([path])
    idle(qtbot, win)
    keys = [k for k in win.browser.items if k.startswith("open:")]
    assert len(keys) == expected >= 2
    # several studies: the one holding the largest series (a 5-slice CT) is hung by its
    # protocol (CT: MPR), not the 2x2 left on screen; the others are in the browser
    assert (win.area.layout_name, win.protocol_name) == ("mpr", "CT")
    shown = [v for v in win.area.viewports if v.volume is not None]
    assert len(shown) == 3 and {v.volume.shape[0] for v in shown} == {5}
    # patients and studies are grouped: fewer patient rows than series
    assert win.browser.opened_root.childCount() < expected


def test_tag_browser_builds_huge_sequences_lazily(qtbot):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from medview.ui.panels import tags as T

    ds = Dataset()
    ds.PatientID = "LAZY1"
    items = []
    for n in range(5000):  # 5000 x 6 rows: more than MAX_ITEMS
        it = Dataset()
        inner = Dataset()
        inner.SliceThickness = 1.0
        inner.PixelSpacing = [0.5, 0.5]
        it.PixelMeasuresSequence = Sequence([inner])
        it.InstanceNumber = n
        items.append(it)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    tb = T.TagBrowser()
    qtbot.addWidget(tb)
    tb.set_dataset(ds, "synthetic")
    top = tb.tree.topLevelItem(1)
    assert top.text(1) == "PerFrameFunctionalGroupsSequence" and top.childCount() == 5000

    def count(item):
        return 1 + sum(count(item.child(i)) for i in range(item.childCount()))

    built = sum(count(tb.tree.topLevelItem(i)) for i in range(tb.tree.topLevelItemCount()))
    every_row = 2 + 5000 * 6  # PatientID, the sequence, 6 rows per frame item
    assert T.MAX_ITEMS <= built < every_row - 5000  # the deep rows of later items wait
    last = top.child(4999)
    assert last.child(0).text(1) == "(expand to read)"
    last.setExpanded(True)
    assert [last.child(i).text(1) for i in range(last.childCount())] == [
        "InstanceNumber",
        "PixelMeasuresSequence",
    ]
    tb.filter.setText("LAZY1")
    tb.apply_filter()
    assert tb.matching_keywords() == ["PatientID"]


def test_hanging_protocol_ct_in_mpr_then_a_radiograph_opens_1x1(
    make_window, qtbot, ct_dir, xray_dir
):
    """The layout of one study no longer leaks into the next (issue 16, item 1)."""
    from medview.ui.reading import describe

    win = _opened(make_window, qtbot, ct_dir)
    vps = win.area.viewports
    qtbot.waitUntil(lambda: all(v.volume is not None for v in vps[:3]), timeout=TIMEOUT)
    assert (win.area.layout_name, win.protocol_name) == ("mpr", "CT")
    assert [v.plane for v in vps[:3]] == ["axial", "coronal", "sagittal"]
    assert {v.window for v in vps[:3]} == {(50.0, 350.0)}  # soft tissue / mediastinum
    win.open_paths([str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")])
    idle(qtbot, win)
    shot = describe(win)
    assert (shot["layout"], shot["protocol"]) == ("1x1", "Radiograph")
    assert len(shot["viewports"]) == 1 and win.area.visible_viewports() == [vps[0]]
    only = shot["viewports"][0]
    assert (only["modality"], only["plane"], only["index"], only["count"]) == ("CR", "axial", 1, 1)
    assert all(v.volume is None for v in vps[1:])  # no reformat left over from the CT


def test_hanging_protocol_radiograph_beside_its_prior(make_window, qtbot, xray_dir, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    from medview.viewer.session import import_into_db

    cr = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    ds = pydicom.dcmread(cr)  # an earlier study of the same patient, in the database
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyDate = "18991231"
    (tmp_path / "prior").mkdir()
    ds.save_as(tmp_path / "prior" / "prior.dcm")
    import_into_db(str(tmp_path / "prior"))
    win = make_window()
    win.open_paths([str(cr)])
    idle(qtbot, win)
    left, right = win.area.viewports[:2]
    qtbot.waitUntil(lambda: right.volume is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    assert (win.area.layout_name, win.protocol_name) == ("1x2", "Radiograph with prior")
    assert left.volume.series.study_date == "19010101"
    assert right.volume.series.study_uid == ds.StudyInstanceUID
    assert any("1 prior study: 1899-12-31" in t for _, _, t in win.notifier.history)


def test_layout_option_pins_the_layout(make_window, qtbot, xray_dir):
    from medview.ui.app import create_window
    from medview.ui.hanging import protocol_of as reading_protocol

    win = create_window(
        types.SimpleNamespace(
            layout="2x2", preset=None, paths=[str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")]
        ),
        load_panels=False,
    )
    qtbot.addWidget(win)
    win.show()
    try:
        idle(qtbot, win)
        assert win.area.layout_name == "2x2" and reading_protocol(win) is None
        assert win.area.viewports[0].volume is not None
    finally:
        win.close()


def test_projection_option_and_viewport_export(make_window, qtbot, ct_dir, tmp_path):
    """`medview CT --projection mip --slab 20`: every MPR plane shows the slab (and the
    screenshot JSON says so); the viewport exports as PNG/JPEG, bare or with overlays,
    to the clipboard, and as a cine GIF written on a worker."""
    from PIL import Image

    from medview.imaging.projection import render_projection
    from medview.ui import reading
    from medview.ui.app import create_window

    args = types.SimpleNamespace(layout=None, preset=None, projection="mip", slab=20.0, paths=[])
    win = create_window(args, load_panels=False)
    qtbot.addWidget(win)
    win.show()
    try:
        win.open_paths([str(ct_dir)])
        idle(qtbot, win)
        vps = win.area.viewports[:3]
        qtbot.waitUntil(lambda: all(v.view.projection == "mip" for v in vps), timeout=TIMEOUT)
        shot = reading.describe(win)
        assert [(v["projection"], v["slab"]) for v in shot["viewports"]] == [("mip", 20.0)] * 3
        ax = shot["viewports"][0]
        assert (ax["slab_first0"], ax["slab_last0"], ax["index0"]) == (6, 15, 10)
        assert win.projection_box.currentData() == "mip"
        vp = win.active
        bare = tmp_path / "bare.png"
        assert reading.save_viewport(win, str(bare), overlays=False)
        ref = render_projection(vp.volume, 10, "axial", "mip", 20.0, window=vp.window)
        np.testing.assert_array_equal(np.array(Image.open(bare).convert("L")), ref)
        shown = tmp_path / "shown.jpg"
        assert reading.save_viewport(win, str(shown), overlays=True)
        assert Image.open(shown).size == (vp.width(), vp.height())
        assert not reading.save_viewport(win, str(tmp_path / "x.bmp"))
        reading.copy_viewport(win)
        from PySide6.QtGui import QGuiApplication

        assert QGuiApplication.clipboard().image().width() == vp.width()
        gif = tmp_path / "cine.gif"
        h = reading.export_cine(win, str(gif))
        qtbot.waitUntil(lambda: not h.running, timeout=TIMEOUT)
        with Image.open(gif) as im:
            assert im.n_frames == 20
    finally:
        win.close()


def test_measurement_on_a_coronal_reformat_is_stored_and_restored(make_window, qtbot, ct_dir):
    from medview.imaging.measure import Measurement
    from medview.io.database import StudyDatabase

    win = _opened(make_window, qtbot, ct_dir)  # the CT protocol: MPR
    cor = win.area.viewports[1]
    qtbot.waitUntil(lambda: cor.volume is not None and cor.plane == "coronal", timeout=TIMEOUT)
    cor.set_index(300)
    cor.tools.drawing = Measurement(
        "ruler", [(100.0, 10.0), (400.0, 30.0)], index=300, plane="coronal"
    )
    cor.tools.finish_drawing()
    m = cor.measurements[0]
    key = f"{cor.volume.series.series_uid}/coronal"
    assert (m.image_key, m.frame) == (key, 300) and m.db_id is not None
    rows = StudyDatabase().measurements(key)
    assert [(r["data"]["plane"], r["data"]["frame"]) for r in rows] == [("coronal", 300)]
    # 300 px across at 0.977 mm, 20 rows down at 2 mm: the length in mm on the reformat
    sx, _sy, sz = cor.volume.spacing
    assert m.stats["length"] == pytest.approx(((300 * sx) ** 2 + (20 * sz) ** 2) ** 0.5, rel=1e-3)
    win.close()

    win2 = make_window()
    win2.open_paths([str(ct_dir)])
    idle(qtbot, win2)
    cor2, ax2 = win2.area.viewports[1], win2.area.viewports[0]
    qtbot.waitUntil(lambda: len(cor2.measurements) == 1, timeout=TIMEOUT)
    r = cor2.measurements[0]
    assert (r.plane, r.index, r.db_id) == ("coronal", 300, m.db_id)
    assert not ax2.measurements_here()
    cor2.delete_measurement(r)
    assert StudyDatabase().measurements(key) == []


def _raised_copy(
    paths: list, dest: Path, first: int, series: int, frame: str | None = None
) -> Path:
    """The slices ``paths`` written to ``dest`` 4 mm higher as a new series: SOP instance
    UIDs from ``first`` on, series UID ``series`` (and frame of reference ``frame``), all
    under 1.2.826.0.1.3680043.8.498."""
    import pydicom

    root = "1.2.826.0.1.3680043.8.498"
    dest.mkdir()
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 4.0]
        if frame is not None:
            ds.FrameOfReferenceUID = f"{root}.{frame}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{root}.{n + first}"
        ds.SeriesInstanceUID = f"{root}.{series}"
        ds.save_as(dest / f"{n}.dcm")
    return dest


def _side_by_side(make_window, qtbot, left_path: Path, right_path: Path) -> tuple:
    """A 1x2 window with ``left_path`` opened on the left and ``right_path`` on the right."""
    win = make_window()
    win.set_layout("1x2")
    left, right = win.area.viewports[:2]
    win.open_paths([str(left_path)], target=left)
    idle(qtbot, win)
    win.open_paths([str(right_path)], target=right)
    idle(qtbot, win)
    return win, left, right


def test_linked_scrolling_window_and_zoom(make_window, qtbot, ct_dir, tmp_path):
    """The CT beside a copy 2 slices higher in the same frame of reference: scrolling
    one shows the same table position in the other; W/L and zoom follow; unlinkable."""
    from PySide6.QtWidgets import QApplication

    from tests.helpers.qt_helpers import wheel_event

    # 4 mm = 2 slices of 2 mm
    shifted = _raised_copy(sorted(ct_dir.glob("*.dcm")), tmp_path / "shifted", 1, 100)
    win, left, right = _side_by_side(make_window, qtbot, ct_dir, shifted)
    assert left.volume is not None and right.volume is not None
    win.actions_by_id["link_scroll"].trigger()
    win.actions_by_id["link_view"].trigger()
    for k in (5, 12):
        left.set_index(k)
        assert right.slice_position() == pytest.approx(left.slice_position(), abs=1e-3)
        assert right.index != left.index
    right.set_index(9)  # either side leads
    assert left.slice_position() == pytest.approx(right.slice_position(), abs=1e-3)
    left.set_window(-600, 1500)
    assert right.window == (-600.0, 1500.0)
    QApplication.sendEvent(left, wheel_event(200, 200, 120, ctrl=True))
    qtbot.waitUntil(lambda: right.view.zoom == pytest.approx(left.view.zoom), timeout=2000)
    assert not left.view.fit_mode
    win.actions_by_id["link_scroll"].trigger()  # unlink
    before = right.index
    left.set_index(2)
    assert right.index == before


def test_linking_other_frames_registers_on_a_worker(make_window, qtbot, ct_dir, tmp_path):
    """Different frames of reference: the manual offset first, then the rigid
    registration (SimpleITK, on a worker) links the same anatomy."""
    from medview.io import load_path

    ct = load_path(ct_dir)
    # 3 slices fewer, 4 mm up, another frame
    paths = [inst.path for inst in ct.instances[3:]]
    moved = _raised_copy(paths, tmp_path / "moved", 200, 199, frame="77")
    win, left, right = _side_by_side(make_window, qtbot, ct_dir, moved)
    left.set_index(10)
    right.set_index(10)  # shown together when linked: the manual offset is 0
    win.actions_by_id["link_scroll"].trigger()
    left.set_index(12)
    assert right.index == 12  # index for index until the registration is done
    idle(qtbot, win)  # the registration runs on a worker (the window is busy meanwhile)
    assert any("registered (rigid)" in t for _, _, t in win.notifier.history)
    left.set_index(14)
    assert right.index == 11  # the same anatomy: 3 slices fewer below
    right.set_index(5)
    assert left.index == 8
