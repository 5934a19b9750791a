"""Time series helpers shared by the forecasters: timestamps, regular grids, windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

STEP_MIN = 5  # CGM grid step in minutes
MAX_GAP_MIN = 30  # gaps up to this long are linearly interpolated on the grid


def to_seconds(t: datetime) -> float:
    """Seconds since the epoch; naive datetimes are taken as UTC (no local-time guess)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


def from_seconds(s: float, like: datetime | None = None) -> datetime:
    """Inverse of :func:`to_seconds`, naive unless ``like`` is timezone-aware."""
    t = datetime.fromtimestamp(float(s), tz=timezone.utc)
    if like is not None and like.tzinfo is not None:
        return t.astimezone(like.tzinfo)
    return t.replace(tzinfo=None)


@dataclass
class Series:
    """One patient's observations of one code, sorted by time, values in ``unit``."""

    times: list[datetime]
    values: np.ndarray  # float64
    code: str = ""
    display: str = ""
    unit: str = ""
    patient: str = ""
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def seconds(self) -> np.ndarray:
        return np.array([to_seconds(t) for t in self.times], dtype=np.float64)

    def median_step_min(self) -> float:
        if len(self.times) < 2:
            return float("inf")
        return float(np.median(np.diff(self.seconds)) / 60.0)


def series_from_observations(observations: Sequence, code: str, patient: str = "") -> Series:
    """Collect the numeric observations of ``code`` (and ``patient``) into a sorted Series.

    Observations whose unit could not be converted (``unit_flag``) are left out and
    listed in ``problems``, as are missing values; when several units remain, the
    most common one is kept and the others are listed.
    """
    chosen = [
        o for o in observations if o.code == code and (not patient or o.patient_id == patient)
    ]
    problems: list[str] = []
    good = []
    for o in chosen:
        if o.value is None:
            continue
        if getattr(o, "unit_flag", ""):
            problems.append(f"{o.time:%Y-%m-%d %H:%M}: {o.unit_flag} (left out)")
            continue
        good.append(o)
    units: dict[str, int] = {}
    for o in good:
        units[o.unit] = units.get(o.unit, 0) + 1
    unit = max(units, key=lambda u: units[u]) if units else ""
    if len(units) > 1:
        problems.append(f"mixed units {sorted(units)}: only {unit!r} used")
    good = [o for o in good if o.unit == unit]
    good.sort(key=lambda o: to_seconds(o.time))
    # one value per timestamp (first one wins)
    times: list[datetime] = []
    values: list[float] = []
    last = None
    for o in good:
        s = to_seconds(o.time)
        if last is not None and s == last:
            continue
        last = s
        times.append(o.time)
        values.append(float(o.value))
    display = chosen[0].display if chosen else ""
    pid = patient or (chosen[0].patient_id if chosen else "")
    return Series(times, np.asarray(values, dtype=np.float64), code, display, unit, pid, problems)


def to_grid(
    seconds: np.ndarray,
    values: np.ndarray,
    step_min: int = STEP_MIN,
    max_gap_min: int = MAX_GAP_MIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample an irregular series on a regular grid (linear interpolation).

    Grid points inside gaps longer than ``max_gap_min`` are NaN. Returns
    ``(grid_seconds, grid_values)``; the grid ends at the last observation.
    """
    if len(seconds) == 0:
        return np.zeros(0), np.zeros(0)
    step = step_min * 60.0
    end = seconds[-1]
    n = int(np.floor((end - seconds[0]) / step)) + 1
    grid = end - step * np.arange(n)[::-1]
    vals = np.interp(grid, seconds, values)
    # NaN where the nearest observations on both sides are too far apart
    idx = np.searchsorted(seconds, grid, side="left")
    idx = np.clip(idx, 1, len(seconds) - 1) if len(seconds) > 1 else np.zeros_like(idx)
    if len(seconds) > 1:
        gap = seconds[idx] - seconds[idx - 1]
        exact = np.isclose(seconds[idx], grid) | np.isclose(seconds[idx - 1], grid)
        vals[(gap > max_gap_min * 60.0) & ~exact] = np.nan
    return grid, vals


def future_times(last: datetime, horizon_min: int, step_min: int = STEP_MIN) -> list[datetime]:
    return [last + timedelta(minutes=step_min * k) for k in range(1, horizon_min // step_min + 1)]
