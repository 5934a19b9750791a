"""``medview train autoencoder``: the anomaly autoencoder (normal images only)."""

from __future__ import annotations

import datetime as _dt
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai import metrics as M
from medview.ai.preprocess import prepare_batch
from medview.ai.training.card import (
    AE_EXPLAIN,
    AUTOENCODER_NAME,
    INTENDED_USE_SCOPE,
    LIMITS,
    VERSION,
    shared_blocks,
    write_versioned,
)
from medview.ai.training.data import (
    SPEC,
    Log,
    Run,
    augment,
    environment,
    train,
)
from medview.tasks import TaskState

AE_ARCH: dict[str, Any] = {
    "name": "conv_autoencoder",
    "params": {"in_channels": 1, "size": 28, "widths": [32, 64], "latent_dim": 64},
}
SCORE_METHODS = ("mse", "pos_residual", "latent")
BATCH = 32
SCORES = {
    "mse": "mean squared reconstruction error (normalised units)",
    "pos_residual": "mean positive residual input - reconstruction (added opacity)",
    "latent": "squared Mahalanobis distance of the latent vector to the normal "
    "training latents (mean/precision stored with the weights)",
}


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


def _fit(
    torch: Any,
    model: Any,
    xtr: Any,
    xva: Any,
    yva: np.ndarray,
    seed: int,
    epochs: int,
    dev: Any,
    state: TaskState | None,
    log: Log,
) -> tuple[list[dict[str, float]], float]:
    """Train on the normal images; return the per-epoch history and the seconds taken."""
    from torch.nn import functional as F

    steps_per_epoch = int(np.ceil(len(xtr) / BATCH))
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
            idx = order[i * BATCH : (i + 1) * BATCH]
            xb = augment(xtr[idx].cpu(), gen, SPEC, strength=0.5).to(dev)
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
        log(
            f"[autoencoder] epoch {ep + 1}/{epochs} train_mse {rec['train_mse']:.4f} "
            f"val_normal_mse {rec['val_normal_mse']:.4f} val_auc {rec['val_auc']:.4f} "
            f"({time.perf_counter() - t0:.0f}s)"
        )
    return history, time.perf_counter() - t0


def ae_validation(model: Any, xva: Any, yva: np.ndarray) -> tuple[dict[str, Any], float]:
    """Pick the image-level score on val; the card's ``validation`` block and threshold."""
    candidates = {}
    for method in SCORE_METHODS:
        sc, _, _ = ae_outputs(model, xva, method)
        candidates[method] = round(M.roc_auc(yva, sc), 4)
    score_method = max(SCORE_METHODS, key=lambda k: candidates[k])
    s, _, _ = ae_outputs(model, xva, score_method)
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
    return validation, threshold


def _output_block(score_method: str, threshold: float, pixel_scale: float) -> dict[str, Any]:
    return {
        "type": "reconstruction",
        "labels": [],
        "threshold": round(threshold, 5),
        "score_method": score_method,
        "score": SCORES[score_method],
        "map_scale": round(pixel_scale, 6),
        "map": "per-pixel squared error / map_scale (99th percentile of normal train "
        "pixels), clipped to [0, 1]",
        "latent_dim": AE_ARCH["params"]["latent_dim"],
        "threshold_rule": "maximises balanced accuracy of the score on val",
    }


def _training_block(
    data: str | Path, n_normal: int, run: dict[str, Any], history: list[dict[str, float]]
) -> dict[str, Any]:
    return {
        "data": f"PneumoniaMNIST train split, normal images only ({n_normal})",
        "data_file": Path(data).name,
        "command": run["command"],
        "seed": run["seed"],
        "epochs": run["epochs"],
        "batch_size": BATCH,
        "optimizer": "AdamW lr 1e-3, cosine schedule",
        "loss": "mean squared error",
        "augmentation": "mild random affine and contrast/brightness (half strength)",
        "train_seconds": round(run["train_seconds"], 1),
        "device": run["device"],
        "environment": environment(),
        "history": history,
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _train(r: Run) -> dict[str, Any]:
    """Fit the autoencoder on normal train images only; score val as anomaly detector."""
    from medview.ai import nets

    torch, dev, xtr_u8, ytr, xva_u8, yva = r.torch, r.dev, r.xtr_u8, r.ytr, r.xva_u8, r.yva
    seed, epochs, command, state, log = r.seed, r.epochs, r.command, r.state, r.log
    data, out = r.data, r.out

    normal = xtr_u8[ytr == 0]
    xtr = torch.from_numpy(prepare_batch(normal, SPEC)).to(dev)
    xva = torch.from_numpy(prepare_batch(xva_u8, SPEC)).to(dev)
    model = nets.build(AE_ARCH["name"], AE_ARCH["params"]).to(dev)
    history, train_seconds = _fit(torch, model, xtr, xva, yva, seed, epochs, dev, state, log)
    model = model.cpu().eval()
    # the final weights are used (no epoch selection); the normal training latents
    # Gaussian is stored in the model; val picks which image-level score to report
    fit_latent_gaussian(model, xtr.cpu())
    _, err_tr, _ = ae_outputs(model, xtr.cpu(), "mse")
    pixel_scale = float(np.percentile(err_tr, 99.0))
    validation, threshold = ae_validation(model, xva.cpu(), yva)
    run = {
        "command": command,
        "seed": seed,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "device": str(dev),
    }
    meta = {
        "name": AUTOENCODER_NAME,
        "version": VERSION,
        "task": "anomaly",
        "description": "Convolutional autoencoder trained on normal paediatric chest X-rays "
        "only. The per-pixel reconstruction error is an anomaly map; an "
        "image-level anomaly score (see output.score); the 64-d latent vector is exposed "
        "for similar-image search.",
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
        "input": SPEC.as_dict(),
        "output": _output_block(str(validation["score_method"]), threshold, pixel_scale),
        "explain": AE_EXPLAIN,
        "training": _training_block(data, len(normal), run, history),
        "validation": validation,
        **shared_blocks(),
    }
    return write_versioned(out, model, meta)


#: ``train_autoencoder(data, out, seed=0, epochs=30, device="cpu", command="", state=None,
#: log=no_log)``: :func:`medview.ai.training.data.train` with the autoencoder's fit
train_autoencoder = functools.partial(train, _train, epochs=30)
