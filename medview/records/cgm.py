"""Plain CSV import of continuous glucose monitoring (CGM) exports.

Accepted layout: one reading per row, ``timestamp, value[, unit]``, with or
without a header line, separated by commas, semicolons or tabs; a header may name a
subject id column (``id,time,gl`` as in the iglu collection: one patient per id).
The file is read as UTF-8 (with or without a byte-order mark) or UTF-16 with a
byte-order mark; lines that are not UTF-8, hold a NUL byte or open a quote that is
never closed are reported with their line and skipped (see
:mod:`medview.records._text`). With a header,
the columns are found by name (``time``/``date``/``timestamp``; ``glucose``/
``value``/``sgv``/``bg``/``cgm``; ``unit``/``units``); a unit in the value column's
name (e.g. ``Glucose (mmol/L)``) applies to every row without a unit column.

Values are converted to mg/dL (mmol/L x 18.016, the molar mass of glucose /
10). Rows that cannot be used are reported as :class:`RecordProblem` with
``file:line`` and skipped: bad timestamps, non-numeric values (``Low``/``High``),
implausible values, duplicate timestamps. A unit that cannot be converted is
reported too, and the reading kept as given with ``unit_flag`` set (flagged,
never guessed); forecasting leaves flagged readings out. Timestamps with a UTC offset (or ``Z``) become naive UTC,
like the FHIR importer's; timestamps without one are kept as written.

Observations are coded LOINC **99504-3** "Glucose [Mass/volume] in Interstitial
fluid" - what a CGM measures (the HL7 CGM implementation guide uses it) - so
they are kept apart from blood glucose lab values (2339-0). Forecasting treats
both codes as glucose.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from medview.records._text import csv_records, decode_lines, read_bytes, show
from medview.records.model import Observation, Patient, RecordProblem, RecordSet

CGM_LOINC = "99504-3"
CGM_DISPLAY = "Glucose [Mass/volume] in Interstitial fluid"
BLOOD_GLUCOSE_LOINC = "2339-0"
GLUCOSE_CODES = (CGM_LOINC, BLOOD_GLUCOSE_LOINC, "2345-7", "41653-7", "14749-6", "15074-8")
MMOL_TO_MGDL = 18.016
PLAUSIBLE_MGDL = (10.0, 1000.0)

_UNITS = {
    "mg/dl": ("mg/dL", 1.0),
    "mgdl": ("mg/dL", 1.0),
    "mg/100ml": ("mg/dL", 1.0),
    "mmol/l": ("mmol/L", MMOL_TO_MGDL),
    "mmol": ("mmol/L", MMOL_TO_MGDL),
    "mmoll": ("mmol/L", MMOL_TO_MGDL),
}
_TIME_NAMES = ("timestamp", "time", "date", "datetime", "zeit", "datum")
_VALUE_NAMES = ("glucose", "value", "sgv", "bg", "cgm", "reading", "glukose", "gl")
_UNIT_NAMES = ("unit", "units", "uom")
_ID_NAMES = ("id", "subject", "patient", "patient_id", "subject_id")  # exact names only
_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
)


def convert_glucose(value: float, unit: str) -> tuple[float, str] | None:
    """``(value in mg/dL, canonical original unit)``, or None for an unknown unit."""
    key = unit.strip().lower().replace(" ", "")
    if key not in _UNITS:
        return None
    name, factor = _UNITS[key]
    return value * factor, name


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (``T`` or space, optional seconds, ``Z`` or offset) and common exports."""
    s = text.strip().strip('"')
    if not s:
        raise ValueError("empty timestamp")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    raise ValueError(f"unreadable timestamp {text.strip()!r}")


def _number(text: str) -> float:
    s = text.strip().strip('"')
    if re.fullmatch(r"-?\d+,\d+", s):  # decimal comma (European exports)
        s = s.replace(",", ".")
    value = float(s)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number {s[:20]!r}")
    return value


def _unit_in_name(name: str) -> str:
    m = re.search(r"(mg\s*/\s*dl|mmol\s*/\s*l)", name, re.IGNORECASE)
    return m.group(1).replace(" ", "") if m else ""


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    low = [h.strip().lower() for h in header]
    for name in names:  # exact names first, then substrings
        if name in low:
            return low.index(name)
    for name in names:
        for i, h in enumerate(low):
            if name in h:
                return i
    return None


@dataclass
class _Layout:
    """Where the columns are and where the readings start."""

    t_col: int = 0
    v_col: int = 1
    u_col: int | None = None
    header_unit: str = ""  # a unit named in the value column's header, e.g. "Glucose (mmol/L)"
    id_col: int | None = None  # a subject id column ("id", "subject"...): one patient per id
    start: int = 0  # index of the first data row

    @property
    def units_given(self) -> bool:
        return bool(self.header_unit) or self.u_col is not None


