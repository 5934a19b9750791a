"""Keep analysed reports and notes in the local SQLite database, and search them.

Tables are medview-notes' own (prefixed ``note_``), created with ``IF NOT EXISTS`` in
the same database as the studies and records (:func:`medview.paths.database_path`).
Saving a document replaces what was stored under its id, so reading the same files
twice does not duplicate rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from os import PathLike
from typing import Any

from medview.errors import FileProblem
from medview.notes.model import LABELS, STATUSES, Document, NoteAnalysis
from medview.paths import open_sqlite, read_rows
from medview.tasks import TaskState, ensure_state

SCHEMA = """
CREATE TABLE IF NOT EXISTS note_documents (
    id TEXT PRIMARY KEY, patient_id TEXT, date TEXT, kind TEXT, title TEXT, source TEXT,
    text TEXT NOT NULL, normal INTEGER NOT NULL, codes TEXT, saved_at TEXT
);
CREATE INDEX IF NOT EXISTS note_documents_p ON note_documents (patient_id, date);
CREATE TABLE IF NOT EXISTS note_findings (
    document_id TEXT NOT NULL, label TEXT NOT NULL, status TEXT NOT NULL,
    historical INTEGER NOT NULL, experiencer TEXT NOT NULL, section TEXT, text TEXT,
    start INTEGER NOT NULL, end INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS note_findings_l ON note_findings (label, status);
CREATE INDEX IF NOT EXISTS note_findings_d ON note_findings (document_id);
"""


def connect(db_path: str | PathLike[str] | None = None) -> sqlite3.Connection:
    """Open the database (default :func:`medview.paths.database_path`) with the note_ tables."""
    return open_sqlite(db_path, SCHEMA)


def save_analyses(
    analyses: Iterable[NoteAnalysis], db_path: str | PathLike[str] | None = None
) -> int:
    """Store documents with their findings (one transaction); returns how many were saved."""
    con = connect(db_path)
    now = datetime.now().isoformat(timespec="seconds")
    n = 0
    try:
        with con:
            for a in analyses:
                d = a.document
                con.execute("DELETE FROM note_findings WHERE document_id = ?", (d.id,))
                con.execute(
                    "INSERT OR REPLACE INTO note_documents VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        d.id,
                        d.patient,
                        d.date,
                        d.kind,
                        d.title,
                        d.source,
                        d.text,
                        int(a.normal),
                        json.dumps(d.codes),
                        now,
                    ),
                )
                con.executemany(
                    "INSERT INTO note_findings VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            d.id,
                            f.label,
                            f.status,
                            int(f.historical),
                            f.experiencer,
                            f.section,
                            f.text,
                            f.start,
                            f.end,
                        )
                        for f in a.findings
                    ],
                )
                n += 1
    finally:
        con.close()
    return n


def search(
    label: str,
    status: str = "present",
    since: date | None = None,
    include_historical: bool = True,
    db_path: str | PathLike[str] | None = None,
) -> list[dict[str, Any]]:
    """Documents with a ``label`` mention of ``status`` about the patient, newest first.

    ``since`` keeps documents dated on or after that day (undated ones are then left
    out). Each hit: patient, document, date, title, and the first matching mention
    (text, section, start, end, historical) so a panel can open and highlight it.
    """
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r} (one of: {', '.join(LABELS)})")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})")
    sql = (
        "SELECT d.patient_id, d.id, d.date, d.title, f.text, f.section, f.start, f.end, "
        "f.historical FROM note_findings f JOIN note_documents d ON d.id = f.document_id "
        "WHERE f.label = ? AND f.status = ? AND f.experiencer = 'patient'"
    )
    params: list[Any] = [label, status]
    if not include_historical:
        sql += " AND f.historical = 0"
    if since is not None:
        sql += " AND d.date IS NOT NULL AND substr(d.date, 1, 10) >= ?"
        params.append(since.isoformat())
    sql += " ORDER BY d.date DESC, d.id, f.start"
    rows = read_rows(connect(db_path), sql, params)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for pid, doc_id, day, title, text, section, start, end, hist in rows:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        out.append(
            {
                "patient": pid,
                "document": doc_id,
                "date": day,
                "title": title,
                "label": label,
                "status": status,
                "text": text,
                "section": section,
                "start": start,
                "end": end,
                "historical": bool(hist),
            }
        )
    return out


def load_patient_documents(
    patient: str, db_path: str | PathLike[str] | None = None
) -> list[Document]:
    """A patient's stored documents in date order (undated last), for a panel."""
    rows = read_rows(
        connect(db_path),
        "SELECT id, text, source, kind, patient_id, date, title, codes FROM note_documents "
        "WHERE patient_id = ? ORDER BY date IS NULL, date, id",
        (patient,),
    )
    docs = []
    for doc_id, text, source, kind, pid, day, title, codes in rows:
        parsed = {k: [tuple(x) for x in v] for k, v in json.loads(codes or "{}").items()}
        docs.append(Document(doc_id, text, source, kind, pid, day, title or "", parsed))
    return docs


def patient_analyses(
    patient: str, db_path: str | PathLike[str] | None = None, state: TaskState | None = None
) -> list[NoteAnalysis]:
    """Worker: a patient's stored documents, analysed, in date order (undated last)."""
    from medview.notes.analysis import analyze

    state = ensure_state(state)
    out = []
    for doc in load_patient_documents(patient, db_path):
        state.check()
        out.append(analyze(doc))
    return out


@dataclass
class NotesImport:
    """What :func:`import_notes` read and saved, and the files it could not read."""

    analyses: list[NoteAnalysis] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    saved: int = 0
    attached: int = 0  # documents without a patient that were given ``patient``


def import_notes(
    paths: Iterable[str | PathLike[str]],
    patient: str | None = None,
    db_path: str | PathLike[str] | None = None,
    state: TaskState | None = None,
) -> NotesImport:
    """Worker: read reports/notes, analyse them and keep them in the database.

    A document that names no patient (a plain text file) is kept under ``patient``
    when one is given (the patient shown when the user opened it), else without one.
    """
    from medview.notes.analysis import analyze
    from medview.notes.readers import read_documents

    state = ensure_state(state)
    res = read_documents(paths, state=state)
    out = NotesImport(problems=list(res.problems))
    for doc in res.documents:
        state.check()
        if doc.patient is None and patient:
            doc.patient = patient
            out.attached += 1
        out.analyses.append(analyze(doc))
    if out.analyses:
        out.saved = save_analyses(out.analyses, db_path)
    return out
