"""The Qt-free viewer core: session workers, database series, volume cache,
measurement store and MPR synchronisation rules (no QApplication, no qtbot)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from medview.errors import ReadError
from medview.tasks import TaskState
from medview.viewer import mpr
from medview.viewer.session import (
    MeasurementStore,
    VolumeCache,
    cache_limit_from_env,
    import_into_db,
    is_database_key,
    load_db_series,
    measurements_to_restore,
    middle_image_series,
    plan_open,
    query_database,
    read_measurements,
    scan_paths,
    series_from_database,
)

MB = 1024 * 1024


def fake_volume(megabytes: int) -> SimpleNamespace:
    return SimpleNamespace(array=np.zeros(megabytes * MB, np.uint8))


# ------------------------------------------------------------------ Qt-free
def test_viewer_core_imports_no_qt():
    import subprocess

    code = (
        "import sys; sys.modules['PySide6'] = None;"
        "import medview.viewer.session, medview.viewer.mpr;"
        "heavy = [m for m in ('PySide6.QtCore', 'pydicom', 'torch') if sys.modules.get(m)];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ cache
def test_volume_cache_evicts_least_recently_used_by_bytes():
    cache = VolumeCache(max_bytes=3 * MB)
    a, b, c = fake_volume(1), fake_volume(1), fake_volume(1)
    cache.put("a", a)
    cache.put("b", b)
    cache.put("c", c)
    assert cache.total_bytes == 3 * MB and len(cache) == 3
    assert cache.get("a") is a  # "a" is now the most recently used
    cache.put("d", fake_volume(1))
    assert cache.keys() == ["c", "a", "d"]  # "b" (least recently used) went
    assert cache.total_bytes == 3 * MB
    assert cache.get("b") is None and "b" not in cache


def test_volume_cache_keeps_volumes_in_use_and_the_newest():
    cache = VolumeCache(max_bytes=2 * MB)
    cache.put("shown", fake_volume(2))
    cache.put("other", fake_volume(1), in_use={"shown"})
    assert cache.keys() == ["shown", "other"]  # the newest stays, even over the bound
    cache.put("new", fake_volume(1), in_use={"shown", "new"})
    assert cache.keys() == ["shown", "new"]  # over the bound, but both are on screen
    huge = fake_volume(5)
    cache.put("huge", huge, in_use=set())
    assert cache.keys() == ["huge"] and cache.get("huge") is huge  # alone over the bound
    cache.clear()
    assert len(cache) == 0 and cache.total_bytes == 0


def test_cache_limit_from_environment(monkeypatch):
    monkeypatch.delenv("MEDVIEW_CACHE_MB", raising=False)
    assert cache_limit_from_env() == 2048 * MB
    monkeypatch.setenv("MEDVIEW_CACHE_MB", "16")
    assert cache_limit_from_env() == 16 * MB


# ------------------------------------------------------------------ opening
def test_plan_open_fills_visible_viewports_or_picks_the_volume_for_mpr():
    plan = plan_open([1, 20, 3], visible=2, mpr=False, start=1)
    assert plan.best == 0 and plan.shown == 2 and plan.loads == [(1, 0), (0, 1)]
    plan = plan_open([1, 20, 3], visible=3, mpr=True)
    assert plan.best == 1 and plan.shown == 0 and plan.loads == [(0, 1)]
    assert plan_open([20, 3], visible=3, mpr=True).shown == 1
    assert plan_open([], visible=4, mpr=False).loads == []


def test_scan_then_database_series_load_the_same_volume(medview_home, ct_dir):
    res = scan_paths([str(ct_dir)])
    assert len(res.series) == 1 and res.series[0].slices == 20
    report = import_into_db(str(ct_dir))
    assert report.instances == 20 and report.series == 1
    found = query_database()
    assert len(found) == 1
    db_series = found[0]
    scanned = res.series[0]
    assert type(db_series) is type(scanned)  # a SeriesInfo, not a dict
    assert db_series.series_uid == scanned.series_uid
    assert db_series.study_uid == scanned.study_uid
    assert db_series.patient_id == scanned.patient_id
    assert db_series.modality == "CT" and len(db_series.instances) == 20
    assert {i.path for i in db_series.instances} == {i.path for i in scanned.instances}
    assert query_database(text="zz-no-such-patient") == []
    assert query_database(modality="MR") == []
    partials = []
    vol = load_db_series(db_series, state=TaskState(on_partial=partials.append))
    assert vol.shape == (20, 512, 512)
    assert partials[0][0] == "series" and partials[0][1].slices == 20
    assert is_database_key("db:" + db_series.series_uid) and not is_database_key("open:x")
    middle = middle_image_series(db_series)
    assert middle is not None and middle.series_uid == scanned.series_uid


def test_database_series_whose_files_are_gone_names_a_file(tmp_path):
    gone = str(tmp_path / "gone.dcm")
    series = series_from_database(
        {"study_uid": "1.2", "patient_id": "P1", "description": "study"},
        {"series_uid": "1.2.3", "modality": "CT", "files": [gone]},
    )
    assert series.patient_id == "P1" and series.study_description == "study"
    assert series.instances[0].path == gone and series.slices == 1
    with pytest.raises(ReadError) as err:
        load_db_series(series)
    assert "gone.dcm" in str(err.value)
    empty = series_from_database({"study_uid": "1.2"}, {"series_uid": "1.2.4", "files": []})
    with pytest.raises(ReadError, match="files of this series are gone"):
        load_db_series(empty)
    assert middle_image_series(empty) is None


# ------------------------------------------------------------------ measurements
class Meas:
    def __init__(self, key: str, kind: str = "ruler", frame: int = 0) -> None:
        self.kind, self.image_key, self.db_id = kind, key, None
        self.points = [(10.0, 20.0), (110.0, 20.0)]
        self.frame = frame

    def data(self) -> dict:
        return {"points": [list(p) for p in self.points], "plane": "axial", "frame": self.frame}


def test_measurement_store_saves_replaces_and_deletes(medview_home, ct_dir):
    from medview.io import load_path
    from medview.io.database import StudyDatabase

    vol = load_path(ct_dir)
    sop = vol.instances[4].sop_uid
    store = MeasurementStore(warn=pytest.fail)
    m = Meas(sop)
    store.add(m)
    first = m.db_id
    assert first is not None
    assert [r["kind"] for r in StudyDatabase().measurements(sop)] == ["ruler"]
    m.points = [(0.0, 0.0), (50.0, 0.0)]
    store.change(m)
    rows = StudyDatabase().measurements(sop)
    assert m.db_id != first and [r["id"] for r in rows] == [m.db_id]
    assert rows[0]["data"]["points"] == [[0.0, 0.0], [50.0, 0.0]]
    # read back and placed on the slice of its SOP instance
    keys = store.keys_to_restore(vol)
    uid = vol.series.series_uid  # + the two reformat keys (SERIES_UID/plane)
    assert (
        len(keys) == 22 and sop in keys and f"{uid}/coronal" in keys and f"{uid}/sagittal" in keys
    )
    stored = read_measurements(keys)
    assert list(stored) == [sop]
    placed = measurements_to_restore(vol, stored, known_ids=set())
    assert len(placed) == 1 and placed[0].index == 4 and placed[0].db_id == m.db_id
    assert placed[0].points == [(0.0, 0.0), (50.0, 0.0)] and placed[0].image_key == sop
    assert measurements_to_restore(vol, stored, known_ids={m.db_id}) == []
    store.delete(m)
    assert StudyDatabase().measurements(sop) == []
    unkeyed = Meas("")
    store.add(unkeyed)
    assert unkeyed.db_id is None
    store.close()


def test_measurement_store_without_database_warns_once():
    warnings: list[str] = []

    def broken() -> object:
        raise OSError("disk full")

    store = MeasurementStore(warn=warnings.append, open_database=broken)
    for _ in range(3):
        store.add(Meas("1.2.3"))
    assert warnings == ["measurements are not stored: database unavailable (disk full)"]
    assert store.failed and store.keys_to_restore(SimpleNamespace(instances=[1])) == []


def test_measurement_store_reports_a_failed_write():
    class FailingDb:
        def save_measurement(self, sop_uid, kind, data):
            raise OSError("database is locked")

        def delete_measurement(self, measurement_id):
            raise OSError("database is locked")

        def close(self):
            pass

    warnings: list[str] = []
    store = MeasurementStore(warn=warnings.append, open_database=FailingDb)
    m = Meas("1.2.3")
    store.add(m)
    m.db_id = 7
    store.delete(m)
    assert warnings == [
        "measurement not stored: database is locked",
        "measurement not deleted from the database: database is locked",
    ]


def test_measurements_on_a_multi_frame_volume_go_by_frame():
    vol = SimpleNamespace(
        instances=[SimpleNamespace(sop_uid="1.9")], shape=(10, 64, 64), array=None
    )
    rows = {
        "1.9": [
            {"id": 1, "kind": "angle", "data": {"frame": 7, "points": [[1, 2], [3, 4], [5, 6]]}},
            {"id": 2, "kind": "ruler", "data": {"frame": 12, "points": [[1, 2], [3, 4]]}},
        ]
    }
    placed = measurements_to_restore(vol, rows, known_ids=set())
    assert [(p.kind, p.index, p.frame) for p in placed] == [("angle", 7, 7)]  # frame 12: outside


# ------------------------------------------------------------------ MPR rules
def test_scroll_moves_the_crosshair_only_when_the_slice_changed():
    ch = (100.0, 300.0, 10.0)
    assert mpr.crosshair_after_scroll("axial", ch, 3) == (100.0, 300.0, 3.0)
    assert mpr.crosshair_after_scroll("coronal", ch, 250) == (100.0, 250.0, 10.0)
    assert mpr.crosshair_after_scroll("sagittal", ch, 7) == (7.0, 300.0, 10.0)
    assert mpr.crosshair_after_scroll("axial", ch, 10) is None  # index set from the crosshair
    assert mpr.crosshair_after_scroll("sagittal", (99.6, 0.0, 0.0), 100) is None


def test_crosshair_and_window_follow_within_one_volume_in_mpr_only():
    vol, other = object(), object()
    trio = [vol, vol, vol, vol]  # a fourth, hidden viewport is never part of MPR
    assert mpr.crosshair_targets("mpr", 0, vol, trio) == [1, 2]
    assert mpr.crosshair_targets("mpr", 0, vol, trio, include_source=True) == [0, 1, 2]
    assert mpr.crosshair_targets("mpr", 1, vol, [vol, vol, other]) == [0]
    assert mpr.crosshair_targets("2x2", 0, vol, trio) == []
    assert mpr.window_targets("mpr", 2, trio) == [0, 1]
    assert mpr.window_targets("mpr", 0, [vol, other, vol]) == [2]
    assert mpr.window_targets("mpr", 3, trio) == []
    assert mpr.window_targets("1x2", 0, trio) == []
    assert mpr.scroll_moves_crosshair("mpr", 1, True)
    assert not mpr.scroll_moves_crosshair("mpr", 1, False)
    assert not mpr.scroll_moves_crosshair("mpr", 3, True)
    assert not mpr.scroll_moves_crosshair("1x1", 0, True)
    assert mpr.center_crosshair((20, 512, 511)) == (255.0, 256.0, 10.0)
    assert mpr.MPR_PLANES == ("axial", "coronal", "sagittal")


# ------------------------------------------------------------------ what is shown
def test_hu_presets_are_refused_on_images_that_are_not_ct(ct_dir, xray_dir):
    from medview.io import load_path
    from medview.viewer.session import hu_preset_verdict

    ct = load_path(ct_dir)
    assert hu_preset_verdict(ct, "lung") == (False, "")
    xray = load_path(xray_dir / "nih_00000001_000.png")
    refused, warning = hu_preset_verdict(xray, "bone")
    assert refused and "Hounsfield" in warning and warning.endswith("(not applied)")
    assert hu_preset_verdict(xray, "auto") == (False, "")  # not a CT window: any image
    assert hu_preset_verdict(None, "lung") == (False, "")


def test_shown_file_and_window_title(ct_dir):
    from medview.io import load_path
    from medview.viewer.session import shown_file, window_title

    vol = load_path(ct_dir)
    assert shown_file(vol, "axial", 5, None) == vol.instances[5].path
    assert shown_file(vol, "coronal", 300, None) == vol.instances[10].path  # the middle slice
    assert shown_file(None, "axial", 0, vol.series) == vol.series.instances[0].path
    assert shown_file(None, "axial", 0, None) == ""
    info = SimpleNamespace(patient_name="Doe^Jane", modality="CT", description="chest")
    assert window_title(info) == "medview \N{EM DASH} Doe Jane, CT chest"
    assert window_title(None) == "medview"


def test_browser_thumbnails_of_opened_and_database_series(medview_home, ct_dir, tmp_path):
    from medview.imaging.thumbnails import SIZE, render_thumbnail
    from medview.viewer.session import browser_thumbnails

    scanned = scan_paths([str(ct_dir)]).series[0]
    import_into_db(str(ct_dir))
    (db_series,) = query_database()
    gone = series_from_database({"study_uid": "9"}, {"series_uid": "9.1", "files": []})
    got: list = []
    n = browser_thumbnails(
        [("open:a", scanned), ("db:b", db_series), ("db:gone", gone)],
        TaskState(on_partial=got.append),
    )
    assert n == 2 and [k for k, _ in got] == ["open:a", "db:b"]
    assert np.array_equal(got[0][1], render_thumbnail(scanned))  # its middle slice
    assert max(got[0][1].shape) <= SIZE
    # the database series: its middle file in instance-number order
    middle = scan_paths([db_series.instances[10].path]).series[0]
    assert np.array_equal(got[1][1], render_thumbnail(middle))
