"""Ambulatory Glucose Profile (AGP) metrics and MAGE for one patient's CGM.

Metrics follow the international consensus on time in range (Battelino et al.
2019, Diabetes Care 42:1593):

* ``days``: days worn (first to last reading, less gaps over 24 h, which separate
  wear periods); ``active_percent``: readings received / readings expected over
  those days at the device's median sampling step;
* ``mean`` (mg/dL), ``gmi`` = 3.31 + 0.02392 x mean (%), ``cv`` = 100 x SD / mean
  (SD with n - 1);
* time in ranges, as % of readings, in the five disjoint consensus bands of the AGP
  report: ``tbr_54`` < 54, ``tbr_70`` 54-69, ``tir_70_180`` 70-180, ``tar_180``
  181-250, ``tar_250`` > 250 mg/dL (they add up to 100; "time below 70" in total is
  ``tbr_54 + tbr_70``). Band edges: 54 <= g < 70, 70 <= g <= 180, 180 < g <= 250.

MAGE follows the moving-average algorithm described by Fernandes et al. 2022
(J Diabetes Sci Technol, "the iglu algorithm"): on a 5-minute grid (gaps up to
30 min interpolated, longer gaps split the record into segments), a short (5
points) and a long (32 points) trailing moving average are compared; every
crossing of the two closes an interval whose glucose maximum (short above long) or
minimum (short below) is a peak or a nadir. Excursions smaller than one SD of the
segment are merged away (keeping the higher peak and the lower nadir); the record's
first and last readings count as turning points. MAGE is the mean amplitude of the
remaining excursions in the direction of the first one (Service et al. 1970, as the
hand-computed reference does; ``direction="avg"`` averages MAGE+ and MAGE-);
segments are weighted by their length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medview.disclaimers import FORECAST_MODEL_CARD
from medview.forecast.series import Series, to_grid

BANDS = ("tbr_54", "tbr_70", "tir_70_180", "tar_180", "tar_250")
MAGE_SHORT, MAGE_LONG = 5, 32
MAGE_MAX_GAP_MIN = 180  # a longer gap splits the record into MAGE segments
MIN_READINGS = 12  # one hour at 5 min: less gives no report
WEAR_GAP_H = 24.0  # a longer gap separates two wear periods


class AGPRefused(ValueError):
    """Too little data for a report (message says why)."""


@dataclass
class AGP:
    """The consensus metrics of one patient (see the module docstring)."""

    id: str
    days: float
    active_percent: float
    mean: float
    gmi: float
    cv: float
    tir_70_180: float
    tbr_54: float
    tbr_70: float
    tar_180: float
    tar_250: float
    mage: float | None

    def as_json(self) -> dict[str, Any]:
        """Exactly the issue-15 fields, rounded for display (2 decimals)."""
        out: dict[str, Any] = {"id": self.id}
        for key in (
            "days",
            "active_percent",
            "mean",
            "gmi",
            "cv",
            "tir_70_180",
            "tbr_54",
            "tbr_70",
            "tar_180",
            "tar_250",
        ):
            out[key] = round(float(getattr(self, key)), 2)
        out["mage"] = None if self.mage is None else round(self.mage, 2)
        return out


def band_percentages(values: np.ndarray) -> dict[str, float]:
    """% of readings in each consensus band (disjoint, adds up to 100)."""
    g = np.asarray(values, dtype=np.float64)
    n = max(len(g), 1)
    masks = {
        "tbr_54": g < 54,
        "tbr_70": (g >= 54) & (g < 70),
        "tir_70_180": (g >= 70) & (g <= 180),
        "tar_180": (g > 180) & (g <= 250),
        "tar_250": g > 250,
    }
    return {k: 100.0 * float(m.sum()) / n for k, m in masks.items()}


def agp_metrics(series: Series) -> AGP:
    """The AGP metrics of one patient's mg/dL series (raises :class:`AGPRefused`)."""
    g = np.asarray(series.values, dtype=np.float64)
    if len(g) < MIN_READINGS:
        raise AGPRefused(
            f"patient {series.patient or '?'}: {len(g)} readings; an AGP needs at least "
            f"{MIN_READINGS} (one hour)"
        )
    s = series.seconds
    d = np.diff(s)
    step = float(np.median(d))
    # wear periods: a gap over WEAR_GAP_H (sensor off) does not count as a day worn
    span = float(s[-1] - s[0] - d[d > WEAR_GAP_H * 3600.0].sum()) + step
    expected = span / step if step > 0 else float(len(g))
    mean = float(g.mean())
    sd = float(g.std(ddof=1))
    bands = band_percentages(g)
    return AGP(
        id=series.patient,
        days=span / 86400.0,
        active_percent=min(100.0, 100.0 * len(g) / expected),
        mean=mean,
        gmi=3.31 + 0.02392 * mean,
        cv=100.0 * sd / mean,
        mage=mage(series),
        **bands,
    )


