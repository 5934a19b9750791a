"""Keep imported records in the local SQLite database (``medview.paths.database_path()``).

Tables are medview-records' own (prefixed ``rec_``), created with ``IF NOT EXISTS``.
The schema version is kept in ``PRAGMA user_version``; :func:`connect` migrates an
older database in place (version 2 added ``rec_allergies``; databases from before
then simply gain the empty table; version 3 clears the patient identifiers stored
before, which could hold SSN, passport and driving-licence numbers: re-import to get
medical record numbers back). The file is created mode 0600 and opened with
``secure_delete`` so replaced rows are zeroed, not left in free pages.
Saving a patient replaces everything stored for that patient id, in one
transaction, so importing the same export twice does not duplicate rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from os import PathLike
from typing import TYPE_CHECKING

from medview.paths import open_sqlite, read_rows
from medview.records import model

if TYPE_CHECKING:
    from medview.tasks import TaskState

SCHEMA = """
CREATE TABLE IF NOT EXISTS rec_patients (
    id TEXT PRIMARY KEY, name TEXT, birth_date TEXT, death_date TEXT, sex TEXT,
    identifiers TEXT, source TEXT, imported_at TEXT
);
CREATE TABLE IF NOT EXISTS rec_observations (
    patient_id TEXT NOT NULL, time TEXT NOT NULL, code TEXT NOT NULL, display TEXT,
    value REAL, unit TEXT, original_value REAL, original_unit TEXT, unit_flag TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS rec_observations_pc ON rec_observations (patient_id, code, time);
CREATE TABLE IF NOT EXISTS rec_conditions (
    patient_id TEXT NOT NULL, start TEXT, stop TEXT, code TEXT NOT NULL, display TEXT
);
CREATE INDEX IF NOT EXISTS rec_conditions_p ON rec_conditions (patient_id);
CREATE TABLE IF NOT EXISTS rec_treatments (
    patient_id TEXT NOT NULL, kind TEXT NOT NULL, start TEXT, stop TEXT, code TEXT NOT NULL,
    display TEXT, reason_code TEXT, reason_display TEXT, status TEXT
);
CREATE INDEX IF NOT EXISTS rec_treatments_p ON rec_treatments (patient_id);
CREATE TABLE IF NOT EXISTS rec_encounters (
    patient_id TEXT NOT NULL, start TEXT, stop TEXT, code TEXT, display TEXT,
    encounter_class TEXT
);
CREATE INDEX IF NOT EXISTS rec_encounters_p ON rec_encounters (patient_id);
CREATE TABLE IF NOT EXISTS rec_allergies (
    patient_id TEXT NOT NULL, start TEXT, stop TEXT, code TEXT NOT NULL, display TEXT,
    system TEXT, type TEXT, category TEXT, status TEXT, reactions TEXT
);
CREATE INDEX IF NOT EXISTS rec_allergies_p ON rec_allergies (patient_id);
CREATE TABLE IF NOT EXISTS rec_links (
    imaging_patient_id TEXT PRIMARY KEY, record_patient_id TEXT NOT NULL, method TEXT,
    linked_at TEXT
);
"""

SCHEMA_VERSION = 3  # 1: first release; 2: rec_allergies; 3: no national identifiers

_TABLES = (
    "rec_observations",
    "rec_conditions",
    "rec_treatments",
    "rec_encounters",
    "rec_allergies",
)


def _iso(v: datetime | date | None) -> str | None:
    return v.isoformat() if v is not None else None


def _dt(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def _start(v: str | None, table: str) -> datetime:
    """A required start time read back; a row without one is a damaged database."""
    if not v:
        raise sqlite3.DatabaseError(f"{table}: a stored row has no start time")
    return datetime.fromisoformat(v)


def _d(v: str | None) -> date | None:
    return date.fromisoformat(v) if v else None


def connect(db_path: str | PathLike[str] | None = None) -> sqlite3.Connection:
    """Open the database (default :func:`medview.paths.database_path`) with the rec_ tables."""
    con = open_sqlite(db_path, "")  # the schema comes with _migrate
    con.execute("PRAGMA secure_delete = ON")  # replaced and deleted rows are zeroed
    _migrate(con)
    return con


def _migrate(con: sqlite3.Connection) -> None:
    """Bring an older (or new, empty) database to :data:`SCHEMA_VERSION`."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    with con:
        # every step is idempotent: IF NOT EXISTS creates what an older version lacks
        con.executescript(SCHEMA)
        if version < 3:  # identifiers stored before version 3 may hold SSNs, passports
            con.execute("UPDATE rec_patients SET identifiers = '' WHERE identifiers != ''")
        if version < SCHEMA_VERSION:
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if version < 3:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # no old page left in a WAL file


Row = tuple[object, ...]

# The fields stored in each per-patient table, in its column order (what save_records
# inserts and the loaders read back by position).
_FIELDS: dict[str, tuple[str, ...]] = {
    "rec_observations": (
        "patient_id",
        "time",
        "code",
        "display",
        "value",
        "unit",
        "original_value",
        "original_unit",
        "unit_flag",
        "text",
    ),
    "rec_conditions": ("patient_id", "start", "stop", "code", "display"),
    "rec_treatments": (
        "patient_id",
        "kind",
        "start",
        "stop",
        "code",
        "display",
        "reason_code",
        "reason_display",
        "status",
    ),
    "rec_encounters": ("patient_id", "start", "stop", "code", "display", "encounter_class"),
    "rec_allergies": (
        "patient_id",
        "start",
        "stop",
        "code",
        "display",
        "system",
        "type",
        "category",
        "status",
        "reactions",
    ),
}


def _patient_row(p: model.Patient, source: str, now: str) -> Row:
    return (
        p.id,
        p.name,
        _iso(p.birth_date),
        _iso(p.death_date),
        p.sex,
        "\n".join(p.identifiers),
        source,
        now,
    )


def _row(item: object, fields: tuple[str, ...]) -> Row:
    """``item``'s ``fields`` as stored: dates and times in ISO 8601, lists one per line."""
    out: list[object] = []
    for name in fields:
        v = getattr(item, name)
        if isinstance(v, (datetime, date)):
            v = v.isoformat()
        elif isinstance(v, list):
            v = "\n".join(v)
        out.append(v)
    return tuple(out)


def _table_rows(records: model.RecordSet) -> dict[str, list[Row]]:
    """The rows of every per-patient table (keys in :data:`_TABLES` order)."""
    items: dict[str, Sequence[object]] = {
        "rec_observations": records.observations,
        "rec_conditions": records.conditions,
        "rec_treatments": records.treatments,
        "rec_encounters": records.encounters,
        "rec_allergies": records.allergies,
    }
    return {table: [_row(i, _FIELDS[table]) for i in items[table]] for table in _TABLES}


def save_records(
    records: model.RecordSet, db_path: str | PathLike[str] | None = None, source: str = ""
) -> int:
    """Store ``records`` (replacing earlier rows of the same patients); returns patients saved.

    Rows of patients not listed in ``records.patients`` are stored too (under their
    patient id) so nothing imported is lost.
    """
    source = source or ";".join(records.sources)
    now = datetime.now().isoformat(timespec="seconds")
    ids = set(records.patients)
    ids.update(o.patient_id for o in records.observations)
    ids.update(c.patient_id for c in records.conditions)
    ids.update(t.patient_id for t in records.treatments)
    ids.update(e.patient_id for e in records.encounters)
    ids.update(a.patient_id for a in records.allergies)
    con = connect(db_path)
    try:
        with con:  # one transaction
            for table in _TABLES:
                con.executemany(f"DELETE FROM {table} WHERE patient_id = ?", [(i,) for i in ids])
            con.executemany(
                "INSERT OR REPLACE INTO rec_patients VALUES (?,?,?,?,?,?,?,?)",
                [_patient_row(p, source, now) for p in records.patients.values()],
            )
            for table, rows in _table_rows(records).items():
                marks = ",".join("?" * len(_FIELDS[table]))
                con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    finally:
        con.close()
    return len(records.patients)


def import_records(
    path: str | PathLike[str],
    db_path: str | PathLike[str] | None = None,
    state: TaskState | None = None,
) -> model.RecordSet:
    """Load records from ``path`` and keep them in the local database for later sessions.

    A database that cannot be written is reported in ``problems``; the records are
    returned all the same.
    """
    from medview.records.loader import load_records

    records = load_records(path, state=state)
    try:
        save_records(records, db_path)
    except (sqlite3.Error, OSError) as exc:
        records.problems.append(model.RecordProblem("local database", f"records not saved: {exc}"))
    return records


def load_saved_records(
    db_path: str | PathLike[str] | None = None, patient_ids: Iterable[str] | None = None
) -> model.RecordSet:
    """Read stored records back (all patients, or only ``patient_ids``)."""
    con = connect(db_path)
    rs = model.RecordSet(format="database", sources=[str(db_path or "")])
    ids = list(patient_ids) if patient_ids is not None else None

    def rows(table: str, key: str = "patient_id") -> sqlite3.Cursor:
        if ids is None:
            return con.execute(f"SELECT * FROM {table}")
        marks = ",".join("?" * len(ids)) or "''"
        return con.execute(f"SELECT * FROM {table} WHERE {key} IN ({marks})", ids)

    try:
        for pid, name, birth, death, sex, idents, _src, _at in rows("rec_patients", "id"):
            rs.patients[pid] = model.Patient(
                pid,
                name or "",
                _d(birth),
                _d(death),
                sex or "",
                [i for i in (idents or "").split("\n") if i],
            )
        for r in rows("rec_observations"):
            rs.observations.append(
                model.Observation(
                    r[0],
                    _start(r[1], "rec_observations"),
                    r[2],
                    r[3] or "",
                    r[4],
                    r[5] or "",
                    r[6],
                    r[7] or "",
                    r[8] or "",
                    r[9] or "",
                )
            )
        for r in rows("rec_conditions"):
            rs.conditions.append(
                model.Condition(r[0], _start(r[1], "rec_conditions"), _dt(r[2]), r[3], r[4] or "")
            )
        for r in rows("rec_treatments"):
            rs.treatments.append(
                model.TreatmentEvent(
                    r[0],
                    r[1],
                    _start(r[2], "rec_treatments"),
                    _dt(r[3]),
                    r[4],
                    r[5] or "",
                    r[6] or "",
                    r[7] or "",
                    r[8] or "",
                )
            )
        for r in rows("rec_encounters"):
            rs.encounters.append(
                model.Encounter(
                    r[0],
                    _start(r[1], "rec_encounters"),
                    _dt(r[2]),
                    r[3] or "",
                    r[4] or "",
                    r[5] or "",
                )
            )
        for r in rows("rec_allergies"):
            rs.allergies.append(
                model.Allergy(
                    r[0],
                    _dt(r[1]),
                    _dt(r[2]),
                    r[3],
                    r[4] or "",
                    r[5] or "",
                    r[6] or "",
                    r[7] or "",
                    r[8] or "",
                    [x for x in (r[9] or "").split("\n") if x],
                )
            )
    finally:
        con.close()
    return rs


def save_link(
    imaging_patient_id: str,
    record_patient_id: str,
    method: str,
    db_path: str | PathLike[str] | None = None,
) -> None:
    """Remember that imaging PatientID ``imaging_patient_id`` is record ``record_patient_id``."""
    con = connect(db_path)
    try:
        with con:
            con.execute(
                "INSERT OR REPLACE INTO rec_links VALUES (?,?,?,?)",
                (
                    imaging_patient_id,
                    record_patient_id,
                    method,
                    datetime.now().isoformat(timespec="seconds"),
                ),
            )
    finally:
        con.close()


def saved_link(imaging_patient_id: str, db_path: str | PathLike[str] | None = None) -> str | None:
    """The record patient id remembered for an imaging PatientID, or None."""
    rows = read_rows(
        connect(db_path),
        "SELECT record_patient_id FROM rec_links WHERE imaging_patient_id = ?",  # primary key
        (imaging_patient_id,),
    )
    return rows[0][0] if rows else None
