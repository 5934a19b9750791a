"""Calibrate the in-distribution checks of the imaging cards on the TRAINING split only.

``python3 -m medview.ai.training.ood [--data NPZ] [--quantile 0.975] [--models DIR]``
fits, on the PneumoniaMNIST train split (4682 images; val and test are never used to
fit or to choose the threshold):

* the Gaussian of six image statistics of the model input,
* the Gaussian of the autoencoder's latent vectors (all training images, both classes),
* the classifier's pooled last-stage features (classifier card only),
* the autoencoder's reconstruction errors,

then stores the sorted training scores of each detector and the combined score's
``quantile`` as the threshold in ``ood.safetensors`` + the card's ``in_distribution``
block (see :mod:`medview.ai.ood`). Weights are untouched; the card's manifest is
re-hashed by :func:`medview.modelcards.write_card`. The val split's accept rate is
measured afterwards and written to the card for information only.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai.ood import KEY, OOD_FILE, gaussian, image_stats, mahalanobis, tail_score
from medview.modelcards import sha256_file, write_card

BATCH = 256
CNN_DETECTORS = ["ae_reconstruction", "ae_latent", "image_stats", "features"]
AE_DETECTORS = ["ae_reconstruction", "ae_latent", "image_stats"]


def _batched(fn: Callable[[np.ndarray], Any], x: np.ndarray) -> list[Any]:
    return [fn(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]


def model_outputs(cnn: Any, ae: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Raw detector inputs of a prepared batch (no TTA): features (when ``cnn`` is a
    classifier, else absent), AE mse and latents, image statistics."""
    ae_out = _batched(ae.anomaly_full, x)
    out = {
        "ae_mse": np.concatenate([o[3] for o in ae_out]),
        "ae_latent": np.concatenate([o[2] for o in ae_out]).astype(np.float64),
        "stats": image_stats(x),
    }
    if cnn is not None:
        out["features"] = np.concatenate([f for _, f in _batched(cnn.classify, x)])
    return out


