"""Reproducible training of the bundled models (``medview train classifier|autoencoder``).

* data: PneumoniaMNIST (MedMNIST v2) ``train`` split to fit, official ``val`` split
  for model selection, temperature scaling and thresholds. The official test split is
  not used (it is not in ``../shared``).
* fixed seeds, deterministic torch algorithms, a fixed thread count
  (``MEDVIEW_TRAIN_THREADS``, default 2), CPU by default.
* every image goes through :func:`medview.ai.preprocess.prepare_batch`, the same
  function inference uses.
* output: ``models/<name>/model.safetensors`` + ``metadata.json`` (the model card
  with val metrics and the weights' sha256) + ``README.md``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai import metrics as M
from medview.ai.preprocess import InputSpec, prepare_batch

CLASSIFIER_NAME = "pneumonia_cnn"
AUTOENCODER_NAME = "pneumonia_ae"
VERSION = "1.0.0"

CITATIONS = [
    "Jiancheng Yang, Rui Shi, Donglai Wei, Zequan Liu, Lin Zhao, Bilian Ke, Hanspeter "
    "Pfister, Bingbing Ni. MedMNIST v2 - A large-scale lightweight benchmark for 2D and "
    "3D biomedical image classification. Scientific Data 10, 41 (2023). "
    "doi:10.1038/s41597-022-01721-8",
    "Daniel S. Kermany, Michael Goldbaum, Wenjia Cai, et al. Identifying Medical "
    "Diagnoses and Treatable Diseases by Image-Based Deep Learning. Cell 172(5), "
    "1122-1131.e9 (2018). doi:10.1016/j.cell.2018.02.010",
]
DATA_LICENSE = "CC BY 4.0 (PneumoniaMNIST / MedMNIST v2, derived from Kermany et al. 2018)"
DISCLAIMER = "Research use, not a diagnostic device. AI output, not for diagnostic use."
LIMITS = [
    "Trained on 28x28 pixel paediatric (age 1-5) chest X-rays from one centre "
    "(Guangzhou Women and Children's Medical Center, via Kermany et al. 2018 and "
    "PneumoniaMNIST); any other image is shrunk to 28x28, losing almost all detail.",
    "Not validated on adults, other hospitals, other projections (lateral), CT or any "
    "modality other than frontal chest radiographs; outputs on such images are meaningless.",
    "Validation metrics come from the official 524-image val split, which was also used "
    "for model selection and calibration (classifier: epoch and temperature; autoencoder: "
    "score method and threshold), so they are optimistic; "
    "the official test split (a different patient population mix) is evaluated separately "
    "and is expected to be lower.",
    "Research use, not a diagnostic device; it must not be used for clinical decisions.",
]


# structured intended use (checked on every result by medview.ai.scope.check_scope)
INTENDED_USE_SCOPE = {
    "modalities": ["CR", "DX"],
    "body_parts": ["CHEST"],
    "projections": ["PA", "AP"],
    "age_years": {"min": 1, "max": 5},
    "note": "Frontal chest radiographs of children aged 1-5 years (the training population). "
    "A result is out of scope when a known DICOM value (Modality, BodyPartExamined, "
    "ViewPosition, PatientAge or birth date vs study date) is outside these; values that "
    "are missing (e.g. PNG/JPEG) are reported as unknown and the result is shown as in "
    "scope but unverified.",
}
AE_EXPLAIN = {
    "method": "anomaly-map",
    "map_label": "Anomaly map: per-pixel reconstruction error vs normal paediatric chest X-rays",
    "not_validated_for": "locating pneumonia or any specific finding, adults, other "
    "projections or modalities",
}


def reference_card(name: str) -> dict[str, Any] | None:
    """The bundled model card of ``name`` (the model a new training run is compared to)."""
    from medview.paths import bundled_models_dir

    path = bundled_models_dir() / name / "metadata.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def version_retrained(meta: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any]:
    """Give a newly written card its own version when its weights differ from the bundled.

    A run that reproduces the bundled weights bit for bit keeps the bundled version.
    Any other weights get ``<bundled version>-retrained-<sha256[:8]>`` and a
    ``retrained_from`` block (name, version, sha256 of the bundled model), so results
    cached under model name + version can tell the two apart.
    """
    meta = dict(meta)
    sha = str(meta["weights"]["sha256"])
    if reference is None:
        return meta
    ref_sha = str(reference.get("weights", {}).get("sha256", ""))
    ref_version = str(reference.get("version", VERSION))
    if sha == ref_sha:
        meta["version"] = ref_version
        meta.pop("retrained_from", None)
        return meta
    base = ref_version.split("-retrained-")[0]
    meta["version"] = f"{base}-retrained-{sha[:8]}"
    meta["retrained_from"] = {
        "name": str(reference.get("name", meta["name"])),
        "version": ref_version,
        "sha256": ref_sha,
    }
    return meta


def _write_versioned(out: str | Path, module: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Write weights + card; re-version the card when the weights are not the bundled ones."""
    from medview.ai.registry import METADATA_FILE, write_model

    reference = reference_card(str(meta["name"]))  # read before ``out`` may overwrite it
    info = write_model(out, module, meta)
    final = version_retrained(info.meta, reference)
    if final != info.meta:  # the sha256 covers the weights only: the card may change
        (Path(out) / METADATA_FILE).write_text(json.dumps(final, indent=2) + "\n", "utf-8")
    write_card_readme(out)
    return final


