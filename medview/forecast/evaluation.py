"""Judge the glucose forecasters on real patients: backtests, selection, intervals.

For every patient (a 5-minute grid of its CGM, gaps up to 30 min interpolated,
longer gaps never bridged) a rolling-origin backtest forecasts 5..60 minutes ahead
from every origin of the last 60 % of the record with:

* ``persistence`` (glucose stays where it is), ``linear`` (30-min trend),
* ``ar``: the patient's own autoregression, refitted on the windows that ended
  before each block (personalisation from the patient's own past only),
* ``lstm``: the bundled network (trained on the simulator; it never saw these
  patients),
* ``ar+lstm``: the mean of the two (kept because it beat both on held-out
  patients of both real sets at 60 minutes),
* ``attn_gru`` (the network trained on real CGM, :mod:`medview.forecast.realnet`)
  and ``ar+attn_gru`` (its mean with the patient's own AR; from a last reading below
  100 mg/dL the lower of the two), when the patient was not
  in that network's training data;
* ``selected``: what medview presents: the default (``ar+<network>``, or the
  network alone when the patient's AR cannot be fitted) unless another method's
  RMSE on the first half of the patient's backtest origins is at least
  :data:`DEFAULT_MARGIN` lower (:func:`pick`), and persistence unless the choice beat
  it there by :data:`PERSISTENCE_MARGIN`; judged on the second half only (so the
  choice never sees the points it is judged on). Without the network: the lowest
  RMSE on the first half (with the same persistence floor).

Intervals: split-conformal with normalised scores ``|error| / scale`` where
``scale`` = SD of the window's 5-minute changes + 1 mg/dL, Mondrian by the
patient's variability (CV of the history >= :data:`GROUP_CV` % "high", else
"low"): the 80 % quantile of the scores of OTHER patients of the same group
(leave-patients-out) gives each held-out patient's interval, and adaptive
conformal inference (Gibbs and Candes 2021) moves the level with the patient's own
misses as their truth becomes known (:func:`adaptive_conformal`). Clarke error grid
zones and the time lag are reported per method and horizon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.forecast import baselines
from medview.forecast.clarke import clarke_percentages, time_lag_steps
from medview.forecast.series import STEP_MIN, Series, to_grid
from medview.tasks import TaskState, ensure_state

HORIZONS = (30, 60)
GROUP_CV = 26.0  # % CV of the patient's history splitting the two calibration groups
LEVEL = 0.8
LEVELS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)  # stored score quantiles
ACI_GAMMA = 0.01  # step of the adaptive conformal level (chosen on held-out patients)
FOLDS = 3
AR_MIN_WINDOWS = 100
ENSEMBLE = "ar+lstm"  # the mean of the two: adopted because it won on held-out patients
CANDIDATES = ("persistence", "linear", "ar", "lstm", ENSEMBLE)
DEFAULT_MARGIN = 0.05  # another method replaces the default only when 5 % better (Hall 2018)
PERSISTENCE_MARGIN = 0.05  # persistence is shown unless the choice beat it by 5 % (Hall 2018)
LOW_GUARD = 100.0  # mg/dL: below it ar+<network> takes the lower forecast (Clarke D, Hall 2018)
MIN_CALIBRATION_PATIENTS = 3


@dataclass
class PatientBacktest:
    """One patient's backtest: inputs, targets and every method's forecasts."""

    patient: str
    group: str
    grid: np.ndarray  # the 5-minute grid values (NaN in long gaps)
    x: np.ndarray  # (N, WINDOW) input windows of the judged origins
    y: np.ndarray  # (N, H) targets
    origin: np.ndarray  # (N,) grid index of each origin's last reading
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (N, H)
    notes: list[str] = field(default_factory=list)
    choice: list[str] = field(default_factory=list)  # the selected method per horizon step


def variability_group(values: np.ndarray) -> str:
    """``"high"`` when the CV of ``values`` is >= :data:`GROUP_CV` %, else ``"low"``."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2 or v.mean() <= 0:
        return "low"
    return "high" if 100.0 * v.std() / v.mean() >= GROUP_CV else "low"


