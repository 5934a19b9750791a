"""Training data (PneumoniaMNIST npz), seeded augmentation and the torch set-up."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai.preprocess import InputSpec
from medview.errors import MedviewError
from medview.tasks import TaskState

#: the input every bundled imaging model is trained on (and declares in its card)
SPEC = InputSpec(channels=1, height=28, width=28, mean=0.5, std=0.25, polarity="chest-auto")

Log = Callable[[str], None]


def no_log(_msg: str) -> None:
    """The default logger of the training functions: silent (the CLI passes its own)."""


def default_data_path() -> Path:
    """``$MEDVIEW_SHARED_DATA/pneumoniamnist/...`` or ``<repo>/../shared/data/...``."""
    from medview.paths import bundle_root

    base = os.environ.get("MEDVIEW_SHARED_DATA")
    root = Path(base) if base else bundle_root().parent / "shared" / "data"
    return root / "pneumoniamnist" / "pneumoniamnist_train_val.npz"


def load_split(path: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int labels (N,) of ``split`` (train or val)."""
    p = Path(path)
    if not p.is_file():
        raise MedviewError("training data not found (set --data or MEDVIEW_SHARED_DATA)", p)
    with np.load(p) as d:
        key = f"{split}_images"
        if key not in d:
            raise MedviewError(f"no {key!r} array in the npz", p)
        return d[key].astype(np.uint8), d[f"{split}_labels"].reshape(-1).astype(np.int64)


def setup_torch(seed: int) -> Any:
    """torch with the training thread count, seed and deterministic algorithms."""
    import torch

    threads = int(os.environ.get("MEDVIEW_TRAIN_THREADS", "2"))
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch


def start_run(
    data: str | Path, seed: int, device: str
) -> tuple[Any, Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What every imaging trainer does first, in this order: seeded torch, the device,
    then the train and val splits. Returns (torch, device, x_train, y_train, x_val, y_val)."""
    torch = setup_torch(seed)

    from medview.ai.devices import resolve_device

    dev = resolve_device(device)
    xtr_u8, ytr = load_split(data, "train")
    xva_u8, yva = load_split(data, "val")
    return torch, dev, xtr_u8, ytr, xva_u8, yva


@dataclass
class Run:
    """One training run as a trainer's fit function gets it (see :func:`train`)."""

    torch: Any
    dev: Any  # the torch device
    xtr_u8: np.ndarray
    ytr: np.ndarray
    xva_u8: np.ndarray
    yva: np.ndarray
    data: str | Path
    out: str | Path
    seed: int
    epochs: int
    command: str
    state: TaskState | None
    log: Log


def train(
    fit: Callable[[Run], dict[str, Any]],
    data: str | Path,
    out: str | Path,
    seed: int = 0,
    epochs: int = 16,
    device: str = "cpu",
    command: str = "",
    state: TaskState | None = None,
    log: Log = no_log,
) -> dict[str, Any]:
    """The one entry of the imaging trainers (``train_classifier``/``train_autoencoder``
    bind ``fit`` and their epochs): :func:`start_run`, then ``fit`` writes the model
    to ``out`` and returns its card."""
    torch, dev, xtr_u8, ytr, xva_u8, yva = start_run(data, seed, device)
    return fit(
        Run(torch, dev, xtr_u8, ytr, xva_u8, yva, data, out, seed, epochs, command, state, log)
    )


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


def predict_logits(model: Any, x: Any, batch: int = 256) -> np.ndarray:
    """Logits of a one-output model over ``x`` in eval mode, as float64."""
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch]).reshape(-1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def ema_update(ema: Any, model: Any, decay: float) -> None:
    """Exponential moving average of the weights (buffers copied)."""
    import torch

    with torch.no_grad():
        for e, p in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
            else:
                e.copy_(p)


def environment() -> dict[str, Any]:
    """Versions and thread count recorded in the card."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }
