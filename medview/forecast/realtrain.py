"""Train the glucose network on REAL CGM (``medview train glucose``), reproducibly.

Recipe (seeded, 1 torch thread):

1. read every patient of the ``--cgm`` files (the iglu ``id,time,gl`` layout; the
   shipped weights: Hall 2018 and D1NAMO) and backtest each one exactly like
   ``medview forecast --evaluate`` (:func:`medview.forecast.evaluation.patient_backtest`);
2. optionally add simulated type 1 patients (simglucose, ``sim_days`` per patient of
   the 24 training patients), always in training, never judged;
3. leave-patients-out cross-validation (``folds`` groups of patients across all
   files): for each group the network is trained on the other patients and predicts
   the group's backtest origins, so every patient gets out-of-fold forecasts. From
   them: the held-out figures per file (the card's ``validation``) and the
   split-conformal interval table of the network and of its mean with the patient's
   own AR (``output.conformal_real``: scores of patients each model never saw);
4. the shipped weights: the same network trained on every patient (+ simulation);
5. ``model.safetensors`` and ``metadata.json`` (the one model-card schema of
   :mod:`medview.modelcards`, sha256, fingerprints of the training patients).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medview.forecast.attention import fit, leave_patients_out, training_windows
from medview.forecast.evaluation import (
    PatientBacktest,
    add_real,
    calibrate,
    calibration_block,
    patient_backtest,
    pooled,
    summarize,
)
from medview.forecast.lstm import CARD_INPUT, HORIZON_STEPS
from medview.forecast.realnet import MODEL_NAME, fingerprints
from medview.forecast.series import to_grid
from medview.modelcards import weights_block, write_card
from medview.tasks import TaskState, ensure_state

KIND = "attn_gru"  # the winner of the leave-patients-out comparison (docs/forecast.md)
SIM_DAYS = 2.0
FOLDS = 3
EPOCHS = 4
HIDDEN = 32

CITATIONS = {
    "Hall2018": "Hall H, Perelman D, Breschi A, Limcaoco P, Kellogg R, McLaughlin T, Snyder M. "
    "Glucotypes reveal new patterns of glucose dysregulation. PLoS Biol. "
    "2018;16(7):e2005143. doi:10.1371/journal.pbio.2005143",
    "Dubosson2018": "Dubosson F, Ranvier JE, Bromuri S, Calbimonte JP, Ruiz J, Schumacher M. "
    "The open D1NAMO dataset: a multi-modal dataset for research on non-invasive type 1 "
    "diabetes management. Informatics in Medicine Unlocked. 2018;13:92-100. "
    "doi:10.1016/j.imu.2018.09.003",
    "iglu": "Broll S, Urbanek J, Buchanan D, Chun E, Muschelli J, Punjabi NM, Gaynanova I. "
    "Interpreting blood GLUcose data with R package iglu. PLoS One. 2021;16(4):e0248560 "
    "(the curated id,time,gl copies redistributed by the iglu project)",
    "simulator": "Man CD, Micheletto F, Lv D, Breton M, Kovatchev B, Cobelli C. The "
    "UVA/PADOVA Type 1 Diabetes Simulator: New Features. J Diabetes Sci Technol. "
    "2014;8(1):26-34; Jinyu Xie, simglucose (https://github.com/jxx123/simglucose)",
    "attention": "Vaswani A et al. Attention is all you need. NeurIPS 2017 (scaled "
    "dot-product attention)",
}


def _source(path: Path) -> str:
    """``Hall2018`` of ``Hall2018_processed.csv``."""
    return path.stem.replace("_processed", "")


def load_sets(
    paths: list[Path], unit: str = "mg/dL", state: TaskState | None = None
) -> tuple[dict[str, list[Any]], dict[str, list[PatientBacktest]]]:
    """Series and backtests (bundled LSTM and baselines) of every patient, per file."""
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.lstm import load_model

    state = ensure_state(state)
    lstm = load_model()
    series: dict[str, list[Any]] = {}
    bts: dict[str, list[PatientBacktest]] = {}
    for k, path in enumerate(paths):
        state.progress(k / max(len(paths), 1), f"reading {path.name}")
        s, _, _ = load_patients(path, None, unit)
        series[_source(path)] = s
        bts[_source(path)] = [b for x in s if (b := patient_backtest(x, lstm)) is not None]
    return series, bts


def cross_validate(
    bts: dict[str, list[PatientBacktest]],
    extra: list[np.ndarray],
    kind: str,
    folds: int,
    epochs: int,
    log: Callable[[str], Any],
) -> dict[str, Any]:
    """Out-of-fold forecasts of ``kind`` for every patient; figures per file."""
    everyone = [b for group in bts.values() for b in group]
    folds = min(folds, len(everyone))
    info = leave_patients_out(everyone, extra, kinds=(kind,), folds=folds, epochs=epochs, log=log)
    for b in everyone:
        add_real(b, kind, b.preds.pop(kind))
    per_set: dict[str, Any] = {}
    for name, group in bts.items():
        patients = {}
        for b in group:
            others = [o for o in group if o is not b and o.group == b.group]
            table = calibrate(others)
            patients[b.patient] = {"per_horizon": summarize(b, table)}
        per_set[name] = {"patients": len(group), "per_horizon": _compact(pooled(patients, group))}
    return {
        "folds": folds,
        "train_s": round(info["train_s"][kind], 1),
        "windows_per_fold": info["windows"],
        "sets": per_set,
        "conformal": calibration_block(everyone, sorted(bts), (kind, "ar+" + kind)),
    }


def _compact(pool: dict[str, Any]) -> dict[str, Any]:
    """The card's view of pooled figures: RMSE, ratio, patients worse, Clarke A+B."""
    out: dict[str, Any] = {}
    for key, row in pool.items():
        out[key] = {
            m: {
                "rmse": round(r["rmse"], 3),
                "persistence_rmse_same_origins": round(r["persistence_rmse"], 3),
                "patients_worse_than_persistence": r["patients_worse_than_persistence"],
                "clarke_a_plus_b": round(r["clarke"]["A"] + r["clarke"]["B"], 2),
            }
            for m, r in row.items()
            if m != "interval80"
        }
        if row.get("interval80"):
            out[key]["interval80_selected"] = {
                k: round(v, 3) if isinstance(v, float) else v for k, v in row["interval80"].items()
            }
    return out


def train_real(
    cgm_files: list[str | Path],
    out_dir: Path,
    kind: str = KIND,
    sim_days: float = SIM_DAYS,
    folds: int = FOLDS,
    epochs: int = EPOCHS,
    seed: int = 0,
    state: TaskState | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The whole recipe; returns the card written next to the weights."""
    log = log or (lambda _msg: None)
    state = ensure_state(state)
    t0 = time.monotonic()
    paths = [Path(p) for p in cgm_files]
    series, bts = load_sets(paths, state=state)
    log(f"read {sum(len(s) for s in series.values())} patients in {time.monotonic() - t0:.0f} s")
    extra: list[np.ndarray] = []
    if sim_days > 0:
        from medview.forecast.simdata import patient_names, simulate_patient

        extra = [simulate_patient(n, sim_days, 0).cgm for n in patient_names("train")]
        log(f"{len(extra)} simulated patients x {sim_days:g} days ({time.monotonic() - t0:.0f} s)")
    state.check()
    cv = cross_validate(bts, extra, kind, folds, epochs, log) if folds >= 2 else None
    grids = [to_grid(s.seconds, s.values)[1] for group in series.values() for s in group]
    parts = [training_windows(g) for g in grids + extra]
    x = np.concatenate([p[0] for p in parts if len(p[0])]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts if len(p[1])]).astype(np.float32)
    t_fit = time.monotonic()
    net = fit(kind, x, y, epochs=epochs, seed=seed)
    log(f"final fit on {len(x)} windows: {time.monotonic() - t_fit:.0f} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    from safetensors.torch import save_file

    weights_path = out_dir / "model.safetensors"
    save_file(state_dict, str(weights_path))
    run = {
        "kind": kind,
        "seed": seed,
        "epochs": epochs,
        "sim_days": sim_days,
        "windows": int(len(x)),
        "time_s": round(time.monotonic() - t0, 1),
        "files": [p.name for p in paths],
        "patients": {k: len(v) for k, v in series.items()},
        "fingerprints": sorted(
            {
                f
                for group in series.values()
                for s in group
                for f in fingerprints(s.seconds, s.values)
            }
        ),
    }
    meta = model_card(run, cv, weights_path, state_dict)
    write_card(out_dir, meta)
    return meta


def model_card(
    run: dict[str, Any], cv: dict[str, Any] | None, weights_path: Path, state: dict[str, Any]
) -> dict[str, Any]:
    """The card (one schema, :mod:`medview.modelcards`)."""
    from medview.disclaimers import FORECAST_MODEL_CARD

    kind = run["kind"]
    sets = sorted(run["patients"])
    cites = [CITATIONS[s] for s in sets if s in CITATIONS] + [CITATIONS["iglu"]]
    if run["sim_days"] > 0:
        cites.append(CITATIONS["simulator"])
    if kind == "attn_gru":
        cites.append(CITATIONS["attention"])
    files = " ".join(f"--cgm {f}" for f in run["files"])
    output: dict[str, Any] = {
        "description": "glucose (mg/dL) at +5..+60 min (12 steps, point forecast); the 80 % "
        "interval comes from conformal_real (split-conformal on out-of-fold scores)",
        "horizon_steps": HORIZON_STEPS,
        "step_min": 5,
        "labels": [],
    }
    if cv is not None:
        output["conformal_real"] = cv["conformal"]
    arch = "GRU (1 layer) + scaled dot-product self-attention over its states (query = last)"
    return {
        "name": MODEL_NAME,
        "version": "1",
        "task": "forecast",
        "description": "Forecast CGM glucose 5 to 60 minutes ahead; a network trained on real "
        "CGM of 66 people (type 1, type 2, normoglycaemic) plus simulated type 1 patients. "
        "medview shows its mean with the patient's own AR model by default.",
        "intended_use": "research and education: a glucose trajectory with its uncertainty "
        "next to a study; never for dosing",
        "limitations": [
            "CGM only: does not see meals, insulin or exercise, so it cannot anticipate a meal",
            "trained on two small public sets (9 type 1 adults of D1NAMO, 57 people of Hall "
            "2018 with at most type 2 diabetes) and the simulator; a population or sensor "
            "unlike them may do worse; the held-out figures below come from leave-patients-"
            "out cross-validation on those same sets (and the choice of this network among "
            "four saw them too), not from a separate cohort",
            "expects mg/dL from a 3- to 5-minute CGM with the last 3 h without gaps over 30 min",
            "patients of its training data are recognised (training_data.fingerprints) and "
            "the network is left out of their backtests",
            "not a medical device; not for dosing or diagnostic decisions",
        ],
        "architecture": {
            "name": kind,
            "params": {"hidden": HIDDEN, "layers": 1},
            "description": arch if kind == "attn_gru" else "LSTM (1 layer)",
        },
        "input": dict(CARD_INPUT),
        "output": output,
        "training": {
            "command": f"medview train glucose {files} --sim-days {run['sim_days']:g} "
            f"--epochs {run['epochs']} --seed {run['seed']}",
            "seed": run["seed"],
            "epochs": run["epochs"],
            "loss": "MSE on the scaled change, Adam lr 2e-3, batch 256, every 3rd window",
            "train_windows": run["windows"],
            "time_s": run["time_s"],
            "torch_threads": 1,
            "cross_validation_train_s": cv["train_s"] if cv else None,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "training_data": {
            "sources": run["files"],
            "patients": run["patients"],
            "simulated": f"simglucose, the 24 training patients x {run['sim_days']:g} days, seed 0"
            if run["sim_days"] > 0
            else "none",
            "fingerprints": run["fingerprints"],
            "fingerprints_are": "sha256[:16] of the 12 readings from each UTC day's first "
            "reading (medview.forecast.realnet.fingerprints) of every training patient",
            "citations": cites,
        },
        "validation": _validation(cv),
        "license": {
            "weights": "Apache-2.0 (weights trained by medview); the data keep their own "
            "terms (see the citations)",
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": cites,
        "disclaimer": FORECAST_MODEL_CARD,
        "weights": weights_block(
            weights_path,
            state,
            framework="torch (training), numpy (inference in medview.forecast.realnet)",
        ),
    }


def _validation(cv: dict[str, Any] | None) -> dict[str, Any]:
    if cv is None:
        return {"note": "not cross-validated (--folds below 2): no held-out figures"}
    return {
        "method": f"leave-patients-out cross-validation, {cv['folds']} folds of patients across "
        "all files; each patient forecast by a network that never saw them; rolling-origin "
        "backtest over the last 60 % of each record (the origins of medview forecast "
        "--evaluate); 'selected' = what medview shows (the default ar+network mean, another "
        "method only when it beat the default by 5 % on the first half of the patient's "
        "origins, then persistence unless the choice beat it by 5 % there; judged on the "
        "second half); interval: leave-patients-out within the file and variability group, "
        "adaptive (ACI)",
        "windows_per_fold": cv["windows_per_fold"],
        "sets": cv["sets"],
    }


__all__ = ["KIND", "cross_validate", "load_sets", "model_card", "train_real"]
