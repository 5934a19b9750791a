"""Baseline forecasters for dense (gridded) series.

All work on a batch of input windows ``(N, W)`` (values on a regular grid, oldest
first) and return point forecasts ``(N, H)`` for the next ``H`` grid steps.

* persistence: the last value, unchanged;
* linear: least-squares line through the last ``k`` values (30 min), extrapolated;
* ar: a direct autoregression per horizon (ridge regression of the change from the
  last value on the last ``p`` changes), fitted on the given training windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def persistence(windows: np.ndarray, steps: int) -> np.ndarray:
    last = np.asarray(windows, dtype=np.float64)[:, -1]
    return np.repeat(last[:, None], steps, axis=1)


def linear(windows: np.ndarray, steps: int, k: int = 7) -> np.ndarray:
    """Extrapolate the least-squares line through the last ``k`` points."""
    y = np.asarray(windows, dtype=np.float64)[:, -k:]
    t = np.arange(k, dtype=np.float64) - (k - 1)  # last point at t = 0
    tm = t.mean()
    ym = y.mean(axis=1, keepdims=True)
    slope = ((t - tm) * (y - ym)).sum(axis=1) / ((t - tm) ** 2).sum()
    intercept = ym[:, 0] - slope * tm
    future = np.arange(1, steps + 1, dtype=np.float64)
    return intercept[:, None] + slope[:, None] * future[None, :]


@dataclass
class ARModel:
    """Direct multi-horizon AR on differences: one ridge regression per horizon."""

    p: int
    coef: np.ndarray  # (p + 1, H): bias first

    @classmethod
    def fit(
        cls, windows: np.ndarray, targets: np.ndarray, p: int = 12, alpha: float = 1.0
    ) -> ARModel:
        """``windows`` (N, W >= p+1), ``targets`` (N, H) future values."""
        x = _ar_features(windows, p)
        y = np.asarray(targets, dtype=np.float64) - np.asarray(windows, dtype=np.float64)[:, -1:]
        reg = alpha * np.eye(x.shape[1])
        reg[0, 0] = 0.0
        coef = np.linalg.solve(x.T @ x + reg, x.T @ y)
        return cls(p, coef)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        x = _ar_features(windows, self.p)
        return np.asarray(windows, dtype=np.float64)[:, -1:] + x @ self.coef


def _ar_features(windows: np.ndarray, p: int) -> np.ndarray:
    w = np.asarray(windows, dtype=np.float64)[:, -(p + 1) :]
    d = np.diff(w, axis=1)  # (N, p) changes, oldest first
    return np.concatenate([np.ones((len(w), 1)), d], axis=1)


def make_windows(
    values: np.ndarray, window: int, steps: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All complete (no NaN) input/target pairs of a gridded series.

    Returns ``(inputs (N, window), targets (N, steps), origin index (N,))``.
    """
    v = np.asarray(values, dtype=np.float64)
    n = len(v) - window - steps + 1
    if n <= 0:
        return np.zeros((0, window)), np.zeros((0, steps)), np.zeros(0, dtype=int)
    idx = np.arange(0, n, stride)
    full = np.lib.stride_tricks.sliding_window_view(v, window + steps)[idx]
    ok = ~np.isnan(full).any(axis=1)
    full = full[ok]
    return full[:, :window].copy(), full[:, window:].copy(), idx[ok] + window - 1
