"""Benchmark: one-patient forecast latency and LSTM inference throughput (not run by pytest).

    python3 tests/bench/bench_forecast.py [--cgm FILE.csv] [--repeat 5]

Without --cgm a two-day synthetic CGM trace is used. Prints the median latency of
``forecast_series`` (what the panel runs per patient, backtest included) and the
windows/second of the numpy LSTM.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cgm", help="CGM CSV (default: synthetic two days)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from medview.forecast.api import forecast_series
    from medview.forecast.lstm import WINDOW, load_model
    from medview.forecast.series import Series, series_from_observations

    t0 = time.perf_counter()
    model = load_model()
    print(f"model load (sha256 + safetensors): {1000 * (time.perf_counter() - t0):.1f} ms")
    if args.cgm:
        from medview.records.cgm import CGM_LOINC, load_cgm_csv

        rs = load_cgm_csv(args.cgm)
        series = series_from_observations(rs.observations, CGM_LOINC)
    else:
        rng = np.random.default_rng(0)
        n = 576
        times = [datetime(2024, 1, 1) + timedelta(minutes=5 * k) for k in range(n)]
        values = 140 + 40 * np.sin(np.arange(n) / 30) + rng.normal(0, 4, n)
        series = Series(times, values, "99504-3", "CGM", "mg/dL", "synthetic")
    lat = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        forecast_series(series, 60)
        lat.append(time.perf_counter() - t0)
    print(
        f"forecast_series ({len(series)} readings, 60 min, backtest included): "
        f"median {1000 * statistics.median(lat):.0f} ms, max {1000 * max(lat):.0f} ms"
    )
    w = (140 + np.cumsum(np.random.default_rng(1).normal(0, 3, (4096, WINDOW)), axis=1)).astype(
        np.float32
    )
    t0 = time.perf_counter()
    model.predict(w)
    dt = time.perf_counter() - t0
    print(f"numpy LSTM: {len(w) / dt:.0f} windows/s")


if __name__ == "__main__":
    main()
