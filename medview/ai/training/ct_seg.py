"""``medview train ct-seg``: the bundled CT model ``ct_seg`` (body / lungs / bone).

Data: the two labelled CT volumes of TotalSegmentator's test files in
``../shared/data/ct`` (Apache-2.0). The model is fitted on ONE volume
(``totalseg_volumes/example_ct_sm.nii.gz`` with ``example_seg.nii.gz``: 3 mm voxels,
lower chest and upper abdomen, the only one with lungs) and its Dice is measured on the
OTHER (``totalseg_example_dicom/``, 20 axial DICOM slices at 0.98 x 0.98 x 2 mm, with
``totalseg_example_dicom_seg.nii.gz``), which it never sees in training, through the
same :func:`medview.ai.volume_analysis.segment_volume` users run.

Classes (:func:`reference_labels`): TotalSegmentator v2 "total" class numbers mapped to

* ``lungs`` = the five lung lobes (10-14);
* ``bone`` = sacrum and vertebrae (25-50), humerus, scapula, clavicle, femur, hip (69-78),
  skull (91), ribs and sternum (92-116); costal cartilage (117) is not bone;
* ``body`` = our own definition, not TotalSegmentator's: voxels above -500 HU in the
  largest 3D connected component and in every component of at least 5 % of its size
  (arms; not thin table parts), holes filled slice by slice (bowel gas and lungs are
  inside the body), minus lungs and bone.

Fixed seed, one thread (``MEDVIEW_TRAIN_THREADS``, default 1 here), deterministic torch:
the same run on the same kind of CPU gives the same weights. Torch is imported inside the functions.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai.training.data import Log, no_log, setup_torch
from medview.errors import MedviewError

NAME = "ct_seg"
VERSION = "1.0.0"
LABELS = ["background", "body", "lungs", "bone"]
COLORS = ["#000000", "#e8a33d", "#3d9be8", "#ff3df5"]  # bone magenta: white on white is invisible
LUNG_IDS = tuple(range(10, 15))
BONE_IDS = tuple(range(25, 51)) + tuple(range(69, 79)) + (91,) + tuple(range(92, 117))
BODY_HU = -500.0
BODY_PART_FRACTION = 0.05  # components at least this fraction of the largest (arms) are body
ARCH: dict[str, Any] = {
    "name": "unet3d",
    "params": {"in_channels": 1, "num_outputs": 4, "base": 8, "levels": 3, "norm": "batch"},
}
PATCH = (16, 64, 64)  # (z, y, x) voxels of one window, multiples of 4 (3-level U-Net)
CLIP = (-1000.0, 1500.0)  # HU
MEAN, STD = -300.0, 500.0  # (clipped HU - MEAN) / STD
INPUT: dict[str, Any] = {
    "dims": 3,
    "channels": 1,
    "spacing_mm": [3.0, 3.0, 3.0],
    "patch_zyx": list(PATCH),
    "overlap": 0.25,
    "clip": list(CLIP),
    "mean": MEAN,
    "std": STD,
    "blend": "gaussian",
    "resampling": "linear to 3 mm voxels on the volume's own axes; label map back by nearest "
    "neighbour",
}
TRAIN_CT = ("totalseg_volumes/example_ct_sm.nii.gz", "totalseg_volumes/example_seg.nii.gz")
TEST_CT = ("totalseg_example_dicom", "totalseg_example_dicom_seg.nii.gz")
STEPS = 800
AIR_PAD = 24  # voxels of air added around the training volume in y and x
Z_PAD = 6  # first/last slice repeated this often (crops see volume ends as inference does)
BATCH = 2
LR = 3e-3


def default_ct_dir() -> Path:
    """``$MEDVIEW_SHARED_DATA/ct`` or ``<repo>/../shared/data/ct``."""
    from medview.paths import bundle_root

    base = os.environ.get("MEDVIEW_SHARED_DATA")
    return (Path(base) if base else bundle_root().parent / "shared" / "data") / "ct"


def body_mask(hu: np.ndarray, threshold: float = BODY_HU) -> np.ndarray:
    """The patient: > ``threshold`` HU, the largest 3D component and every component of at
    least :data:`BODY_PART_FRACTION` of its size (arms), holes filled per axial slice."""
    from scipy import ndimage  # type: ignore[import-untyped]

    fg = hu > threshold
    lab, n = ndimage.label(fg)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = np.flatnonzero(sizes >= BODY_PART_FRACTION * sizes.max())
    body = np.isin(lab, keep)
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    return body


def reference_labels(vol: Any, seg_path: str | Path) -> np.ndarray:
    """The 4-class reference (uint8, volume grid) from a TotalSegmentator label file."""
    from medview.ai.volume_grid import read_labels_in_volume_geometry

    seg = read_labels_in_volume_geometry(seg_path, vol)
    hu = np.asarray(vol.array, np.float32) * float(vol.rescale_slope) + float(vol.rescale_intercept)
    out = np.zeros(seg.shape, np.uint8)
    out[body_mask(hu)] = 1
    out[np.isin(seg, LUNG_IDS)] = 2
    out[np.isin(seg, BONE_IDS)] = 3
    return out


def load_pair(ct_dir: Path, pair: tuple[str, str]) -> tuple[Any, np.ndarray]:
    """(volume, 4-class reference) of one labelled CT of ``ct_dir``."""
    from medview.io import load_path

    image, seg = ct_dir / pair[0], ct_dir / pair[1]
    for p in (image, seg):
        if not p.exists():
            raise MedviewError("training data not found (set --data to ../shared/data/ct)", p)
    vol = load_path(image)
    return vol, reference_labels(vol, seg)


def _patches(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random (patch, label) crops with left-right flips and intensity jitter."""
    pz, py, px = PATCH
    xs, ys = [], []
    for _ in range(n):
        z0 = int(rng.integers(0, x.shape[0] - pz + 1))
        y0 = int(rng.integers(0, x.shape[1] - py + 1))
        x0 = int(rng.integers(0, x.shape[2] - px + 1))
        xp = x[z0 : z0 + pz, y0 : y0 + py, x0 : x0 + px]
        yp = y[z0 : z0 + pz, y0 : y0 + py, x0 : x0 + px]
        if rng.random() < 0.5:
            xp, yp = xp[:, :, ::-1], yp[:, :, ::-1]
        xs.append(xp * np.float32(rng.uniform(0.9, 1.1)) + np.float32(rng.normal(0, 0.05)))
        ys.append(yp)
    return np.stack(xs)[:, None].astype(np.float32), np.stack(ys).astype(np.int64)


