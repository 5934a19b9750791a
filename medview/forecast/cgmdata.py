"""Real CGM files for forecasting and the AGP: patients, quality report, refusals.

:func:`load_patients` reads a CGM CSV (one patient, or the multi-patient
``id,time,gl`` layout of the iglu collection) through
:func:`medview.records.cgm.load_cgm_csv` and returns one :class:`Series` per
patient with a quality report: readings, median sampling step, gaps longer than
30 minutes (never interpolated: the grid is NaN there), readings the importer
skipped (duplicates, out-of-range, sensor errors such as ``NA``/``Low``/``High``).

:func:`check_for_forecast` refuses what the forecasters cannot use honestly:
devices that do not read every 3-5 minutes (15-minute devices), records shorter
than the 3-hour input window plus an hour to check against, and flagged units.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medview.forecast.series import MAX_GAP_MIN, Series, series_from_observations
from medview.forecast.sparse import ForecastRefused

MIN_STEP_MIN, MAX_STEP_MIN = 2.5, 5.5  # accepted device sampling (3- and 5-minute CGMs)
MIN_FORECAST_HOURS = 4.0  # 3 h input window + 1 h horizon
SHOWN_PROBLEMS = 10  # importer problems shown one by one; the rest counted


@dataclass
class Quality:
    """What was found in one patient's readings."""

    readings: int
    step_min: float
    hours: float
    long_gaps: int
    longest_gap_h: float
    skipped: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [
            f"{self.readings} readings over {self.hours:.1f} h, median step {self.step_min:.1f} min"
        ]
        if self.long_gaps:
            out.append(
                f"{self.long_gaps} gaps over {MAX_GAP_MIN} min (longest {self.longest_gap_h:.1f} h)"
                " left as gaps, not interpolated"
            )
        out += [f"{n} rows skipped: {why}" for why, n in sorted(self.skipped.items())]
        return out


def quality_of(series: Series) -> Quality:
    """The quality summary of a series (skipped rows added by :func:`load_patients`)."""
    s = series.seconds
    d = np.diff(s) / 60.0 if len(s) > 1 else np.zeros(0)
    long = d[d > MAX_GAP_MIN]
    return Quality(
        readings=len(s),
        step_min=float(np.median(d)) if len(d) else float("nan"),
        hours=float((s[-1] - s[0]) / 3600.0) if len(s) > 1 else 0.0,
        long_gaps=int(len(long)),
        longest_gap_h=float(long.max() / 60.0) if len(long) else 0.0,
    )


def _kind(reason: str) -> str:
    """A short class of an importer problem, for counting."""
    for key in ("duplicate", "non-numeric", "implausible", "timestamp", "unit", "columns"):
        if key in reason:
            return {
                "duplicate": "duplicate timestamps",
                "non-numeric": "sensor errors / non-numeric values",
                "implausible": "out-of-range values",
                "timestamp": "unreadable timestamps",
                "unit": "units that cannot be converted",
                "columns": "short rows",
            }[key]
    return reason.split(":")[0][:60]


def load_patients(
    path: str | Path, patient: str | None = None, unit: str = "mg/dL"
) -> tuple[list[Series], dict[str, Quality], list[str]]:
    """``(series per patient, quality per patient, file-level warnings)``.

    Raises :class:`~medview.errors.MedviewError` for an unreadable file and
    :class:`ForecastRefused` for an unknown ``patient``."""
    from medview.records.cgm import CGM_LOINC, load_cgm_csv

    records = load_cgm_csv(path, default_unit=unit)
    ids = list(records.patients)
    if patient is not None:
        if patient not in records.patients:
            shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
            raise ForecastRefused(f"{path}: no patient {patient!r} in the file (ids: {shown})")
        ids = [patient]
    warnings: list[str] = []
    skipped: Counter[str] = Counter(_kind(p.reason) for p in records.problems)
    series, quality = [], {}
    for pid in ids:
        s = series_from_observations(records.observations, CGM_LOINC, pid)
        series.append(s)
        quality[pid] = quality_of(s)
    warnings += [str(p) for p in records.problems[:SHOWN_PROBLEMS]]
    if len(records.problems) > SHOWN_PROBLEMS:
        summary = ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
        warnings.append(f"{path}: {len(records.problems)} problems in all: {summary}")
    if skipped and len(ids) == 1:
        quality[ids[0]].skipped = skipped
    return series, quality, warnings


def check_for_forecast(series: Series, quality: Quality) -> None:
    """Refuse a series the dense forecasters cannot use (one-line reason)."""
    who = f"patient {series.patient or '?'}"
    if quality.readings < 2 or quality.hours < MIN_FORECAST_HOURS:
        raise ForecastRefused(
            f"{who}: {quality.hours:.1f} h of CGM; forecasting needs at least "
            f"{MIN_FORECAST_HOURS:g} h (3 h of input and 1 h to check the forecast against)"
        )
    if not MIN_STEP_MIN <= quality.step_min <= MAX_STEP_MIN:
        raise ForecastRefused(
            f"{who}: readings every {quality.step_min:.0f} min; the glucose forecasters need a "
            "3- to 5-minute CGM (a 15-minute device would be interpolated across every "
            "reading; not done)"
        )
