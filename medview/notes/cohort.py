"""Cohort search: stored reports with a finding -> patients and their local studies.

:func:`search_cohort` runs :func:`medview.notes.store.search` ("reports with
``nodule`` present since 2020") and, for each hit, looks for the patient's studies in
the local study database (the same SQLite file by default), so a panel can open the
study a report belongs to: the study on the report's day, else the patient's study
nearest in time.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from os import PathLike
from typing import Any

from medview.notes.store import search
from medview.tasks import TaskState, ensure_state


def _day_number(value: str | None) -> int | None:
    """``YYYYMMDD`` / ISO date -> days since year 1 (None when not a date)."""
    v = (value or "").replace("-", "")[:8]
    if len(v) != 8 or not v.isdigit():
        return None
    try:
        return date(int(v[:4]), int(v[4:6]), int(v[6:8])).toordinal()
    except ValueError:
        return None


def nearest_study(studies: list[dict[str, Any]], day: str | None) -> dict[str, Any] | None:
    """The study on ``day``, else the one nearest in time (undated ones last), else None."""
    if not studies:
        return None
    target = _day_number(day)

    def distance(s: dict[str, Any]) -> tuple[int, int]:
        d = _day_number(s.get("study_date"))
        if d is None or target is None:
            return (1, 0)
        return (0, abs(d - target))

    return min(studies, key=distance)


def patient_studies(
    patient_id: str, db_path: str | PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The local database's studies of exactly this PatientID, newest first."""
    from medview.io.database import StudyDatabase

    if not patient_id:
        return []
    db = StudyDatabase(db_path)
    try:
        rows = db.studies(text=patient_id)
    finally:
        db.close()
    return [r for r in rows if r.get("patient_id") == patient_id]


def search_cohort(
    label: str,
    status: str = "present",
    since: date | None = None,
    db_path: str | PathLike[str] | None = None,
    state: TaskState | None = None,
) -> list[dict[str, Any]]:
    """Worker: :func:`~medview.notes.store.search` hits, each with ``"study"``.

    ``study`` is ``{"study_uid", "study_date", "description"}`` of the patient's
    local study that the report belongs to (see :func:`nearest_study`), or None when
    the local database holds no study of that patient (or cannot be read).
    Raises ``ValueError`` for an unknown label or status.
    """
    state = ensure_state(state)
    hits = search(label, status, since, db_path=db_path)
    studies: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        state.check()
        pid = str(h.get("patient") or "")
        if pid not in studies:
            try:
                studies[pid] = patient_studies(pid, db_path)
            except (sqlite3.Error, OSError):
                studies[pid] = []
        best = nearest_study(studies[pid], h.get("date"))
        h["study"] = (
            None
            if best is None
            else {
                "study_uid": best.get("study_uid"),
                "study_date": best.get("study_date"),
                "description": best.get("description") or "",
            }
        )
    return hits