# -- MAGE ---------------------------------------------------------------------


def _trailing_mean(v: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average; the first k - 1 points average what there is."""
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - k, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _turning_points(v: np.ndarray) -> list[tuple[int, float]]:
    """Alternating (index, value) peaks/nadirs between short/long MA crossings."""
    diff = _trailing_mean(v, MAGE_SHORT) - _trailing_mean(v, MAGE_LONG)
    sign = np.sign(diff)
    nonzero = np.nonzero(sign)[0]
    if len(nonzero) == 0:
        return [(0, float(v[0])), (len(v) - 1, float(v[-1]))]
    sign[: nonzero[0]] = sign[nonzero[0]]
    # carry the last non-zero sign over ties so a touch is not a crossing
    for i in range(1, len(sign)):
        if sign[i] == 0:
            sign[i] = sign[i - 1]
    cuts = [0, *[int(i) for i in np.nonzero(np.diff(sign) != 0)[0] + 1], len(v)]
    points: list[tuple[int, float]] = [(0, float(v[0]))]  # the record's ends count too
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        seg = v[a:b]
        i = int(np.argmax(seg) if sign[a] > 0 else np.argmin(seg)) + a
        points.append((i, float(v[i])))
    points.append((len(v) - 1, float(v[-1])))
    return _alternate(points)


def _alternate(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Merge neighbours of the same kind so peaks and nadirs alternate."""
    out: list[tuple[int, float]] = []
    for p in points:
        if len(out) >= 2 and (out[-1][1] - out[-2][1]) * (p[1] - out[-1][1]) > 0:
            out[-1] = p  # same direction as the last step: extend it
        elif len(out) >= 1 and p[1] == out[-1][1]:
            continue
        else:
            out.append(p)
    return out


def _merge_small(points: list[float], sd: float) -> list[float]:
    """Remove excursions below ``sd``, keeping the higher peak and the lower nadir."""
    pts = list(points)
    while len(pts) >= 2:
        amps = np.abs(np.diff(pts))
        k = int(np.argmin(amps))
        if amps[k] >= sd:
            break
        if k == 0:
            pts.pop(0)
        elif k == len(pts) - 2:
            pts.pop()
        else:
            # pts[k-1], pts[k], pts[k+1], pts[k+2]: drop the middle pair, keep extremes
            up = pts[k] > pts[k - 1]  # pts[k] is a peak when the step into it rises
            if up:
                pts[k - 1] = min(pts[k - 1], pts[k + 1])
                pts[k + 2] = max(pts[k], pts[k + 2])
            else:
                pts[k - 1] = max(pts[k - 1], pts[k + 1])
                pts[k + 2] = min(pts[k], pts[k + 2])
            del pts[k : k + 2]
    return pts


def mage_of_segment(values: np.ndarray, direction: str = "service") -> float | None:
    """MAGE of one gap-free 5-minute segment; None when it has no excursion >= 1 SD.

    ``direction``: ``"service"`` (Service et al. 1970, the default) averages the
    excursions in the direction of the first counted one (rises after a first rise,
    falls after a first fall); ``"avg"`` averages MAGE+ and MAGE-; ``"plus"`` and
    ``"minus"`` give one of them.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) < MAGE_SHORT + 2:
        return None
    sd = float(v.std(ddof=1))
    pts = _merge_small([p for _, p in _turning_points(v)], sd)
    if len(pts) < 2:
        return None
    steps = np.diff(pts)
    ups, downs = steps[steps > 0], -steps[steps < 0]
    if direction == "service":
        direction = "plus" if steps[0] > 0 else "minus"
    if direction == "plus":
        return float(ups.mean()) if len(ups) else None
    if direction == "minus":
        return float(downs.mean()) if len(downs) else None
    parts = [float(x.mean()) for x in (ups, downs) if len(x)]
    return float(np.mean(parts)) if parts else None


def segments(series: Series, max_gap_min: int = MAGE_MAX_GAP_MIN) -> list[np.ndarray]:
    """5-minute grid values of the series, split where a gap exceeds ``max_gap_min``."""
    s = series.seconds
    v = np.asarray(series.values, dtype=np.float64)
    if len(s) == 0:
        return []
    breaks = np.nonzero(np.diff(s) > max_gap_min * 60.0)[0] + 1
    out = []
    for a, b in zip([0, *breaks], [*breaks, len(s)], strict=True):
        _, grid = to_grid(s[a:b], v[a:b], max_gap_min=max_gap_min)
        out.append(grid[~np.isnan(grid)])
    return out


def mage(series: Series) -> float | None:
    """MAGE (mg/dL) over the whole record, segments weighted by their length."""
    total, weight = 0.0, 0
    for seg in segments(series):
        m = mage_of_segment(seg)
        if m is not None:
            total += m * len(seg)
            weight += len(seg)
    return total / weight if weight else None


# -- the AGP figure -----------------------------------------------------------


def percentile_profile(series: Series, bin_min: int = 15) -> dict[str, np.ndarray]:
    """5/25/50/75/95th percentiles of glucose by time of day (``bin_min`` bins).

    Times are the clock times as recorded (local time when the file has no zone).
    Returns ``{"minutes": bin centres, "p5", "p25", "p50", "p75", "p95"}``; a bin
    without readings is NaN. Bins are smoothed over their neighbours (a one-hour
    window at 15-minute bins) as the AGP does.
    """
    minutes = np.array([t.hour * 60 + t.minute for t in series.times], dtype=np.int64)
    nbins = 1440 // bin_min
    which = minutes // bin_min
    v = np.asarray(series.values, dtype=np.float64)
    half = max(1, 30 // bin_min)
    out: dict[str, np.ndarray] = {"minutes": (np.arange(nbins) + 0.5) * bin_min}
    qs = (5, 25, 50, 75, 95)
    table = np.full((len(qs), nbins), np.nan)
    for b in range(nbins):
        near = (np.abs(((which - b + nbins // 2) % nbins) - nbins // 2)) <= half
        if near.any():
            table[:, b] = np.percentile(v[near], qs)
    for q, row in zip(qs, table, strict=True):
        out[f"p{q}"] = row
    return out


def write_agp_figure(series: Series, metrics: AGP, out: str | Path) -> Path:
    """Write the AGP page (metrics, percentile plot, daily profiles) as PNG or PDF."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    out = Path(out)
    prof = percentile_profile(series)
    hours = prof["minutes"] / 60.0
    fig, (ax_text, ax, ax_days) = plt.subplots(
        3, 1, figsize=(8.27, 10.0), gridspec_kw={"height_ratios": [0.6, 2.2, 1.6]}
    )
    ax_text.axis("off")
    j = metrics.as_json()
    lines = [
        f"Ambulatory Glucose Profile - patient {metrics.id}",
        f"{j['days']:.1f} days, CGM active {j['active_percent']:.1f} %",
        f"mean {j['mean']:.1f} mg/dL   GMI {j['gmi']:.2f} %   CV {j['cv']:.1f} %   "
        f"MAGE {'-' if j['mage'] is None else format(j['mage'], '.1f')} mg/dL",
        f">250: {j['tar_250']:.1f} %   181-250: {j['tar_180']:.1f} %   "
        f"70-180: {j['tir_70_180']:.1f} %   54-69: {j['tbr_70']:.1f} %   <54: {j['tbr_54']:.1f} %",
        f"Metrics of past CGM readings. {FORECAST_MODEL_CARD}",
    ]
    ax_text.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=9)
    ax.fill_between(hours, prof["p5"], prof["p95"], color="#9ecae1", label="5-95 %")
    ax.fill_between(hours, prof["p25"], prof["p75"], color="#3182bd", label="25-75 %")
    ax.plot(hours, prof["p50"], color="#08306b", lw=2, label="median")
    for level in (54, 70, 180, 250):
        ax.axhline(level, color="#31a354" if level in (70, 180) else "#bbbbbb", lw=0.8)
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel("time of day (h)")
    ax.set_ylabel("glucose (mg/dL)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("AGP: percentiles over the 24-hour day")
    _daily_profiles(ax_days, series)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _daily_profiles(ax: Any, series: Series, max_days: int = 14) -> None:
    """One thin line per calendar day (the last ``max_days``), offset by day."""
    days = sorted({t.date() for t in series.times})[-max_days:]
    v = np.asarray(series.values, dtype=np.float64)
    for k, day in enumerate(days):
        idx = [i for i, t in enumerate(series.times) if t.date() == day]
        x = np.array([k * 24 + series.times[i].hour + series.times[i].minute / 60 for i in idx])
        ax.plot(x, v[idx], lw=0.7, color="#08306b")
    ax.axhspan(70, 180, color="#e5f5e0", zorder=0)
    ax.set_xticks([k * 24 + 12 for k in range(len(days))])
    ax.set_xticklabels([f"{d:%m-%d}" for d in days], fontsize=7)
    ax.set_ylabel("mg/dL")
    ax.set_title("daily profiles")
