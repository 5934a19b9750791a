"""Data at rest: a private user data folder, private files, no national identifiers stored."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from medview.io.database import StudyDatabase
from medview.paths import database_path, user_data_dir
from medview.records import import_records, load_records, load_saved_records
from medview.records.store import connect

posix = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
FHIR_FILE = "Delmar187_Spencer878_627bde6a-a31e-5566-6262-441262d4cc2c.json"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home" / "medview"
    monkeypatch.setenv("MEDVIEW_HOME", str(h))
    monkeypatch.delenv("MEDVIEW_DB", raising=False)
    return h


@posix
def test_user_data_folder_created_0700(home: Path) -> None:
    assert user_data_dir() == home
    assert _mode(home) == 0o700


@posix
def test_wider_existing_folder_is_tightened(home: Path) -> None:
    home.mkdir(parents=True)
    home.chmod(0o755)
    user_data_dir()
    assert _mode(home) == 0o700


@posix
def test_study_database_and_records_database_0600(home: Path) -> None:
    db = StudyDatabase()
    db.close()
    files = [database_path(), *home.glob("medview.sqlite-*")]
    assert files[0].is_file()
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    other = home / "records.sqlite"
    connect(other).close()
    assert _mode(other) == 0o600


@posix
def test_existing_wider_database_is_tightened(home: Path) -> None:
    home.mkdir(parents=True)
    path = home / "medview.sqlite"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    connect().close()
    assert _mode(path) == 0o600
    path.chmod(0o664)
    StudyDatabase().close()
    assert _mode(path) == 0o600


def _national_ids(csv_dir: Path, fhir: Path) -> set[str]:
    with (csv_dir / "patients.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = {r[k] for r in rows for k in ("SSN", "DRIVERS", "PASSPORT") if r[k]}
    bundle = json.loads(fhir.read_text())
    for e in bundle["entry"]:
        for ident in (
            e["resource"].get("identifier", [])
            if e["resource"]["resourceType"] == "Patient"
            else []
        ):
            codes = {c["code"] for c in ident.get("type", {}).get("coding", [])}
            if codes & {"SS", "DL", "PPN"}:
                ids.add(ident["value"])
    return ids


def test_national_identifiers_never_stored(home: Path, records_dir: Path) -> None:
    csv_dir = records_dir / "synthea_csv_ma27"
    fhir = records_dir / "synthea_fhir" / FHIR_FILE
    secrets = _national_ids(csv_dir, fhir)
    assert len(secrets) > 40  # SSNs, licences and passports of 28 patients
    for source in (csv_dir, fhir):
        rs = import_records(source)
        assert not rs.problems or all("local database" not in str(p) for p in rs.problems)
        kept = {i for p in rs.patients.values() for i in p.identifiers}
        assert not kept & secrets
    saved = load_saved_records()
    assert len(saved.patients) == 28
    fhir_patient = saved.patients["627bde6a-a31e-5566-6262-441262d4cc2c"]
    assert fhir_patient.identifiers  # the medical record number is kept for linking
    con = sqlite3.connect(database_path())
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    found = sorted(s for s in secrets if s.encode() in stored)
    assert found == []
    # sanity: the same bytes do hold what is stored
    assert fhir_patient.id.encode() in stored


def test_identifiers_of_an_older_database_are_wiped(home: Path, records_dir: Path) -> None:
    home.mkdir(parents=True)
    path = home / "medview.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE rec_patients (id TEXT PRIMARY KEY, name TEXT, birth_date TEXT, "
        "death_date TEXT, sex TEXT, identifiers TEXT, source TEXT, imported_at TEXT)"
    )
    con.execute(
        "INSERT INTO rec_patients VALUES ('p1','A B','1970-01-01',NULL,'F',?,'',NULL)",
        ("999-12-3456\nS99912345\nX1234567X",),
    )
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    connect().close()
    data = path.read_bytes()
    assert b"999-12-3456" not in data and b"S99912345" not in data
    assert load_saved_records().patients["p1"].identifiers == []
    assert load_records(records_dir / "synthea_csv_ma27").patients  # still importable
