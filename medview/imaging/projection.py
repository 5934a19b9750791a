"""Intensity projections over a slab: maximum (MIP), minimum (MinIP) and average.

A slab is a run of consecutive slices of one plane (axial, coronal or sagittal)
centred on a slice index, ``thickness_mm`` thick along the plane's normal, or the
whole volume. Each output pixel is the maximum, minimum or mean of the stored
values along that normal. The work is done on the stored integer array (a strided
view of the slab; never a floating-point copy of the volume): the modality LUT
(rescale slope and intercept, PS3.3 C.11.1) is linear, so the mean commutes with
it, and it is monotonic, so the maximum of the stored values is the maximum in
modality units when the slope is positive (with a negative slope, maximum and
minimum swap, which :func:`project_slab` does). The 2D result then goes through
the same windowing as one slice (:func:`medview.imaging.display.render_slice`'s
steps), oriented by the one flip rule of :mod:`medview.imaging.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medview.imaging import display, geometry

if TYPE_CHECKING:
    from medview.io.model import Volume

#: projections a viewport or ``medview render --projection`` can use ("none": one slice)
PROJECTIONS: tuple[str, ...] = ("mip", "minip", "avg")
#: the label shown in the viewer for each projection
LABELS: dict[str, str] = {"mip": "MIP", "minip": "MinIP", "avg": "AvgIP"}


@dataclass(frozen=True)
class Slab:
    """Slices ``first..last`` (inclusive) of ``plane``: what one projection covers."""

    plane: str
    first: int
    last: int
    thickness_mm: float  # the slab actually covered: slices x spacing along the normal

    @property
    def count(self) -> int:
        """Number of slices in the slab."""
        return self.last - self.first + 1


def check_projection(projection: str) -> str:
    """``projection`` if it is one of :data:`PROJECTIONS`, else ``ValueError``."""
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {', '.join(PROJECTIONS)}, not {projection!r}")
    return projection


def normal_spacing(vol: geometry.Gridded, plane: str) -> float:
    """Spacing in mm between two slices of ``plane`` (along its normal)."""
    sx, sy, sz = vol.spacing
    return float({"axial": sz, "coronal": sy, "sagittal": sx}[geometry.check_plane(plane)])


def slab_range(vol: geometry.Gridded, plane: str, index: int, thickness_mm: float | None) -> Slab:
    """The slab of ``thickness_mm`` centred on slice ``index`` of ``plane``.

    ``None`` or a thickness not above 0: the whole volume. Otherwise the number of
    slices is ``round(thickness / spacing)`` (at least 1), centred on ``index``
    (one more slice after it than before when the count is even) and shifted to
    stay inside the volume.
    """
    n = geometry.plane_count(vol, plane)
    spacing = normal_spacing(vol, plane)
    if not 0 <= index < n:
        raise IndexError(f"{plane} slice {index} out of range 0..{n - 1}")
    if thickness_mm is None or thickness_mm <= 0:
        return Slab(plane, 0, n - 1, n * spacing)
    count = max(1, min(n, int(round(thickness_mm / spacing)) if spacing > 0 else 1))
    first = index - (count - 1) // 2
    first = max(0, min(first, n - count))
    return Slab(plane, first, first + count - 1, count * spacing)


def _reduce(block: np.ndarray, axis: int, projection: str) -> np.ndarray:
    if projection == "mip":
        return np.max(block, axis=axis)
    if projection == "minip":
        return np.min(block, axis=axis)
    # float32 accumulation through numpy's buffered reduction: no float copy of the block
    return np.asarray(np.mean(block, axis=axis, dtype=np.float32))


def project_slab(
    volume: Volume, slab: Slab, projection: str
) -> tuple[np.ndarray, tuple[float, float]]:
    """The projection of ``slab`` in stored values, oriented like one slice of its plane.

    Returns the 2D array (the stored dtype for MIP/MinIP, float32 for the average)
    and its (row spacing, column spacing) in mm. Colour volumes are refused
    (``ValueError``).
    """
    check_projection(projection)
    plane = geometry.check_plane(slab.plane)
    if volume.is_color:
        raise ValueError("projections need a greyscale volume, not a colour image")
    if volume.rescale_slope < 0 and projection != "avg":
        projection = "minip" if projection == "mip" else "mip"
    arr = volume.array
    lo, hi = slab.first, slab.last + 1
    if plane == "axial":
        out = _reduce(arr[lo:hi], 0, projection)
    elif plane == "coronal":
        out = _reduce(arr[:, lo:hi, :], 1, projection)
    else:
        out = _reduce(arr[:, :, lo:hi], 2, projection)
    if geometry.plane_flipped(volume, plane):
        out = out[::-1]
    return out, geometry.plane_spacing(volume, plane)


def render_projection(
    volume: Volume,
    index: int,
    plane: str,
    projection: str,
    thickness_mm: float | None,
    window: tuple[float, float] | None = None,
    invert: bool | None = None,
    aspect: bool = True,
) -> np.ndarray:
    """A slab projection rendered to uint8 (H, W) exactly like one slice of that plane.

    The slab is :func:`slab_range` (``thickness_mm`` None: the whole volume); the
    modality LUT, window (``window``, else the file's, else the volume's automatic
    one), MONOCHROME1 inversion and the aspect correction are
    :func:`medview.imaging.display.render_slice`'s own (``grayscale_to_uint8``,
    ``square_pixels``).
    """
    slab = slab_range(volume, plane, index, thickness_mm)
    img, (row_sp, col_sp) = project_slab(volume, slab, projection)
    out = display.grayscale_to_uint8(volume, img, window, invert)
    return display.square_pixels(out, (row_sp, col_sp), aspect)


__all__ = [
    "LABELS",
    "PROJECTIONS",
    "Slab",
    "check_projection",
    "normal_spacing",
    "project_slab",
    "render_projection",
    "slab_range",
]
