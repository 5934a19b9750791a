"""The local study database."""

from __future__ import annotations

import os
import sqlite3

import pytest
from pydicom.data import get_testdata_file

from medview.errors import Cancelled
from medview.io.database import StudyDatabase
from medview.tasks import TaskState


@pytest.fixture()
def db(tmp_path):
    d = StudyDatabase(tmp_path / "db.sqlite")
    yield d
    d.close()


def test_default_location_follows_medview_home(medview_home):
    d = StudyDatabase()
    assert str(d.path).startswith(str(medview_home))
    d.close()


def test_queries(db):
    root = os.path.dirname(get_testdata_file("CT_small.dcm"))
    report = db.import_path(root)
    assert report.instances > 50 and report.errors  # pydicom's folder has broken files too
    counts = db.counts()
    assert counts["instances"] == report.instances
    by_name = db.studies(text="CompressedSamples^CT1")
    assert len(by_name) == 1 and by_name[0]["patient_id"] == "1CT1"
    assert db.studies(text="1CT1")[0]["study_uid"] == by_name[0]["study_uid"]
    in_2004 = db.studies(date_from="20040101", date_to="20041231")
    assert in_2004 and all("2004" <= s["study_date"] <= "20041231" for s in in_2004)
    mr = db.studies(modality="MR")
    assert mr and all("MR" in s["modalities"] for s in mr)
    series = db.series(by_name[0]["study_uid"])
    assert series[0]["files"] and os.path.isfile(series[0]["files"][0])


def test_interrupted_import_leaves_the_database_unchanged(db, tmp_path):
    root = os.path.dirname(get_testdata_file("DICOMDIR"))
    before = db.counts()
    state = TaskState()
    calls = {"n": 0}

    def cancel_midway(fraction, message):
        calls["n"] += 1
        if fraction > 0.9:
            state.cancel()

    state._on_progress = cancel_midway
    with pytest.raises(Cancelled):
        from medview.io.scanning import scan

        db.add_series(scan(root).series, state=_cancel_after(2))
    assert db.counts() == before
    # the file is a consistent SQLite database another connection can read
    con = sqlite3.connect(db.path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def _cancel_after(n: int) -> TaskState:
    state = TaskState()
    seen = {"n": 0}
    orig = state.check

    def check():
        seen["n"] += 1
        if seen["n"] > n:
            state.cancel()
        orig()

    state.check = check  # type: ignore[method-assign]
    return state


def test_measurements_roundtrip(db):
    mid = db.save_measurement("1.2.3", "ruler", {"p0": [1, 2], "p1": [3, 4], "mm": 2.83})
    db.save_measurement("1.2.3", "ellipse", {"mean": 40.1})
    got = db.measurements("1.2.3")
    assert [m["kind"] for m in got] == ["ruler", "ellipse"]
    assert got[0]["data"]["mm"] == 2.83
    assert db.delete_measurement(mid) is True
    assert [m["kind"] for m in db.measurements("1.2.3")] == ["ellipse"]
    assert db.delete_measurement(mid) is False


def test_index_1000_files_is_fast(tmp_path, db):
    """1,000 small files index in seconds (headers only). Not a timing assertion:
    the bound is loose enough for a loaded CI machine."""
    import time

    import pydicom

    src = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(1000):
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.9.{n}"
        src.InstanceNumber = n
        src.ImagePositionPatient = [0, 0, float(n)]
        src.save_as(folder / f"{n:04d}.dcm")
    t0 = time.perf_counter()
    report = db.import_path(folder)
    elapsed = time.perf_counter() - t0
    assert report.instances == 1000 and not report.errors
    assert elapsed < 60
