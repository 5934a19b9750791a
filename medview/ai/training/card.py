"""The imaging model cards' texts, retrained versions and writing a trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medview.disclaimers import AI_MODEL_CARD
from medview.modelcards import METADATA_FILE, with_manifest, write_card

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
DISCLAIMER = AI_MODEL_CARD
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

    path = bundled_models_dir() / name / METADATA_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def version_retrained(meta: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any]:
    """Give a newly written card its own version when its weights differ from the bundled.

    A run that reproduces the bundled weights bit for bit keeps the bundled version.
    Any other weights get ``<bundled version>-retrained-<sha256[:8]>`` (the card's own
    version instead of the bundled one when the architectures differ, e.g. an ensemble
    against a single net) and a
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
        # same weights: the bundled version, unless the card changes what the model
        # outputs (temperature, test-time averaging): then the card's own (newer) version
        if reference.get("output") == meta.get("output"):
            meta["version"] = ref_version
        meta.pop("retrained_from", None)
        return meta
    base = ref_version.split("-retrained-")[0]
    if reference.get("architecture") != meta.get("architecture"):  # another model line
        base = str(meta.get("version", VERSION)).split("-retrained-")[0]
    meta["version"] = f"{base}-retrained-{sha[:8]}"
    meta["retrained_from"] = {
        "name": str(reference.get("name", meta["name"])),
        "version": ref_version,
        "sha256": ref_sha,
    }
    return meta


def write_versioned(out: str | Path, module: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Write weights + card; re-version the card when the weights are not the bundled ones."""
    from medview.ai.registry import write_model
    from medview.ai.training.card_readme import write_card_readme

    reference = reference_card(str(meta["name"]))  # read before ``out`` may overwrite it
    info = write_model(out, module, meta)
    final = version_retrained(info.meta, reference)
    if final != info.meta:  # a new version: write_card re-hashes the manifest
        write_card(out, final)
    write_card_readme(out)
    return with_manifest(final)


def shared_blocks() -> dict[str, Any]:
    """License, authors, citations and disclaimer: the same on both imaging cards."""
    return {
        "license": {
            "weights": "CC BY 4.0 (trained on CC BY 4.0 data; attribute the citations below)",
            "data": DATA_LICENSE,
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": CITATIONS,
        "disclaimer": DISCLAIMER,
    }
