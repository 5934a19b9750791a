"""Clarke error grid, time lag and the leave-patients-out conformal intervals (issue 15)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from medview.forecast.clarke import clarke_percentages, clarke_zones, time_lag_steps
from medview.forecast.series import Series


@pytest.mark.parametrize(
    ("ref", "est", "zone"),
    [
        (100, 115, "A"),  # within 20 %
        (60, 40, "A"),  # both hypoglycaemic
        (100, 125, "B"),  # 25 % off, benign
        (300, 220, "B"),
        (100, 215, "C"),  # y >= x + 110: overcorrection
        (150, 25, "C"),  # y <= 7/5 x - 182
        (300, 150, "D"),  # x >= 240, 70 <= y <= 180: failure to detect
        (50, 120, "D"),  # x < 70 read as normal
        (60, 200, "E"),  # hypo read as hyper
        (250, 60, "E"),  # hyper read as hypo
    ],
)
def test_clarke_zone_boundaries(ref, est, zone):
    assert clarke_zones(np.array([ref]), np.array([est]))[0] == zone


def test_clarke_percentages_add_up():
    rng = np.random.default_rng(0)
    x = rng.uniform(40, 400, 1000)
    z = clarke_percentages(x, x * rng.normal(1, 0.3, 1000))
    assert sum(z.values()) == pytest.approx(100)
    assert clarke_percentages(x, x)["A"] == 100.0


def test_time_lag_of_persistence_is_the_horizon():
    t = np.arange(500, dtype=float)
    truth = 150 + 50 * np.sin(t / 20)
    late = np.full_like(truth, np.nan)
    late[6:] = truth[:-6]  # a forecast that is the truth 6 steps (30 min) late
    assert time_lag_steps(truth, late, 12) == 6
    assert time_lag_steps(truth, truth, 12) == 0
    assert time_lag_steps(truth[:5], truth[:5], 2) is None


def _patient(pid, seed, sd, days=2.0):
    rng = np.random.default_rng(seed)
    n = int(days * 288)
    v = 140 + np.cumsum(rng.normal(0, sd, n))
    v = np.clip(v - np.linspace(0, v[-1] - 140, n), 45, 390)
    t = [datetime(2024, 1, 1) + timedelta(minutes=5 * k) for k in range(n)]
    return Series(t, v, "99504-3", "CGM", "mg/dL", pid)


def test_leave_patients_out_intervals_cover_about_80_percent():
    from medview.forecast.evaluation import evaluate_patients
    from medview.forecast.lstm import load_model

    patients = [_patient(f"p{k}", k, 2.0 + 0.3 * (k % 3)) for k in range(8)]
    ev = evaluate_patients(patients, load_model())
    assert sorted(ev["patients"]) == [f"p{k}" for k in range(8)] and not ev["skipped"]
    for h in ("30", "60"):
        cov = ev["pooled"][h]["interval80"]
        assert 0.72 <= cov["coverage"] <= 0.88, cov
        assert cov["patients"] == 8
    # every method is judged with persistence on the same origins
    row = ev["patients"]["p0"]["per_horizon"]["30"]
    assert row["persistence"]["persistence_rmse"] == pytest.approx(row["persistence"]["rmse"])
    assert row["selected"]["n"] < row["lstm"]["n"]  # selected: second half only
    assert set(row["lstm"]["clarke"]) == set("ABCDE")


def test_adaptive_conformal_widens_for_a_patient_who_keeps_missing():
    """Calibrated on others (scores ~|N(0,1)|), a patient with twice the error gets
    ~48 % coverage from the static quantile; the adaptive level brings it back."""
    from medview.forecast.evaluation import adaptive_conformal

    rng = np.random.default_rng(5)
    calib = np.abs(rng.normal(0, 1, 5000))
    s = np.abs(rng.normal(0, 2, 3000))
    origin = np.arange(3000)

    def at(level: float) -> float:
        return float(np.quantile(calib, min(max(level, 0.5), 0.999)))

    static = float(np.mean(s <= at(0.8)))
    inside, used, level = adaptive_conformal(s, origin, 5, at, gamma=0.01)
    assert static < 0.55
    assert 0.72 <= inside[1000:].mean() <= 0.88  # after the warm-up
    assert level > 0.95 and used[-1] > at(0.8)
    # exchangeable scores: the level stays near 80 %
    inside, _, level = adaptive_conformal(np.abs(rng.normal(0, 1, 3000)), origin, 5, at)
    assert 0.77 <= inside.mean() <= 0.83 and 0.6 <= level <= 0.95
