"""Forecast one patient's series: pick the method, backtest it, return a result.

* Dense glucose (CGM: median sampling step <= 15 min, mg/dL): the bundled LSTM
  (:mod:`medview.forecast.lstm`), horizons 5..60 min, 80 % interval. Backtest:
  rolling origin over the patient's own history against persistence, linear
  extrapolation and an AR model refitted on the patient's own past only.
* Anything else with >= 3 points: Gaussian process (:mod:`medview.forecast.sparse`)
  with a one-step-ahead (next measurement) backtest against persistence, mean
  and linear trend.

:func:`forecast_series` is a plain task function (``state`` for progress and
cancel); the CLI and the GUI panel both call it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medview.forecast import baselines
from medview.forecast.clarke import clarke_percentages
from medview.forecast.evaluation import ar_net, why_shown
from medview.forecast.realnet import conformal_methods
from medview.forecast.reference import reference_range
from medview.forecast.series import (
    STEP_MIN,
    Series,
    from_seconds,
    future_times,
    series_from_observations,
    to_grid,
)
from medview.forecast.sparse import (
    SECONDS_PER_YEAR,
    Z80,
    ForecastRefused,
    SparseForecast,
    backtest_sparse,
    check_points,
    gp_forecast,
)
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.forecast.lstm import GlucoseLSTM
    from medview.records import RecordSet

GLUCOSE_CODES = ("99504-3", "2339-0", "2345-7", "41653-7", "14749-6", "15074-8")
DENSE_MAX_STEP_MIN = 15.0
MAX_DENSE_HORIZON = 60
DEFAULT_DENSE_HORIZON = 60
DEFAULT_SPARSE_HORIZON = 365 * 24 * 60  # one year, in minutes
SPARSE_POINTS = 12
FORECAST_BACKTEST_ORIGINS = 450  # cap for the interactive forecast (the CLI --evaluate uses all)
AR_MIN_WINDOWS = 100
ENSEMBLE = "ar+lstm"  # the mean of the patient's own AR and the LSTM
RELATIVE_FLOOR = 0.02  # minimum 1-sigma spread of sparse forecasts, relative to the level


@dataclass
class ForecastResult:
    patient: str
    code: str
    display: str
    unit: str
    method: str
    history_times: list[datetime]
    history_values: np.ndarray
    times: list[datetime]
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    backtest: dict[str, dict[str, Any]] = field(default_factory=dict)
    backtest_what: str = ""  # e.g. "30 min ahead, 812 origins"
    winner: str = ""
    dense: bool = False
    notes: list[str] = field(default_factory=list)
    reference: tuple[float, float, str] | None = None
    agp: dict[str, Any] | None = None  # AGP metrics of a CGM history (medview.forecast.agp)

    def as_json(self) -> dict[str, Any]:
        """The CLI JSON (issue 5 shape, plus ``winner``, ``backtest_what`` and ``notes``)."""
        return {
            "patient": self.patient,
            "code": self.code,
            "unit": self.unit,
            "method": self.method,
            "history_points": len(self.history_values),
            "forecast": [
                {
                    "time": t.isoformat(),
                    "value": round(float(v), 3),
                    "lower": round(float(lo), 3),
                    "upper": round(float(hi), 3),
                }
                for t, v, lo, hi in zip(
                    self.times, self.values, self.lower, self.upper, strict=True
                )
            ],
            "backtest": {
                m: {"rmse": round(r["rmse"], 3), "mae": round(r["mae"], 3)}
                for m, r in self.backtest.items()
            },
            "clarke": {
                m: {z: round(v, 2) for z, v in r["clarke"].items()}
                for m, r in self.backtest.items()
                if "clarke" in r
            },
            "agp": self.agp,
            "winner": self.winner,
            "backtest_what": self.backtest_what,
            "interval": 0.8,
            "notes": self.notes,
        }


def is_dense(series: Series) -> bool:
    return (
        series.code in GLUCOSE_CODES
        and series.unit.replace(" ", "").lower() == "mg/dl"
        and len(series) >= 10
        and series.median_step_min() <= DENSE_MAX_STEP_MIN
    )


def forecast_records(
    records: RecordSet,
    patient: str,
    code: str,
    horizon_min: int | None = None,
    state: TaskState | None = None,
    model_dir: str | Path | None = None,
) -> ForecastResult:
    """Forecast ``code`` for ``patient`` of a :class:`~medview.records.RecordSet`."""
    if patient not in records.patients and not any(
        o.patient_id == patient for o in records.observations
    ):
        raise ForecastRefused(f"patient {patient!r} not found in the records")
    series = series_from_observations(records.observations, code, patient)
    if len(series) == 0:
        raise ForecastRefused(f"no numeric observations of LOINC {code} for patient {patient!r}")
    return forecast_series(series, horizon_min, state=state, model_dir=model_dir)


def forecast_series(
    series: Series,
    horizon_min: int | None = None,
    state: TaskState | None = None,
    model_dir: str | Path | None = None,
    backtest_origins: int | None = FORECAST_BACKTEST_ORIGINS,
) -> ForecastResult:
    """Forecast, interval and backtest for one series (task function)."""
    state = ensure_state(state)
    what = f"LOINC {series.code} of patient {series.patient or '?'}"
    check_points(len(series), what)
    if is_dense(series):
        return _forecast_dense(
            series, horizon_min or DEFAULT_DENSE_HORIZON, state, model_dir, backtest_origins
        )
    return _forecast_sparse(series, horizon_min or DEFAULT_SPARSE_HORIZON, state)


# -- dense (CGM) -------------------------------------------------------------


def _grid_of(series: Series) -> tuple[np.ndarray, np.ndarray]:
    return to_grid(series.seconds, series.values)


def _forecast_dense(
    series: Series,
    horizon_min: int,
    state: TaskState,
    model_dir: str | Path | None,
    backtest_origins: int | None,
) -> ForecastResult:
    from medview.forecast.lstm import WINDOW, load_model

    if horizon_min > MAX_DENSE_HORIZON:
        raise ForecastRefused(
            f"the glucose LSTM forecasts at most {MAX_DENSE_HORIZON} minutes ahead "
            f"(asked for {horizon_min})"
        )
    steps = max(1, int(horizon_min) // STEP_MIN)
    state.progress(0.05, "loading the glucose LSTM")
    model = load_model(model_dir)
    grid_s, grid_v = _grid_of(series)
    last = grid_v[-WINDOW:]
    if len(last) < WINDOW or np.isnan(last).any():
        raise ForecastRefused(
            f"LOINC {series.code} of patient {series.patient or '?'}: the LSTM needs the last "
            f"{WINDOW * STEP_MIN // 60} h of CGM without gaps over 30 min"
        )
    q = model.predict(last[None, :])[0]  # (12, 3)
    real, real_note = _real_for(series)
    state.progress(0.2, "backtesting on the patient's own history")
    bt = backtest_dense(
        grid_v,
        model,
        horizons=(steps * STEP_MIN,),
        max_origins=backtest_origins,
        state=state,
        real=real,
    )
    key = str(steps * STEP_MIN)
    table = {m: r for m, r in bt["per_horizon"].get(key, {}).items() if m in bt["methods"]}
    notes = list(series.problems) + bt["notes"] + real_note
    winner = _winner(table, dense=True) or "lstm"
    values, lower, upper, how = _presented(winner, grid_v, q, steps, model, bt, real)
    notes.append(how)
    why = why_shown(winner, {m: r["rmse"] for m, r in table.items()}, key)
    if why:
        notes.insert(0, why)
    t_last = series.times[-1]
    return ForecastResult(
        patient=series.patient,
        code=series.code,
        display=series.display,
        unit=series.unit,
        method=winner,
        history_times=series.times,
        history_values=series.values,
        times=future_times(t_last, steps * STEP_MIN),
        values=values,
        lower=lower,
        upper=upper,
        backtest=table,
        backtest_what=f"{key} min ahead, rolling origin, {bt['origins']} origins" if table else "",
        winner=winner,
        dense=True,
        notes=notes,
        reference=reference_range(series.code, series.unit),
        agp=_agp_of(series),
    )


def _real_for(series: Series) -> tuple[Any, list[str]]:
    """The network trained on real CGM for this patient (None, with the reason, when
    it is not installed or the patient was in its training data)."""
    from medview.forecast.realnet import installed_real_model

    real = installed_real_model()  # a tampered card or weights: ModelError, one line
    if real is None:
        return None, ["the network trained on real CGM is not installed (medview train glucose)"]
    if real.saw(series.seconds, series.values):
        why = "this patient was in its training data (its backtest would not be honest)"
        return None, [f"{real.method} (trained on real CGM) left out: {why}"]
    return real, []


def _agp_of(series: Series) -> dict[str, Any] | None:
    """The AGP metrics of a dense glucose history (None when too short)."""
    from medview.forecast.agp import AGPRefused, agp_metrics

    try:
        return agp_metrics(series).as_json()
    except AGPRefused:
        return None


def _presented(
    method: str,
    grid_v: np.ndarray,
    q: np.ndarray,
    steps: int,
    model: GlucoseLSTM,
    bt: dict[str, Any],
    real: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The forecast of the backtest winner with its calibrated 80 % interval.

    The interval is split-conformal, calibrated on real patients of the same
    variability group (:mod:`medview.forecast.evaluation`, ``output.conformal_real``
    of the card), its level adapted to this patient's own backtest misses (adaptive
    conformal inference); without such a table the LSTM's own quantile band is used."""
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW

    last = grid_v[-WINDOW:][None, :]
    if method == "persistence":
        point = baselines.persistence(last, HORIZON_STEPS)[0]
    elif method == "linear":
        point = baselines.linear(last, HORIZON_STEPS)[0]
    elif real is not None and method == real.method:
        point = real.predict(last)[0]
    elif method.startswith("ar"):
        x, y, _ = baselines.make_windows(grid_v, WINDOW, HORIZON_STEPS)
        point = baselines.ARModel.fit(x, y).predict(last)[0]
        if method == ENSEMBLE:
            point = 0.5 * (point + q[:, 1])
        elif real is not None and method == "ar+" + real.method:
            point = ar_net(point[None, :], real.predict(last), last)[0]
    else:
        point = q[:, 1].astype(np.float64)
    calib = model.metadata.get("output", {}).get("conformal_real", {})
    methods = {**calib.get("methods", {}), **conformal_methods(real)}
    half = _adaptive_half_width(methods, method, grid_v, last, steps, bt)
    if half is None:
        lo = point - (q[:, 1] - q[:, 0])
        hi = point + (q[:, 2] - q[:, 1])
        how = "80% interval: the LSTM's quantile band around the forecast (no calibration table)"
    else:
        half_w, group, level = half
        lo, hi = point.copy(), point.copy()
        lo[:steps] -= half_w
        hi[:steps] += half_w
        n = calib.get("patients", {}).get(group, "?")
        how = (
            f"80% interval: split-conformal, calibrated on {n} real patients of the {group}-"
            f"variability group, adapted to this patient's backtest misses (level now "
            f"{level:.0%}; held-out coverage in the model card)"
        )
    return (
        point[:steps].astype(np.float64),
        lo[:steps].astype(np.float64),
        hi[:steps].astype(np.float64),
        how,
    )


