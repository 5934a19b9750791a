"""What the viewport tells about its image: corner texts and the value under the mouse.

Plain functions of the viewport (``vp``, a :class:`~medview.ui.viewport.canvas.Viewport`)
or its volume; nothing here paints (:mod:`.items` does).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QPointF

from medview.errors import printable
from medview.imaging.geometry import PLANE_AXIS, pixel_to_voxel
from medview.io.model import format_da

if TYPE_CHECKING:
    from medview.ui.viewport.canvas import Viewport


def series_info(vp: Viewport) -> Any | None:
    """The series (or first instance, or the series being loaded) the header texts show."""
    vol = vp.volume
    if vol is not None:
        if vol.series is not None:
            return vol.series
        return vol.instances[0] if vol.instances else None
    return vp.pending


def is_multiframe(vol: Any | None) -> bool:
    """True for the frames of one multi-frame instance."""
    return bool(vol is not None and vol.instances and len(vol.instances) != vol.shape[0])


def has_geometry(vol: Any | None) -> bool:
    """True when the images carry ImagePositionPatient / ImageOrientationPatient."""
    if vol is None:
        return False
    if getattr(vol.series, "kind", "") == "volume":  # NIfTI/MHA/NRRD: geometry in the header
        return True
    if not vol.instances:
        return False
    inst = vol.instances[0]
    return inst.position is not None and inst.orientation is not None


def slice_position(vol: Any | None, plane: str, index: int) -> float | None:
    """Position of slice ``index`` along its normal in patient mm (z for axial)."""
    if vol is None or not has_geometry(vol):
        return None
    i, j, k = pixel_to_voxel(vol, plane, index, 0.5, 0.5)
    return vol.voxel_to_patient(i, j, k)[PLANE_AXIS[plane]]


def image_key(vol: Any | None, plane: str, k: int) -> tuple[str, int]:
    """(storage key, frame) of slice ``k`` of ``plane``: an axial slice's SOPInstanceUID
    (or path#frame); a reformat's ``SERIES_UID/plane`` with ``k`` as its frame
    (:func:`medview.viewer.session.reformat_key`); ("", 0) without instances."""
    if vol is None:
        return "", 0
    if plane != "axial":
        from medview.viewer.session import reformat_key

        key = reformat_key(vol, plane)
        return (key, int(k)) if key else ("", 0)
    inst = vol.instance_at(k) if vol.instances else None
    if inst is None:
        return "", 0
    frame = k if len(vol.instances) != vol.shape[0] else 0
    return inst.sop_uid or f"{inst.path}#{frame}", frame


def spacing_note(vol: Any | None) -> str:
    """ "detector plane" when the mm are the detector's (ImagerPixelSpacing), else ""."""
    src = getattr(vol, "spacing_source", "") if vol is not None else ""
    return "detector plane" if src == "ImagerPixelSpacing" else ""


def readout(vp: Viewport, pos: QPointF) -> str:
    """Pixel value (HU for CT) and patient coordinate under a widget point."""
    if not vp.has_image:
        return ""
    q = vp.to_image(pos)
    rows, cols = vp.image_size()
    c, r = int(math.floor(q.x())), int(math.floor(q.y()))
    if not (0 <= r < rows and 0 <= c < cols):
        return ""
    values = vp.current_values()
    parts = [f"x {c} y {r}"]
    if values is not None and r < values.shape[0] and c < values.shape[1]:
        v = values[r, c]
        if np.ndim(v):
            parts.append("RGB " + ",".join(str(int(a)) for a in np.ravel(v)[:3]))
        else:
            u = vp.unit()
            parts.append(f"{float(v):.0f} {u}".strip() if u else f"value {float(v):g}")
    vol = vp.volume
    if vol is not None and vp.spacing_known() and has_geometry(vol):
        i, j, k = pixel_to_voxel(vol, vp.plane, vp.index, c + 0.5, r + 0.5)
        X, Y, Z = vol.voxel_to_patient(i, j, k)  # noqa: N806
        parts.append(f"({X:.1f}, {Y:.1f}, {Z:.1f}) mm")
    return "   ".join(parts)


def _patient_lines(info: Any) -> tuple[list[str], list[str]]:
    """Top-left (patient) and top-right (study, series) corner texts."""
    name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
    tl = [name or "(no name)", f"ID: {getattr(info, 'patient_id', '') or '-'}"]
    birth = format_da(getattr(info, "patient_birth_date", ""))
    sex = getattr(info, "patient_sex", "")
    if birth or sex:
        tl.append(" ".join(x for x in (f"DOB {birth}" if birth else "", sex) if x))
    series = (str(getattr(info, "modality", "") or ""), str(getattr(info, "description", "") or ""))
    tr = [
        str(getattr(info, "study_description", "") or ""),
        format_da(getattr(info, "study_date", "")),
        " ".join(x for x in series if x),
    ]
    return tl, [x for x in tr if x]


def slab_text(vp: Viewport) -> str:
    """``"MIP 20 mm: 16-25"`` while a slab projection is shown (1-based slices), else ``""``."""
    view, vol = vp.view, vp.volume
    if not view.projection or vol is None or vol.is_color or vol.ready is not None:
        return ""
    from medview.imaging.projection import LABELS, slab_range

    slab = slab_range(vol, view.plane, view.index, view.slab_mm)
    size = "whole volume" if view.slab_mm is None else f"{slab.thickness_mm:.0f} mm"
    return f"{LABELS[view.projection]} {size}: {slab.first + 1}-{slab.last + 1}"


def corner_lines(vp: Viewport) -> dict[str, list[str]]:
    """Corner texts of the viewport: keys tl, tr, bl, br."""
    header = series_info(vp)
    tl: list[str] = []
    tr: list[str] = []
    bl: list[str] = []
    br: list[str] = []
    if header is not None:
        # names and descriptions come from the file: control characters written out
        tl, tr = ([printable(x, 200) for x in lines] for lines in _patient_lines(header))
    n = vp.slice_count()
    if n:
        word = "Fr" if vp.is_multiframe() else "Im"
        bl.append(f"{vp.title + '  ' if vp.title else ''}{word}: {vp.index + 1}/{n}")
    slab = slab_text(vp)
    if slab:
        bl.append(slab)
    pos = vp.slice_position() if vp.spacing_known() else None
    if pos is not None:
        bl.append(f"Pos: {pos:.1f} mm")
    if vp.load_text:
        bl.append(vp.load_text)
    if vp.window is not None:
        bl_w = f"W: {vp.window[1]:.0f} L: {vp.window[0]:.0f}"
        br.append(bl_w + ("  INV" if vp.user_invert else ""))
    elif vp.has_image and vp.volume is not None and not vp.volume.is_color:
        br.append("VOI LUT (file)")
    if vp.has_image:
        extra = []
        if vp.rotation:
            extra.append(f"rot {vp.rotation * 90}\N{DEGREE SIGN}")
        if vp.flip_h:
            extra.append("flip H")
        if vp.flip_v:
            extra.append("flip V")
        br.append(f"Zoom: {vp.zoom_percent():.0f}%" + ("  " + " ".join(extra) if extra else ""))
        if not vp.spacing_known():
            br.append("spacing unknown")
    return {"tl": tl, "tr": tr, "bl": bl, "br": br}
