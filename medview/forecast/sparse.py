"""Forecasts for sparse, irregular labs and vitals (HbA1c, BP, BMI, creatinine...).

Primary method: a Gaussian process (scikit-learn) on time in years, with a
constant x RBF kernel (length scale 3 months to 20 years) plus a white-noise
kernel, ``normalize_y``; its predictive distribution (noise included) gives the
80 % interval. Far from the data it reverts to the patient's mean with a wide
interval, which is the honest answer for a handful of yearly values.

Baselines: persistence (last value), mean of the history, linear trend (least
squares). The rolling-origin backtest refits every method on the first ``k``
points and predicts point ``k + 1`` (the next visit), for every ``k >= 3``.

Fewer than 3 points: :class:`ForecastRefused` - a trend and its uncertainty
cannot be estimated from one or two values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from medview.errors import MedviewError
from medview.tasks import TaskState

MIN_POINTS = 3
Z80 = 1.2815515655446004  # 90 % quantile of the standard normal
SECONDS_PER_YEAR = 365.25 * 86400.0
MAX_BACKTEST_ORIGINS = 40


class ForecastRefused(MedviewError):
    """The data cannot support a forecast; ``reason`` says why."""


def check_points(n: int, what: str = "series") -> None:
    if n < MIN_POINTS:
        raise ForecastRefused(
            f"only {n} value{'s' if n != 1 else ''} of {what}; at least {MIN_POINTS} are "
            "needed to forecast (a trend and its uncertainty cannot be estimated from fewer)"
        )


@dataclass
class SparseForecast:
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def gp_forecast(
    seconds: np.ndarray, values: np.ndarray, future_seconds: np.ndarray
) -> SparseForecast:
    """Fit the GP on the history and predict at ``future_seconds`` (80 % interval)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    from medview.forecast.lstm import _single_thread_blas

    check_points(len(values))
    t0 = seconds[-1]
    x = ((np.asarray(seconds) - t0) / SECONDS_PER_YEAR)[:, None]
    xf = ((np.asarray(future_seconds) - t0) / SECONDS_PER_YEAR)[:, None]
    y = np.asarray(values, dtype=np.float64)
    scale = float(np.std(y))
    if scale <= 1e-9 * max(1.0, abs(float(np.mean(y)))):
        # constant history: no variation to learn from; keep the value, small band
        band = max(abs(float(y[-1])) * 0.02, 1e-6)
        const = np.full(len(xf), y[-1])
        return SparseForecast(const, const - band, const + band)
    # noise floor 0.05 (variance, in units of the history's variance): a handful of
    # points must not be interpolated exactly, or the interval collapses
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(1.0, (0.25, 20.0)) + WhiteKernel(
        0.2, (0.05, 2.0)
    )
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=0)
    # hyperparameters at a bound are expected with a handful of points; a global,
    # narrow filter (catch_warnings is not thread-safe with parallel workers)
    warnings.filterwarnings(
        "ignore", category=ConvergenceWarning, module=r"sklearn\.gaussian_process"
    )
    with _single_thread_blas():
        gp.fit(x, y)
        mean, std = gp.predict(xf, return_std=True)
    return SparseForecast(mean, mean - Z80 * std, mean + Z80 * std)


def _linear(seconds: np.ndarray, values: np.ndarray, future: np.ndarray) -> np.ndarray:
    t = (seconds - seconds[-1]) / SECONDS_PER_YEAR
    tf = (future - seconds[-1]) / SECONDS_PER_YEAR
    slope, intercept = np.polyfit(t, values, 1)
    return intercept + slope * tf


SPARSE_METHODS = {
    "gp": lambda s, v, f: gp_forecast(s, v, f).mean,
    "persistence": lambda s, v, f: np.full(len(f), v[-1], dtype=np.float64),
    "mean": lambda s, v, f: np.full(len(f), float(np.mean(v))),
    "linear": _linear,
}


def backtest_sparse(
    seconds: np.ndarray, values: np.ndarray, state: TaskState | None = None
) -> tuple[dict[str, dict[str, float]], int, float | None]:
    """One-step-ahead rolling-origin backtest.

    Returns ``({method: {rmse, mae}}, origins, coverage)`` where coverage is the
    share of next values inside the GP's 80 % interval (None without origins).
    """
    n = len(values)
    origins = list(range(MIN_POINTS, n))[-MAX_BACKTEST_ORIGINS:]
    if not origins:
        return {}, 0, None
    errors: dict[str, list[float]] = {m: [] for m in SPARSE_METHODS}
    inside = []
    for k in origins:
        if state is not None:
            state.check()  # cancel between refits
        s, v = seconds[:k], values[:k]
        f = seconds[k : k + 1]
        gp = gp_forecast(s, v, f)
        inside.append(bool(gp.lower[0] <= values[k] <= gp.upper[0]))
        for name, fn in SPARSE_METHODS.items():
            pred = gp.mean if name == "gp" else fn(s, v, f)
            errors[name].append(float(pred[0] - values[k]))
    out = {}
    for name, errs in errors.items():
        e = np.asarray(errs)
        out[name] = {"rmse": float(np.sqrt(np.mean(e**2))), "mae": float(np.mean(np.abs(e)))}
    return out, len(origins), float(np.mean(inside))
