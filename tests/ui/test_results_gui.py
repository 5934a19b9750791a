"""The viewer's results actions (pytest-qt, offscreen): the Key image flag round trip and its
corner marker, File > Export... headless (dialog options -> worker -> files, warnings, audit),
File > Save measurements as DICOM SR / key images as KOS / Report (PDF), and the audit
events of opening a series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from tests.helpers.tools import dciodvfy_errors  # noqa: E402

TIMEOUT = 60000


@pytest.fixture()
def make_window(make_window, monkeypatch, tmp_path):
    """The shared window fixture (tests/conftest.py), with the audit log in ``tmp_path``."""
    monkeypatch.setenv("MEDVIEW_AUDIT", str(tmp_path / "audit.jsonl"))
    return make_window


def idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)


def events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def open_ct(make_window, qtbot, ct_dir):
    win = make_window()
    win.open_paths([str(ct_dir)])
    idle(qtbot, win)
    return win


def _marker_pixels(vp) -> int:
    """Yellow (key marker) pixels in the top-right corner of the viewport's rendering."""
    img = vp.grab().toImage().convertToFormat(vp.grab().toImage().Format.Format_RGB888)
    w, h = img.width(), img.height()
    a = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h).reshape(h, -1)
    a = a[:, : w * 3].reshape(h, w, 3)[:200, w - 200 :].astype(int)
    return int(((a[..., 0] > 200) & (a[..., 1] > 150) & (a[..., 2] < 80)).sum())


def test_key_image_flag_round_trip_and_marker(make_window, qtbot, ct_dir, tmp_path) -> None:
    from medview.results.key_images import KeyImageDatabase

    win = open_ct(make_window, qtbot, ct_dir)
    vp = win.active
    vp.set_index(3)
    before = _marker_pixels(vp)
    QTest.keyClick(win, Qt.Key.Key_K)  # the shortcut
    sop = vp.volume.instances[3].sop_uid
    series = vp.volume.series.series_uid
    assert KeyImageDatabase().flagged([sop]) == {(sop, 0)}
    assert [k.sop_uid for k in KeyImageDatabase().for_series(series)] == [sop]
    assert _marker_pixels(vp) > before + 20
    vp.set_index(2)
    assert _marker_pixels(vp) <= before  # not on the other slices
    win.close()

    win2 = open_ct(make_window, qtbot, ct_dir)  # a new session shows it again
    win2.active.set_index(3)
    assert win2.key_images.is_key(sop)
    assert _marker_pixels(win2.active) > before + 20
    win2.actions_by_id["key_image"].trigger()  # unflag
    assert KeyImageDatabase().flagged([sop]) == set()
    # every open wrote one open event per series (not one per slice)
    opens = [e for e in events(tmp_path) if e["action"] == "open"]
    assert len(opens) == 2 and {e["series_uids"][0] for e in opens} == {series}


def test_export_dialog_headless(make_window, qtbot, ct_dir, tmp_path) -> None:
    from medview.ui import results_actions

    win = open_ct(make_window, qtbot, ct_dir)
    dlg = results_actions.export_dialog(win)
    out = tmp_path / "export"
    dlg.out_edit.setText(str(out))
    dlg.shift_box.setChecked(True)
    dlg.shift_days.setValue(-30)
    dlg.keep_chars.setChecked(True)
    assert dlg.request()["shift_days"] == -30
    dlg.accept()
    idle(qtbot, win)
    res = win.last_results
    n = len(win.active.volume.instances)
    assert res["files"] == n and res["anonymized"] and res["audit"] == ""
    assert res["options"] == {
        "basic_profile": True,
        "shift_days": -30,
        "keep_patient_characteristics": True,
    }
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == n
    src = pydicom.dcmread(win.active.volume.instances[0].path)
    got = [pydicom.dcmread(f) for f in files]
    assert all(d.PatientIdentityRemoved == "YES" for d in got)
    assert {d.PixelData for d in got} == {
        pydicom.dcmread(i.path).PixelData for i in win.active.volume.instances
    }
    assert all(str(d.get("PatientName", "")) != str(src.get("PatientName", "")) for d in got)
    ev = [e for e in events(tmp_path) if e["action"] == "export"]
    assert len(ev) == 1 and ev[0]["files"] == n and ev[0]["anonymized"] is True


def test_export_warns_about_burned_in_text(make_window, qtbot, tmp_path) -> None:
    from pydicom.data import get_testdata_file

    from medview.ui import results_actions

    us = get_testdata_file("US1_J2KR.dcm")  # ultrasound without Burned In Annotation
    if us is None:
        pytest.skip("pydicom's test file US1_J2KR.dcm is absent")
    win = make_window()
    win.open_paths([us])
    idle(qtbot, win)
    h = results_actions.start_export(win, [us], out=str(tmp_path / "z.zip"), zip_output=True)
    assert h is not None
    idle(qtbot, win)
    assert win.last_results["zip"] == str(tmp_path / "z.zip")
    assert any("burned" in w.lower() for w in win.last_results["warnings"])
    assert any("burned" in text.lower() for _t, _lvl, text in win.notifier.history)