def window_scale(x: np.ndarray) -> np.ndarray:
    """The normalising scale of each window: SD of its 5-minute changes + 1 mg/dL."""
    return np.std(np.diff(np.asarray(x, dtype=np.float64), axis=1), axis=1) + 1.0


def patient_backtest(
    series: Series, model: Any, max_origins: int | None = None, real: Any = None
) -> PatientBacktest | None:
    """Rolling-origin backtest of every method on one patient (None: too little data).

    ``real``: the network trained on real CGM (:class:`medview.forecast.realnet.RealNet`);
    left out, with a note, for a patient of its training data."""
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW

    _, grid = to_grid(series.seconds, series.values)
    x, y, origin = baselines.make_windows(grid, WINDOW, HORIZON_STEPS)
    if len(x) < 20:
        return None
    start = int(len(x) * 0.4)
    bounds = np.linspace(start, len(x), FOLDS + 1).astype(int)
    keep: list[np.ndarray] = []
    ar_parts: list[np.ndarray] = []
    use_ar = True
    for f in range(FOLDS):
        lo, hi = bounds[f], bounds[f + 1]
        if hi <= lo:
            continue
        idx = np.arange(lo, hi)
        if max_origins is not None and len(idx) > max(1, max_origins // FOLDS):
            idx = idx[np.linspace(0, len(idx) - 1, max(1, max_origins // FOLDS)).astype(int)]
        keep.append(idx)
        past = origin + HORIZON_STEPS <= origin[lo]
        if use_ar and past.sum() >= AR_MIN_WINDOWS:
            ar_parts.append(baselines.ARModel.fit(x[past], y[past]).predict(x[idx]))
        else:
            use_ar = False
    idx = np.concatenate(keep)
    bt = PatientBacktest(series.patient, variability_group(grid), grid, x[idx], y[idx], origin[idx])
    bt.preds["persistence"] = baselines.persistence(bt.x, HORIZON_STEPS)
    bt.preds["linear"] = baselines.linear(bt.x, HORIZON_STEPS)
    bt.preds["lstm"] = model.raw(bt.x)[..., 1].astype(np.float64)
    if use_ar:
        bt.preds["ar"] = np.concatenate(ar_parts)
        bt.preds[ENSEMBLE] = 0.5 * (bt.preds["ar"] + bt.preds["lstm"])
    else:
        bt.notes.append(f"AR left out: fewer than {AR_MIN_WINDOWS} past windows to fit it on")
    if real is not None and real.saw(series.seconds, series.values):
        bt.notes.append(
            f"{real.method} left out: this patient was in its training data (card fingerprints)"
        )
    elif real is not None:
        add_real(bt, real.method, real.predict(bt.x))
        return bt
    _add_selected(bt)
    return bt


def ar_net(ar: np.ndarray, net: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``ar+<network>``: the mean of the two; from a last reading below
    :data:`LOW_GUARD` mg/dL the lower of the two (a hypo is not averaged away)."""
    low = np.asarray(x, dtype=np.float64)[:, -1:] < LOW_GUARD
    return np.where(low, np.minimum(ar, net), 0.5 * (ar + net))


def add_real(bt: PatientBacktest, method: str, pred: np.ndarray) -> None:
    """Add a real-data network's forecasts (and ``ar+`` it, :func:`ar_net`); re-select."""
    bt.preds[method] = np.asarray(pred, dtype=np.float64)
    if "ar" in bt.preds:
        bt.preds["ar+" + method] = ar_net(bt.preds["ar"], bt.preds[method], bt.x)
    bt.preds.pop("selected", None)
    bt.notes = [n for n in bt.notes if not n.startswith("selected")]
    _add_selected(bt)


def real_methods(methods: Any) -> list[str]:
    """The real-data network's methods among ``methods`` (network, ``ar+`` network)."""
    from medview.forecast.realnet import KINDS

    return [m for m in methods if m in KINDS or m.removeprefix("ar+") in KINDS]


def default_method(methods: Any) -> str | None:
    """``ar+<network>`` when present, else the network alone, else None."""
    real = real_methods(methods)
    both = [m for m in real if m.startswith("ar+")]
    chosen = both or real
    return chosen[0] if chosen else None


def pick(
    rmse: dict[str, float], margin: float = DEFAULT_MARGIN, floor: float = PERSISTENCE_MARGIN
) -> str:
    """The method shown: the default (:func:`default_method`) unless another one's RMSE
    is at least ``margin`` lower; without a default, the lowest RMSE. Then persistence
    unless the choice beat it by at least ``floor`` (no gain shown without evidence)."""
    best = min(rmse, key=lambda m: rmse[m])
    default = default_method(rmse)
    if default is not None and rmse[best] > (1.0 - margin) * rmse[default]:
        best = default
    if "persistence" in rmse and rmse[best] > (1.0 - floor) * rmse["persistence"]:
        return "persistence"
    return best


def why_shown(winner: str, rmse: dict[str, float], minutes: str) -> str | None:
    """The note on the method shown when it is persistence or not the lowest RMSE."""
    if not rmse:
        return None
    lowest = min(rmse, key=lambda m: rmse[m])
    if winner == "persistence":
        extra = (
            ""
            if lowest == "persistence"
            else f" (no method beat it by {PERSISTENCE_MARGIN:.0%}; lowest RMSE: {lowest})"
        )
        return (
            f"persistence wins on this patient's own backtest at {minutes} min{extra}: the "
            "forecast shown is glucose staying at the last reading; no model is presented as "
            "the answer"
        )
    if winner != lowest:
        return (
            f"{winner} shown: medview's default (the network trained on real CGM, with the "
            f"patient's own AR when it can be fitted); no other method was {DEFAULT_MARGIN:.0%} "
            f"better on this patient's backtest at {minutes} min (lowest RMSE: {lowest})"
        )
    return None


def _add_selected(bt: PatientBacktest) -> None:
    """``selected``: per horizon, :func:`pick` on the first half of the origins.

    Its forecasts exist only for the second half (NaN in the first)."""
    n = len(bt.y)
    half = n // 2
    sel = np.full(bt.y.shape, np.nan)
    choice: list[str] = []
    cands = [m for m in bt.preds if m in CANDIDATES or m in real_methods([m])]
    for h in range(bt.y.shape[1]):
        rmse = {
            m: float(np.sqrt(np.mean((bt.preds[m][:half, h] - bt.y[:half, h]) ** 2))) for m in cands
        }
        best = pick(rmse) if half else "persistence"
        choice.append(best)
        sel[half:, h] = bt.preds[best][half:, h]
    bt.preds["selected"] = sel
    bt.choice = choice
    bt.notes.append(
        "selected (chosen on the first half of the origins, judged on the second): "
        + ", ".join(
            f"{(h + 1) * STEP_MIN} min {c}" for h, c in enumerate(choice) if (h + 1) % 6 == 0
        )
    )


def scores(bt: PatientBacktest, method: str) -> np.ndarray:
    """Normalised conformity scores ``|error| / scale`` (N, H) of ``method``."""
    return np.abs(bt.preds[method] - bt.y) / window_scale(bt.x)[:, None]


Table = dict[str, dict[str, list[list[float]]]]  # method -> group -> [level][horizon]


def calibrate(bts: list[PatientBacktest], methods: tuple[str, ...] | None = None) -> Table:
    """``{method: {group: [[score quantile per horizon] per level of LEVELS]}}``.

    ``methods``: default every candidate present (the baselines, the LSTM, the
    real-data network and the ensembles).

    Every patient weighs the same (an equal-size resample of its scores), so a long
    record does not outvote the others."""
    table: Table = {}
    if methods is None:
        present = {m for b in bts for m in b.preds}
        methods = tuple(m for m in sorted(present) if m in CANDIDATES or real_methods([m]))
    for m in methods:
        for group in ("high", "low"):
            parts = [_equal_weight(scores(b, m)) for b in bts if m in b.preds and b.group == group]
            parts = [p for p in parts if len(p)]
            if not parts:
                continue
            q = np.quantile(np.concatenate(parts), LEVELS, axis=0)  # (levels, H)
            table.setdefault(m, {})[group] = [[round(float(v), 4) for v in row] for row in q]
    return table


def _equal_weight(s: np.ndarray, n: int = 200) -> np.ndarray:
    """``n`` rows of ``s`` at evenly spaced positions (NaN rows dropped)."""
    s = s[~np.isnan(s).any(axis=1)]
    if len(s) == 0:
        return s
    return s[np.linspace(0, len(s) - 1, n).astype(int)]


def score_quantile(table: Table, method: str, group: str, level: float) -> np.ndarray | None:
    """The score quantile (H,) at ``level`` (interpolated between :data:`LEVELS`)."""
    grid = table.get(method, {}).get(group)
    if grid is None or len(grid) != len(LEVELS):
        return None
    q = np.asarray(grid, dtype=np.float64)
    lv = float(np.clip(level, LEVELS[0], LEVELS[-1]))
    return np.array([np.interp(lv, LEVELS, q[:, h]) for h in range(q.shape[1])])


def interval_half_width(
    table: Table, method: str, group: str, x: np.ndarray, level: float = LEVEL
) -> np.ndarray | None:
    """Half-width (N, H) of the ``level`` interval of ``method`` for windows ``x``."""
    q = score_quantile(table, method, group, level)
    if q is None:
        return None
    return window_scale(x)[:, None] * q[None, :]


def adaptive_conformal(
    scores_h: np.ndarray,
    origin: np.ndarray,
    h: int,
    quantile_at: Callable[[float], float],
    gamma: float = ACI_GAMMA,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Adaptive conformal inference (Gibbs and Candes 2021) over one patient's origins.

    In time order, each forecast uses the score quantile at level ``1 - a``; ``a``
    starts at 1 - :data:`LEVEL` and moves by ``gamma`` x (target miss rate - miss)
    once the forecast's truth is known (``h + 1`` grid steps after its origin), so
    a patient whose intervals keep missing gets wider ones. Returns (inside per
    origin, score quantile used per origin, the level for the next forecast, when
    every outcome is known)."""
    alpha = 1.0 - LEVEL
    a = alpha
    inside = np.zeros(len(scores_h), dtype=bool)
    used = np.zeros(len(scores_h))
    pending: deque[tuple[int, float]] = deque()
    for i in range(len(scores_h)):
        while pending and origin[pending[0][0]] + h + 1 <= origin[i]:
            a += gamma * (alpha - pending.popleft()[1])
        used[i] = quantile_at(1.0 - a)
        inside[i] = scores_h[i] <= used[i]
        pending.append((i, 0.0 if inside[i] else 1.0))
    for _, miss in pending:
        a += gamma * (alpha - miss)
    return inside, used, 1.0 - a


def summarize(
    bt: PatientBacktest,
    table: Table,
    horizons: tuple[int, ...] = HORIZONS,
) -> dict[str, Any]:
    """Per horizon: every method's RMSE/MAE/n, Clarke zones, lag; interval coverage."""
    out: dict[str, Any] = {}
    for minutes in horizons:
        h = minutes // STEP_MIN - 1
        row: dict[str, Any] = {}
        for m, p in bt.preds.items():
            ok = ~np.isnan(p[:, h])
            err = p[ok, h] - bt.y[ok, h]
            if not len(err):
                continue
            base = bt.preds["persistence"][ok, h] - bt.y[ok, h]
            row[m] = {
                "rmse": float(np.sqrt(np.mean(err**2))),
                "mae": float(np.mean(np.abs(err))),
                "n": int(len(err)),
                "persistence_rmse": float(np.sqrt(np.mean(base**2))),  # on the same origins
                "clarke": clarke_percentages(bt.y[ok, h], p[ok, h]),
                "lag_min": _lag(bt, p[:, h], h),
            }
        row["interval80"] = _coverage(bt, table, h)
        out[str(minutes)] = row
    return out


def _lag(bt: PatientBacktest, pred: np.ndarray, h: int) -> float | None:
    """Time lag (minutes) of a method's forecasts against the truth on the grid."""
    target = bt.origin + h + 1
    n = len(bt.grid)
    f = np.full(n, np.nan)
    f[target] = pred
    k = time_lag_steps(bt.grid, f, h + 1)
    return None if k is None else float(k * STEP_MIN)


def _coverage(bt: PatientBacktest, table: Table, h: int) -> dict[str, Any]:
    """Coverage and mean width of the ``selected`` method's 80 % interval: calibrated
    on other patients, adapted to this patient's own misses as they become known."""
    sel = bt.preds["selected"][:, h]
    ok = ~np.isnan(sel)
    m = bt.choice[h] if bt.choice else ""
    if not ok.any() or score_quantile(table, m, bt.group, LEVEL) is None:
        return {}

    def at(level: float) -> float:
        q = score_quantile(table, m, bt.group, level)
        return float(q[h]) if q is not None else float("nan")

    inside, used, _ = adaptive_conformal(scores(bt, m)[:, h], bt.origin, h, at)
    width = 2 * used[ok] * window_scale(bt.x[ok])
    return {"coverage": float(inside[ok].mean()), "mean_width_mgdl": float(width.mean())}


def evaluate_patients(
    series_list: list[Series],
    model: Any,
    state: TaskState | None = None,
    max_origins: int | None = None,
    fallback: Table | None = None,
    real: Any = None,
) -> dict[str, Any]:
    """Backtest every patient; intervals calibrated leave-patients-out; pooled figures.

    A patient's interval is calibrated on the other patients of the file in its
    variability group; with fewer than :data:`MIN_CALIBRATION_PATIENTS` of them, on
    ``fallback`` (the cards' table) when given, which is noted; a method the other
    patients lack (the real-data network is left out for its training patients)
    also takes ``fallback``'s row. ``real``: the network trained on real CGM.

    Returns ``{"patients": {id: {"group", "origins", "per_horizon", "notes"}},
    "pooled": per_horizon, "skipped": {id: reason}}``."""
    state = ensure_state(state)
    bts: list[PatientBacktest] = []
    skipped: dict[str, str] = {}
    for k, s in enumerate(series_list):
        state.progress(k / max(len(series_list), 1), f"backtesting {s.patient}")
        bt = patient_backtest(s, model, max_origins, real)
        if bt is None:
            skipped[s.patient] = "too little continuous CGM for a backtest (needs about 4 h)"
        else:
            bts.append(bt)
    patients: dict[str, Any] = {}
    for bt in bts:
        others = [b for b in bts if b is not bt and b.group == bt.group]  # leave it out
        if len(others) >= MIN_CALIBRATION_PATIENTS or not fallback:
            table = {**(fallback or {}), **calibrate(others)}
        else:
            table = fallback
            bt.notes.append(
                f"interval calibrated on the bundled table (fewer than "
                f"{MIN_CALIBRATION_PATIENTS} other {bt.group}-variability patients in the file); "
                "that table was built from the public real sets, which may include this patient"
            )
        patients[bt.patient] = {
            "group": bt.group,
            "origins": int(len(bt.y)),
            "per_horizon": summarize(bt, table),
            "notes": bt.notes,
        }
    return {"patients": patients, "pooled": pooled(patients, bts), "skipped": skipped}


def pooled(patients: dict[str, Any], bts: list[PatientBacktest]) -> dict[str, Any]:
    """Pooled RMSE (every origin of every patient), worse-than-persistence counts,
    origin-weighted Clarke zones and interval coverage."""
    out: dict[str, Any] = {}
    for minutes in HORIZONS:
        key = str(minutes)
        h = minutes // STEP_MIN - 1
        row: dict[str, Any] = {}
        methods = sorted({m for b in bts for m in b.preds})
        for m in methods:
            errs = [b.preds[m][:, h] - b.y[:, h] for b in bts if m in b.preds]
            e = np.concatenate(errs) if errs else np.zeros(0)
            base = [b.preds["persistence"][:, h] - b.y[:, h] for b in bts if m in b.preds]
            pe = np.concatenate(base)[~np.isnan(e)] if base else np.zeros(0)
            e = e[~np.isnan(e)]
            if not len(e):
                continue
            worse = sum(
                1
                for p in patients.values()
                if m in p["per_horizon"][key]
                and p["per_horizon"][key][m]["rmse"]
                > p["per_horizon"][key][m]["persistence_rmse"] * (1 + 1e-9)
            )
            row[m] = {
                "rmse": float(np.sqrt(np.mean(e**2))),
                "mae": float(np.mean(np.abs(e))),
                "n": int(len(e)),
                "persistence_rmse": float(np.sqrt(np.mean(pe**2))),  # on the same origins
                "patients_worse_than_persistence": worse,
                "clarke": _weighted_clarke(patients, key, m),
                "lag_min": _median_lag(patients, key, m),
            }
        cov = [
            (p["per_horizon"][key]["interval80"], p["per_horizon"][key]["selected"]["n"])
            for p in patients.values()
            if p["per_horizon"][key].get("interval80") and "selected" in p["per_horizon"][key]
        ]
        if cov:
            n = sum(c for _, c in cov)
            row["interval80"] = {
                "coverage": sum(c["coverage"] * k for c, k in cov) / n,
                "mean_width_mgdl": sum(c["mean_width_mgdl"] * k for c, k in cov) / n,
                "patients_in_75_85": sum(1 for c, _ in cov if 0.75 <= c["coverage"] <= 0.85),
                "patients": len(cov),
            }
        out[key] = row
    return out


def _weighted_clarke(patients: dict[str, Any], key: str, method: str) -> dict[str, float]:
    rows = [
        p["per_horizon"][key][method] for p in patients.values() if method in p["per_horizon"][key]
    ]
    n = sum(r["n"] for r in rows)
    if not n:
        return {}
    return {z: sum(r["clarke"][z] * r["n"] for r in rows) / n for z in "ABCDE"}


def calibration_block(
    bts: list[PatientBacktest], sources: list[str], methods: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The card's ``output.conformal_real``: score quantiles of every patient given."""
    return {
        "level": LEVEL,
        "score": "|error| / (SD of the input window's 5-min changes + 1 mg/dL)",
        "groups": f"high: CV of the patient's history >= {GROUP_CV:g} %, low: below",
        "patients": {g: sum(1 for b in bts if b.group == g) for g in ("high", "low")},
        "sources": sources,
        "methods": calibrate(bts, methods),
    }


def write_calibration(model_dir: Any, block: dict[str, Any]) -> Any:
    """Store ``block`` as ``output.conformal_real`` of the card in ``model_dir``."""
    from medview.modelcards import read_card, write_card

    card = read_card(model_dir)
    meta = dict(card.meta)
    meta["output"] = {**meta["output"], "conformal_real": block}
    return write_card(card.folder, meta)


def _median_lag(patients: dict[str, Any], key: str, method: str) -> float | None:
    lags = [
        p["per_horizon"][key][method].get("lag_min")
        for p in patients.values()
        if method in p["per_horizon"][key]
    ]
    known = [v for v in lags if v is not None]
    return float(np.median(known)) if known else None
