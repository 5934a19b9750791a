"""Synthea CSV export import (a folder with patients.csv, observations.csv, ...).

Files read when present: patients, observations, conditions, medications,
procedures, careplans, encounters, allergies. A file missing a required column is reported
once and skipped; a malformed row (bad date, missing patient or code, a numeric
observation whose value is not a finite number, the wrong number of fields, bytes that
are not UTF-8, an unterminated quote) is reported with its file and line and skipped;
the rest of the file is read (see :mod:`medview.records._text`). The national
identifiers in patients.csv (SSN, DRIVERS, PASSPORT) are not read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from medview.errors import MedviewError
from medview.records._common import make_observation, parse_date, parse_time
from medview.records._text import csv_records, decode_lines, read_bytes, show
from medview.records.model import (
    Allergy,
    Condition,
    Encounter,
    Patient,
    RecordProblem,
    RecordSet,
    TreatmentEvent,
)
from medview.tasks import TaskState, ensure_state

FILES = (
    "patients",
    "observations",
    "conditions",
    "medications",
    "procedures",
    "careplans",
    "encounters",
    "allergies",
)

REQUIRED: dict[str, tuple[str, ...]] = {
    "patients": ("Id", "BIRTHDATE"),
    "observations": ("DATE", "PATIENT", "CODE", "VALUE"),
    "conditions": ("START", "PATIENT", "CODE"),
    "medications": ("START", "PATIENT", "CODE"),
    "procedures": ("PATIENT", "CODE"),
    "careplans": ("START", "PATIENT", "CODE"),
    "encounters": ("START", "PATIENT"),
    "allergies": ("START", "PATIENT", "CODE"),
}


class _BadRow(Exception):
    pass


def is_synthea_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding Synthea's patients.csv."""
    return path.is_dir() and (path / "patients.csv").is_file()


def _get(row: dict[str, str], key: str, required: bool = False) -> str:
    v = (row.get(key) or "").strip()
    if required and not v:
        raise _BadRow(f"empty {key}")
    return v


def _time_or_none(row: dict[str, str], key: str) -> datetime | None:
    """The time in column ``key``; None when empty; a bad row when unreadable."""
    v = _get(row, key)
    try:
        return parse_time(v)
    except ValueError as exc:
        raise _BadRow(f"bad {key} {show(v)}") from exc


def _time(row: dict[str, str], key: str) -> datetime:
    """The time in column ``key``, which must be filled in."""
    when = _time_or_none(row, key)
    if when is None:
        raise _BadRow(f"empty {key}")
    return when


def _patient(row: dict[str, str], rs: RecordSet) -> None:
    pid = _get(row, "Id", True)
    try:
        birth = parse_date(_get(row, "BIRTHDATE", True))
        death = parse_date(_get(row, "DEATHDATE"))
    except ValueError as exc:
        raise _BadRow(f"bad BIRTHDATE/DEATHDATE ({exc})") from exc
    name = " ".join(p for p in (_get(row, "FIRST"), _get(row, "LAST")) if p)
    sex = _get(row, "GENDER").upper()[:1]
    # SSN, DRIVERS and PASSPORT are national identifiers: never read, never stored
    rs.patients[pid] = Patient(pid, name, birth, death, sex if sex in ("M", "F") else "")


def _observation(row: dict[str, str], rs: RecordSet) -> None:
    pid = _get(row, "PATIENT", True)
    t = _time(row, "DATE")
    code = _get(row, "CODE", True)
    raw = _get(row, "VALUE")
    kind = _get(row, "TYPE").lower()
    value: float | None = None
    text = ""
    if kind == "numeric" or (not kind and raw):
        try:
            value = float(raw)
        except ValueError as exc:
            if kind == "numeric":
                raise _BadRow(f"VALUE {show(raw)} is not a number") from exc
            text = raw
        if value is not None and not math.isfinite(value):
            raise _BadRow(f"VALUE {show(raw)} is not a finite number")
    else:
        text = raw
    unit = _get(row, "UNITS") if value is not None else ""
    rs.observations.append(
        make_observation(pid, t, code, _get(row, "DESCRIPTION"), value, unit, text)
    )


def _event(row: dict[str, str], code_required: bool = True) -> dict[str, Any]:
    """The fields every dated Synthea row gives: patient, START, STOP, CODE, DESCRIPTION."""
    return {
        "patient_id": _get(row, "PATIENT", True),
        "start": _time(row, "START"),
        "stop": _time_or_none(row, "STOP"),
        "code": _get(row, "CODE", code_required),
        "display": _get(row, "DESCRIPTION"),
    }


