"""Reproducible training of the bundled glucose LSTM.

Recipe (all seeded):

1. simulate CGM with simglucose (:mod:`medview.forecast.simdata`): the 24 training
   patients (adolescent/adult/child #001-#008) for 10 days (seed 0), the same
   patients for 2 other days (seed 1, calibration/early stopping), and the 6
   held-out patients (#009, #010) for 5 days (seed 100, evaluation only);
2. train the LSTM with the pinball (quantile) loss for the 10/50/90 % quantiles
   of the change over the next 5..60 minutes;
3. pick the epoch with the lowest calibration loss, compute the per-horizon
   split-conformal correction of the 80 % interval on the calibration days;
4. evaluate once on the held-out patients against persistence, linear
   extrapolation and an AR model fitted on the same training data;
5. write ``model.safetensors`` and ``metadata.json`` (model card, metrics, sha256).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medview.forecast import baselines
from medview.forecast.lstm import (
    CARD_INPUT,
    HORIZON_STEPS,
    MODEL_NAME,
    QUANTILES,
    WINDOW,
    GlucoseLSTM,
    build_torch_model,
    features,
    load_model,
)
from medview.forecast.simdata import patient_names, simulate_patient
from medview.modelcards import weights_block, write_card
from medview.tasks import TaskState, ensure_state

TRAIN_DAYS, TRAIN_SEED = 10, 0
CALIB_DAYS, CALIB_SEED = 2, 1
VALID_DAYS, VALID_SEED = 5, 100
HIDDEN, LAYERS = 64, 2
EPOCHS = 12
BATCH = 256
LR = 2e-3
HORIZONS_REPORTED = (30, 60)


def simulate_split(
    split: str, days: float, seed: int, state: TaskState | None = None, workers: int = 1
) -> list[np.ndarray]:
    """CGM arrays (mg/dL, 5-minute grid) of every patient of ``split``."""
    state = ensure_state(state)
    names = patient_names(split)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(simulate_patient, n, days, seed) for n in names]
            out = []
            for k, fut in enumerate(futures):
                out.append(fut.result().cgm)
                state.progress((k + 1) / len(names), f"simulated {names[k]}")
            return out
    out = []
    for k, name in enumerate(names):
        state.progress(k / len(names), f"simulating {name} ({days:g} days)")
        out.append(simulate_patient(name, days, seed).cgm)
    return out


def windows_of(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Input windows (N, WINDOW) and targets (N, HORIZON_STEPS) of every series."""
    xs, ys = [], []
    for s in series:
        x, y, _ = baselines.make_windows(s, WINDOW, HORIZON_STEPS)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def pinball(pred: Any, target: Any, torch: Any) -> Any:
    """Mean pinball loss; pred (N, H, 3), target (N, H)."""
    q = torch.tensor(QUANTILES, dtype=pred.dtype)
    err = target.unsqueeze(-1) - pred
    return torch.maximum(q * err, (q - 1) * err).mean()


def conformal_correction(
    lower: np.ndarray, upper: np.ndarray, y: np.ndarray, level: float = 0.8
) -> np.ndarray:
    """Split-conformal (CQR) widening per horizon so the interval covers ``level``."""
    scores = np.maximum(lower - y, y - upper)  # (N, H)
    n = scores.shape[0]
    q = min(1.0, np.ceil((n + 1) * level) / n)
    return np.quantile(scores, q, axis=0, method="higher")


def metrics_at(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """RMSE and MAE of ``pred`` against ``y``."""
    err = pred - y
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
    }


def evaluate(model: GlucoseLSTM, ar: baselines.ARModel, valid: list[np.ndarray]) -> dict[str, Any]:
    """RMSE/MAE at 30 and 60 min for every method, and 80 % interval coverage."""
    x, y = windows_of(valid)
    q = model.predict(x)
    preds = {
        "lstm": q[..., 1],
        "persistence": baselines.persistence(x, HORIZON_STEPS),
        "linear": baselines.linear(x, HORIZON_STEPS),
        "ar": ar.predict(x),
    }
    out: dict[str, Any] = {"windows": int(len(x)), "per_horizon": {}}
    for minutes in HORIZONS_REPORTED:
        h = minutes // 5 - 1
        row: dict[str, Any] = {m: metrics_at(p[:, h], y[:, h]) for m, p in preds.items()}
        inside = (y[:, h] >= q[:, h, 0]) & (y[:, h] <= q[:, h, 2])
        row["lstm_interval80"] = {
            "coverage": float(inside.mean()),
            "mean_width_mgdl": float(np.mean(q[:, h, 2] - q[:, h, 0])),
        }
        out["per_horizon"][str(minutes)] = row
    # per held-out patient: LSTM vs persistence RMSE and interval coverage
    out["per_patient"] = {}
    for name, series in zip(patient_names("valid"), valid, strict=True):
        xp, yp, _ = baselines.make_windows(series, WINDOW, HORIZON_STEPS)
        qp = model.predict(xp)
        prow: dict[str, Any] = {}
        for minutes in HORIZONS_REPORTED:
            h = minutes // 5 - 1
            inside = (yp[:, h] >= qp[:, h, 0]) & (yp[:, h] <= qp[:, h, 2])
            prow[str(minutes)] = {
                "lstm_rmse": round(metrics_at(qp[:, h, 1], yp[:, h])["rmse"], 2),
                "persistence_rmse": round(metrics_at(xp[:, -1], yp[:, h])["rmse"], 2),
                "coverage80": round(float(inside.mean()), 3),
            }
        out["per_patient"][name] = prow
    return out


