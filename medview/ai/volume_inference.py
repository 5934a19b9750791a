"""3D (CT/MR volume) inference: sliding-window segmentation, label statistics.

A **volume model** is a card with ``"task": "segmentation"`` and ``"input": {"dims": 3,
...}`` (schema: :mod:`medview.modelcards`). Its input block says how the model sees a
volume (:class:`VolumeSpec`): the voxel spacing it works at, the patch (window) size and
overlap, the intensity clip and normalisation. :func:`segment_volume` then

1. resamples the volume onto the model's grid (:mod:`medview.ai.volume_grid`; stored
   integer type, no float copy of the volume);
2. runs the model on overlapping patches in batches (:class:`SlidingWindow`), blending
   overlaps with a Gaussian weight, and finalises the label of each axial slab as soon
   as no later window touches it: besides the model-grid volume only ``(C + 1)`` float32
   slabs of one patch's depth are held (C = classes), never the whole volume as float;
3. brings the integer label map back onto the volume's own grid (nearest neighbour) and
   measures each label: voxels, volume in mL (from the voxel spacing) and, for CT, the
   Hounsfield statistics (mean, sd, min, max) inside it (:func:`label_statistics`,
   slab by slab).

Progress and cancel go through ``state`` (:class:`~medview.tasks.TaskState`); the torch
device is ``cuda`` when present (fp16 autocast there), else the CPU. Qt-free; torch and
SimpleITK are imported inside the functions.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.modelcards import ModelCard, ModelError
from medview.tasks import TaskState, ensure_state

#: model output (B, C, z, y, x) probabilities for a float32 batch (B, 1, z, y, x)
Predictor = Callable[[np.ndarray], np.ndarray]

SEGMENTATION_TASK = "segmentation"
STAT_SLAB = 16  # slices per step of label_statistics


@dataclass(frozen=True)
class VolumeSpec:
    """How a volume model sees a volume (the card's ``input`` block, ``dims`` = 3)."""

    spacing: tuple[float, float, float]  # (x, y, z) mm of the model grid
    patch: tuple[int, int, int]  # (z, y, x) voxels of one window
    overlap: float = 0.25  # fraction of a patch shared by neighbouring windows
    clip: tuple[float, float] = (-1024.0, 2048.0)  # modality values (HU) before scaling
    mean: float = 0.0
    std: float = 1.0
    blend: str = "gaussian"  # "gaussian" | "constant"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VolumeSpec:
        """Parse a card's input block; ``ValueError`` on anything malformed."""
        if int(d.get("dims", 2)) != 3:
            raise ValueError("input.dims must be 3 for a volume model")
        spacing = tuple(float(v) for v in d["spacing_mm"])
        patch = tuple(int(v) for v in d["patch_zyx"])
        clip = tuple(float(v) for v in d.get("clip", (-1024.0, 2048.0)))
        if len(spacing) != 3 or not all(0 < v < 100 for v in spacing):
            raise ValueError(f"input.spacing_mm must be 3 positive mm values, not {spacing}")
        if len(patch) != 3 or not all(1 <= v <= 512 for v in patch):
            raise ValueError(f"input.patch_zyx must be 3 sides from 1 to 512, not {patch}")
        overlap = float(d.get("overlap", 0.25))
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"input.overlap must be in [0, 1), not {overlap}")
        if len(clip) != 2 or clip[0] >= clip[1]:
            raise ValueError(f"input.clip must be [low, high], not {clip}")
        std = float(d.get("std", 1.0))
        if not (math.isfinite(std) and std > 0):
            raise ValueError("input.std must be positive")
        blend = str(d.get("blend", "gaussian"))
        if blend not in ("gaussian", "constant"):
            raise ValueError(f"input.blend must be gaussian or constant, not {blend!r}")
        return cls(
            spacing=(spacing[0], spacing[1], spacing[2]),
            patch=(patch[0], patch[1], patch[2]),
            overlap=overlap,
            clip=(clip[0], clip[1]),
            mean=float(d.get("mean", 0.0)),
            std=std,
            blend=blend,
        )

    def normalise(
        self, stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0
    ) -> np.ndarray:
        """Stored values -> the model's float32 input (modality LUT, clip, scale)."""
        x = stored.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            x = x * np.float32(slope) + np.float32(intercept)
        np.clip(x, self.clip[0], self.clip[1], out=x)
        x -= np.float32(self.mean)
        x /= np.float32(self.std)
        return x


