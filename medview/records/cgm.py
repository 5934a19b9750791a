"""Plain CSV import of continuous glucose monitoring (CGM) exports.

Accepted layout: one reading per row, ``timestamp, value[, unit]``, with or
without a header line, separated by commas, semicolons or tabs. With a header,
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

import csv
import io
import re
from datetime import datetime, timezone
from pathlib import Path

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
_VALUE_NAMES = ("glucose", "value", "sgv", "bg", "cgm", "reading", "glukose")
_UNIT_NAMES = ("unit", "units", "uom")
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
    return float(s)


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


def load_cgm_csv(
    path: str | Path,
    patient_id: str = "",
    default_unit: str = "mg/dL",
) -> RecordSet:
    """Read a CGM CSV into a :class:`RecordSet` (one patient, LOINC 99504-3 in mg/dL).

    ``patient_id`` defaults to the file name without extension. ``default_unit``
    applies only when the file names no unit at all (neither a unit column nor a
    unit in the header); a warning is added when the values then look like the
    other unit. Raises :class:`~medview.errors.ReadError` when the file cannot be
    read or has no usable row.
    """
    from medview.errors import ReadError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise ReadError(f"cannot read: {exc.strerror or exc}", path) from exc
    lines = text.splitlines()
    sample = "\n".join(lines[:20])
    delimiter = max((",", ";", "\t"), key=sample.count) if sample else ","
    if delimiter == "," and sample.count(";") and not sample.count(","):
        delimiter = ";"
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))

    pid = patient_id or path.stem
    out = RecordSet()
    out.patients[pid] = Patient(id=pid)
    t_col, v_col, u_col = 0, 1, None
    header_unit = ""
    start = 0
    # first non-empty row: a header when its value column is not a number
    first = next((i for i, r in enumerate(rows) if any(c.strip() for c in r)), None)
    if first is None:
        raise ReadError("empty CSV file", path)
    head = rows[first]
    try:
        _number(head[1] if len(head) > 1 else "")
        parse_timestamp(head[0])
        is_header = False
    except ValueError:
        is_header = True
    if is_header:
        t_col = _find(head, _TIME_NAMES)
        v_col = _find(head, _VALUE_NAMES)
        u_col = _find(head, _UNIT_NAMES)
        if t_col is None or v_col is None:
            if len(head) >= 2:
                t_col, v_col = 0, 1
            else:
                raise ReadError("no timestamp and value columns found in the header", path)
        if u_col in (t_col, v_col):
            u_col = None
        header_unit = _unit_in_name(head[v_col])
        start = first + 1
    elif len(head) >= 3:
        u_col = 2
    else:
        start = first

    seen: set[datetime] = set()
    numeric: list[float] = []
    units_given = bool(header_unit) or u_col is not None
    for i in range(start, len(rows)):
        row = rows[i]
        line = i + 1  # csv rows map to lines (no quoted newlines in CGM exports)
        where = f"{path}:{line}"
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(t_col, v_col):
            out.problems.append(
                RecordProblem(
                    where, f"expected at least {max(t_col, v_col) + 1} columns, got {len(row)}"
                )
            )
            continue
        try:
            when = parse_timestamp(row[t_col])
        except ValueError as exc:
            out.problems.append(RecordProblem(where, str(exc)))
            continue
        try:
            value = _number(row[v_col])
        except ValueError:
            out.problems.append(
                RecordProblem(where, f"non-numeric glucose value {row[v_col].strip()!r}")
            )
            continue
        numeric.append(value)
        unit = header_unit or default_unit
        if u_col is not None and u_col < len(row) and row[u_col].strip():
            unit = row[u_col].strip()
        conv = convert_glucose(value, unit)
        if conv is None:  # flagged, never guessed: kept as given, left out of forecasts
            flag = f"unit {unit!r} cannot be converted to mg/dL"
            out.problems.append(RecordProblem(where, f"{flag} (kept as given, flagged)"))
            if when.tzinfo is not None:
                when = when.astimezone(timezone.utc).replace(tzinfo=None)
            if when not in seen:
                seen.add(when)
                out.observations.append(
                    Observation(pid, when, CGM_LOINC, CGM_DISPLAY, value, unit, value, unit, flag)
                )
            continue
        mgdl, unit_name = conv
        if not PLAUSIBLE_MGDL[0] <= mgdl <= PLAUSIBLE_MGDL[1]:
            out.problems.append(RecordProblem(where, f"implausible glucose {value:g} {unit_name}"))
            continue
        if when.tzinfo is not None:  # like the FHIR importer: naive UTC
            when = when.astimezone(timezone.utc).replace(tzinfo=None)
        if when in seen:
            out.problems.append(
                RecordProblem(where, f"duplicate timestamp {when.isoformat()} (kept the first)")
            )
            continue
        seen.add(when)
        out.observations.append(
            Observation(
                patient_id=pid,
                time=when,
                code=CGM_LOINC,
                display=CGM_DISPLAY,
                value=round(mgdl, 2),
                unit="mg/dL",
                original_value=value,
                original_unit=unit_name,
            )
        )
    if not units_given and numeric:
        numeric.sort()
        median = numeric[len(numeric) // 2]
        if default_unit.lower().startswith("mg") and median < 35:
            raise ReadError(
                f"no unit in the file and the values (median {median:g}) look like mmol/L, "
                "not mg/dL; give the unit explicitly (--unit mmol/L)",
                path,
            )
    if not out.observations:
        reasons = "; ".join(str(p) for p in out.problems[:3])
        raise ReadError(f"no usable glucose readings{': ' + reasons if reasons else ''}", path)
    out.observations.sort(key=lambda o: o.time)
    return out
