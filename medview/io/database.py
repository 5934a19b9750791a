"""The local study database (SQLite, Qt-free).

Imports index files by UID from their headers only (``stop_before_pixels``), so
indexing a thousand files takes seconds. Re-importing is idempotent: instances
are keyed by SOPInstanceUID (plus the file path, so two copies of one image in
different places are both known). Each import runs in one transaction, so an
interrupted import leaves the database as it was before.

The database also keeps measurements per SOPInstanceUID for the viewer.
Location: :func:`medview.paths.database_path` (``MEDVIEW_DB`` / ``MEDVIEW_HOME``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from medview.errors import FileProblem
from medview.io.model import SeriesInfo
from medview.paths import ThreadLocalDatabase
from medview.tasks import TaskState, ensure_state

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS patients (
    patient_key TEXT PRIMARY KEY,      -- PatientID, or name|birth date when the ID is empty
    patient_id TEXT, name TEXT, birth_date TEXT, sex TEXT
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, patient_key TEXT REFERENCES patients(patient_key),
    study_date TEXT, study_time TEXT, description TEXT, accession TEXT
);
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT REFERENCES studies(study_uid),
    modality TEXT, description TEXT, series_number INTEGER, rows INTEGER, columns INTEGER,
    slices INTEGER, warnings TEXT
);
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT NOT NULL, path TEXT NOT NULL, series_uid TEXT REFERENCES series(series_uid),
    instance_number INTEGER, transfer_syntax TEXT, mtime REAL,
    PRIMARY KEY (sop_uid, path)
);
CREATE INDEX IF NOT EXISTS idx_instances_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS idx_studies_patient ON studies(patient_key);
CREATE INDEX IF NOT EXISTS idx_studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS idx_series_study ON series(study_uid);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sop_uid TEXT NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL, created TEXT DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_measurements_sop ON measurements(sop_uid);
"""