@dataclass
class _Fit:
    """What the training loop hands to the card: best weights, epoch, history."""

    state: dict[str, Any]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def _fit(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_ca: np.ndarray,
    y_ca: np.ndarray,
    seed: int,
    epochs: int,
    device: str,
    state: TaskState,
    log: Callable[[str], Any],
    t0: float,
) -> _Fit:
    """Train with the pinball loss; keep the weights of the lowest calibration loss."""
    import torch  # after the (forking) simulation pool

    threads = int(os.environ.get("MEDVIEW_TORCH_THREADS", "2"))
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    np.random.seed(seed)
    dev = torch.device(
        "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
    )

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
        f = torch.from_numpy(features(x))
        t = torch.from_numpy((y - x[:, -1:]) / 50.0)
        return f.to(dev), t.to(dev)

    f_tr, t_tr = tensors(x_tr, y_tr)
    f_ca, t_ca = tensors(x_ca, y_ca)
    net = build_torch_model(HIDDEN, LAYERS).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    gen = torch.Generator().manual_seed(seed)
    best_loss = float("inf")
    fit = _Fit(state={}, best_epoch=-1)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(f_tr), generator=gen)
        total = 0.0
        nb = 0
        for k in range(0, len(perm), BATCH):
            idx = perm[k : k + BATCH].to(dev)
            loss = pinball(net(f_tr[idx]), t_tr[idx], torch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            total += float(loss.detach())
            nb += 1
            if nb % 50 == 0:
                state.progress((epoch + k / len(perm)) / epochs, f"epoch {epoch + 1}/{epochs}")
        sched.step()
        net.eval()
        with torch.no_grad():
            cal = float(
                sum(
                    pinball(net(f_ca[i : i + 4096]), t_ca[i : i + 4096], torch)
                    * len(f_ca[i : i + 4096])
                    for i in range(0, len(f_ca), 4096)
                )
                / len(f_ca)
            )
        fit.history.append({"epoch": epoch + 1, "train_loss": total / nb, "calib_loss": cal})
        log(
            f"epoch {epoch + 1}/{epochs}: train {total / nb:.4f}  calib {cal:.4f}  "
            f"({time.monotonic() - t0:.0f} s)"
        )
        if cal < best_loss:
            best_loss = cal
            fit.state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            fit.best_epoch = epoch + 1
    return fit


def _write_weights(out_dir: Path, fit: _Fit) -> Path:
    """Save the best weights and a provisional card (the final one adds the metrics)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / "model.safetensors"
    save_file({k: v.contiguous() for k, v in fit.state.items()}, str(weights_path))
    write_card(out_dir, _card_core(weights_path, fit.state, np.zeros(HORIZON_STEPS)))
    return weights_path


def train(
    out_dir: Path,
    seed: int = 0,
    epochs: int = EPOCHS,
    device: str = "cpu",
    state: TaskState | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Run the whole recipe; returns the metadata written next to the weights.

    ``log`` receives one progress line per step (the CLI prints them; default silent).
    """
    log = log or (lambda _msg: None)
    state = ensure_state(state)
    t0 = time.monotonic()
    workers = min(2, os.cpu_count() or 1)

    log("simulating training patients (simglucose, cached after the first run)...")
    train_series = simulate_split("train", TRAIN_DAYS, TRAIN_SEED, workers=workers)
    calib_series = simulate_split("train", CALIB_DAYS, CALIB_SEED, workers=workers)
    valid_series = simulate_split("valid", VALID_DAYS, VALID_SEED, workers=workers)
    t_sim = time.monotonic() - t0
    log(f"simulation ready in {t_sim:.0f} s")

    x_tr, y_tr = windows_of(train_series)
    x_ca, y_ca = windows_of(calib_series)
    fit = _fit(x_tr, y_tr, x_ca, y_ca, seed, epochs, device, state, log, t0)
    weights_path = _write_weights(out_dir, fit)

    # conformal correction on the calibration days of the training patients
    model = load_model(out_dir)
    q = model.raw(x_ca)
    conformal = conformal_correction(q[..., 0], q[..., 2], y_ca)
    model.conformal_mgdl = conformal.astype(np.float32)

    ar = baselines.ARModel.fit(x_tr, y_tr)
    valid = evaluate(model, ar, valid_series)
    run = {
        "seed": seed,
        "epochs": epochs,
        "best_epoch": fit.best_epoch,
        "history": fit.history,
        "train_time": time.monotonic() - t0,
        "t_sim": t_sim,
        "n_train": len(x_tr),
        "n_calib": len(x_ca),
    }
    meta = model_card(run, conformal, valid, weights_path, fit.state)
    write_card(out_dir, meta)
    return meta


def _card_core(weights_path: Path, state: dict[str, Any], conformal: np.ndarray) -> dict[str, Any]:
    """The card's required blocks (one schema: :mod:`medview.modelcards`)."""
    from medview.disclaimers import FORECAST_MODEL_CARD

    return {
        "name": MODEL_NAME,
        "version": "1",
        "task": "forecast",
        "description": "Forecast CGM glucose 5 to 60 minutes ahead with an 80 % prediction "
        "interval.",
        "intended_use": "research and education: showing a glucose trajectory with its "
        "uncertainty next to a study; comparing against naive baselines",
        "limitations": [
            "trained only on simulated type 1 diabetes patients; not validated on real CGM",
            "does not see meals, insulin or exercise, so it cannot anticipate a meal",
            "expects mg/dL on a roughly 5-minute grid with at least 3 hours of history",
            "not a medical device; not for dosing or diagnostic decisions",
        ],
        "architecture": {"name": "glucose_lstm", "params": {"layers": LAYERS, "hidden": HIDDEN}},
        "input": dict(CARD_INPUT),
        "output": {
            "description": "10 %, 50 %, 90 % quantiles of glucose (mg/dL) at +5..+60 min "
            "(12 steps); the 80 % interval is widened per horizon by conformal_mgdl",
            "horizon_steps": HORIZON_STEPS,
            "step_min": 5,
            "quantiles": list(QUANTILES),
            "labels": [],
            "conformal_mgdl": [round(float(c), 4) for c in conformal],
        },
        "disclaimer": FORECAST_MODEL_CARD,
        "weights": weights_block(
            weights_path,
            state,
            framework="torch (training), numpy (inference in medview.forecast.lstm)",
        ),
    }


def model_card(
    run: dict[str, Any],
    conformal: np.ndarray,
    valid: dict[str, Any],
    weights_path: Path,
    state: dict[str, Any],
) -> dict[str, Any]:
    """The full card: required blocks, training run, data and held-out metrics."""
    core = _card_core(weights_path, state, conformal)
    seed, epochs = run["seed"], run["epochs"]
    training = {
        "command": f"medview train glucose-lstm --seed {seed} --epochs {epochs}",
        "seed": seed,
        "epochs": epochs,
        "best_epoch": run["best_epoch"],
        "loss": "pinball (quantile) loss, Adam lr 2e-3 cosine, batch 256",
        "history": run["history"],
        "train_windows": run["n_train"],
        "calibration_windows": run["n_calib"],
        "time_s": round(run["train_time"], 1),
        "simulation_time_s": round(run["t_sim"], 1),
        "torch_threads": int(os.environ.get("MEDVIEW_TORCH_THREADS", "2")),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    citations = [
        "Man CD, Micheletto F, Lv D, Breton M, Kovatchev B, Cobelli C. The UVA/PADOVA "
        "Type 1 Diabetes Simulator: New Features. J Diabetes Sci Technol. "
        "2014;8(1):26-34. doi:10.1177/1932296813514502",
        "Jinyu Xie. Simglucose v0.2.1 (2018) [Online]. https://github.com/jxx123/simglucose",
    ]
    training_data = {
        "source": "simglucose 0.2.11 (UVA/Padova T1D simulator, Python implementation)",
        "train_patients": patient_names("train"),
        "train": f"{TRAIN_DAYS} days each, seed {TRAIN_SEED}",
        "calibration": f"same patients, {CALIB_DAYS} other days, seed {CALIB_SEED} "
        "(epoch selection and conformal correction)",
        "held_out_patients": patient_names("valid"),
        "held_out": f"{VALID_DAYS} days each, seed {VALID_SEED}, used only for the metrics below",
        "scenario": "simglucose RandomScenario meals; basal-bolus therapy with +-30 % bolus "
        "error, 8 % missed and some late boluses; GuardianRT CGM noise model, 5-min samples",
        "citations": citations,
    }
    validation = {
        **valid,
        "note": "RMSE/MAE in mg/dL on the 6 held-out patients (never seen in training "
        "or calibration), all 5-minute origins; ar = direct AR(12) on changes fitted on the "
        "training windows; coverage = share of held-out values inside the 80 % interval",
    }
    order = ("name", "version", "task", "description", "intended_use", "limitations")
    return {
        **{k: core[k] for k in order},
        "architecture": core["architecture"],
        "input": core["input"],
        "output": core["output"],
        "training": training,
        "training_data": training_data,
        "validation": validation,
        "license": {
            "weights": "Apache-2.0 (weights trained by medview from simulated data)",
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": citations,
        "disclaimer": core["disclaimer"],
        "weights": core["weights"],
    }