# -- data ------------------------------------------------------------------------


def default_data_path() -> Path:
    """``$MEDVIEW_SHARED_DATA/pneumoniamnist/...`` or ``<repo>/../shared/data/...``."""
    from medview.paths import bundle_root

    base = os.environ.get("MEDVIEW_SHARED_DATA")
    root = Path(base) if base else bundle_root().parent / "shared" / "data"
    return root / "pneumoniamnist" / "pneumoniamnist_train_val.npz"


def load_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int labels (N,) of ``split`` (train or val)."""
    from medview.errors import MedviewError

    p = Path(path)
    if not p.is_file():
        raise MedviewError("training data not found (set --data or MEDVIEW_SHARED_DATA)", p)
    with np.load(p) as d:
        key = f"{split}_images"
        if key not in d:
            raise MedviewError(f"no {key!r} array in the npz", p)
        return d[key].astype(np.uint8), d[f"{split}_labels"].reshape(-1).astype(np.int64)


# -- torch helpers ---------------------------------------------------------------


def _setup_torch(seed: int) -> Any:
    import torch

    threads = int(os.environ.get("MEDVIEW_TRAIN_THREADS", "2"))
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


def augment(x: Any, gen: Any, spec: InputSpec, strength: float = 1.0) -> Any:
    """Random affine (rotation, scale, shift) + brightness/contrast, batched, seeded."""
    import math

    import torch
    from torch.nn import functional as F

    n = x.shape[0]

    def u(lo: float, hi: float) -> Any:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    ang = u(-10, 10) * strength * math.pi / 180.0
    scale = 1.0 + u(-0.10, 0.12) * strength
    tx, ty = u(-0.08, 0.08) * strength, u(-0.08, 0.08) * strength
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
    ).float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # intensities back to [0, 1] for photometric jitter, then renormalise
    raw = x * spec.std + spec.mean
    raw = F.grid_sample(raw, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = u(0.8, 1.2).view(n, 1, 1, 1)
    b = u(-0.08, 0.08).view(n, 1, 1, 1) * strength
    m = raw.mean(dim=(2, 3), keepdim=True)
    raw = ((raw - m) * c + m + b).clamp(0.0, 1.0)
    return (raw - spec.mean) / spec.std


def _predict_logits(model: Any, x: Any, batch: int = 256) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch]).reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _ema_update(ema: Any, model: Any, decay: float) -> None:
    import torch

    with torch.no_grad():
        for e, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
            else:
                e.copy_(p)


def _env() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- classifier --------------------------------------------------------------------

CLASSIFIER_ARCH = {
    "name": "small_resnet",
    "params": {
        "in_channels": 1,
        "num_outputs": 1,
        "widths": [32, 64, 128],
        "blocks": [1, 1, 1],
        "stem_stride": 1,
        "dropout": 0.2,
    },
}


def train_classifier(
    data: str | Path,
    out: str | Path,
    seed: int = 0,
    epochs: int = 16,
    device: str = "cpu",
    command: str = "",
    state: Any = None,
) -> dict[str, Any]:
    """Fit the pneumonia CNN on train, select/calibrate/threshold on val, write the model."""
    torch = _setup_torch(seed)
    from torch.nn import functional as F

    from medview.ai import nets
    from medview.ai.devices import resolve_device

    dev = resolve_device(device)
    spec = InputSpec(channels=1, height=28, width=28, mean=0.5, std=0.25, polarity="chest-auto")
    xtr_u8, ytr = load_split(data, "train")
    xva_u8, yva = load_split(data, "val")
    xtr = torch.from_numpy(prepare_batch(xtr_u8, spec)).to(dev)
    xva = torch.from_numpy(prepare_batch(xva_u8, spec)).to(dev)
    ytr_t = torch.from_numpy(ytr.astype(np.float32)).to(dev)

    model = nets.build(CLASSIFIER_ARCH["name"], CLASSIFIER_ARCH["params"]).to(dev)
    ema = copy.deepcopy(model)
    batch = 96
    steps_per_epoch = int(np.ceil(len(xtr) / batch))
    total = epochs * steps_per_epoch
    decay_params = [p for n, p in model.named_parameters() if p.ndim > 1]
    other_params = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay_params, "weight_decay": 5e-4},
            {"params": other_params, "weight_decay": 0.0},
        ],
        lr=2e-3,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=total, pct_start=0.15, div_factor=10, final_div_factor=100
    )
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    best: dict[str, Any] = {"auc": -1.0}
    select_from = epochs // 2  # select among the second half only (less val noise)
    t0 = time.perf_counter()
    step = 0
    for ep in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        ep_loss = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            xb = augment(xtr[idx].cpu(), gen, spec).to(dev)
            yb = ytr_t[idx]
            logit = model(xb).reshape(-1)
            loss = F.binary_cross_entropy_with_logits(logit, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            _ema_update(ema, model, min(0.99, (1 + step) / (10 + step)))
            ep_loss += float(loss.detach()) * len(idx)
            if state is not None:
                state.progress((ep + (i + 1) / steps_per_epoch) / epochs, f"epoch {ep + 1}")
        zva = _predict_logits(ema, xva)
        auc = M.roc_auc(yva, zva)
        val_nll = M.nll(yva, zva)
        rec = {
            "epoch": ep + 1,
            "train_loss": ep_loss / len(xtr),
            "val_auc": auc,
            "val_nll": val_nll,
        }
        history.append(rec)
        _log(
            f"[classifier] epoch {ep + 1}/{epochs} train_loss {rec['train_loss']:.4f} "
            f"val_auc {auc:.4f} val_nll {val_nll:.4f} ({time.perf_counter() - t0:.0f}s)"
        )
        if ep >= select_from and (auc, -val_nll) > (best["auc"], -best.get("nll", 1e9)):
            best = {
                "auc": auc,
                "nll": val_nll,
                "epoch": ep + 1,
                "state": copy.deepcopy(ema.state_dict()),
            }
    train_seconds = time.perf_counter() - t0
    ema.load_state_dict(best["state"])
    ema = ema.cpu().eval()
    run = {
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch,
        "selected_epoch": best["epoch"],
        "select_from": select_from,
        "train_seconds": train_seconds,
        "device": str(dev),
        "history": history,
        "command": command,
        "n_train": int(len(xtr_u8)),
        "train_prevalence": float(ytr.mean()),
    }
    return finish_classifier(ema, data, out, run)


def finish_classifier(
    model: Any, data: str | Path, out: str | Path, run: dict[str, Any]
) -> dict[str, Any]:
    """Calibrate (temperature) and threshold a trained classifier on val, write the card.

    The threshold is the equal-prior Bayes decision: calibrated probability >= the
    train prevalence of pneumonia (likelihood ratio 1). It does not depend on the
    class mix, which differs between train/val (74 % pneumonia) and the official test
    split, and is not fitted to the 135 normal val images; the val Youden-optimal
    threshold is reported for reference.
    """
    import torch

    spec = InputSpec(channels=1, height=28, width=28, mean=0.5, std=0.25, polarity="chest-auto")
    xva_u8, yva = load_split(data, "val")
    xva = torch.from_numpy(prepare_batch(xva_u8, spec))
    ema = model.cpu().eval()
    seed = int(run["seed"])
    epochs = int(run["epochs"])
    select_from = int(run["select_from"])
    batch = int(run["batch_size"])
    train_seconds = float(run["train_seconds"])
    history = run["history"]
    command = run.get("command", "")
    dev = run.get("device", "cpu")
    best = {"epoch": run["selected_epoch"]}
    # calibration and threshold on val
    zva = _predict_logits(ema, xva.cpu())
    temperature = M.fit_temperature(yva, zva)
    pva = M.sigmoid(zva / temperature)
    threshold = float(run["train_prevalence"])
    youden = M.balanced_threshold(yva, pva)
    at_t = M.binary_metrics(yva, pva, threshold)
    at_half = M.binary_metrics(yva, pva, 0.5)
    at_youden = M.binary_metrics(yva, pva, youden)
    # honest ECE: 2-fold cross-fitted temperature (fit on one half, measure on the other)
    perm = np.random.default_rng(seed).permutation(len(yva))
    halves = [perm[: len(perm) // 2], perm[len(perm) // 2 :]]
    cf = np.zeros(len(yva))
    for a, b in ((0, 1), (1, 0)):
        t_half = M.fit_temperature(yva[halves[a]], zva[halves[a]])
        cf[halves[b]] = M.sigmoid(zva[halves[b]] / t_half)
    validation = {
        "split": "PneumoniaMNIST official val split (524 images, 135 normal / 389 pneumonia)",
        "n": int(len(yva)),
        "auc": round(M.roc_auc(yva, pva), 4),
        "threshold": round(threshold, 4),
        "accuracy": round(at_t["accuracy"], 4),
        "sensitivity": round(at_t["sensitivity"], 4),
        "specificity": round(at_t["specificity"], 4),
        "balanced_accuracy": round(at_t["balanced_accuracy"], 4),
        "confusion": {k: at_t[k] for k in ("tp", "tn", "fp", "fn")},
        "at_threshold_0.5": {
            k: round(at_half[k], 4) for k in ("accuracy", "sensitivity", "specificity")
        },
        "val_youden_threshold": round(youden, 4),
        "at_val_youden_threshold": {
            k: round(at_youden[k], 4) for k in ("accuracy", "sensitivity", "specificity")
        },
        "ece_15bins": round(M.expected_calibration_error(yva, pva), 4),
        "ece_15bins_uncalibrated": round(M.expected_calibration_error(yva, M.sigmoid(zva)), 4),
        "ece_15bins_crossfitted": round(M.expected_calibration_error(yva, cf), 4),
        "nll": round(M.nll(yva, zva, temperature), 4),
        "selected_epoch": best["epoch"],
        "note": "val was used for epoch selection and temperature scaling: optimistic",
    }
    meta = {
        "name": CLASSIFIER_NAME,
        "version": VERSION,
        "task": "classification",
        "description": "Small ResNet (3 stages, 32-64-128 channels) classifying a frontal "
        "paediatric chest X-ray as normal or pneumonia, with a temperature-calibrated "
        "probability and Grad-CAM explanations.",
        "intended_use": "Research and teaching demonstrations of local, explainable AI in "
        "the medview workstation. Research use, not a diagnostic device.",
        "limitations": LIMITS,
        "modality": ["CR", "DX"],
        "body_part": "CHEST",
        "intended_use_scope": INTENDED_USE_SCOPE,
        "architecture": CLASSIFIER_ARCH,
        "input": spec.as_dict(),
        "output": {
            "type": "sigmoid",
            "labels": ["normal", "pneumonia"],
            "positive_label": "pneumonia",
            "temperature": round(temperature, 6),
            "threshold": round(threshold, 4),
            "threshold_rule": "equal-prior Bayes decision: calibrated probability >= train "
            "prevalence of pneumonia (likelihood ratio 1); independent of the class mix, "
            "which differs between train/val and the official test split",
        },
        "explain": {
            "method": "grad-cam",
            "layer": "last residual stage (7x7)",
            "label": "Grad-CAM for the predicted class (the class is named on the map)",
        },
        "training": {
            "data": "PneumoniaMNIST train split (4682 images), MedMNIST v2",
            "data_file": Path(data).name,
            "command": command,
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch,
            "optimizer": "AdamW, one-cycle LR (max 3e-3), weight decay 5e-4, EMA 0.99",
            "loss": "binary cross-entropy",
            "augmentation": "random affine (rotation +-10 deg, scale 0.9-1.12, shift +-8%), "
            "contrast 0.8-1.2, brightness +-0.08",
            "selection": f"best val AUC among epochs {select_from + 1}-{epochs} (EMA weights)",
            "train_seconds": round(train_seconds, 1),
            "device": str(dev),
            "environment": _env(),
            "history": history,
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "validation": validation,
        "license": {
            "weights": "CC BY 4.0 (trained on CC BY 4.0 data; attribute the citations below)",
            "data": DATA_LICENSE,
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": CITATIONS,
        "disclaimer": DISCLAIMER,
    }
    return _write_versioned(out, ema, meta)


# -- autoencoder -------------------------------------------------------------------

AE_ARCH = {
    "name": "conv_autoencoder",
    "params": {"in_channels": 1, "size": 28, "widths": [32, 64], "latent_dim": 64},
}


SCORE_METHODS = ("mse", "pos_residual", "latent")


def ae_outputs(
    model: Any, x: Any, method: str, batch: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (N,), per-pixel squared errors (N, H, W) and latents (N, D) in eval mode."""
    import torch

    scores, errs, lats = [], [], []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            sc, err, z = model.analyse(x[i : i + batch], method)
            scores.append(sc.cpu().numpy())
            errs.append(err.cpu().numpy())
            lats.append(z.cpu().numpy())
    return np.concatenate(scores), np.concatenate(errs), np.concatenate(lats)