def _adaptive_half_width(
    table: dict[str, Any],
    method: str,
    grid_v: np.ndarray,
    last: np.ndarray,
    steps: int,
    bt: dict[str, Any],
) -> tuple[np.ndarray, str, float] | None:
    """Half-widths (steps,) of the adaptive conformal interval, the group and the
    level at the last horizon; None without a calibration table for ``method``."""
    from medview.forecast.evaluation import (
        LEVEL,
        adaptive_conformal,
        score_quantile,
        variability_group,
        window_scale,
    )

    group = variability_group(grid_v)
    if score_quantile(table, method, group, LEVEL) is None:
        return None
    per = bt.get("per_origin")
    scale_now = float(window_scale(last)[0])
    half = np.zeros(steps)
    level = LEVEL
    for h in range(steps):

        def at(lv: float, h: int = h) -> float:
            q = score_quantile(table, method, group, lv)
            return float(q[h]) if q is not None else float("nan")

        if per is not None and method in per["abs_err"]:
            s = per["abs_err"][method][:, h] / window_scale(per["x"])
            _, _, level = adaptive_conformal(s, per["origin"], h, at)
        half[h] = scale_now * at(level)
    return half, group, level


def _winner(table: dict[str, dict[str, float]], dense: bool = False) -> str:
    """Lowest RMSE; CGM: the default method unless another one is clearly better."""
    if not table:
        return ""
    if dense:
        from medview.forecast.evaluation import pick

        return pick({m: r["rmse"] for m, r in table.items()})
    return min(table, key=lambda m: table[m]["rmse"])