@dataclass
class ImportReport:
    files: int = 0
    instances: int = 0
    new_instances: int = 0
    series: int = 0
    studies: int = 0
    errors: list[FileProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The fields in order (each error as its ``path`` and ``reason``)."""
        return asdict(self)


def patient_key(patient_id: str, name: str, birth_date: str) -> str:
    return patient_id or f"{name}|{birth_date}"


class StudyDatabase(ThreadLocalDatabase):
    """A connection to the study database. Safe to use from one thread at a time;
    each thread gets its own SQLite connection."""

    SCHEMA = _SCHEMA

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path)
        with self._conn() as con:
            con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _setup(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA foreign_keys = ON")

    # -- import ---------------------------------------------------------------
    def import_path(
        self, paths: str | os.PathLike[str] | Iterable[str], state: TaskState | None = None
    ) -> ImportReport:
        """Index everything under ``paths`` (headers only) in one transaction."""
        from medview.io.scanning import scan

        state = ensure_state(state)
        result = scan(paths, state=TaskState(on_progress=lambda f, m: state.progress(0.9 * f, m)))
        report = self.add_series(result.series, state)
        report.errors = list(result.errors)
        report.files += len(result.errors)
        return report

    def add_series(
        self, series_list: list[SeriesInfo], state: TaskState | None = None
    ) -> ImportReport:
        """Insert or update scanned series; all-or-nothing."""
        state = ensure_state(state)
        report = ImportReport()
        con = self._conn()
        studies: set[str] = set()
        try:
            con.execute("BEGIN IMMEDIATE")
            for n, s in enumerate(series_list):
                state.check()
                if s.kind != "dicom":
                    continue
                first = s.instances[0]
                pkey = patient_key(s.patient_id, s.patient_name, s.patient_birth_date)
                con.execute(
                    "INSERT INTO patients VALUES (?,?,?,?,?) ON CONFLICT(patient_key) DO UPDATE SET "
                    "name=excluded.name, birth_date=excluded.birth_date, sex=excluded.sex",
                    (pkey, s.patient_id, s.patient_name, s.patient_birth_date, s.patient_sex),
                )
                con.execute(
                    "INSERT INTO studies VALUES (?,?,?,?,?,?) ON CONFLICT(study_uid) DO UPDATE SET "
                    "patient_key=excluded.patient_key, study_date=excluded.study_date, "
                    "study_time=excluded.study_time, description=excluded.description, accession=excluded.accession",
                    (
                        s.study_uid,
                        pkey,
                        s.study_date,
                        first.study_time,
                        s.study_description,
                        first.accession_number,
                    ),
                )
                studies.add(s.study_uid)
                con.execute(
                    "INSERT INTO series VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(series_uid) DO UPDATE SET "
                    "study_uid=excluded.study_uid, modality=excluded.modality, description=excluded.description, "
                    "series_number=excluded.series_number, rows=excluded.rows, columns=excluded.columns, "
                    "slices=excluded.slices, warnings=excluded.warnings",
                    (
                        s.series_uid,
                        s.study_uid,
                        s.modality,
                        s.description,
                        s.series_number,
                        s.rows,
                        s.columns,
                        s.slices,
                        json.dumps(s.warnings),
                    ),
                )
                for inst in s.instances:
                    path = os.path.abspath(inst.path)
                    try:
                        mtime = os.path.getmtime(path)
                    except OSError:
                        mtime = None
                    existed = con.execute(
                        "SELECT 1 FROM instances WHERE sop_uid=? AND path=?", (inst.sop_uid, path)
                    ).fetchone()
                    con.execute(
                        "INSERT INTO instances VALUES (?,?,?,?,?,?) ON CONFLICT(sop_uid, path) DO UPDATE SET "
                        "series_uid=excluded.series_uid, instance_number=excluded.instance_number, "
                        "transfer_syntax=excluded.transfer_syntax, mtime=excluded.mtime",
                        (
                            inst.sop_uid,
                            path,
                            s.series_uid,
                            inst.instance_number,
                            inst.transfer_syntax,
                            mtime,
                        ),
                    )
                    report.instances += 1
                    report.files += 1
                    if not existed:
                        report.new_instances += 1
                report.series += 1
                if n % 4 == 0:
                    state.progress(0.9 + 0.1 * n / max(1, len(series_list)), "indexing")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        report.studies = len(studies)
        return report

    # -- queries --------------------------------------------------------------
    def patients(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT * FROM patients ORDER BY name, patient_id").fetchall()
        return [dict(r) for r in rows]

    def studies(
        self,
        text: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        modality: str | None = None,
    ) -> list[dict[str, Any]]:
        """Studies matching patient name/ID ``text`` (substring), a date range
        (YYYYMMDD, inclusive) and a modality, newest first."""
        sql = [
            "SELECT st.study_uid, st.study_date, st.study_time, st.description, st.accession, "
            "p.patient_id, p.name AS patient_name, p.birth_date, p.sex, "
            "GROUP_CONCAT(DISTINCT se.modality) AS modalities, COUNT(DISTINCT se.series_uid) AS series_count, "
            "(SELECT COUNT(*) FROM instances i JOIN series s2 ON i.series_uid = s2.series_uid "
            " WHERE s2.study_uid = st.study_uid) AS instance_count "
            "FROM studies st JOIN patients p ON st.patient_key = p.patient_key "
            "LEFT JOIN series se ON se.study_uid = st.study_uid WHERE 1=1"
        ]
        args: list[Any] = []
        if text:
            sql.append("AND (p.name LIKE ? OR p.patient_id LIKE ?)")
            args += [f"%{text}%", f"%{text}%"]
        if date_from:
            sql.append("AND st.study_date >= ?")
            args.append(date_from.replace("-", ""))
        if date_to:
            sql.append("AND st.study_date <= ?")
            args.append(date_to.replace("-", ""))
        if modality:
            sql.append("AND st.study_uid IN (SELECT study_uid FROM series WHERE modality = ?)")
            args.append(modality.upper())
        sql.append("GROUP BY st.study_uid ORDER BY st.study_date DESC, st.study_time DESC")
        rows = self._conn().execute(" ".join(sql), args).fetchall()
        return [dict(r) for r in rows]

    def series(self, study_uid: str) -> list[dict[str, Any]]:
        """Series of a study, each with its instance file paths (in instance-number order)."""
        con = self._conn()
        out = []
        for r in con.execute(
            "SELECT * FROM series WHERE study_uid = ? ORDER BY series_number, series_uid",
            (study_uid,),
        ):
            d = dict(r)
            d["warnings"] = json.loads(d.get("warnings") or "[]")
            d["files"] = [
                x["path"]
                for x in con.execute(
                    "SELECT path FROM instances WHERE series_uid = ? ORDER BY instance_number, path",
                    (r["series_uid"],),
                )
            ]
            out.append(d)
        return out

    def counts(self) -> dict[str, int]:
        con = self._conn()
        return {
            t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("patients", "studies", "series", "instances", "measurements")
        }

    # -- measurements ---------------------------------------------------------
    def save_measurement(self, sop_uid: str, kind: str, data: dict[str, Any]) -> int:
        con = self._conn()
        with con:
            cur = con.execute(
                "INSERT INTO measurements (sop_uid, kind, data) VALUES (?,?,?)",
                (sop_uid, kind, json.dumps(data)),
            )
        if cur.lastrowid is None:
            raise sqlite3.DatabaseError("the measurement was not stored")
        return int(cur.lastrowid)

    def measurements(self, sop_uid: str) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute(
                "SELECT id, sop_uid, kind, data, created FROM measurements WHERE sop_uid = ? ORDER BY id",
                (sop_uid,),
            )
            .fetchall()
        )
        return [dict(r) | {"data": json.loads(r["data"])} for r in rows]

    def delete_measurement(self, measurement_id: int) -> bool:
        con = self._conn()
        with con:
            cur = con.execute("DELETE FROM measurements WHERE id = ?", (int(measurement_id),))
        return cur.rowcount > 0