def test_sr_kos_and_report_actions_write_valid_files(make_window, qtbot, ct_dir, tmp_path) -> None:
    import subprocess

    from medview.io.database import StudyDatabase
    from medview.ui import results_actions

    win = open_ct(make_window, qtbot, ct_dir)
    vp = win.active
    sops = [i.sop_uid for i in vp.volume.instances]
    StudyDatabase().save_measurement(
        sops[1],
        "ruler",
        {"points": [[100.5, 100.5], [300.5, 140.5]], "frame": 0, "stats": {"length": 10.0}},
    )
    vp.set_index(2)
    results_actions.toggle_key_image(win)

    results_actions.save_sr(win, str(tmp_path / "m.dcm"))
    idle(qtbot, win)
    assert win.last_results["measurements"] == 1
    assert dciodvfy_errors(tmp_path / "m.dcm") == []

    results_actions.save_kos(win, str(tmp_path / "k.dcm"))
    idle(qtbot, win)
    assert win.last_results["key_images"] == 1
    assert dciodvfy_errors(tmp_path / "k.dcm") == []
    kos = pydicom.dcmread(tmp_path / "k.dcm")
    assert kos.ContentSequence[-1].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sops[2]

    results_actions.save_report(win, str(tmp_path / "r.pdf"))
    idle(qtbot, win)
    assert win.last_results["key_images"][0] == 3  # the flagged slice first
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True
    ).stdout
    assert "Key images" in text and "Measurements" in text

    acts = [e["action"] for e in events(tmp_path)]
    assert acts.count("sr") == 2 and acts.count("report") == 1
    outputs = {e["output"] for e in events(tmp_path) if e["action"] in ("sr", "report")}
    assert outputs == {str((tmp_path / n).resolve()) for n in ("m.dcm", "k.dcm", "r.pdf")}


def test_sr_action_without_measurements_reports_one_line(
    make_window, qtbot, ct_dir, tmp_path
) -> None:
    from medview.ui import results_actions

    win = open_ct(make_window, qtbot, ct_dir)
    results_actions.save_sr(win, str(tmp_path / "none.dcm"))
    idle(qtbot, win)
    assert not (tmp_path / "none.dcm").exists()
    assert win.errors and "nothing to report" in win.errors[-1] and "\n" not in win.errors[-1]


def test_results_menu_items_and_shortcut(make_window) -> None:
    from medview.ui.actions import SHORTCUTS

    win = make_window()
    file_menu = win.menuBar().actions()[0].menu()
    texts = [a.text() for a in file_menu.actions()]
    for wanted in ("Export", "Save measurements as DICOM SR", "Report (PDF)"):
        assert any(t.startswith(wanted) for t in texts), texts
    assert ("key_image", "K") in [(k, s) for k, s, _ in SHORTCUTS]
    assert win.actions_by_id["key_image"].shortcut().toString() == "K"


def test_ai_analysis_writes_one_analyze_event_per_run(make_window, qtbot, ct_dir, tmp_path) -> None:
    """The AI panel's results (a stand-in panel with the real panel's signal and cache shape)
    are audited once per series and model, after the run's last batch."""
    from types import SimpleNamespace

    from PySide6.QtCore import QObject, Signal

    class FakeAIPanel(QObject):
        results_changed = Signal()

    win = open_ct(make_window, qtbot, ct_dir)
    vol = win.active.volume
    panel = FakeAIPanel()
    panel.ctx = SimpleNamespace(volume=vol)
    panel.cache = {}
    win.panels["ai"] = panel
    win.active.set_index(1)
    win.active.image_changed.emit()  # the hook connects when the panel is there
    for k in range(3):  # three batches of one run
        r = SimpleNamespace(model="pneumonia_cnn", version="1.0", key=f"k{k}")
        panel.cache[(r.key, r.model, r.version)] = r
        panel.results_changed.emit()
    qtbot.waitUntil(lambda: any(e["action"] == "analyze" for e in events(tmp_path)), timeout=5000)
    qtbot.wait(1200)
    panel.results_changed.emit()  # nothing new: no second event
    qtbot.wait(1200)
    ev = [e for e in events(tmp_path) if e["action"] == "analyze"]
    assert len(ev) == 1
    assert ev[0]["series_uids"] == [vol.series.series_uid]
    assert ev[0]["model"][0]["name"] == "pneumonia_cnn" and ev[0]["model"][0]["version"] == "1.0"
