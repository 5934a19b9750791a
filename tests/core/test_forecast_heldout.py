"""The bundled glucose LSTM on simglucose patients it never saw (#009, #010).

A small fresh simulation (seed not used in training, 1.5 days per patient) keeps
this fast; the full held-out figures are in models/glucose_lstm/metadata.json.
"""

from __future__ import annotations

import numpy as np
import pytest

try:
    from medview.forecast.simdata import import_simglucose

    import_simglucose()
except Exception as exc:  # simglucose is a test/train extra
    pytest.skip(f"simglucose not usable: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    import os

    from medview.forecast.simdata import simulate_patient

    os.environ["MEDVIEW_SIM_CACHE"] = str(tmp_path_factory.mktemp("simcache"))
    try:
        return [
            simulate_patient(name, 1.5, seed=4242, use_cache=False).cgm
            for name in ("adult#009", "adolescent#010", "child#009")
        ]
    finally:
        os.environ.pop("MEDVIEW_SIM_CACHE", None)


def test_lstm_beats_persistence_and_interval_covers(heldout):
    from medview.forecast import baselines
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW, load_model

    model = load_model()
    xs, ys = zip(
        *[baselines.make_windows(s, WINDOW, HORIZON_STEPS)[:2] for s in heldout], strict=True
    )
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert len(x) > 900
    q = model.predict(x)
    h = 30 // 5 - 1
    rmse = lambda p: float(np.sqrt(np.mean((p - y[:, h]) ** 2)))  # noqa: E731
    lstm = rmse(q[:, h, 1])
    persist = rmse(baselines.persistence(x, HORIZON_STEPS)[:, h])
    linear = rmse(baselines.linear(x, HORIZON_STEPS)[:, h])
    assert lstm < persist, (lstm, persist)
    assert lstm < linear, (lstm, linear)
    coverage = float(np.mean((y[:, h] >= q[:, h, 0]) & (y[:, h] <= q[:, h, 2])))
    assert 0.70 <= coverage <= 0.90, coverage
    h60 = 60 // 5 - 1
    cov60 = float(np.mean((y[:, h60] >= q[:, h60, 0]) & (y[:, h60] <= q[:, h60, 2])))
    assert 0.70 <= cov60 <= 0.90, cov60


def test_simulation_is_reproducible_and_cached(tmp_path, monkeypatch):
    from medview.forecast.simdata import cache_dir, simulate_patient

    monkeypatch.setenv("MEDVIEW_SIM_CACHE", str(tmp_path / "cache"))
    a = simulate_patient("child#009", 0.25, seed=5)
    b = simulate_patient("child#009", 0.25, seed=5, use_cache=False)
    c = simulate_patient("child#009", 0.25, seed=6, use_cache=False)
    assert len(a.cgm) == 73  # 6 h at 5 min, both ends
    assert np.array_equal(a.cgm, b.cgm) and not np.array_equal(a.cgm, c.cgm)
    assert len(list(cache_dir().glob("*.npz"))) == 1
    assert np.all((a.cgm >= 39) & (a.cgm <= 600))  # GuardianRT range