def fit_latent_gaussian(model: Any, x: Any, shrink: float = 0.1) -> None:
    """Store mean and (shrunk) precision of the normal training latents in the model."""
    import torch

    _, _, z = ae_outputs(model, x, "mse")
    z = z.astype(np.float64)
    mu = z.mean(axis=0)
    cov = np.cov(z, rowvar=False)
    cov = (1.0 - shrink) * cov + shrink * np.eye(len(mu)) * np.trace(cov) / len(mu)
    prec = np.linalg.inv(cov)
    with torch.no_grad():
        model.latent_mean.copy_(torch.from_numpy(mu).float())
        model.latent_precision.copy_(torch.from_numpy(prec).float())


def train_autoencoder(
    data: str | Path,
    out: str | Path,
    seed: int = 0,
    epochs: int = 30,
    device: str = "cpu",
    command: str = "",
    state: Any = None,
) -> dict[str, Any]:
    """Fit the autoencoder on normal train images only; score val as anomaly detector."""
    torch = _setup_torch(seed)
    from torch.nn import functional as F

    from medview.ai import nets
    from medview.ai.devices import resolve_device

    dev = resolve_device(device)
    spec = InputSpec(channels=1, height=28, width=28, mean=0.5, std=0.25, polarity="chest-auto")
    xtr_u8, ytr = load_split(data, "train")
    xva_u8, yva = load_split(data, "val")
    normal = xtr_u8[ytr == 0]
    xtr = torch.from_numpy(prepare_batch(normal, spec)).to(dev)
    xva = torch.from_numpy(prepare_batch(xva_u8, spec)).to(dev)
    model = nets.build(AE_ARCH["name"], AE_ARCH["params"]).to(dev)
    batch = 32
    steps_per_epoch = int(np.ceil(len(xtr) / batch))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for ep in range(epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        tot = 0.0
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            xb = augment(xtr[idx].cpu(), gen, spec, strength=0.5).to(dev)
            loss = F.mse_loss(model(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            if state is not None:
                state.progress((ep + (i + 1) / steps_per_epoch) / epochs, f"epoch {ep + 1}")
        s, _, _ = ae_outputs(model, xva, "mse")
        rec = {
            "epoch": ep + 1,
            "train_mse": tot / len(xtr),
            "val_normal_mse": float(s[yva == 0].mean()),
            "val_auc": M.roc_auc(yva, s),
        }
        history.append(rec)
        _log(
            f"[autoencoder] epoch {ep + 1}/{epochs} train_mse {rec['train_mse']:.4f} "
            f"val_normal_mse {rec['val_normal_mse']:.4f} val_auc {rec['val_auc']:.4f} "
            f"({time.perf_counter() - t0:.0f}s)"
        )
    train_seconds = time.perf_counter() - t0
    model = model.cpu().eval()
    # the final weights are used (no epoch selection); the normal training latents
    # Gaussian is stored in the model; val picks which image-level score to report
    fit_latent_gaussian(model, xtr.cpu())
    _, err_tr, _ = ae_outputs(model, xtr.cpu(), "mse")
    pixel_scale = float(np.percentile(err_tr, 99.0))
    candidates = {}
    for method in SCORE_METHODS:
        sc, _, _ = ae_outputs(model, xva.cpu(), method)
        candidates[method] = round(M.roc_auc(yva, sc), 4)
    score_method = max(SCORE_METHODS, key=lambda k: candidates[k])
    s, _, _ = ae_outputs(model, xva.cpu(), score_method)
    threshold = M.balanced_threshold(yva, s)
    at_t = M.binary_metrics(yva, s, threshold)
    validation = {
        "split": "PneumoniaMNIST official val split (524 images, 135 normal / 389 pneumonia)",
        "n": int(len(yva)),
        "auc_unsupervised_pneumonia": round(M.roc_auc(yva, s), 4),
        "score_method": score_method,
        "auc_by_score_method": candidates,
        "score_threshold": round(threshold, 5),
        "accuracy": round(at_t["accuracy"], 4),
        "sensitivity": round(at_t["sensitivity"], 4),
        "specificity": round(at_t["specificity"], 4),
        "mean_score_normal": round(float(s[yva == 0].mean()), 5),
        "mean_score_pneumonia": round(float(s[yva == 1].mean()), 5),
        "note": "unsupervised training (normal images only); val labels were used to choose "
        "the score method and the threshold, so these figures are optimistic",
    }
    meta = {
        "name": AUTOENCODER_NAME,
        "version": VERSION,
        "task": "anomaly",
        "description": "Convolutional autoencoder trained on normal paediatric chest X-rays "
        "only. The per-pixel reconstruction error is an anomaly map; an "
        "image-level anomaly score (see output.score); the 64-d latent vector is exposed for similar-image "
        "search.",
        "intended_use": "Research demonstrations of unsupervised anomaly maps. Research use, "
        "not a diagnostic device.",
        "limitations": LIMITS
        + [
            "An anomaly is anything unlike the normal training images (other devices, "
            "adults, text markers), not specifically pneumonia."
        ],
        "modality": ["CR", "DX"],
        "body_part": "CHEST",
        "intended_use_scope": INTENDED_USE_SCOPE,
        "architecture": AE_ARCH,
        "input": spec.as_dict(),
        "output": {
            "type": "reconstruction",
            "labels": [],
            "threshold": round(threshold, 5),
            "score_method": score_method,
            "score": {
                "mse": "mean squared reconstruction error (normalised units)",
                "pos_residual": "mean positive residual input - reconstruction (added opacity)",
                "latent": "squared Mahalanobis distance of the latent vector to the normal "
                "training latents (mean/precision stored with the weights)",
            }[score_method],
            "map_scale": round(pixel_scale, 6),
            "map": "per-pixel squared error / map_scale (99th percentile of normal train "
            "pixels), clipped to [0, 1]",
            "latent_dim": AE_ARCH["params"]["latent_dim"],
            "threshold_rule": "maximises balanced accuracy of the score on val",
        },
        "explain": AE_EXPLAIN,
        "training": {
            "data": f"PneumoniaMNIST train split, normal images only ({len(normal)})",
            "data_file": Path(data).name,
            "command": command,
            "seed": seed,
            "epochs": epochs,
            "batch_size": batch,
            "optimizer": "AdamW lr 1e-3, cosine schedule",
            "loss": "mean squared error",
            "augmentation": "mild random affine and contrast/brightness (half strength)",
            "train_seconds": round(train_seconds, 1),
            "device": str(dev),
            "environment": _env(),
            "history": history,
            "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "validation": validation,
        "license": {
            "weights": "CC BY 4.0 (trained on CC BY 4.0 data; attribute the citations below)",
            "data": DATA_LICENSE,
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": CITATIONS,
        "disclaimer": DISCLAIMER,
    }
    return _write_versioned(out, model, meta)


# -- model card README ------------------------------------------------------------------


def _scope_lines(meta: dict[str, Any]) -> list[str]:
    """The card's structured intended use (and retraining origin) as Markdown lines."""
    sc = meta.get("intended_use_scope") or {}
    lines: list[str] = []
    if sc:
        age = sc.get("age_years") or {}
        lines += [
            f"- modalities: {', '.join(sc.get('modalities', [])) or 'any'}",
            f"- body parts: {', '.join(sc.get('body_parts', [])) or 'any'}",
            f"- projections: {', '.join(sc.get('projections', [])) or 'any'}",
            f"- patient age: {age.get('min', 0)}-{age.get('max', '')} years" if age else "",
            "",
            str(sc.get("note", "")),
            "",
        ]
    rf = meta.get("retrained_from")
    if rf:
        lines += [
            f"Retrained from {rf.get('name')} {rf.get('version')} "
            f"(weights sha256 `{rf.get('sha256')}`): these weights differ from the bundled model.",
            "",
        ]
    return [x for x in lines if x is not None]


def write_card_readme(folder: str | Path) -> Path:
    """Render ``README.md`` of a model folder from its metadata.json."""
    folder = Path(folder)
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    v = meta.get("validation", {})
    lines = [
        f"# {meta['name']} {meta['version']} (model card)",
        "",
        f"**{meta.get('disclaimer', DISCLAIMER)}**",
        "",
        meta.get("description", ""),
        "",
        "## Intended use",
        "",
        meta.get("intended_use", ""),
        "",
        *_scope_lines(meta),
        "## Limitations",
        "",
        *[f"- {x}" for x in meta.get("limitations", [])],
        "",
        "## Input",
        "",
        "```json",
        json.dumps(meta["input"], indent=2),
        "```",
        "",
        "## Output",
        "",
        "```json",
        json.dumps(meta["output"], indent=2),
        "```",
        "",
        "## Validation (official PneumoniaMNIST val split)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {val} |" for k, val in v.items() if not isinstance(val, dict)],
        "",
    ]
    perf = meta.get("performance")
    if perf:
        lines += ["## Performance", "", "```json", json.dumps(perf, indent=2), "```", ""]
    tr = meta.get("training", {})
    lines += [
        "## Training",
        "",
        f"- data: {tr.get('data')}",
        f"- command: `{tr.get('command')}`",
        f"- seed {tr.get('seed')}, {tr.get('epochs')} epochs, batch {tr.get('batch_size')}, "
        f"{tr.get('train_seconds')} s on {tr.get('device')} "
        f"({tr.get('environment', {}).get('threads')} threads)",
        f"- optimiser: {tr.get('optimizer')}; loss: {tr.get('loss')}",
        f"- augmentation: {tr.get('augmentation')}",
        "",
        "## Weights",
        "",
        f"`{meta['weights']['file']}` (safetensors, {meta['weights'].get('parameters')} "
        f"parameters), sha256 `{meta['weights']['sha256']}`; verified before every load.",
        "",
        "## License and citations",
        "",
        *[f"- {k}: {val}" for k, val in meta.get("license", {}).items()],
        "",
        *[f"- {c}" for c in meta.get("citations", [])],
        "",
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# -- CLI entry ----------------------------------------------------------------------


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``medview train classifier|autoencoder``."""
    from medview.errors import MedviewError
    from medview.paths import bundled_models_dir

    data = Path(args.data) if getattr(args, "data", None) else default_data_path()
    target = args.target
    name = CLASSIFIER_NAME if target == "classifier" else AUTOENCODER_NAME
    out = Path(args.out) if getattr(args, "out", None) else bundled_models_dir() / name
    seed = int(getattr(args, "seed", 0) or 0)
    device = getattr(args, "device", "cpu") or "cpu"
    cmd = (
        "medview train " + " ".join(sys.argv[2:])
        if len(sys.argv) > 2
        else f"medview train {target}"
    )
    try:
        if target == "classifier":
            epochs = int(args.epochs) if getattr(args, "epochs", None) else 16
            meta = train_classifier(data, out, seed=seed, epochs=epochs, device=device, command=cmd)
        elif target == "autoencoder":
            epochs = int(args.epochs) if getattr(args, "epochs", None) else 30
            meta = train_autoencoder(
                data, out, seed=seed, epochs=epochs, device=device, command=cmd
            )
        else:
            print(f"medview train: unknown target {target!r}", file=sys.stderr)
            return 2
    except (MedviewError, ValueError) as exc:  # ValueError: e.g. --device cuda without CUDA
        print(f"medview train: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "model": str(out),
                "name": meta["name"],
                "version": meta["version"],
                "retrained_from": meta.get("retrained_from"),
                "validation": meta["validation"],
            },
            indent=2,
        )
    )
    return 0