def backtest_dense(
    grid_values: np.ndarray,
    model: GlucoseLSTM | None = None,
    horizons: tuple[int, ...] = (30, 60),
    max_origins: int | None = None,
    folds: int = 3,
    state: TaskState | None = None,
    model_dir: str | Path | None = None,
    real: Any = None,
) -> dict[str, Any]:
    """Rolling-origin backtest of the LSTM and the baselines on one gridded series.

    ``real``: the network trained on real CGM, added with its mean with the AR.

    The origins are split in time into an initial 40 % and ``folds`` later
    blocks; each block is forecast by every method, the AR model being refitted
    on the windows that ended before the block started (the patient's own past
    only). Returns ``{"origins", "methods", "per_horizon": {"30": {method:
    {"rmse", "mae", "n"}, "lstm_interval80": {"coverage", "mean_width_mgdl"}}},
    "notes"}``.
    """
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW, load_model

    state = ensure_state(state)
    if model is None:
        model = load_model(model_dir)
    x, y, origin = baselines.make_windows(grid_values, WINDOW, HORIZON_STEPS)
    notes: list[str] = []
    result: dict[str, Any] = {"origins": 0, "methods": [], "per_horizon": {}, "notes": notes}
    if len(x) < 20:
        notes.append("too little continuous CGM for a backtest (needs about 4 h)")
        return result
    start = int(len(x) * 0.4)
    bounds = np.linspace(start, len(x), folds + 1).astype(int)
    preds: dict[str, list[np.ndarray]] = {"lstm": [], "persistence": [], "linear": [], "ar": []}
    q_all, y_all, o_all, x_all = [], [], [], []
    use_ar = True
    for f in range(folds):
        state.check()
        lo, hi = bounds[f], bounds[f + 1]
        if hi <= lo:
            continue
        idx = np.arange(lo, hi)
        if max_origins is not None:
            per_fold = max(1, max_origins // folds)
            if len(idx) > per_fold:
                idx = idx[np.linspace(0, len(idx) - 1, per_fold).astype(int)]
        xb, yb = x[idx], y[idx]
        q = model.predict(xb)
        q_all.append(q)
        y_all.append(yb)
        o_all.append(origin[idx])
        x_all.append(xb)
        preds["lstm"].append(q[..., 1])
        preds["persistence"].append(baselines.persistence(xb, HORIZON_STEPS))
        preds["linear"].append(baselines.linear(xb, HORIZON_STEPS))
        if real is not None:
            preds.setdefault(real.method, []).append(real.predict(xb))
        # AR: only windows whose targets ended before this block's first origin
        past = origin + HORIZON_STEPS <= origin[lo]
        if past.sum() >= AR_MIN_WINDOWS and use_ar:
            ar = baselines.ARModel.fit(x[past], y[past])
            preds["ar"].append(ar.predict(xb))
        else:
            use_ar = False
        state.progress(0.2 + 0.8 * (f + 1) / folds, f"backtest block {f + 1}/{folds}")
    if not use_ar:
        preds.pop("ar")
        notes.append(f"AR baseline left out: fewer than {AR_MIN_WINDOWS} past windows to fit it on")
    q = np.concatenate(q_all)
    yy = np.concatenate(y_all)
    stacked = {m: np.concatenate(p) for m, p in preds.items()}
    if "ar" in stacked:
        stacked[ENSEMBLE] = 0.5 * (stacked["ar"] + stacked["lstm"])
        if real is not None:
            xs = np.concatenate(x_all)
            stacked["ar+" + real.method] = ar_net(stacked["ar"], stacked[real.method], xs)
    result["origins"] = int(len(yy))
    result["methods"] = list(stacked)
    # per origin, for the adaptive interval of the method shown (not printed)
    result["per_origin"] = {
        "origin": np.concatenate(o_all),
        "x": np.concatenate(x_all),
        "abs_err": {m: np.abs(p - yy) for m, p in stacked.items()},
    }
    for minutes in horizons:
        h = int(minutes) // STEP_MIN - 1
        if 0 <= h < HORIZON_STEPS:
            result["per_horizon"][str(int(minutes))] = _horizon_row(stacked, yy, q, h)
    return result


def _horizon_row(
    stacked: dict[str, np.ndarray], yy: np.ndarray, q: np.ndarray, h: int
) -> dict[str, dict]:
    """RMSE, MAE, n and Clarke zones of every method at step ``h``; LSTM band coverage."""
    row: dict[str, dict] = {}
    for m, p in stacked.items():
        err = p[:, h] - yy[:, h]
        row[m] = {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "n": int(len(err)),
            "clarke": clarke_percentages(yy[:, h], p[:, h]),
        }
    inside = (yy[:, h] >= q[:, h, 0]) & (yy[:, h] <= q[:, h, 2])
    row["lstm_interval80"] = {
        "coverage": float(inside.mean()),
        "mean_width_mgdl": float(np.mean(q[:, h, 2] - q[:, h, 0])),
    }
    return row


# -- sparse (labs, vitals) ---------------------------------------------------


def _forecast_sparse(series: Series, horizon_min: int, state: TaskState) -> ForecastResult:
    s = series.seconds
    v = series.values
    state.progress(0.1, "fitting the Gaussian process")
    step = horizon_min * 60.0 / SPARSE_POINTS
    future = s[-1] + step * np.arange(1, SPARSE_POINTS + 1)
    fc = gp_forecast(s, v, future)
    state.progress(0.4, "backtesting on the patient's own history")
    table, n_origins, coverage = backtest_sparse(s, v, state)
    notes = list(series.problems)
    # a floor for the band: +-1.28 x 2 % of the level (an assumed, not analyte-specific,
    # measurement + within-person variation), so 3 similar values do not give a hairline
    floor = Z80 * RELATIVE_FLOOR * np.abs(fc.mean)
    fc = SparseForecast(
        fc.mean, np.minimum(fc.lower, fc.mean - floor), np.maximum(fc.upper, fc.mean + floor)
    )
    if not table:
        notes.append(
            "backtest needs at least 4 points (3 to fit, 1 to check): the interval is the "
            "GP's alone and has not been checked on this patient"
        )
    else:
        # never claim more certainty than the GP showed on this patient's own history
        floor = Z80 * table["gp"]["rmse"]
        half_lo = np.maximum(fc.mean - fc.lower, floor)
        half_hi = np.maximum(fc.upper - fc.mean, floor)
        fc = SparseForecast(fc.mean, fc.mean - half_lo, fc.mean + half_hi)
        notes.append(
            f"GP 80% interval covered {coverage:.0%} of the next values in the backtest "
            f"({n_origins} origins); the band is at least +-1.28 x the backtest RMSE"
        )
    span_years = (s[-1] - s[0]) / SECONDS_PER_YEAR
    if horizon_min * 60.0 > 2 * max(span_years * SECONDS_PER_YEAR, 1.0):
        notes.append("horizon longer than twice the history: the interval is mostly prior")
    state.progress(1.0, "done")
    return ForecastResult(
        patient=series.patient,
        code=series.code,
        display=series.display,
        unit=series.unit,
        method="gp",
        history_times=series.times,
        history_values=v,
        times=[from_seconds(t, series.times[-1]) for t in future],
        values=fc.mean,
        lower=fc.lower,
        upper=fc.upper,
        backtest=table,
        backtest_what=f"next measurement, rolling origin, {n_origins} origins" if table else "",
        winner=_winner(table),
        dense=False,
        notes=notes,
        reference=reference_range(series.code, series.unit),
    )


def observation_summary(records: RecordSet, patient: str) -> list[tuple[str, str, int, str]]:
    """``(code, display, numeric count, unit)`` for one patient, most frequent first."""
    counts: dict[str, list] = {}
    for o in records.observations:
        if o.patient_id != patient or o.value is None:
            continue
        entry = counts.setdefault(o.code, [o.display, 0, o.unit])
        entry[1] += 1
    rows = [(code, d, n, u) for code, (d, n, u) in counts.items()]
    rows.sort(key=lambda r: (-r[2], r[0]))
    return rows


def parse_horizon(text: str | int | None) -> int | None:
    """Minutes from ``"30"``, ``"30m"``, ``"6h"``, ``"90d"``, ``"1y"``; None stays None."""
    if text is None:
        return None
    if isinstance(text, int):
        value = text
    else:
        s = str(text).strip().lower()
        units = {"m": 1, "h": 60, "d": 1440, "w": 10080, "y": 525960}
        mult = 1
        if s and s[-1] in units:
            mult = units[s[-1]]
            s = s[:-1]
        try:
            value = int(round(float(s) * mult))
        except ValueError:
            raise ForecastRefused(
                f"horizon {text!r} is not a number of minutes (e.g. 30, 6h, 90d)"
            ) from None
    if value <= 0:
        raise ForecastRefused(f"horizon must be positive, got {text!r}")
    return value


__all__ = [
    "ForecastRefused",
    "ForecastResult",
    "backtest_dense",
    "forecast_records",
    "forecast_series",
    "observation_summary",
    "parse_horizon",
]
