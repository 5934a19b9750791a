"""Helpers shared by the importers: time parsing and observation building."""

from __future__ import annotations

from datetime import date, datetime, timezone

from medview.records.model import Observation
from medview.records.units import to_canonical


def parse_time(text: str | None) -> datetime | None:
    """ISO date or date-time -> naive UTC datetime; None for empty input.

    Raises ValueError for text that is not a date, or one that leaves the datetime
    range once converted to UTC. Partial FHIR dates ("2020", "2020-05") become the
    first day of the period.
    """
    if text is None:
        return None
    s = str(text).strip()
    if not s:
        return None
    if len(s) == 4 and s.isdigit():
        return datetime(int(s), 1, 1)
    if len(s) == 7 and s[4] == "-":
        return datetime(int(s[:4]), int(s[5:7]), 1)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is not None:
            dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59-05:00 lies past year 9999 in UTC
        raise ValueError("time out of range once converted to UTC") from exc
    return dt


def parse_date(text: str | None) -> date | None:
    """ISO date (or date-time) -> date; None for empty input; ValueError when invalid."""
    dt = parse_time(text)
    return dt.date() if dt is not None else None


def make_observation(
    patient_id: str,
    time: datetime,
    code: str,
    display: str,
    value: float | None,
    unit: str,
    text: str = "",
) -> Observation:
    """An Observation with its value converted to the canonical unit of ``code``."""
    conv = to_canonical(code, value, unit)
    return Observation(
        patient_id=patient_id,
        time=time,
        code=code,
        display=display,
        value=conv.value,
        unit=conv.unit,
        original_value=value,
        original_unit=unit or "",
        unit_flag=conv.flag,
        text=text,
    )