def _fit(torch: Any, x: np.ndarray, y: np.ndarray, seed: int, steps: int, log: Log) -> Any:
    """Train the tiny U-Net on random patches (cross-entropy + soft Dice)."""
    from torch.nn import functional as F

    from medview.ai.nets3d import build3d

    net = build3d(str(ARCH["name"]), dict(ARCH["params"]))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    net.train()
    for step in range(steps):
        xb, yb = _patches(x, y, rng, BATCH)
        xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)
        logits = net(xt)
        prob = torch.softmax(logits, 1)
        onehot = F.one_hot(yt, len(LABELS)).permute(0, 4, 1, 2, 3).float()
        inter = (prob * onehot).sum((0, 2, 3, 4))
        denom = prob.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4))
        dice_loss = 1.0 - ((2 * inter + 1.0) / (denom + 1.0))[1:].mean()
        loss = F.cross_entropy(logits, yt) + dice_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"step {step + 1}/{steps} loss {loss.item():.4f}")
    return net.eval()


def evaluate(model: Any, ct_dir: Path, device: str = "cpu") -> dict[str, Any]:
    """Dice per label (and mL) on the held-out DICOM volume, through segment_volume."""
    from medview.ai.volume_analysis import dice, segment_volume

    vol, ref = load_pair(ct_dir, TEST_CT)
    res = segment_volume(vol, model, device=device)
    voxel_ml = float(np.prod([float(s) for s in vol.spacing])) / 1000.0
    per_label = {}
    for k, name in enumerate(LABELS[1:], start=1):
        d = dice(res.labels, ref, k) if (ref == k).any() else None  # no reference: no Dice
        per_label[name] = {
            "dice": None if d is None else round(d, 4),
            "reference_ml": round(int((ref == k).sum()) * voxel_ml, 1),
            "predicted_ml": round(int((res.labels == k).sum()) * voxel_ml, 1),
        }
    return {
        "volume": f"ct/{TEST_CT[0]} (reference ct/{TEST_CT[1]} mapped as in training)",
        "shape_zyx": list(vol.array.shape),
        "spacing_mm": [round(float(s), 4) for s in vol.spacing],
        "per_label": per_label,
        "windows": res.windows,
        "elapsed_s": round(res.elapsed_s, 2),
    }


def train_ct_seg(
    ct_dir: str | Path | None,
    out: str | Path,
    seed: int = 0,
    steps: int = STEPS,
    command: str = "medview train ct-seg",
    log: Log = no_log,
) -> dict[str, Any]:
    """Fit on the training volume, measure on the held-out one, write model + card."""
    from medview.ai.registry import write_model
    from medview.ai.training.ct_seg_card import card

    ct = Path(ct_dir) if ct_dir else default_ct_dir()
    torch = setup_torch(seed)
    torch.set_num_threads(int(os.environ.get("MEDVIEW_TRAIN_THREADS", "1")))  # reproducible
    t0 = time.perf_counter()
    vol, ref = load_pair(ct, TRAIN_CT)
    hu = np.asarray(vol.array, np.float32) * float(vol.rescale_slope) + float(vol.rescale_intercept)
    x = (np.clip(hu, CLIP[0], CLIP[1]) - MEAN) / STD
    log(f"training volume {vol.array.shape}, voxels per class {np.bincount(ref.ravel()).tolist()}")
    # air around the patient (test fields of view are wider than this cropped volume), and
    # the first and last slices repeated as inference pads a short volume (edge mode)
    pad = ((0, 0), (AIR_PAD, AIR_PAD), (AIR_PAD, AIR_PAD))
    x = np.pad(x, pad, constant_values=(CLIP[0] - MEAN) / STD)
    ref = np.pad(ref, pad, constant_values=0)
    if Z_PAD:
        x = np.pad(x, ((Z_PAD, Z_PAD), (0, 0), (0, 0)), mode="edge")
        ref = np.pad(ref, ((Z_PAD, Z_PAD), (0, 0), (0, 0)), mode="edge")
    net = _fit(torch, x.astype(np.float32), ref, seed, steps, log)
    fit_s = time.perf_counter() - t0
    meta = card(
        steps=steps, seed=seed, command=command, fit_s=fit_s, threads=torch.get_num_threads()
    )
    info = write_model(out, net, meta)
    log("measuring Dice on the held-out volume")
    meta = dict(info.meta)
    meta["validation"] = evaluate(str(info.folder), ct)
    from medview.ai.training.ct_seg_card import write_readme
    from medview.modelcards import write_card

    write_card(out, meta)
    write_readme(out)
    return meta
