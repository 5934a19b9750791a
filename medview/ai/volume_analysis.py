"""Run a volume model on a CT/MR volume; per-label volumes and HU statistics; slice scores.

:func:`segment_volume` is the worker function of ``medview analyze --model ct_seg`` and
of the GUI's label-map panel: resample to the model grid, sliding windows
(:mod:`medview.ai.volume_inference`), the label map back in the volume's geometry,
:func:`label_statistics`. :func:`slice_scores` runs a slice-level (2D) classifier over
every slice of a series and returns one score per slice. Qt-free.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.ai.volume_inference import STAT_SLAB, LoadedVolumeModel, load_volume_model
from medview.errors import MedviewError
from medview.tasks import TaskState, ensure_state

DEFAULT_COLORS = ["#000000", "#e8a33d", "#3d9be8", "#f2f2f2", "#e83d6f", "#6fe83d", "#b03de8"]


@dataclass
class LabelStat:
    """One label of a label map: size and the modality values inside it."""

    label: int
    name: str
    color: str
    voxels: int
    ml: float
    mean: float | None = None  # modality values (HU for CT); None for an empty label
    sd: float | None = None
    min: float | None = None
    max: float | None = None
    unit: str = ""

    def as_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(float(v), 2)

        return {
            "label": self.label,
            "name": self.name,
            "color": self.color,
            "voxels": self.voxels,
            "ml": round(self.ml, 2),
            "mean": r(self.mean),
            "sd": r(self.sd),
            "min": r(self.min),
            "max": r(self.max),
            "unit": self.unit,
        }


@dataclass
class SegmentationResult:
    """A label map in the volume's geometry and what was measured in it."""

    labels: np.ndarray  # uint8 (z, y, x), same grid as the volume
    names: list[str]  # by label value, background (0) first
    colors: list[str]  # by label value
    stats: list[LabelStat]
    model: str
    version: str
    device: str
    elapsed_s: float
    windows: int
    batches: int
    peak_buffer_bytes: int
    grid_shape: tuple[int, int, int]
    in_scope: bool = True
    scope_reasons: list[str] = field(default_factory=list)
    disclaimer: str = ""
    volume: Any | None = None  # the medview Volume it belongs to (not in JSON)

    def as_json(self, path: str = "") -> dict[str, Any]:
        """The CLI's JSON object (no arrays)."""
        return {
            "path": path,
            "model": self.model,
            "version": self.version,
            "device": self.device,
            "elapsed_s": round(self.elapsed_s, 3),
            "shape_zyx": list(self.labels.shape),
            "model_grid_zyx": list(self.grid_shape),
            "windows": self.windows,
            "batches": self.batches,
            "labels": [s.as_dict() for s in self.stats],
            "in_scope": self.in_scope,
            "scope_reasons": self.scope_reasons,
            "disclaimer": self.disclaimer,
        }


def _modality_slab(vol: Any, z0: int, z1: int) -> np.ndarray:
    slab = np.asarray(vol.array[z0:z1], dtype=np.float64)
    slope, intercept = float(vol.rescale_slope), float(vol.rescale_intercept)
    if slope != 1.0 or intercept != 0.0:
        slab = slab * slope + intercept
    return slab


def label_statistics(
    labels: np.ndarray,
    vol: Any,
    names: Sequence[str],
    colors: Sequence[str] = (),
    state: TaskState | None = None,
) -> list[LabelStat]:
    """Voxels, mL and modality-value statistics of every named label but 0 (background).

    Read slab by slab (:data:`STAT_SLAB` slices), so no float copy of the whole volume is
    made. mL = voxels x the product of the voxel spacing (mm^3) / 1000. Statistics are in
    modality units (HU for CT: the modality LUT is applied); None for an empty label.
    """
    st = ensure_state(state)
    if labels.shape != vol.array.shape[:3]:
        raise MedviewError(f"label map {labels.shape} does not match the volume {vol.array.shape}")
    n = len(names)
    count = np.zeros(n, np.int64)
    total = np.zeros(n)
    sq = np.zeros(n)
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    depth = labels.shape[0]
    for z0 in range(0, depth, STAT_SLAB):
        z1 = min(depth, z0 + STAT_SLAB)
        lab = labels[z0:z1]
        vals = _modality_slab(vol, z0, z1)
        for k in range(1, n):
            sel = vals[lab == k]
            if sel.size:
                count[k] += sel.size
                total[k] += float(sel.sum())
                sq[k] += float(np.square(sel).sum())
                lo[k] = min(lo[k], float(sel.min()))
                hi[k] = max(hi[k], float(sel.max()))
        st.progress(z1 / depth, "label statistics")
    voxel_ml = float(np.prod([float(s) for s in vol.spacing])) / 1000.0
    unit = str(getattr(vol, "unit", "") or "")
    out = []
    for k in range(1, n):
        color = colors[k] if k < len(colors) else DEFAULT_COLORS[k % len(DEFAULT_COLORS)]
        stat = LabelStat(
            k, str(names[k]), color, int(count[k]), int(count[k]) * voxel_ml, unit=unit
        )
        if count[k]:
            mean = total[k] / count[k]
            stat.mean, stat.min, stat.max = mean, lo[k], hi[k]
            stat.sd = float(np.sqrt(max(sq[k] / count[k] - mean * mean, 0.0)))
        out.append(stat)
    return out