def window_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Start indices of windows of ``patch`` covering ``length`` (last one flush with the end)."""
    if length <= patch:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    starts = list(range(0, length - patch + 1, step))
    if starts[-1] != length - patch:
        starts.append(length - patch)
    return starts


def blend_weights(patch: tuple[int, int, int], blend: str) -> np.ndarray:
    """The per-voxel weight of a window's output (Gaussian: sigma = side / 8, min 1e-3)."""
    if blend == "constant":
        return np.ones(patch, np.float32)
    axes = []
    for n in patch:
        c = (n - 1) / 2.0
        sigma = max(n / 8.0, 1e-6)
        axes.append(np.exp(-0.5 * ((np.arange(n) - c) / sigma) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w = w / w.max()
    return np.maximum(w, 1e-3).astype(np.float32)


@dataclass
class SlidingWindow:
    """Patch-wise inference over a (z, y, x) array, streamed slab by slab.

    ``predict`` maps a float32 batch (B, 1, pz, py, px) to (B, C, pz, py, px) scores.
    :meth:`scores` yields ``(z0, z1, scores)`` with the blended scores of slices
    ``z0..z1-1`` (shape (C, z1 - z0, Y, X)) as soon as no later window touches them.
    Counters after a run: ``windows``, ``batches`` and ``peak_buffer_bytes`` (the most
    bytes the float accumulators ever held).
    """

    spec: VolumeSpec
    predict: Predictor
    classes: int
    batch_size: int = 2
    slope: float = 1.0
    intercept: float = 0.0
    windows: int = 0
    batches: int = 0
    peak_buffer_bytes: int = 0
    _weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._weights = blend_weights(self.spec.patch, self.spec.blend)

    def plan(self, shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
        """Window starts (z, y, x) for an array of ``shape`` (padded to the patch)."""
        padded = [max(n, p) for n, p in zip(shape, self.spec.patch, strict=True)]
        zs, ys, xs = (
            window_starts(n, p, self.spec.overlap)
            for n, p in zip(padded, self.spec.patch, strict=True)
        )
        return [(z, y, x) for z in zs for y in ys for x in xs]

    def _padded(self, array: np.ndarray) -> np.ndarray:
        pads = [(0, max(0, p - n)) for n, p in zip(array.shape, self.spec.patch, strict=True)]
        if not any(b for _, b in pads):
            return array
        return np.pad(array, pads, mode="edge")  # the volume's edge continues

    def _run_batch(self, array: np.ndarray, starts: Sequence[tuple[int, int, int]]) -> np.ndarray:
        pz, py, px = self.spec.patch
        batch = np.stack(
            [
                self.spec.normalise(
                    array[z : z + pz, y : y + py, x : x + px], self.slope, self.intercept
                )[None]
                for z, y, x in starts
            ]
        )
        out = np.asarray(self.predict(batch), dtype=np.float32)
        if out.shape != (len(starts), self.classes, pz, py, px):
            raise ModelError(
                f"the model returned {out.shape}, expected {(len(starts), self.classes, pz, py, px)}"
            )
        self.batches += 1
        return out

    def scores(
        self, array: np.ndarray, state: TaskState | None = None
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Blended scores, one finished slab at a time (see the class docstring)."""
        st = ensure_state(state)
        shape = (int(array.shape[0]), int(array.shape[1]), int(array.shape[2]))
        arr = self._padded(array)
        plan = self.plan(shape)
        self.windows, self.batches, self.peak_buffer_bytes = len(plan), 0, 0
        pz, py, px = self.spec.patch
        big_y, big_x = arr.shape[1], arr.shape[2]
        z_starts = sorted({z for z, _, _ in plan})
        lo = 0  # first slice not yet handed out
        acc = np.zeros((self.classes, 0, big_y, big_x), np.float32)
        wsum = np.zeros((0, big_y, big_x), np.float32)
        done = 0
        for gi, zs in enumerate(z_starts):
            need = zs + pz - lo
            if need > acc.shape[1]:  # grow the slab buffer to this window row
                extra = need - acc.shape[1]
                acc = np.concatenate(
                    [acc, np.zeros((self.classes, extra, big_y, big_x), np.float32)], 1
                )
                wsum = np.concatenate([wsum, np.zeros((extra, big_y, big_x), np.float32)], 0)
            self.peak_buffer_bytes = max(self.peak_buffer_bytes, acc.nbytes + wsum.nbytes)
            row = [s for s in plan if s[0] == zs]
            for b in range(0, len(row), max(1, self.batch_size)):
                starts = row[b : b + max(1, self.batch_size)]
                out = self._run_batch(arr, starts)
                for (z, y, x), o in zip(starts, out, strict=True):
                    z0 = z - lo
                    acc[:, z0 : z0 + pz, y : y + py, x : x + px] += o * self._weights
                    wsum[z0 : z0 + pz, y : y + py, x : x + px] += self._weights
                done += len(starts)
                st.progress(done / len(plan), f"window {done}/{len(plan)}")
            end = z_starts[gi + 1] if gi + 1 < len(z_starts) else arr.shape[0]
            k = end - lo
            ready = acc[:, :k] / np.maximum(wsum[:k], 1e-12)
            z1 = min(end, shape[0])
            if z1 > lo:
                yield lo, z1, ready[:, : z1 - lo, : shape[1], : shape[2]]
            acc, wsum, lo = acc[:, k:], wsum[k:], end

    def labels(self, array: np.ndarray, state: TaskState | None = None) -> np.ndarray:
        """The argmax label map (uint8, same shape as ``array``)."""
        out = np.zeros(array.shape[:3], np.uint8)
        for z0, z1, sc in self.scores(array, state):
            out[z0:z1] = np.argmax(sc, axis=0).astype(np.uint8)
        return out


# -- volume models ------------------------------------------------------------------


def is_volume_model(card: ModelCard) -> bool:
    """A card that segments volumes: task ``segmentation`` with ``input.dims`` = 3."""
    return card.task == SEGMENTATION_TASK and str(card.input.get("dims", "")) == "3"


def volume_models(errors: list[str] | None = None) -> list[Any]:
    """Every usable volume model (bundled and user), sorted by name."""
    from medview.ai.registry import discover_cards

    return [m for _, m in sorted(discover_cards(errors).items()) if is_volume_model(m)]


def get_volume_model(name_or_path: str) -> Any:
    """A volume model's :class:`~medview.ai.registry.ModelInfo` by name or folder."""
    from medview.ai.registry import lookup_card

    info = lookup_card(name_or_path, is_volume_model, "volume model", hide_rejected=False)
    if not is_volume_model(info):
        raise ModelError(
            f"not a volume model (task {info.task!r}, input dims {info.input.get('dims', 2)})",
            info.folder,
        )
    return info


class LoadedVolumeModel:
    """A verified volume model on a torch device (``auto``: cuda when present, else CPU)."""

    def __init__(self, info: Any, device: str = "auto") -> None:
        from medview.ai.devices import configure_cpu_threads, resolve_device
        from medview.ai.nets3d import build3d

        self.info = info
        try:
            self.spec = VolumeSpec.from_dict(info.input)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"bad 3D input spec ({exc})", info.metadata_path) from None
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads()
        tensors = info.load_tensors("pt")  # verifies manifest + sha256 first
        arch = info.architecture
        try:
            module = build3d(str(arch["name"]), arch.get("params"))
            module.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(
                f"weights do not fit the architecture ({exc})", info.weights_path
            ) from None
        self.module = module.eval().to(self.device)
        self.labels = list(info.labels)
        colors = info.output.get("colors") or []
        self.colors = [str(c) for c in colors] if len(colors) == len(self.labels) else []
        if len(self.labels) < 2:
            raise ModelError(
                "a segmentation card needs output.labels (background first)", info.metadata_path
            )

    @property
    def device_name(self) -> str:
        return str(self.device)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (B, C, z, y, x) of a float32 batch (B, 1, z, y, x)."""
        import contextlib

        import torch

        t = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        amp: Any = contextlib.nullcontext()
        if self.device.type == "cuda":
            amp = torch.autocast(device_type="cuda", dtype=torch.float16)
        with torch.inference_mode(), amp:
            out = torch.softmax(self.module(t).float(), dim=1)
        return out.cpu().numpy()

    def sliding_window(
        self, batch_size: int = 2, slope: float = 1.0, intercept: float = 0.0
    ) -> SlidingWindow:
        """A :class:`SlidingWindow` running this model."""
        return SlidingWindow(
            self.spec, self.predict, len(self.labels), batch_size, slope=slope, intercept=intercept
        )


_LOADED: dict[tuple[str, str, str], LoadedVolumeModel] = {}
_LOCK = threading.Lock()


def load_volume_model(model: str | Any, device: str = "auto") -> LoadedVolumeModel:
    """A cached :class:`LoadedVolumeModel` (by folder, card manifest and device)."""
    from medview.ai.devices import resolve_device

    info = get_volume_model(model) if isinstance(model, str) else model
    key = (str(info.folder), info.manifest_sha256, str(resolve_device(device)))
    with _LOCK:
        lm = _LOADED.get(key)
    if lm is None:
        lm = LoadedVolumeModel(info, device)
        with _LOCK:
            _LOADED[key] = lm
    return lm
