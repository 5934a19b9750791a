"""Volume geometry for 3D models: a medview volume <-> SimpleITK, model grids, label files.

A volume model works at a fixed voxel spacing (its card's ``input.spacing_mm``). The
volume is resampled onto a grid with the same origin and axes but that spacing
(:func:`to_model_grid`, linear, kept in the volume's stored integer type so memory stays
that of the stored volume), the model runs there, and the label map comes back onto the
volume's own grid by nearest neighbour (:func:`labels_to_volume_grid`). Reference label
files (NIfTI) are read into a volume's geometry by physical position
(:func:`read_labels_in_volume_geometry`), whatever their axis order or flips.

SimpleITK is imported inside the functions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medview.errors import MedviewError


def _direction(vol: Any) -> list[float]:
    d = np.eye(3) if getattr(vol, "direction", None) is None else np.asarray(vol.direction)
    return [float(v) for v in d.reshape(3, 3).flatten()]


def sitk_image(
    array: np.ndarray, vol: Any, spacing: tuple[float, float, float] | None = None
) -> Any:
    """``array`` (z, y, x) as a SimpleITK image with ``vol``'s origin and axes.

    ``spacing`` (x, y, z) defaults to the volume's own.
    """
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing([float(v) for v in (spacing or vol.spacing)])
    img.SetOrigin([float(v) for v in vol.origin])
    img.SetDirection(_direction(vol))
    return img


def reference_image(vol: Any) -> Any:
    """An empty SimpleITK image with ``vol``'s grid (size, spacing, origin, axes)."""
    import SimpleITK as sitk

    z, y, x = vol.array.shape[:3]
    ref = sitk.Image([int(x), int(y), int(z)], sitk.sitkUInt8)
    ref.SetSpacing([float(v) for v in vol.spacing])
    ref.SetOrigin([float(v) for v in vol.origin])
    ref.SetDirection(_direction(vol))
    return ref


def grid_shape(vol: Any, spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """(z, y, x) size of the model grid covering ``vol`` at ``spacing`` (x, y, z) mm."""
    z, y, x = vol.array.shape[:3]
    sizes = []
    for n, have, want in zip((x, y, z), vol.spacing, spacing, strict=True):
        sizes.append(max(1, int(math.ceil(n * float(have) / float(want) - 1e-6))))
    return sizes[2], sizes[1], sizes[0]


def same_spacing(vol: Any, spacing: tuple[float, float, float], tol: float = 0.01) -> bool:
    """True when the volume's spacing equals ``spacing`` within ``tol`` (relative)."""
    return all(
        abs(float(a) - float(b)) <= tol * float(b)
        for a, b in zip(vol.spacing, spacing, strict=True)
    )


def to_model_grid(vol: Any, spacing: tuple[float, float, float]) -> np.ndarray:
    """The volume's stored values on the model grid (z, y, x), linear interpolation.

    The result keeps the stored integer type (rounded), so it takes no more memory than
    the stored volume at that spacing; the modality LUT is applied later, patch by patch.
    The volume itself is returned when its spacing already is the model's.
    """
    if same_spacing(vol, spacing):
        return np.asarray(vol.array)
    import SimpleITK as sitk

    src = sitk_image(np.asarray(vol.array), vol)
    ref = sitk.Image(list(reversed(grid_shape(vol, spacing))), src.GetPixelID())
    ref.SetSpacing([float(v) for v in spacing])
    ref.SetOrigin(src.GetOrigin())
    ref.SetDirection(src.GetDirection())
    low = float(np.min(vol.array)) if vol.array.size else 0.0
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, low, src.GetPixelID())
    return sitk.GetArrayFromImage(out)


def labels_to_volume_grid(
    labels: np.ndarray, vol: Any, spacing: tuple[float, float, float]
) -> np.ndarray:
    """A label map on the model grid (``spacing``) back onto ``vol``'s grid (nearest)."""
    if same_spacing(vol, spacing) and labels.shape == vol.array.shape[:3]:
        return labels
    import SimpleITK as sitk

    src = sitk_image(labels.astype(np.uint8, copy=False), vol, spacing)
    out = sitk.Resample(src, reference_image(vol), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out).astype(np.uint8, copy=False)


def read_labels_in_volume_geometry(path: str | Path, vol: Any) -> np.ndarray:
    """A label file (NIfTI, MHA...) resampled by position onto ``vol``'s grid (nearest).

    Voxels of the volume outside the label file's box get 0.
    """
    import SimpleITK as sitk

    p = Path(path)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise MedviewError(f"cannot read the label file ({str(exc).splitlines()[0]})", p) from None
    out = sitk.Resample(img, reference_image(vol), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out)


def write_labels(path: str | Path, labels: np.ndarray, vol: Any) -> Path:
    """Write a label map (z, y, x, in ``vol``'s grid) as NIfTI/MHA with the volume's geometry."""
    import SimpleITK as sitk

    p = Path(path)
    if labels.shape != vol.array.shape[:3]:
        raise MedviewError(
            f"label map {labels.shape} does not match the volume {vol.array.shape[:3]}", p
        )
    try:
        sitk.WriteImage(sitk_image(labels.astype(np.uint8, copy=False), vol), str(p), True)
    except RuntimeError as exc:
        raise MedviewError(f"cannot write the label map ({str(exc).splitlines()[0]})", p) from None
    return p
