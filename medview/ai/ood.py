"""In-distribution check: is an image like the data a model was trained on?

An imaging card may declare, in ``metadata.json``::

    "in_distribution": {
        "file": "ood.safetensors",        # calibration tensors, inside the model folder
        "sha256": "...",                  # of that file (the card's manifest covers it)
        "detectors": ["ae_reconstruction", "ae_latent", "image_stats", "features"],
        "uses_model": "pneumonia_ae",     # the autoencoder giving the ae_* detectors
        "train_quantile": 0.975,
        "threshold": 2.91                 # combined score at that training quantile
    }

Every detector is a score fitted on the **training split only** (nothing from val or
test): the autoencoder's reconstruction error, the Mahalanobis distance of its latent
vector to all training latents, the Mahalanobis distance of six image statistics of
the model input (mean, contrast, left band minus centre, top band, bottom band,
edge energy), and for classifiers the Mahalanobis distance of the pooled last-stage
features. Each score becomes its tail rank among the training images' scores; the
combined score is the mean of ``-log(1 - rank)`` over the detectors, and an image is
out of distribution when it exceeds the combined score of the ``train_quantile``
training image (so about 2.5 % of training images are refused at 0.975).

numpy only (the features come from :mod:`medview.ai.inference`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medview.modelcards import ModelCard, ModelError, sha256_file

KEY = "in_distribution"
OOD_FILE = "ood.safetensors"
DETECTOR_TEXT = {
    "ae_reconstruction": "autoencoder reconstruction error",
    "ae_latent": "autoencoder latent distance",
    "image_stats": "image statistics",
    "features": "classifier feature distance",
}
AE_DETECTORS = ("ae_reconstruction", "ae_latent")


def image_stats(x: np.ndarray) -> np.ndarray:
    """Six statistics of a normalised (N, C, H, W) model input -> (N, 6) float64."""
    a = np.asarray(x, np.float64)[:, 0]
    h, w = a.shape[1:]
    bh, bw = max(1, h // 7), max(1, w // 7)
    cx = w // 2
    return np.stack(
        [
            a.mean(axis=(1, 2)),
            a.std(axis=(1, 2)),
            a[:, :, :bw].mean(axis=(1, 2)) - a[:, :, cx - bw // 2 : cx + bw - bw // 2].mean((1, 2)),
            a[:, :bh].mean(axis=(1, 2)),
            a[:, -bh:].mean(axis=(1, 2)),
            np.abs(np.diff(a, axis=2)).mean(axis=(1, 2)),
        ],
        axis=1,
    )


def mahalanobis(v: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``v``."""
    d = np.asarray(v, np.float64) - mean
    return np.einsum("ij,jk,ik->i", d, precision, d)


