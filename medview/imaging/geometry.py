"""Plane geometry of a volume: one rule for how a plane is cut, oriented and addressed.

A volume's ``array`` is indexed ``(k, j, i)`` = (slice, row, column) and its
``direction`` matrix holds, as columns, the patient-space unit vectors of the
``i`` (along a row, i.e. increasing column), ``j`` (down a column, i.e. increasing
row) and ``k`` (slice) axes. Patient space is the DICOM patient coordinate system
of PS3.3 C.7.6.2.1.1 (Image Position and Image Orientation (Patient)): ``+x``
towards the patient's Left, ``+y`` towards Posterior, ``+z`` towards the Head
(LPS). The first two columns of ``direction`` are the row and column direction
cosines of Image Orientation (Patient) (0020,0037); the third is their cross
product (the slice normal).

Image (pixel) coordinates of a displayed plane: ``x`` along columns, ``y`` along
rows, pixel ``(c, r)`` covers ``[c, c+1) x [r, r+1)`` so its centre is at
``(c + 0.5, r + 0.5)``. Voxel indices ``(i, j, k)`` have their centres at integers.

The ONE flip rule (:func:`plane_flipped`): axial planes are shown as stored;
coronal and sagittal reformats have their rows reversed when the slice axis points
superior, so the patient's head is at the top (radiological convention).
:func:`medview.imaging.display.extract_plane` cuts pixels with it and the viewer
maps mouse positions with it (:func:`pixel_to_voxel`), so they cannot disagree.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: voxel axis (i=0, j=1, k=2) that the slice index of each plane runs along
PLANE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}


class Gridded(Protocol):
    """What the geometry needs from a volume (:class:`medview.io.Volume` has it)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) = (slices, rows, columns)."""
        ...

    spacing: tuple[float, float, float]  # (x, y, z) mm
    direction: np.ndarray  # columns: patient directions of the i, j, k axes


def check_plane(plane: str) -> str:
    """``plane`` if it is one of :data:`PLANES`, else ``ValueError``."""
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")
    return plane


def plane_count(vol: Gridded, plane: str) -> int:
    """Number of slices available in ``plane``."""
    z, y, x = vol.shape
    return {"axial": z, "coronal": y, "sagittal": x}[check_plane(plane)]


def plane_shape(vol: Gridded, plane: str) -> tuple[int, int]:
    """(rows, columns) of one slice of ``plane``."""
    z, y, x = vol.shape
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[check_plane(plane)]


def plane_spacing(vol: Gridded, plane: str) -> tuple[float, float]:
    """(row spacing, column spacing) in mm of one slice of ``plane``."""
    sx, sy, sz = vol.spacing
    spacings = {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}
    row, col = spacings[check_plane(plane)]
    return float(row), float(col)


def plane_flipped(vol: Gridded, plane: str) -> bool:
    """True when the rows of a reformat are reversed so the head is at the top.

    Axial planes are never flipped. A coronal or sagittal plane's rows run along the
    slice axis ``k``; when ``k`` points superior (``+z`` in LPS, PS3.3 C.7.6.2.1.1)
    the last slice is the most cranial, so row 0 shows the last slice.
    """
    if check_plane(plane) == "axial":
        return False
    k_axis = np.asarray(vol.direction, dtype=float)[:, 2]
    return bool(k_axis[2] >= 0)


def pixel_to_voxel(
    vol: Gridded, plane: str, index: int, x: float, y: float
) -> tuple[float, float, float]:
    """Image coordinates ``(x, y)`` of slice ``index`` of ``plane`` -> voxel ``(i, j, k)``."""
    c, r = x - 0.5, y - 0.5
    if check_plane(plane) == "axial":
        return c, r, float(index)
    k = (vol.shape[0] - 1 - r) if plane_flipped(vol, plane) else r
    if plane == "coronal":
        return c, float(index), k
    return float(index), c, k


def voxel_to_pixel(
    vol: Gridded, plane: str, i: float, j: float, k: float
) -> tuple[int, float, float]:
    """Voxel ``(i, j, k)`` -> (slice index, x, y) image coordinates in ``plane``."""
    if check_plane(plane) == "axial":
        return int(round(k)), i + 0.5, j + 0.5
    r = (vol.shape[0] - 1 - k) if plane_flipped(vol, plane) else k
    if plane == "coronal":
        return int(round(j)), i + 0.5, r + 0.5
    return int(round(i)), j + 0.5, r + 0.5


def plane_axes_lps(vol: Gridded, plane: str) -> tuple[np.ndarray, np.ndarray]:
    """Patient (LPS) unit directions of the displayed image's ``+x`` and ``+y`` axes."""
    d = np.asarray(vol.direction, dtype=float)
    ii, jj, kk = d[:, 0], d[:, 1], d[:, 2]
    down_k = -kk if plane_flipped(vol, plane) else kk
    if plane == "axial":
        return ii, jj
    if plane == "coronal":
        return ii, down_k
    return jj, down_k


def orientation_letters(v: np.ndarray) -> str:
    """Letters of a patient-space (LPS) direction, dominant component first ("L", "PH").

    The letters of PS3.3 C.7.6.1.1.1 (Patient Orientation): L/R, P/A, H/F. A
    component counts when its magnitude exceeds 0.3 (an oblique axis gets two or
    three letters).
    """
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    vec = np.asarray(v, dtype=float)
    out = ""
    for ax in np.argsort(-np.abs(vec)):
        if abs(vec[ax]) > 0.3:
            out += names[ax][0] if vec[ax] > 0 else names[ax][1]
    return out


def take_plane(arr: np.ndarray, vol: Gridded, index: int, plane: str) -> np.ndarray:
    """Slice ``index`` of ``plane`` cut from ``arr`` (a (z, y, x[, c]) array of ``vol``'s
    grid), oriented by :func:`plane_flipped`. A view, never a copy."""
    n = plane_count(vol, plane)
    if not 0 <= index < n:
        raise IndexError(f"{plane} slice {index} out of range 0..{n - 1}")
    if plane == "axial":
        return arr[index]
    img = arr[:, index, :] if plane == "coronal" else arr[:, :, index]
    return img[::-1] if plane_flipped(vol, plane) else img


__all__ = [
    "PLANES",
    "PLANE_AXIS",
    "Gridded",
    "check_plane",
    "orientation_letters",
    "pixel_to_voxel",
    "plane_axes_lps",
    "plane_count",
    "plane_flipped",
    "plane_shape",
    "plane_spacing",
    "take_plane",
    "voxel_to_pixel",
]