def _condition(row: dict[str, str], rs: RecordSet) -> None:
    rs.conditions.append(Condition(**_event(row)))


def _treatment(kind: str) -> Callable[[dict[str, str], RecordSet], None]:
    def add(row: dict[str, str], rs: RecordSet) -> None:
        start = _time(row, "START") if "START" in row else _time(row, "DATE")
        rs.treatments.append(
            TreatmentEvent(
                patient_id=_get(row, "PATIENT", True),
                kind=kind,
                start=start,
                stop=_time_or_none(row, "STOP"),
                code=_get(row, "CODE", True),
                display=_get(row, "DESCRIPTION"),
                reason_code=_get(row, "REASONCODE"),
                reason_display=_get(row, "REASONDESCRIPTION"),
            )
        )

    return add


def _encounter(row: dict[str, str], rs: RecordSet) -> None:
    rs.encounters.append(
        Encounter(**_event(row, code_required=False), encounter_class=_get(row, "ENCOUNTERCLASS"))
    )


def _allergy(row: dict[str, str], rs: RecordSet) -> None:
    reactions = [v for v in (_get(row, "DESCRIPTION1"), _get(row, "DESCRIPTION2")) if v]
    rs.allergies.append(
        Allergy(
            **_event(row),
            system=_get(row, "SYSTEM"),
            type=_get(row, "TYPE").lower(),
            category=_get(row, "CATEGORY").lower(),
            reactions=reactions,
        )
    )


HANDLERS: dict[str, Callable[[dict[str, str], RecordSet], None]] = {
    "patients": _patient,
    "observations": _observation,
    "conditions": _condition,
    "medications": _treatment("medication"),
    "procedures": _treatment("procedure"),
    "careplans": _treatment("careplan"),
    "encounters": _encounter,
    "allergies": _allergy,
}


def _header(
    lines: list[str | None], path: Path, name: str, rs: RecordSet
) -> tuple[list[str], int] | None:
    """The header's column names and the index of the first data line, or None (reported)."""
    first = next((i for i, ln in enumerate(lines) if ln is not None and ln.strip()), None)
    if first is None:
        rs.problems.append(RecordProblem(str(path), "empty file; skipped"))
        return None
    header = next(csv_records(lines, path, ",", 0, first, rs.problems), (0, []))[1]
    required = REQUIRED[name]
    if name == "procedures":
        required = required + (("START",) if "START" in header else ("DATE",))
    missing = [c for c in required if c not in header]
    if missing:
        rs.problems.append(
            RecordProblem(str(path), f"missing column(s) {', '.join(missing)}; file skipped")
        )
        return None
    return header, first + 1


def _read_csv(path: Path, name: str, rs: RecordSet, state: TaskState) -> None:
    """Import one Synthea CSV file; bad rows are reported with their line and skipped."""
    handler = HANDLERS[name]
    try:
        lines, problems = decode_lines(read_bytes(path), path)
    except MedviewError as exc:
        rs.problems.append(RecordProblem(str(path), f"{exc.reason}; file skipped"))
        return
    rs.problems.extend(problems)
    found = _header(lines, path, name, rs)
    if found is None:
        return
    header, start = found
    ncols = len(header)
    for k, (line, fields) in enumerate(csv_records(lines, path, ",", ncols, start, rs.problems)):
        if len(fields) != ncols:
            rs.problems.append(
                RecordProblem(f"{path}:{line}", f"{len(fields)} fields, expected {ncols}")
            )
            continue
        try:
            handler(dict(zip(header, fields, strict=True)), rs)
        except _BadRow as exc:
            rs.problems.append(RecordProblem(f"{path}:{line}", str(exc)))
        if k % 5000 == 4999:
            state.check()


def read_synthea_csv(folder: Path, state: TaskState | None = None) -> RecordSet:
    """Import a Synthea CSV folder; only the files present are read."""
    state = ensure_state(state)
    rs = RecordSet(format="synthea-csv", sources=[str(folder)])
    present = [n for n in FILES if (folder / f"{n}.csv").is_file()]
    for i, name in enumerate(present):
        state.progress(i / len(present), f"reading {name}.csv")
        _read_csv(folder / f"{name}.csv", name, rs, state)
    state.progress(1.0, "Synthea import done")
    return rs