def _read_rows(path: Path, problems: list[RecordProblem]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the file's records, the delimiter (comma, semicolon or
    tab) guessed from its first lines; undecodable lines and broken quotes -> problems."""
    lines, bad = decode_lines(read_bytes(path), path)
    problems.extend(bad)
    sample = "\n".join(ln for ln in lines[:20] if ln is not None)
    delimiter = max((",", ";", "\t"), key=sample.count) if sample else ","
    if delimiter == "," and sample.count(";") and not sample.count(","):
        delimiter = ";"
    first = next((i for i, ln in enumerate(lines) if ln is not None and ln.strip()), 0)
    head = lines[first] or ""
    ncols = len(next(csv_records([head], path, delimiter, 0, 0, []), (0, []))[1])
    return list(csv_records(lines, path, delimiter, ncols, 0, problems))


def _detect_layout(rows: list[list[str]], path: Path) -> _Layout:
    """The column layout: the first non-empty row is a header when it is not a reading."""
    from medview.errors import ReadError

    first = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if first is None:
        raise ReadError("empty CSV file", path)
    head = rows[first]
    try:
        _number(head[1] if len(head) > 1 else "")
        parse_timestamp(head[0])
    except ValueError:
        return _header_layout(head, first, path)
    return _Layout(u_col=2 if len(head) >= 3 else None, start=first)


def _header_layout(head: list[str], index: int, path: Path) -> _Layout:
    """The layout named by the header row ``rows[index]``."""
    from medview.errors import ReadError

    t_col = _find(head, _TIME_NAMES)
    v_col = _find(head, _VALUE_NAMES)
    u_col = _find(head, _UNIT_NAMES)
    if t_col is None or v_col is None:
        if len(head) < 2:
            raise ReadError("no timestamp and value columns found in the header", path)
        t_col, v_col = 0, 1
    if u_col in (t_col, v_col):
        u_col = None
    low = [h.strip().lower() for h in head]
    id_col = next((low.index(n) for n in _ID_NAMES if n in low), None)
    if id_col in (t_col, v_col, u_col):
        id_col = None
    return _Layout(t_col, v_col, u_col, _unit_in_name(head[v_col]), id_col=id_col, start=index + 1)


def _time_and_value(
    row: list[str], where: str, layout: _Layout, problems: list[RecordProblem]
) -> tuple[datetime, float] | None:
    """The row's timestamp and number, or None (problem reported) when either is unusable."""
    needed = max(layout.t_col, layout.v_col) + 1
    if len(row) < needed:
        problems.append(RecordProblem(where, f"expected at least {needed} columns, got {len(row)}"))
        return None
    try:
        when = parse_timestamp(row[layout.t_col])
    except ValueError as exc:
        problems.append(RecordProblem(where, str(exc)))
        return None
    try:
        value = _number(row[layout.v_col])
    except ValueError:
        problems.append(
            RecordProblem(where, f"non-numeric glucose value {show(row[layout.v_col].strip())}")
        )
        return None
    return when, value


def _row_unit(row: list[str], layout: _Layout, default_unit: str) -> str:
    """The unit column's value when filled in, else the header's unit, else ``default_unit``."""
    u_col = layout.u_col
    if u_col is not None and u_col < len(row) and row[u_col].strip():
        return row[u_col].strip()
    return layout.header_unit or default_unit


def _row_patient(row: list[str], layout: _Layout, default: str) -> str:
    """The row's subject id when the file has an id column and it is filled in."""
    col = layout.id_col
    if col is not None and col < len(row) and row[col].strip():
        return row[col].strip()
    return default


def _naive_utc(when: datetime) -> datetime:
    """Timestamps with an offset become naive UTC (like the FHIR importer's).

    Raises ValueError when the time leaves the datetime range in UTC."""
    if when.tzinfo is not None:
        try:
            return when.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError as exc:
            raise ValueError("timestamp out of range once converted to UTC") from exc
    return when


def _reading(
    pid: str, when: datetime, value: float, unit: str, where: str, problems: list[RecordProblem]
) -> Observation | None:
    """The reading in mg/dL; flagged and kept as given when its unit cannot be converted;
    None (problem reported) when implausible."""
    conv = convert_glucose(value, unit)
    if conv is None:  # flagged, never guessed: kept as given, left out of forecasts
        flag = f"unit {unit!r} cannot be converted to mg/dL"
        problems.append(RecordProblem(where, f"{flag} (kept as given, flagged)"))
        return Observation(
            pid, _naive_utc(when), CGM_LOINC, CGM_DISPLAY, value, unit, value, unit, flag
        )
    mgdl, unit_name = conv
    if not PLAUSIBLE_MGDL[0] <= mgdl <= PLAUSIBLE_MGDL[1]:
        problems.append(RecordProblem(where, f"implausible glucose {value:g} {unit_name}"))
        return None
    return Observation(
        patient_id=pid,
        time=_naive_utc(when),
        code=CGM_LOINC,
        display=CGM_DISPLAY,
        value=round(mgdl, 2),
        unit="mg/dL",
        original_value=value,
        original_unit=unit_name,
    )