def _check_volume(vol: Any) -> None:
    if getattr(vol, "is_color", False) or vol.array.ndim != 3:
        raise MedviewError("a volume model needs a greyscale 3D volume, not a colour image")
    if min(vol.array.shape) < 1:
        raise MedviewError("the volume is empty")
    if vol.array.shape[0] < 2:
        raise MedviewError("a volume model needs a 3D series, not a single image")


def segment_volume(
    vol: Any,
    model: str | Any = "ct_seg",
    device: str = "auto",
    batch_size: int = 2,
    state: TaskState | None = None,
) -> SegmentationResult:
    """Segment ``vol`` with a volume model; the label map in the volume's own geometry.

    Progress: resampling 0-5 %, windows 5-90 %, back to the volume grid and statistics
    90-100 %. ``state.cancel()`` stops it between batches (raises ``Cancelled``).
    """
    from medview.ai import volume_grid
    from medview.ai.scope import check_scope, volume_scope_meta
    from medview.disclaimers import AI as DISCLAIMER

    st = ensure_state(state)
    _check_volume(vol)
    t0 = time.perf_counter()
    lm = model if isinstance(model, LoadedVolumeModel) else load_volume_model(model, device)
    st.progress(0.0, f"{lm.info.name}: resampling to {lm.spec.spacing[0]:g} mm")
    grid = volume_grid.to_model_grid(vol, lm.spec.spacing)
    sw = lm.sliding_window(batch_size, float(vol.rescale_slope), float(vol.rescale_intercept))
    inner = TaskState(on_progress=lambda f, m: st.progress(0.05 + 0.85 * f, m))
    small = np.zeros(grid.shape, np.uint8)
    for z0, z1, scores in sw.scores(grid, inner):
        small[z0:z1] = np.argmax(scores, axis=0).astype(np.uint8)
    del grid
    st.progress(0.9, "label map to the volume grid")
    labels = volume_grid.labels_to_volume_grid(small, vol, lm.spec.spacing)
    colors = lm.colors or [DEFAULT_COLORS[k % len(DEFAULT_COLORS)] for k in range(len(lm.labels))]
    stats = label_statistics(labels, vol, lm.labels, colors)
    st.progress(1.0, "done")
    in_scope, reasons = check_scope(lm.info.meta, volume_scope_meta(vol))
    return SegmentationResult(
        labels=labels,
        names=list(lm.labels),
        colors=colors,
        stats=stats,
        model=lm.info.name,
        version=lm.info.version,
        device=lm.device_name,
        elapsed_s=time.perf_counter() - t0,
        windows=sw.windows,
        batches=sw.batches,
        peak_buffer_bytes=sw.peak_buffer_bytes,
        grid_shape=_zyx(small.shape),
        in_scope=in_scope,
        scope_reasons=reasons,
        disclaimer=DISCLAIMER,
        volume=vol,
    )


def _zyx(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return int(shape[0]), int(shape[1]), int(shape[2])


def dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float | None:
    """Dice of one label between two label maps (None when both lack it)."""
    a, b = pred == label, ref == label
    denom = int(a.sum()) + int(b.sum())
    if denom == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / denom


def slice_scores(
    vol: Any,
    model: str | Any,
    device: str = "auto",
    batch_size: int = 16,
    state: TaskState | None = None,
) -> list[dict[str, Any]]:
    """A slice-level classifier over every axial slice: one score per slice.

    Each entry: ``slice`` (1-based), ``score`` (the probability of the card's last label,
    e.g. pneumonia, or the anomaly score), ``predicted``, ``in_distribution`` and
    ``in_scope``. Runs :func:`medview.ai.inference.run_on_volume` (batched, bounded memory).
    """
    from medview.ai.inference import run_on_volume

    n = int(vol.array.shape[0])
    results = run_on_volume(
        vol, list(range(n)), [model], device, batch_size, heatmaps=False, state=state
    )
    out = []
    for r in results:
        if r.probabilities:
            score: float | None = float(list(r.probabilities.values())[-1])
        else:
            score = None if r.anomaly_score is None else float(r.anomaly_score)
        out.append(
            {
                "slice": int(r.index) + 1,
                "model": r.model,
                "score": score,
                "predicted": r.predicted,
                "in_distribution": r.in_distribution,
                "in_scope": r.in_scope,
            }
        )
    return sorted(out, key=lambda d: d["slice"])
