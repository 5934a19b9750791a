"""The glucose network trained on real CGM (issue 15): card, training command, selection."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pytest

from medview.cli import main
from medview.forecast.evaluation import (
    PatientBacktest,
    _add_selected,
    add_real,
    default_method,
    pick,
    why_shown,
)
from medview.forecast.realnet import KINDS, fingerprints, load_real_model
from medview.modelcards import ModelError
from medview.paths import bundled_models_dir

BUNDLED = bundled_models_dir() / "glucose_real"


def _windows(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(36)
    return 140 + 40 * np.sin(t / 6.0 + rng.uniform(0, 6, (n, 1))) + rng.normal(0, 3, (n, 36))


def test_bundled_network_loads_from_its_card_and_runs_in_numpy():
    model = load_real_model(BUNDLED)
    assert model.kind in KINDS and model.metadata["task"] == "forecast"
    card = model.metadata
    assert card["weights"]["format"] == "safetensors" and len(card["weights"]["sha256"]) == 64
    # held-out (cross-validated) figures per set, data citations, honest limits
    sets = card["validation"]["sets"]
    assert {"Hall2018", "Dubosson2018"} <= set(sets)
    d30 = sets["Dubosson2018"]["per_horizon"]["30"]
    assert d30[model.method]["rmse"] < d30["persistence"]["rmse"]
    cites = " ".join(card["citations"])
    assert "PLoS Biol" in cites and "D1NAMO" in cites and "iglu" in cites
    assert any("meals" in lim for lim in card["limitations"])
    conformal = card["output"]["conformal_real"]["methods"]
    assert {model.method, "ar+" + model.method} <= set(conformal)
    x = _windows()
    pred = model.predict(x)
    assert pred.shape == (len(x), 12) and np.isfinite(pred).all()
    # within 40 mg/dL of the last reading at 5 min: a trained net, not noise
    assert np.abs(pred[:, 0] - x[:, -1]).max() < 40


def test_numpy_inference_matches_torch():
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from medview.forecast.attention import build
    from medview.forecast.lstm import features

    model = load_real_model(BUNDLED)
    net = build(model.kind)
    net.load_state_dict(load_file(str(BUNDLED / "model.safetensors")))
    x = _windows(32, seed=1)
    with torch.no_grad():
        ref = x[:, -1:] + 50.0 * net(torch.from_numpy(features(x))).numpy()
    assert np.allclose(model.predict(x), ref, atol=1e-3)


def test_changed_weights_or_card_are_refused(tmp_path):
    folder = tmp_path / "glucose_real"
    shutil.copytree(BUNDLED, folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_real_model(folder)
    shutil.copy(BUNDLED / "model.safetensors", weights)
    card = json.loads((folder / "metadata.json").read_text())
    card["output"]["horizon_steps"] = 6
    (folder / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="manifest"):
        load_real_model(folder)


def _csv(tmp_path, patients: int = 4, hours: float = 30.0):
    rows = ["id,time,gl"]
    rng = np.random.default_rng(3)
    start = datetime(2023, 5, 1, 0, 0, 30)
    n = int(hours * 12)
    for p in range(patients):
        t = np.arange(n)
        g = 130 + 45 * np.sin(t / (20.0 + 4 * p)) + np.cumsum(rng.normal(0, 1.5, n)) * 0.3
        for k in range(n):
            rows.append(f"P{p},{(start + timedelta(minutes=5 * k)):%Y-%m-%d %H:%M:%S},{g[k]:.0f}")
    f = tmp_path / "tiny_cgm.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_train_command_on_a_tiny_set_writes_a_loadable_card(tmp_path, capsys):
    f = _csv(tmp_path)
    out = tmp_path / "net"
    args = ["train", "glucose", "--cgm", str(f), "--out", str(out), "--sim-days", "0"]
    assert main(args + ["--folds", "2", "--epochs", "1"]) == 0
    said = capsys.readouterr().out
    assert "tiny_cgm held-out RMSE @30 min" in said and "wrote" in said
    model = load_real_model(out)
    card = model.metadata
    assert card["training_data"]["patients"] == {"tiny_cgm": 4}
    assert card["validation"]["sets"]["tiny_cgm"]["patients"] == 4
    assert "medview train glucose --cgm tiny_cgm.csv" in card["training"]["command"]
    # its own training patients are recognised, so a backtest leaves the network out
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.evaluation import patient_backtest
    from medview.forecast.lstm import load_model

    series, _, _ = load_patients(f, "P1")
    assert model.saw(series[0].seconds, series[0].values)
    bt = patient_backtest(series[0], load_model(), real=model)
    assert bt is not None and model.method not in bt.preds
    assert any("training data" in n for n in bt.notes)
    # without --cgm: one line, exit 2
    assert main(["train", "glucose", "--out", str(out)]) == 2
    assert "--cgm" in capsys.readouterr().err


def test_fingerprints_survive_cutting_the_record_at_a_day():
    s = np.arange(0, 3 * 86400, 300, dtype=np.float64) + 17.0
    v = 120 + 30 * np.sin(s / 5000.0)
    whole = set(fingerprints(s, v))
    assert len(whole) == 3
    later = s > 86400 + 3600  # from the second day's second hour on
    assert whole & set(fingerprints(s[later], v[later]))
    assert not whole & set(fingerprints(s, v + 1.0))  # other readings: no match


def _bt(n: int = 200, seed: int = 0) -> PatientBacktest:
    rng = np.random.default_rng(seed)
    y = 150 + rng.normal(0, 20, (n, 12))
    x = np.repeat(y[:, :1], 36, axis=1)
    bt = PatientBacktest("p", "low", np.zeros(n), x, y, np.arange(n))
    bt.preds["persistence"] = y + rng.normal(0, 12, y.shape)
    bt.preds["ar"] = y + rng.normal(0, 8, y.shape)
    return bt


def test_selection_never_uses_the_points_it_is_judged_on():
    bt = _bt()
    add_real(bt, "attn_gru", bt.y + np.random.default_rng(1).normal(0, 6, bt.y.shape))
    half = len(bt.y) // 2
    choice = list(bt.choice)
    assert np.isnan(bt.preds["selected"][:half]).all()
    assert not np.isnan(bt.preds["selected"][half:]).any()
    # change the second half completely: persistence becomes perfect there
    bt.preds["persistence"][half:] = bt.y[half:]
    bt.preds.pop("selected")
    _add_selected(bt)
    assert bt.choice == choice  # the choice saw only the first half
    assert choice[5] == "ar+attn_gru"  # the default: the AR + network mean


def test_pick_keeps_the_default_unless_another_method_is_clearly_better():
    assert default_method(["persistence", "ar", "attn_gru", "ar+attn_gru"]) == "ar+attn_gru"
    assert default_method(["persistence", "attn_gru"]) == "attn_gru"
    assert default_method(["persistence", "ar"]) is None
    assert pick({"persistence": 20.0, "ar+attn_gru": 10.2, "ar": 9.9}) == "ar+attn_gru"
    assert pick({"persistence": 20.0, "ar+attn_gru": 10.2, "ar": 9.0}) == "ar"  # 12 % better
    assert pick({"persistence": 20.0, "ar": 9.0, "lstm": 9.5}) == "ar"  # no network: lowest
    # persistence unless the choice beat it by 5 % on the patient's own backtest
    assert pick({"persistence": 10.0, "ar+attn_gru": 9.8, "ar": 9.7}) == "persistence"
    assert pick({"persistence": 9.0, "ar+attn_gru": 10.0}) == "persistence"
    # and the forecast says why when the method shown is not simply the lowest RMSE
    said = why_shown("ar+attn_gru", {"ar": 9.0, "ar+attn_gru": 9.2, "persistence": 12.0}, "30")
    assert said is not None and "lowest RMSE: ar" in said
    said = why_shown("persistence", {"ar": 9.8, "persistence": 10.0}, "60")
    assert said is not None and said.startswith("persistence wins") and "5%" in said
    assert why_shown("ar", {"ar": 9.0, "persistence": 12.0}, "30") is None


def test_bundled_network_knows_its_training_patients(shared_data):
    """Every real patient it was trained on is recognised (so its backtests stay honest)."""
    from medview.forecast.cgmdata import load_patients

    model = load_real_model(BUNDLED)
    for name, n in (("Dubosson2018", 9), ("Hall2018", 57)):
        series, _, _ = load_patients(shared_data / "cgm_real" / f"{name}_processed.csv")
        assert len(series) == n and all(model.saw(s.seconds, s.values) for s in series)
        assert not model.saw(series[0].seconds + 3600.0, series[0].values)  # shifted: unseen


@pytest.mark.slow
def test_network_trained_on_hall_only_holds_on_unseen_type1_patients(shared_data):
    """Truly held out: a network trained on Hall 2018 (no type 1 patient) and judged on
    the 9 D1NAMO type 1 patients it never saw, with medview's selection."""
    from medview.forecast.attention import fit
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.evaluation import evaluate_patients
    from medview.forecast.lstm import load_model
    from medview.forecast.realnet import RealNet
    from medview.forecast.realtrain import load_sets

    data = shared_data / "cgm_real"
    _, bts = load_sets([data / "Hall2018_processed.csv"])
    from medview.forecast.attention import training_windows

    parts = [training_windows(b.grid, stride=6) for b in bts["Hall2018"]]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts]).astype(np.float32)
    net = fit("attn_gru", x, y, epochs=2, seed=0)
    weights = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    real = RealNet("attn_gru", weights, {"output": {}})
    series, _, _ = load_patients(data / "Dubosson2018_processed.csv")
    ev = evaluate_patients(series, load_model(), real=real)
    pooled = ev["pooled"]
    sel30, sel60 = pooled["30"]["selected"], pooled["60"]["selected"]
    assert sel30["rmse"] <= 0.88 * sel30["persistence_rmse"]
    assert sel60["rmse"] < sel60["persistence_rmse"]
    assert sel30["patients_worse_than_persistence"] <= 1
    assert pooled["30"]["selected"]["clarke"]["A"] + pooled["30"]["selected"]["clarke"]["B"] >= 99
    assert all(
        "ar+attn_gru" in p["per_horizon"]["30"] or "ar" not in p["per_horizon"]["30"]
        for p in ev["patients"].values()
    )