def _check_unit_guess(numeric: list[float], default_unit: str, path: Path) -> None:
    """Refuse mg/dL by default when the values look like mmol/L (file names no unit)."""
    from medview.errors import ReadError

    if not numeric:
        return
    median = sorted(numeric)[len(numeric) // 2]
    if default_unit.lower().startswith("mg") and median < 35:
        raise ReadError(
            f"no unit in the file and the values (median {median:g}) look like mmol/L, "
            "not mg/dL; give the unit explicitly (--unit mmol/L)",
            path,
        )
    small = sum(1 for v in numeric if 0 < v < 30)  # mmol/L-sized values among mg/dL ones
    if default_unit.lower().startswith("mg") and small >= 3:
        raise ReadError(
            f"{small} values below 30 among values of median {median:g}: the file seems to mix "
            "mmol/L and mg/dL without a unit column; export it in one unit",
            path,
        )


def _time_checks(stamps: list[tuple[str, int, datetime]], path: Path) -> list[RecordProblem]:
    """Time zones mixed with local times, rows out of time order, a clock set back ~1 h."""
    out: list[RecordProblem] = []
    aware = sum(1 for _, _, t in stamps if t.tzinfo is not None)
    if 0 < aware < len(stamps):
        out.append(
            RecordProblem(
                str(path),
                f"time zone: {aware} timestamps carry a UTC offset and {len(stamps) - aware} do "
                "not; times without one are taken as written (local), so they may be off by hours",
            )
        )
    last: dict[str, datetime] = {}
    seen: set[tuple[str, datetime]] = set()
    back = 0
    for pid, line, t in stamps:
        prev = last.get(pid)
        try:
            naive = _naive_utc(t)
        except ValueError:  # out of range in UTC: reported with the row already
            continue
        duplicate = (pid, naive) in seen  # reported as a duplicate already
        seen.add((pid, naive))
        step = (prev - naive).total_seconds() / 60.0 if prev is not None else 0.0
        if step > 0 and (not duplicate or 50.0 <= step <= 70.0):
            if 50.0 <= step <= 70.0 and t.tzinfo is None:
                out.append(
                    RecordProblem(
                        f"{path}:{line}",
                        f"clock set back {step:.0f} min (daylight-saving change?): the repeated "
                        "hour overlaps the one before; timestamps without a zone are ambiguous",
                    )
                )
            else:
                back += 1
        last[pid] = naive if prev is None or naive > prev else prev
    if back:
        out.append(RecordProblem(str(path), f"{back} rows not in time order (sorted by time)"))
    return out


def load_cgm_csv(
    path: str | Path,
    patient_id: str = "",
    default_unit: str = "mg/dL",
) -> RecordSet:
    """Read a CGM CSV into a :class:`RecordSet` (LOINC 99504-3 in mg/dL).

    One patient per file, ``patient_id`` (default: the file name without extension);
    a file with a subject id column (``id``, ``subject``, ``patient``...) gives one
    patient per id, rows without an id going to ``patient_id``. ``default_unit``
    applies only when the file names no unit at all (neither a unit column nor a
    unit in the header); a warning is added when the values then look like the
    other unit. Raises :class:`~medview.errors.ReadError` when the file cannot be
    read or has no usable row.
    """
    from medview.errors import ReadError

    path = Path(path)
    out = RecordSet()
    records = _read_rows(path, out.problems)
    layout = _detect_layout([fields for _, fields in records], path)
    default_pid = patient_id or path.stem
    seen: set[tuple[str, datetime]] = set()
    numeric: list[float] = []
    stamps: list[tuple[str, int, datetime]] = []  # file order, for the time checks
    for line, row in records[layout.start :]:
        where = f"{path}:{line}"
        if not any(c.strip() for c in row):
            continue
        parsed = _time_and_value(row, where, layout, out.problems)
        if parsed is None:
            continue
        numeric.append(parsed[1])
        pid = _row_patient(row, layout, default_pid)
        stamps.append((pid, line, parsed[0]))
        try:
            obs = _reading(pid, *parsed, _row_unit(row, layout, default_unit), where, out.problems)
        except ValueError as exc:
            out.problems.append(RecordProblem(where, str(exc)))
            continue
        if obs is None:
            continue
        if (pid, obs.time) in seen:
            if not obs.unit_flag:  # a flagged duplicate is dropped silently (already flagged)
                out.problems.append(
                    RecordProblem(
                        where, f"duplicate timestamp {obs.time.isoformat()} (kept the first)"
                    )
                )
            continue
        seen.add((pid, obs.time))
        out.patients.setdefault(pid, Patient(id=pid))
        out.observations.append(obs)
    if not layout.units_given:
        _check_unit_guess(numeric, default_unit, path)
    out.problems.extend(_time_checks(stamps, path))
    if not out.observations:
        reasons = "; ".join(str(p) for p in out.problems[:3])
        raise ReadError(f"no usable glucose readings{': ' + reasons if reasons else ''}", path)
    out.observations.sort(key=lambda o: (o.patient_id, o.time))
    return out
