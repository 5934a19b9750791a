"""``medview train ensemble``: the pneumonia classifier as an ensemble of trained members.

Each member is a ``medview train classifier --seed S --out DIR`` run (same data, same
recipe, another seed). The ensemble averages the members' logits, fits one temperature
on val and keeps the card's threshold rule (train prevalence, likelihood ratio 1); its
uncertainty is the spread of the members' calibrated probabilities, from one forward
pass of the original image each (no shifted views), so K=3 members cost what one net
with its three TTA views cost. Nothing is trained here: the members' weights are copied
bit for bit, so the ensemble is as reproducible as its members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medview.ai.training.card import CLASSIFIER_NAME
from medview.ai.training.classifier import CLASSIFIER_ARCH, finish_classifier
from medview.ai.training.data import load_split
from medview.errors import MedviewError

ENSEMBLE_VERSION = "2.0.0"


def _member(folder: Path) -> tuple[Any, dict[str, Any]]:
    """A trained member's module and its summary for the card."""
    from medview.ai.registry import read_model_folder

    info = read_model_folder(folder)
    if info.meta.get("architecture") != CLASSIFIER_ARCH or info.name != CLASSIFIER_NAME:
        raise MedviewError(f"not a {CLASSIFIER_NAME} ({CLASSIFIER_ARCH['name']}) model", folder)
    tr = dict(info.meta.get("training") or {})
    summary = {
        "version": info.version,
        "weights_sha256": info.weights.sha256,
        "seed": tr.get("seed"),
        "epochs": tr.get("epochs"),
        "command": tr.get("command"),
        "threads": (tr.get("environment") or {}).get("threads"),
        "val_auc": (info.meta.get("validation") or {}).get("auc"),
        "val_nll": (info.meta.get("validation") or {}).get("nll"),
        "selection": tr.get("selection"),
    }
    return info.load_module("cpu"), summary


def train_ensemble(
    data: str | Path, members: list[str | Path], out: str | Path, command: str = ""
) -> dict[str, Any]:
    """Combine trained classifier folders into one ensemble model at ``out``."""
    from medview.ai import nets
    from medview.ai.training.classifier import _training_block

    if len(members) < 2:
        raise MedviewError("an ensemble needs at least two member models", Path(out))
    loaded = [_member(Path(m)) for m in members]
    params: dict[str, Any] = {"members": len(loaded), "member": CLASSIFIER_ARCH}
    arch: dict[str, Any] = {"name": "ensemble", "params": params}
    model: Any = nets.build("ensemble", params)
    for slot, (module, _) in zip(model.members, loaded, strict=True):
        slot.load_state_dict(module.state_dict())
    _, ytr = load_split(data, "train")
    first = loaded[0][1]
    run: dict[str, Any] = {
        "seed": int(first["seed"] or 0),
        "epochs": int(first["epochs"] or 0),
        "batch_size": 96,
        "selected_epoch": None,
        "select_from": 0,
        "train_seconds": 0.0,
        "device": "cpu",
        "history": [],
        "command": command,
        "train_prevalence": float(np.mean(ytr)),
    }
    training = _training_block(data, run)
    for k in ("seed", "epochs", "history", "selection", "train_seconds", "batch_size"):
        training.pop(k, None)
    training["method"] = (
        "ensemble: mean of the members' logits, one temperature fitted on val; each member "
        "trained by medview train classifier with its own seed (same data and recipe)"
    )
    training["members"] = [s for _, s in loaded]
    card = {
        "version": ENSEMBLE_VERSION,
        "architecture": arch,
        "description": f"Ensemble of {len(loaded)} small ResNets (3 stages, 32-64-128 "
        "channels, trained with different seeds) classifying a frontal paediatric chest "
        "X-ray as normal or pneumonia: mean logit, one temperature, Grad-CAM over all "
        "members' last stages; the members' spread is the uncertainty.",
        "training": training,
        "output": {
            "tta": {"shifts": []},
            "uncertainty": "standard deviation of the members' calibrated probabilities",
        },
    }
    return finish_classifier(model, data, out, run, card=card)
