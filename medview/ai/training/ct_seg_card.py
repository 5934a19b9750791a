"""The model card (and its README) of the bundled CT model ``ct_seg``."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from medview.ai.training.card_readme import (
    closing_lines,
    intro_lines,
    limitation_lines,
    training_lines,
)
from medview.disclaimers import AI_MODEL_CARD
from medview.modelcards import METADATA_FILE

CITATIONS = [
    "Jakob Wasserthal, Hanns-Christian Breit, Manfred T. Meyer, Maurice Pradella, Daniel "
    "Hinck, Alexander W. Sauter, Tobias Heye, Daniel T. Boll, Joshy Cyriac, Shan Yang, "
    "Michael Bach, Martin Segeroth. TotalSegmentator: Robust Segmentation of 104 Anatomic "
    "Structures in CT Images. Radiology: Artificial Intelligence 5(5), e230024 (2023). "
    "doi:10.1148/ryai.230024",
    "Olaf Ronneberger, Philipp Fischer, Thomas Brox. U-Net: Convolutional Networks for "
    "Biomedical Image Segmentation. MICCAI 2015 (architecture idea; 3D form after Cicek et "
    "al., MICCAI 2016).",
]

LIMITS = [
    "Trained on ONE CT volume (TotalSegmentator's example_ct_sm: 30 slices of 3 mm, lower "
    "chest and upper abdomen) and tested on ONE other (the 20-slice TotalSegmentator DICOM "
    "example, Siemens Biograph40 mCT); two volumes from TotalSegmentator's test files are "
    "far too few to say how it does on other patients, scanners, contrast phases, body "
    "regions, children or pathology.",
    "The held-out volume has no lung in its reference label map, so the lung Dice could not "
    "be measured: the card gives the lung volume the model predicts there (false positives) "
    "instead. Lung and bone references are TotalSegmentator's own output on its example, "
    "not manual annotation.",
    "'body' is our own definition (HU > -500, largest connected component, holes filled per "
    "axial slice, minus lungs and bone), not an anatomical structure: the CT table, "
    "clothing or a second object touching the patient can be included, and a body cut by "
    "the field of view is not closed.",
    "Seen on the held-out volume: bone is also found on the contrast-filled aorta (about "
    "200 HU) and along the CT table, and the predicted lung (66.5 mL where the reference has "
    "none) lies on the table and in patches of the most cranial slice (a volume end).",
    "Works at 3 mm voxels: thin structures (ribs, cortical bone) are coarse; label "
    "boundaries on a finer volume are nearest-neighbour steps of 3 mm.",
    "Research demonstration of 3D inference in medview; not a diagnostic device and not "
    "for clinical volumetry.",
]


def card(steps: int, seed: int, command: str, fit_s: float, threads: int) -> dict[str, Any]:
    """The card of a freshly trained ``ct_seg`` (validation added after the held-out run)."""
    from medview.ai.training import ct_seg as cs

    return {
        "name": cs.NAME,
        "version": cs.VERSION,
        "task": "segmentation",
        "description": "Tiny 3D U-Net labelling CT voxels as body, lungs or bone (and "
        "background), run by sliding windows at 3 mm; per-label volume (mL) and HU "
        "statistics come with every result.",
        "intended_use": "Research demonstration of CT volume inference in medview (label map "
        "over the MPR planes, per-label volumes). Not for diagnosis or clinical volumetry.",
        "intended_use_scope": {
            "modalities": ["CT"],
            "note": "Adult chest/abdomen CT in Hounsfield units. A volume whose modality is "
            "unknown (NIfTI) is in scope but unverified.",
        },
        "limitations": LIMITS,
        "modality": "CT",
        "body_part": "CHEST, ABDOMEN",
        "architecture": cs.ARCH,
        "input": cs.INPUT,
        "output": {
            "labels": cs.LABELS,
            "colors": cs.COLORS,
            "type": "softmax label map (argmax of the Gaussian-blended window probabilities)",
            "label_definitions": {
                "body": f"HU > {cs.BODY_HU:g}, largest 3D connected component, holes filled "
                "per axial slice, minus lungs and bone (our definition)",
                "lungs": "TotalSegmentator v2 classes " + ", ".join(map(str, cs.LUNG_IDS)),
                "bone": "TotalSegmentator v2 classes 25-50 (sacrum, vertebrae), 69-78 "
                "(humerus, scapula, clavicle, femur, hip), 91 (skull), 92-116 (ribs, "
                "sternum); costal cartilage (117) excluded",
            },
        },
        "training": {
            "data": f"ct/{cs.TRAIN_CT[0]} + ct/{cs.TRAIN_CT[1]} (TotalSegmentator test "
            "files, Apache-2.0); the held-out volume is never read during fitting",
            "command": command,
            "seed": seed,
            "steps": steps,
            "batch_size": cs.BATCH,
            "optimizer": f"Adam lr {cs.LR}, cosine decay",
            "loss": "cross-entropy + soft Dice (foreground classes)",
            "augmentation": "random 16x64x64 crops, left-right flips, intensity scale 0.9-1.1 "
            "and shift (sd 0.05 of the normalised value)",
            "train_seconds": round(fit_s, 1),
            "device": "cpu",
            "environment": {"threads": threads, "machine": platform.machine()},
        },
        "training_data": "TotalSegmentator example CT (Wasserthal et al. 2023), Apache-2.0",
        "license": {
            "weights": "Apache-2.0 (trained on Apache-2.0 data; attribute the citations)",
            "data": "Apache-2.0 (TotalSegmentator test files, ct/LICENSE-TotalSegmentator-"
            "Apache-2.0.txt)",
            "code": "Apache-2.0 (medview)",
        },
        "authors": ["medview developers"],
        "citations": CITATIONS,
        "disclaimer": AI_MODEL_CARD,
    }


def write_readme(folder: str | Path) -> Path:
    """``README.md`` of the model folder, rendered from its card."""
    folder = Path(folder)
    meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    val = meta.get("validation") or {}
    rows = [
        f"| {name} | {v.get('dice')} | {v.get('reference_ml')} | {v.get('predicted_ml')} |"
        for name, v in (val.get("per_label") or {}).items()
    ]
    tr = meta.get("training", {})
    lines = [
        *intro_lines(meta),
        "## Held-out volume (never used in training)",
        "",
        f"{val.get('volume', '')}; shape {val.get('shape_zyx')}, spacing {val.get('spacing_mm')} mm",
        "",
        "| label | Dice | reference mL | predicted mL |",
        "|---|---|---|---|",
        *rows,
        "",
        *limitation_lines(meta),
        "## Input and output",
        "",
        "```json",
        json.dumps({"input": meta["input"], "output": meta["output"]}, indent=2),
        "```",
        "",
        *training_lines(
            tr, f"{tr.get('steps')} steps of batch {tr.get('batch_size')}", "thread(s)"
        ),
        *closing_lines(meta),
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
