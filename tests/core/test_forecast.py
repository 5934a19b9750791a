"""Forecasting core: series handling, baselines, sparse GP, refusals, the bundled LSTM."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

from medview.forecast import baselines
from medview.forecast.api import forecast_records, forecast_series, parse_horizon
from medview.forecast.series import Series, series_from_observations, to_grid
from medview.forecast.sparse import ForecastRefused, backtest_sparse, gp_forecast
from medview.records.model import Observation, Patient, RecordSet

T0 = datetime(2020, 1, 1)


def obs(pid, days, value, code="4548-4", unit="%", flag=""):
    return Observation(pid, T0 + timedelta(days=days), code, "HbA1c", value, unit, unit_flag=flag)


def records_with(values, code="4548-4", unit="%", step_days=180):
    rs = RecordSet()
    rs.patients["p"] = Patient("p", "Jane Doe")
    rs.observations = [obs("p", i * step_days, v, code, unit) for i, v in enumerate(values)]
    return rs


# -- series helpers --------------------------------------------------------------


def test_series_from_observations_drops_flagged_and_minority_units():
    o = [
        obs("p", 0, 6.0),
        obs("p", 100, 6.2),
        obs("p", 200, 51.0, unit="mmol/mol"),
        obs("p", 300, 7.0, unit="?", flag="unit 'x' not convertible"),
        obs("p", 400, None),
        obs("q", 50, 9.9),
        obs("p", 100, 6.3),  # duplicate time: the first one is kept
    ]
    s = series_from_observations(o, "4548-4", "p")
    assert s.values.tolist() == [6.0, 6.2]
    assert s.unit == "%"
    assert any("not convertible" in p for p in s.problems)
    assert any("mixed units" in p for p in s.problems)


def test_to_grid_interpolates_short_gaps_only():
    sec = np.array([0, 300, 600, 1500, 4800, 5100], dtype=float)  # 15 min gap, then 55 min
    val = np.array([100, 110, 120, 150, 200, 210], dtype=float)
    grid, v = to_grid(sec, val)
    assert grid[-1] == 5100 and np.allclose(np.diff(grid), 300)
    by_t = dict(zip(grid.tolist(), v.tolist(), strict=True))
    assert by_t[900] == pytest.approx(130.0)  # inside the 15-min gap: interpolated
    assert np.isnan(by_t[3000])  # inside the 55-min gap: missing
    assert by_t[4800] == 200.0


def test_parse_horizon():
    assert parse_horizon("30") == 30
    assert parse_horizon("6h") == 360
    assert parse_horizon("90d") == 90 * 1440
    assert parse_horizon(None) is None
    with pytest.raises(ForecastRefused):
        parse_horizon("soon")
    with pytest.raises(ForecastRefused):
        parse_horizon("-5")


# -- baselines ------------------------------------------------------------------


def test_persistence_and_linear_on_a_line():
    w = np.array([[100.0 + 2 * k for k in range(36)]])
    assert baselines.persistence(w, 3).tolist() == [[170.0, 170.0, 170.0]]
    assert np.allclose(baselines.linear(w, 3), [[172.0, 174.0, 176.0]])


def test_ar_recovers_a_known_process():
    rng = np.random.default_rng(0)
    n = 3000
    d = np.zeros(n)
    for t in range(1, n):  # AR(1) on the changes
        d[t] = 0.8 * d[t - 1] + rng.normal(0, 1)
    y = 100 + np.cumsum(d)
    x, tgt, _ = baselines.make_windows(y, 36, 12)
    ar = baselines.ARModel.fit(x[:2000], tgt[:2000])
    pred = ar.predict(x[2000:])
    rmse_ar = np.sqrt(np.mean((pred[:, 0] - tgt[2000:, 0]) ** 2))
    rmse_p = np.sqrt(np.mean((x[2000:, -1] - tgt[2000:, 0]) ** 2))
    assert rmse_ar == pytest.approx(1.0, abs=0.1)  # the innovation's std
    assert rmse_ar < 0.8 * rmse_p
    assert ar.coef[-1, 0] == pytest.approx(0.8, abs=0.05)  # last change -> next change


def test_make_windows_skips_nan():
    v = np.arange(60, dtype=float)
    v[30] = np.nan
    x, y, origin = baselines.make_windows(v, 10, 5)
    assert not np.isnan(x).any() and not np.isnan(y).any()
    assert all(o + 5 < 30 or o - 9 > 30 for o in origin)


# -- sparse ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_points_refused(n):
    rs = records_with([6.1, 6.4][:n] if n else [])
    if n == 0:
        with pytest.raises(ForecastRefused, match="no numeric observations"):
            forecast_records(rs, "p", "4548-4")
        return
    with pytest.raises(ForecastRefused, match="at least 3 are needed"):
        forecast_records(rs, "p", "4548-4")


def test_unknown_patient_refused():
    with pytest.raises(ForecastRefused, match="not found"):
        forecast_records(records_with([6, 7, 8]), "nobody", "4548-4")


def test_gp_on_three_points_gives_interval_and_no_backtest():
    r = forecast_records(records_with([6.0, 6.3, 6.6]), "p", "4548-4", 365 * 1440)
    assert r.method == "gp" and not r.dense
    assert len(r.times) == 12 and r.times[-1] == T0 + timedelta(days=360 + 365)
    assert np.all(r.lower < r.values) and np.all(r.values < r.upper)
    assert r.backtest == {} and any("at least 4" in n for n in r.notes)
    # the band never collapses below +-1.28 x 2 % of the level
    assert np.all(r.upper - r.values >= 1.28 * 0.02 * r.values - 1e-9)
    assert r.reference == (4.0, 5.7, "HbA1c below 5.7 %")


def test_sparse_backtest_picks_linear_on_a_trend():
    sec = np.arange(10) * 180 * 86400.0
    val = 6.0 + 0.1 * np.arange(10)
    table, origins, coverage = backtest_sparse(sec, val)
    assert origins == 7 and 0.0 <= coverage <= 1.0
    assert table["linear"]["rmse"] < 1e-6
    assert table["persistence"]["rmse"] == pytest.approx(0.1)
    assert min(table, key=lambda m: table[m]["rmse"]) == "linear"


def test_gp_interval_covers_noisy_trend():
    rng = np.random.default_rng(1)
    sec = np.sort(rng.uniform(0, 5, 25)) * 365.25 * 86400
    val = 120 + 2.0 * sec / (365.25 * 86400) + rng.normal(0, 4, 25)
    fut = sec[-1] + np.array([30, 90]) * 86400.0
    fc = gp_forecast(sec, val, fut)
    truth = 120 + 2.0 * fut / (365.25 * 86400)
    assert np.all(fc.lower < truth) and np.all(truth < fc.upper)
    assert np.all(fc.upper - fc.lower < 25)  # informative, not a blanket band


def test_constant_history():
    r = forecast_series(
        Series(
            [T0 + timedelta(days=d) for d in (0, 30, 60)],
            np.array([5.0, 5.0, 5.0]),
            "x",
            "",
            "u",
            "p",
        )
    )
    assert np.allclose(r.values, 5.0)


# -- the bundled LSTM ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    from medview.forecast.lstm import load_model

    return load_model()


def test_model_card_complete(model):
    from medview.forecast.lstm import default_model_dir
    from medview.modelcards import sha256_file

    meta = json.loads((default_model_dir() / "metadata.json").read_text())
    assert meta["weights"]["sha256"] == sha256_file(default_model_dir() / "model.safetensors")
    assert meta["task"] == "forecast"
    for key in (
        "description",
        "input",
        "output",
        "training_data",
        "validation",
        "intended_use",
        "limitations",
    ):
        assert meta[key]
    assert meta["validation"]["per_horizon"]["30"]["lstm"]["rmse"] > 0
    cites = " ".join(meta["training_data"]["citations"])
    assert "Man" in cites and "Xie" in cites
    assert meta["training_data"]["held_out_patients"] == [
        f"{g}#{n:03d}" for g in ("adolescent", "adult", "child") for n in (9, 10)
    ]
    assert meta["training"]["time_s"] < 30 * 60


def test_sha256_mismatch_refused(tmp_path):
    from medview.errors import MedviewError
    from medview.forecast.lstm import default_model_dir, load_model
    from medview.modelcards import ModelError

    assert issubclass(ModelError, MedviewError)  # one-line "path: reason" errors
    folder = tmp_path / "m"
    shutil.copytree(default_model_dir(), folder)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["weights"]["sha256"] = "0" * 64
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="sha256"):
        load_model(folder)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent")


def test_numpy_inference_matches_torch(model):
    torch = pytest.importorskip("torch")
    from medview.forecast.lstm import WINDOW, build_torch_model, features

    arch = model.metadata["architecture"]["params"]
    net = build_torch_model(arch["hidden"], arch["layers"])
    net.load_state_dict({k: torch.from_numpy(v) for k, v in model.weights.items()})
    net.eval()
    rng = np.random.default_rng(0)
    w = (140 + np.cumsum(rng.normal(0, 3, (5, WINDOW)), axis=1)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(features(w))).numpy()
    ours = (model.raw(w) - w[:, -1, None, None]) / 50.0
    assert np.allclose(ours, ref, atol=1e-4)


def test_cgm_forecast_shape_and_speed(model):

    rng = np.random.default_rng(3)
    n = 288 * 2
    t = [T0 + timedelta(minutes=5 * k) for k in range(n)]
    v = 140 + 40 * np.sin(np.arange(n) / 30.0) + rng.normal(0, 3, n)
    s = Series(t, v, "99504-3", "CGM", "mg/dL", "sim")
    r = forecast_series(s, 30)
    assert r.method == r.winner and r.dense  # the backtest winner is what is shown
    assert [x.minute for x in r.times] == [
        (t[-1] + timedelta(minutes=5 * k)).minute for k in range(1, 7)
    ]
    assert np.all(r.lower <= r.values) and np.all(r.values <= r.upper)
    # every baseline, the simulator LSTM and the network trained on real CGM (+ AR mean)
    assert set(r.backtest) == {
        "lstm",
        "persistence",
        "linear",
        "ar",
        "ar+lstm",
        "attn_gru",
        "ar+attn_gru",
    }
    assert r.winner in r.backtest


def test_lstm_needs_three_hours():
    t = [T0 + timedelta(minutes=5 * k) for k in range(20)]
    s = Series(t, np.full(20, 120.0), "99504-3", "CGM", "mg/dL", "sim")
    with pytest.raises(ForecastRefused, match="3 h"):
        forecast_series(s, 30)
    t = [T0 + timedelta(minutes=5 * k) for k in range(60)]
    with pytest.raises(ForecastRefused, match="at most 60"):
        forecast_series(Series(t, np.full(60, 120.0), "99504-3", "CGM", "mg/dL", "sim"), 90)


def _synthetic_split(split, days, seed, state=None, workers=1):
    """Stand-in for the simglucose simulation (minutes instead of seconds of CPU)."""
    rng = np.random.default_rng(seed)
    n = 2 if split == "train" else 6  # train() pairs the held-out series with 6 names
    t = np.arange(int(days * 288 / 10))
    return [
        (140 + 40 * np.sin(t / 30 + k) + np.cumsum(rng.normal(0, 2, len(t)))).astype(np.float32)
        for k in range(n)
    ]


def test_training_writes_a_loadable_one_schema_card_reproducibly(tmp_path, monkeypatch):
    """1 epoch on synthetic CGM, twice with seed 0: same weights, a card that validates."""
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from medview.forecast import train
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW, load_model
    from medview.modelcards import read_card, sha256_file

    monkeypatch.setattr(train, "simulate_split", _synthetic_split)
    monkeypatch.setenv("MEDVIEW_TORCH_THREADS", "1")
    lines: list[str] = []
    metas = [train.train(tmp_path / f"r{k}", seed=0, epochs=1, log=lines.append) for k in (0, 1)]
    shas = [sha256_file(tmp_path / f"r{k}" / "model.safetensors") for k in (0, 1)]
    assert shas[0] == shas[1] == metas[0]["weights"]["sha256"]
    assert any(line.startswith("epoch 1/1: train ") for line in lines)
    card = read_card(tmp_path / "r0")
    assert card.task == "forecast" and card.verify() == shas[0]
    assert metas[0]["output"]["conformal_mgdl"] == metas[1]["output"]["conformal_mgdl"]
    model = load_model(tmp_path / "r0")
    q = model.predict(np.full((1, WINDOW), 150.0, np.float32))
    assert q.shape == (1, HORIZON_STEPS, 3) and np.isfinite(q).all()
    assert metas[0]["validation"]["per_horizon"]["30"]["lstm"]["rmse"] > 0
