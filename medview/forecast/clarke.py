"""Clinical accuracy of glucose forecasts: Clarke error grid and time lag.

Clarke error grid (Clarke, Cox, Gonder-Frederick, Carter, Pohl 1987, Diabetes Care
10:622), reference ``x`` against estimate ``y``, both mg/dL:

* A: ``y`` within 20 % of ``x``, or both below 70 (clinically accurate);
* E: ``x`` <= 70 and ``y`` >= 180, or ``x`` >= 180 and ``y`` <= 70 (opposite
  treatment: "erroneous");
* C: 70 <= ``x`` <= 290 and ``y`` >= ``x`` + 110, or 130 <= ``x`` <= 180 and
  ``y`` <= 7/5 ``x`` - 182 (overcorrection of an acceptable level);
* D: ``x`` >= 240 and 70 <= ``y`` <= 180, or ``x`` <= 175/3 and 70 <= ``y`` <= 180, or
  175/3 <= ``x`` <= 70 and ``y`` >= 6/5 ``x`` (dangerous failure to detect);
* B: everything else (benign errors).

Zones are tested in the order A, E, C, D, B, the boundaries being those of the
paper's figure.

Time lag: the shift (in grid steps of 5 min) of the truth that best matches the
forecast (lowest mean squared difference), as used to show that a forecast is
"late": persistence at 30 min has a lag of 30 min, a perfect forecast 0.
"""

from __future__ import annotations

import numpy as np

ZONES = ("A", "B", "C", "D", "E")


def clarke_zones(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """The zone letter of every (reference, estimate) pair (mg/dL)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(estimate, dtype=np.float64)
    a = (np.abs(y - x) <= 0.2 * x) | ((x < 70) & (y < 70))
    e = ((x <= 70) & (y >= 180)) | ((x >= 180) & (y <= 70))
    c = ((x >= 70) & (x <= 290) & (y >= x + 110)) | (
        (x >= 130) & (x <= 180) & (y <= 7.0 / 5.0 * x - 182)
    )
    d = (
        ((x >= 240) & (y >= 70) & (y <= 180))
        | ((x <= 175.0 / 3.0) & (y >= 70) & (y <= 180))
        | ((x >= 175.0 / 3.0) & (x <= 70) & (y >= 6.0 / 5.0 * x))
    )
    out = np.full(x.shape, "B", dtype="<U1")
    out[d] = "D"
    out[c] = "C"
    out[e] = "E"
    out[a] = "A"
    return out


def clarke_percentages(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """``{"A": %, ..., "E": %}`` of the pairs (0 for every zone when there are none)."""
    z = clarke_zones(reference, estimate)
    n = max(z.size, 1)
    return {k: 100.0 * float((z == k).sum()) / n for k in ZONES}


def time_lag_steps(truth: np.ndarray, forecast: np.ndarray, max_shift: int) -> int | None:
    """Best shift ``k`` in 0..``max_shift`` with ``forecast[t] ~ truth[t - k]``.

    ``truth`` and ``forecast`` are aligned on the same regular grid (NaN where
    missing); returns None when no shift has 10 pairs to compare.
    """
    t = np.asarray(truth, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    best: tuple[float, int] | None = None
    for k in range(0, max_shift + 1):
        a = f[k:]
        b = t[: len(t) - k] if k else t
        ok = ~(np.isnan(a) | np.isnan(b))
        if ok.sum() < 10:
            continue
        mse = float(np.mean((a[ok] - b[ok]) ** 2))
        if best is None or mse < best[0]:
            best = (mse, k)
    return None if best is None else best[1]
