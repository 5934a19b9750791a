"""Measurement geometry and statistics (pure numpy; used by the viewport).

Points are in *image pixel coordinates* of the displayed plane: ``x`` along
columns, ``y`` along rows, pixel ``(c, r)`` covering ``[c, c+1) x [r, r+1)``
(its centre is ``(c+0.5, r+0.5)``). Spacing is ``(row_spacing, col_spacing)`` in
mm. An ROI contains the pixels whose centres lie inside the shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KINDS = ("ruler", "angle", "rect", "ellipse")
#: how many points each kind needs
POINTS = {"ruler": 2, "angle": 3, "rect": 2, "ellipse": 2}

Point = tuple[float, float]


@dataclass
class Measurement:
    """One measurement drawn on one image (slice ``index`` of ``plane``)."""

    kind: str
    points: list[Point]
    index: int = 0
    plane: str = "axial"
    image_key: str = ""  # SOPInstanceUID (or path#frame) when stored
    frame: int = 0  # frame inside a multi-frame instance
    db_id: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, Any]:
        """What is stored in the database (JSON-able)."""
        return {
            "points": [[round(float(x), 3), round(float(y), 3)] for x, y in self.points],
            "plane": self.plane,
            "frame": self.frame,
            "stats": {k: v for k, v in self.stats.items() if isinstance(v, (int, float, str))},
        }


def ruler_length(p0: Point, p1: Point, spacing: tuple[float, float]) -> float:
    """Length in mm (or pixels when ``spacing`` is (1, 1) and unknown)."""
    rs, cs = spacing
    return math.hypot((p1[0] - p0[0]) * cs, (p1[1] - p0[1]) * rs)


def angle_degrees(a: Point, vertex: Point, b: Point, spacing: tuple[float, float]) -> float:
    """Angle at ``vertex`` between the rays to ``a`` and ``b``, in physical space."""
    rs, cs = spacing
    v1 = np.array([(a[0] - vertex[0]) * cs, (a[1] - vertex[1]) * rs])
    v2 = np.array([(b[0] - vertex[0]) * cs, (b[1] - vertex[1]) * rs])
    n = float(np.linalg.norm(v1) * np.linalg.norm(v2))
    if n == 0:
        return 0.0
    cosang = float(np.clip(np.dot(v1, v2) / n, -1.0, 1.0))
    return math.degrees(math.acos(cosang))


def _bbox(p0: Point, p1: Point) -> tuple[float, float, float, float]:
    return min(p0[0], p1[0]), min(p0[1], p1[1]), max(p0[0], p1[0]), max(p0[1], p1[1])


def roi_mask(kind: str, p0: Point, p1: Point, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (rows, cols) mask of pixels whose centres lie in the rect/ellipse."""
    h, w = shape
    x0, y0, x1, y1 = _bbox(p0, p1)
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    if kind == "rect":
        mc = (cols >= x0) & (cols <= x1)
        mr = (rows >= y0) & (rows <= y1)
        return mr[:, None] & mc[None, :]
    if kind == "ellipse":
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ax, ay = (x1 - x0) / 2, (y1 - y0) / 2
        if ax <= 0 or ay <= 0:
            return np.zeros(shape, dtype=bool)
        dx = ((cols - cx) / ax) ** 2
        dy = ((rows - cy) / ay) ** 2
        return (dy[:, None] + dx[None, :]) <= 1.0
    raise ValueError(f"not an ROI kind: {kind}")


def roi_area(kind: str, p0: Point, p1: Point, spacing: tuple[float, float]) -> float:
    """Geometric area of the drawn shape in mm^2 (pixel^2 when spacing unknown)."""
    rs, cs = spacing
    x0, y0, x1, y1 = _bbox(p0, p1)
    w, h = (x1 - x0) * cs, (y1 - y0) * rs
    return w * h if kind == "rect" else math.pi * w * h / 4.0


def roi_stats(values: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, SD (population), min, max and pixel count of ``values[mask]``.

    For colour images pass the luminance (or one channel).
    """
    sel = np.asarray(values, dtype=np.float64)[mask]
    if sel.size == 0:
        return {"n": 0}
    return {
        "n": int(sel.size),
        "mean": float(sel.mean()),
        "sd": float(sel.std()),
        "min": float(sel.min()),
        "max": float(sel.max()),
    }


def compute(
    m: Measurement, values: np.ndarray | None, spacing: tuple[float, float]
) -> dict[str, Any]:
    """Fill ``m.stats`` for the measurement on an image of ``values``."""
    pts = m.points
    stats: dict[str, Any] = {}
    if m.kind == "ruler" and len(pts) >= 2:
        stats["length"] = ruler_length(pts[0], pts[1], spacing)
    elif m.kind == "angle" and len(pts) >= 3:
        stats["angle"] = angle_degrees(pts[0], pts[1], pts[2], spacing)
    elif m.kind in ("rect", "ellipse") and len(pts) >= 2:
        stats["area"] = roi_area(m.kind, pts[0], pts[1], spacing)
        if values is not None:
            v = values if values.ndim == 2 else values.mean(axis=-1)
            stats.update(roi_stats(v, roi_mask(m.kind, pts[0], pts[1], v.shape)))
    m.stats = stats
    return stats


def label(m: Measurement, unit: str, spacing_known: bool, spacing_note: str = "") -> list[str]:
    """Text lines shown next to a measurement."""
    s = m.stats
    mm = "mm" if spacing_known else "px"
    note = "" if spacing_known else " (spacing unknown)"
    if spacing_known and spacing_note:
        note = f" ({spacing_note})"
    if m.kind == "ruler" and "length" in s:
        return [f"{s['length']:.1f} {mm}{note}"]
    if m.kind == "angle" and "angle" in s:
        return [f"{s['angle']:.1f}\N{DEGREE SIGN}"]
    if m.kind in ("rect", "ellipse") and "area" in s:
        u = f" {unit}" if unit else ""
        lines = [f"Area {s['area']:.1f} {mm}\N{SUPERSCRIPT TWO}{note}"]
        if s.get("n"):
            lines.append(f"Mean {s['mean']:.1f}{u}  SD {s['sd']:.1f}")
            lines.append(f"Min {s['min']:.0f}  Max {s['max']:.0f}{u}")
        return lines
    return []