def gaussian(v: np.ndarray, ridge: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (ridge-regularised) precision of the rows of ``v``."""
    v = np.asarray(v, np.float64)
    cov = np.atleast_2d(np.cov(v.T))
    scale = max(1e-12, float(np.mean(np.diag(cov))))
    return v.mean(axis=0), np.linalg.inv(cov + ridge * scale * np.eye(cov.shape[0]))


def tail_score(ranks: np.ndarray) -> np.ndarray:
    """``-log(1 - rank)`` averaged over detectors (ranks (N, D) in (0, 1))."""
    return np.mean(-np.log1p(-np.clip(ranks, 0.0, 1.0 - 1e-9)), axis=1)


@dataclass
class Scores:
    """Raw detector inputs for a batch (None: not available for this model)."""

    x: np.ndarray  # normalised model input (N, C, H, W)
    ae_mse: np.ndarray | None = None  # (N,)
    ae_latent: np.ndarray | None = None  # (N, D)
    features: np.ndarray | None = None  # (N, F)


class InDistributionCheck:
    """A card's calibrated in-distribution check (see the module docstring)."""

    def __init__(self, block: dict[str, Any], tensors: dict[str, np.ndarray], where: Path):
        self.block = block
        self.t = {k: np.asarray(v, np.float64) for k, v in tensors.items()}
        self.detectors = [str(d) for d in block.get("detectors", [])]
        unknown = [d for d in self.detectors if d not in DETECTOR_TEXT]
        missing = [f"ref_{d}" for d in self.detectors if f"ref_{d}" not in self.t]
        if not self.detectors or unknown or missing:
            raise ModelError(
                f"in_distribution: bad detectors {unknown or missing or 'none'}", where
            )
        self.threshold = float(block["threshold"])
        self.quantile = float(block.get("train_quantile", 0.975))
        self.uses_model = str(block.get("uses_model") or "")
        self.n_train = int(self.t[f"ref_{self.detectors[0]}"].size)

    @property
    def needs_ae(self) -> bool:
        return any(d in AE_DETECTORS for d in self.detectors)

    def raw(self, s: Scores) -> dict[str, np.ndarray]:
        """Each detector's raw score (N,)."""
        out: dict[str, np.ndarray] = {}
        for d in self.detectors:
            if d == "image_stats":
                out[d] = mahalanobis(image_stats(s.x), self.t["stats_mean"], self.t["stats_prec"])
            elif d == "ae_reconstruction":
                out[d] = np.asarray(_need(s.ae_mse, d), np.float64)
            elif d == "ae_latent":
                out[d] = mahalanobis(_need(s.ae_latent, d), self.t["lat_mean"], self.t["lat_prec"])
            else:
                out[d] = mahalanobis(_need(s.features, d), self.t["feat_mean"], self.t["feat_prec"])
        return out

    def ranks(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        """(N, D) tail ranks of each detector's score among the training scores."""
        cols = []
        for d in self.detectors:
            ref = self.t[f"ref_{d}"]
            cols.append((np.searchsorted(ref, raw[d], side="right") + 1.0) / (ref.size + 2.0))
        return np.stack(cols, axis=1)

    def verdicts(self, s: Scores) -> list[tuple[bool, str, float]]:
        """Per image: (in_distribution, reason, combined score)."""
        ranks = self.ranks(self.raw(s))
        combined = tail_score(ranks)
        out = []
        for r, c in zip(ranks, combined, strict=True):
            ok = bool(c <= self.threshold)
            worst = int(np.argmax(r))
            what = DETECTOR_TEXT[self.detectors[worst]]
            above = int(round(r[worst] * (self.n_train + 2.0) - 1.0))  # training images below
            pct = (
                f"all {self.n_train}"
                if above >= self.n_train
                else f"{100.0 * above / max(1, self.n_train):.1f} % of"
            )
            if ok:
                reason = f"like the training data (score {c:.2f} <= {self.threshold:.2f})"
            else:
                reason = (
                    f"outside the training data: score {c:.2f} > {self.threshold:.2f} "
                    f"(the {100 * self.quantile:g}th percentile of {self.n_train} training "
                    f"images); most unusual: {what}, above {pct} training images"
                )
            out.append((ok, reason, float(c)))
        return out


def _need(v: np.ndarray | None, name: str) -> np.ndarray:
    if v is None:
        raise ValueError(f"detector {name} needs inputs this model does not give")
    return v


def load_check(card: ModelCard) -> InDistributionCheck | None:
    """The card's check (None when it declares none); the file's sha256 is verified."""
    block = card.meta.get(KEY)
    if not block:
        return None
    where = card.metadata_path
    if not isinstance(block, dict) or "threshold" not in block:
        raise ModelError("in_distribution must be an object with a threshold", where)
    name = str(block.get("file", OOD_FILE))
    path = (card.folder / name).resolve()
    if "/" in name or "\\" in name or not path.is_relative_to(card.folder.resolve()):
        raise ModelError(f"in_distribution file {name!r} must be inside the model folder", where)
    if not path.is_file():
        raise ModelError("in-distribution calibration file is missing", path)
    if sha256_file(path) != str(block.get("sha256", "")).lower():
        raise ModelError(
            "in-distribution calibration sha256 does not match the model card; refusing", path
        )
    try:
        from safetensors.numpy import load_file

        tensors = dict(load_file(str(path)))
    except Exception as exc:  # noqa: BLE001 - any decode problem is a bad model
        raise ModelError(f"cannot read the calibration ({exc})", path) from None
    return InDistributionCheck(block, tensors, where)