def fit(train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Gaussians and sorted training scores of every detector."""
    t: dict[str, np.ndarray] = {}
    t["stats_mean"], t["stats_prec"] = gaussian(train["stats"])
    t["lat_mean"], t["lat_prec"] = gaussian(train["ae_latent"])
    if "features" in train:
        t["feat_mean"], t["feat_prec"] = gaussian(train["features"])
    raw = raw_scores(t, train)
    for d, v in raw.items():
        t[f"ref_{d}"] = np.sort(v)
    return t


def raw_scores(t: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every detector's raw score for ``out`` under the fitted tensors ``t``."""
    raw = {
        "ae_reconstruction": np.asarray(out["ae_mse"], np.float64),
        "ae_latent": mahalanobis(out["ae_latent"], t["lat_mean"], t["lat_prec"]),
        "image_stats": mahalanobis(out["stats"], t["stats_mean"], t["stats_prec"]),
    }
    if "features" in out:
        raw["features"] = mahalanobis(out["features"], t["feat_mean"], t["feat_prec"])
    return raw


def combined(t: dict[str, np.ndarray], raw: dict[str, np.ndarray], dets: list[str]) -> np.ndarray:
    """The combined tail score of each image over ``dets``."""
    cols = []
    for d in dets:
        ref = t[f"ref_{d}"]
        cols.append((np.searchsorted(ref, raw[d], side="right") + 1.0) / (ref.size + 2.0))
    return tail_score(np.stack(cols, axis=1))


def _tensors_for(t: dict[str, np.ndarray], dets: list[str]) -> dict[str, np.ndarray]:
    keep = {f"ref_{d}" for d in dets} | {"stats_mean", "stats_prec", "lat_mean", "lat_prec"}
    if "features" in dets:
        keep |= {"feat_mean", "feat_prec"}
    return {k: np.ascontiguousarray(t[k], np.float64) for k in sorted(keep)}


def write_check(
    folder: Path,
    meta: dict[str, Any],
    t: dict[str, np.ndarray],
    dets: list[str],
    scores: dict[str, dict[str, np.ndarray]],
    quantile: float,
) -> dict[str, Any]:
    """Write ``ood.safetensors`` and the card's ``in_distribution`` block."""
    from safetensors.numpy import save_file

    path = folder / OOD_FILE
    save_file(_tensors_for(t, dets), str(path), metadata={"format": "np"})
    train_c = combined(t, scores["train"], dets)
    thr = float(np.quantile(train_c, quantile))
    val_c = combined(t, scores["val"], dets)
    block = {
        "method": "mean tail score -log(1 - rank) over detectors, ranks among the training "
        "images' scores; refused above the threshold",
        "detectors": dets,
        "uses_model": "pneumonia_ae",
        "calibration": "PneumoniaMNIST train split only (4682 images, both classes)",
        "train_quantile": quantile,
        "threshold": round(thr, 6),
        "file": OOD_FILE,
        "sha256": sha256_file(path),
        "train_accept_rate": round(float(np.mean(train_c <= thr)), 4),
        "val_accept_rate": round(float(np.mean(val_c <= thr)), 4),
        "command": "python3 -m medview.ai.training.ood",
    }
    meta = dict(meta)
    meta[KEY] = {**dict(meta.get(KEY) or {}), **block}
    write_card(folder, meta)
    return meta


def similar_block(
    outs: dict[str, dict[str, np.ndarray]], labels: dict[str, np.ndarray], key: str
) -> dict[str, Any]:
    """Precision@k (same label) of val images queried against the train split's embeddings."""
    from medview.ai.similar import precision_at_k

    got = precision_at_k(
        outs["train"][key], labels["train"], outs["val"][key], labels["val"], (1, 5, 10)
    )
    return {
        "embedding": "pooled last-stage features" if key == "features" else "latent vector",
        "distance": "Euclidean",
        "index": f"PneumoniaMNIST train split ({len(labels['train'])} images)",
        "queries": f"PneumoniaMNIST val split ({len(labels['val'])} images)",
        **got,
        "chance": round(float(np.mean([np.mean(labels["train"] == v) for v in labels["val"]])), 4),
        "command": "medview analyze PATH --index; medview similar PATH [--k K]",
    }


def _outputs(
    folder: Path, ae_folder: Path, data: str | Path
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Detector inputs of the train and val splits for the model in ``folder`` (a
    classifier also gets its features) with the autoencoder in ``ae_folder``."""
    from medview.ai.devices import configure_cpu_threads
    from medview.ai.inference import LoadedModel
    from medview.ai.preprocess import prepare_batch
    from medview.ai.registry import read_model_folder

    configure_cpu_threads()
    model = LoadedModel(read_model_folder(folder), "cpu")
    same = folder.resolve() == ae_folder.resolve()
    ae = model if same else LoadedModel(read_model_folder(ae_folder), "cpu")
    cnn = model if model.info.task == "classification" else None
    with np.load(data) as d:
        split = {k: prepare_batch(d[f"{k}_images"], model.spec) for k in ("train", "val")}
        labels = {k: np.asarray(d[f"{k}_labels"]).ravel() for k in ("train", "val")}
    return {k: model_outputs(cnn, ae, x) for k, x in split.items()}, labels


def calibrate_folder(
    folder: str | Path,
    data: str | Path,
    ae_folder: str | Path | None = None,
    quantile: float = 0.975,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fit the in-distribution check of the model in ``folder`` on the train split.

    ``ae_folder`` is the autoencoder the check uses (default: ``folder`` itself, for
    the autoencoder's own card). The classifier's check adds its pooled features.
    Writes ``ood.safetensors``, the card's ``in_distribution`` (with the file's sha256)
    and ``similar_search`` blocks (manifest re-hashed) and the README; returns the
    ``in_distribution`` block.
    """
    import json

    from medview.ai.training.card_readme import write_card_readme

    folder = Path(folder)
    outs, labels = _outputs(folder, Path(ae_folder or folder), data)
    classifier = "features" in outs["train"]
    dets = CNN_DETECTORS if classifier else AE_DETECTORS
    t = fit(outs["train"])
    scores = {k: raw_scores(t, o) for k, o in outs.items()}
    meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    meta["similar_search"] = similar_block(outs, labels, "features" if classifier else "ae_latent")
    block = write_check(folder, meta, t, dets, scores, quantile)[KEY]
    write_card_readme(folder)
    if log:
        log(f"{meta['name']}: {json.dumps(block)}")
    return dict(block)


def calibrate(
    data: str | Path,
    models: str | Path,
    quantile: float = 0.975,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Calibrate ``models/pneumonia_cnn`` and ``models/pneumonia_ae``; returns the blocks."""
    root = Path(models)
    ae = root / "pneumonia_ae"
    return {
        name: calibrate_folder(root / name, data, ae, quantile, log)
        for name in ("pneumonia_cnn", "pneumonia_ae")
    }


def autoencoder_for(folder: Path, name: str = "pneumonia_ae") -> Path:
    """The autoencoder a classifier's check uses: ``name`` next to ``folder`` when that
    folder holds one (a models folder trained together), else the registry's ``name``
    (the one inference loads)."""
    from medview.ai.registry import get_model

    sibling = folder.parent / name
    if (sibling / "metadata.json").is_file() and sibling.resolve() != folder.resolve():
        return sibling
    return Path(get_model(name).folder)


def refit_after_training(
    target: str, out: str | Path, data: str | Path, log: Callable[[str], None] | None = None
) -> dict[str, dict[str, Any]]:
    """Refit the checks a ``medview train`` run made stale (train split only).

    ``classifier``: its own check, with the autoencoder of :func:`autoencoder_for`.
    ``autoencoder``: its own check, then that of a classifier next to it whose check
    uses this autoencoder (its ae_* detectors changed with the new weights).
    Returns the refitted ``in_distribution`` blocks by folder.
    """
    import json

    out = Path(out)
    if target == "classifier":
        return {str(out): calibrate_folder(out, data, autoencoder_for(out), log=log)}
    done = {str(out): calibrate_folder(out, data, out, log=log)}
    name = json.loads((out / "metadata.json").read_text(encoding="utf-8"))["name"]
    for card in sorted(out.parent.glob("*/metadata.json")):
        if card.parent.resolve() == out.resolve():
            continue
        meta = json.loads(card.read_text(encoding="utf-8"))
        if (meta.get(KEY) or {}).get("uses_model") == name:
            done[str(card.parent)] = calibrate_folder(card.parent, data, out, log=log)
    return done


def main(argv: list[str] | None = None) -> int:
    """Command line: calibrate the bundled cards (weights untouched)."""
    from medview.ai.training.data import default_data_path
    from medview.paths import bundled_models_dir

    p = argparse.ArgumentParser(prog="python3 -m medview.ai.training.ood")
    p.add_argument("--data", default=None, help="PneumoniaMNIST npz (train + val)")
    p.add_argument("--models", default=None, help="folder holding the two model folders")
    p.add_argument("--quantile", type=float, default=0.975)
    a = p.parse_args(argv)
    calibrate(
        a.data or default_data_path(), a.models or bundled_models_dir(), a.quantile, log=print
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
