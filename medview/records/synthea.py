"""Synthea CSV export import (a folder with patients.csv, observations.csv, ...).

Files read when present: patients, observations, conditions, medications,
procedures, careplans, encounters, allergies. A file missing a required column is reported
once and skipped; a malformed row (bad date, missing patient or code, a numeric
observation whose value is not a number) is reported with its file and line and
skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from medview.records._common import make_observation, parse_date, parse_time
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
        raise _BadRow(f"bad {key} {v!r}") from exc


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
    idents = [v for v in (_get(row, k) for k in ("SSN", "DRIVERS", "PASSPORT")) if v]
    rs.patients[pid] = Patient(pid, name, birth, death, sex if sex in ("M", "F") else "", idents)


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
                raise _BadRow(f"VALUE {raw!r} is not a number") from exc
            text = raw
    else:
        text = raw
    unit = _get(row, "UNITS") if value is not None else ""
    rs.observations.append(
        make_observation(pid, t, code, _get(row, "DESCRIPTION"), value, unit, text)
    )


def _condition(row: dict[str, str], rs: RecordSet) -> None:
    rs.conditions.append(
        Condition(
            patient_id=_get(row, "PATIENT", True),
            start=_time(row, "START"),
            stop=_time_or_none(row, "STOP"),
            code=_get(row, "CODE", True),
            display=_get(row, "DESCRIPTION"),
        )
    )


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
        Encounter(
            patient_id=_get(row, "PATIENT", True),
            start=_time(row, "START"),
            stop=_time_or_none(row, "STOP"),
            code=_get(row, "CODE"),
            display=_get(row, "DESCRIPTION"),
            encounter_class=_get(row, "ENCOUNTERCLASS"),
        )
    )


def _allergy(row: dict[str, str], rs: RecordSet) -> None:
    reactions = [v for v in (_get(row, "DESCRIPTION1"), _get(row, "DESCRIPTION2")) if v]
    rs.allergies.append(
        Allergy(
            patient_id=_get(row, "PATIENT", True),
            start=_time(row, "START"),
            stop=_time_or_none(row, "STOP"),
            code=_get(row, "CODE", True),
            display=_get(row, "DESCRIPTION"),
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


def _read_csv(path: Path, name: str, rs: RecordSet, state: TaskState) -> None:
    handler = HANDLERS[name]
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        rs.problems.append(RecordProblem(str(path), f"cannot read: {exc.strerror or exc}"))
        return
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        required = REQUIRED[name]
        if name == "procedures":
            required = required + (("START",) if "START" in header else ("DATE",))
        missing = [c for c in required if c not in header]
        if missing:
            rs.problems.append(
                RecordProblem(str(path), f"missing column(s) {', '.join(missing)}; file skipped")
            )
            return
        ncols = len(header)
        start_line = 2
        try:
            for row in reader:
                line = start_line
                start_line = reader.line_num + 1
                if None in row or any(v is None for v in row.values()):
                    if None in row:  # extra fields land under the key None
                        got = ncols + len(row[None])
                    else:  # missing fields are None
                        got = sum(v is not None for v in row.values())
                    rs.problems.append(
                        RecordProblem(f"{path}:{line}", f"{got} fields, expected {ncols}")
                    )
                    continue
                try:
                    handler(row, rs)
                except _BadRow as exc:
                    rs.problems.append(RecordProblem(f"{path}:{line}", str(exc)))
                if reader.line_num % 5000 == 0:
                    state.check()
        except csv.Error as exc:
            rs.problems.append(RecordProblem(f"{path}:{reader.line_num}", f"CSV error: {exc}"))


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
