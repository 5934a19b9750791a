"""Grayscale Softcopy Presentation States (GSPS) that arrive with a study (Qt-free).

A GSPS (SOP class 1.2.840.10008.5.1.4.1.1.11.1, modality PR; PS3.3 A.33.1) has no
pixels: it says how referenced images are to be shown. :func:`find_presentation_states`
(a worker function) looks for them among the files of the opened paths and keeps the
ones that reference images of a series; :func:`parse` reads what medview shows of one:

* the window of the Softcopy VOI LUT module (C.11.8), per referenced image or for all;
* graphic annotations (C.10.5): POLYLINE, POINT, CIRCLE, ELLIPSE and INTERPOLATED
  graphics and text, in PIXEL units (image coordinates: 0.0\\0.0 is the top-left corner
  of the top-left pixel, C.10.5.1.2) or DISPLAY units (fractions of the image);
* the display shutter (C.7.6.11): rectangular, circular and polygonal.

The viewer draws them over the axial slices they reference and can switch them off.
Spatial transformations, presentation LUTs and bitmap shutters are not applied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from medview.tasks import TaskState, ensure_state

GSPS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.11.1"


@dataclass
class Graphic:
    """One graphic or text of an annotation, in image coordinates (x along columns)."""

    kind: str  # POLYLINE, POINT, CIRCLE, ELLIPSE, INTERPOLATED, TEXT
    points: list[tuple[float, float]]
    sop_uid: str = ""  # "" : every referenced image
    text: str = ""
    filled: bool = False
    display_units: bool = False  # points are fractions of the image (DISPLAY units)


@dataclass
class Shutter:
    """The display shutter: the image outside it is shown black (C.7.6.11)."""

    shapes: list[str] = field(default_factory=list)  # RECTANGULAR, CIRCULAR, POLYGONAL
    rect: tuple[float, float, float, float] | None = None  # left, right, upper, lower (1-based)
    circle: tuple[float, float, float] | None = None  # centre column, centre row, radius
    polygon: list[tuple[float, float]] = field(default_factory=list)  # (column, row) 1-based


@dataclass
class PresentationState:
    """What medview shows of one GSPS."""

    path: str
    label: str
    description: str
    sop_uid: str
    referenced: set[str]  # SOP instance UIDs of the images it applies to
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # sop ("": all)
    graphics: list[Graphic] = field(default_factory=list)
    shutter: Shutter | None = None

    def window_for(self, sop_uid: str) -> tuple[float, float] | None:
        """The presentation state's window for an image (None: it sets none)."""
        return self.windows.get(sop_uid) or self.windows.get("")

    def graphics_for(self, sop_uid: str) -> list[Graphic]:
        """The graphics drawn on an image."""
        return [g for g in self.graphics if g.sop_uid in ("", sop_uid)]


def _refs(item: Any) -> set[str]:
    return {
        str(r.ReferencedSOPInstanceUID)
        for r in getattr(item, "ReferencedImageSequence", None) or []
        if "ReferencedSOPInstanceUID" in r
    }


def _pairs(values: Any) -> list[tuple[float, float]]:
    flat = [float(v) for v in (values or [])]
    return [(flat[n], flat[n + 1]) for n in range(0, len(flat) - 1, 2)]


def _graphics(ds: Any) -> list[Graphic]:
    out: list[Graphic] = []
    for ann in getattr(ds, "GraphicAnnotationSequence", None) or []:
        refs = sorted(_refs(ann)) or [""]
        for sop in refs:
            for g in getattr(ann, "GraphicObjectSequence", None) or []:
                out.append(
                    Graphic(
                        kind=str(getattr(g, "GraphicType", "POLYLINE")).upper(),
                        points=_pairs(getattr(g, "GraphicData", [])),
                        sop_uid=sop,
                        filled=str(getattr(g, "GraphicFilled", "N")).upper() == "Y",
                        display_units=str(getattr(g, "GraphicAnnotationUnits", "PIXEL"))
                        == "DISPLAY",
                    )
                )
            for t in getattr(ann, "TextObjectSequence", None) or []:
                if "AnchorPoint" in t:
                    pts, units = _pairs(t.AnchorPoint), getattr(t, "AnchorPointAnnotationUnits", "")
                else:
                    tl, br = (
                        _pairs(getattr(t, "BoundingBoxTopLeftHandCorner", [])),
                        _pairs(getattr(t, "BoundingBoxBottomRightHandCorner", [])),
                    )
                    pts = tl[:1] + br[:1]
                    units = getattr(t, "BoundingBoxAnnotationUnits", "")
                out.append(
                    Graphic(
                        "TEXT",
                        pts,
                        sop,
                        str(getattr(t, "UnformattedTextValue", "")),
                        display_units=str(units) == "DISPLAY",
                    )
                )
    return out


def _shutter(ds: Any) -> Shutter | None:
    shapes = [str(s).upper() for s in (ds.get("ShutterShape") or [])]
    if isinstance(ds.get("ShutterShape"), str):
        shapes = str(ds.ShutterShape).upper().split("\\")
    if not shapes:
        return None
    sh = Shutter(shapes=shapes)
    if "RECTANGULAR" in shapes:
        sh.rect = (
            float(ds.ShutterLeftVerticalEdge),
            float(ds.ShutterRightVerticalEdge),
            float(ds.ShutterUpperHorizontalEdge),
            float(ds.ShutterLowerHorizontalEdge),
        )
    if "CIRCULAR" in shapes:
        row, col = (float(v) for v in ds.CenterOfCircularShutter)
        sh.circle = (col, row, float(ds.RadiusOfCircularShutter))
    if "POLYGONAL" in shapes:
        sh.polygon = [(c, r) for r, c in _pairs(ds.VerticesOfThePolygonalShutter)]
    return sh


def _first(value: Any) -> float:
    """The first value of a possibly multi-valued DS element."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])
    return float(value)


def parse(ds: Any, path: str = "") -> PresentationState:
    """A GSPS dataset (pydicom) as a :class:`PresentationState`; ``ValueError`` when it
    is not one."""
    if str(ds.get("SOPClassUID", "")) != GSPS_SOP_CLASS:
        raise ValueError("not a Grayscale Softcopy Presentation State")
    referenced: set[str] = set()
    for series in ds.get("ReferencedSeriesSequence") or []:
        referenced |= _refs(series)
    windows: dict[str, tuple[float, float]] = {}
    for voi in ds.get("SoftcopyVOILUTSequence") or []:
        if "WindowCenter" not in voi or "WindowWidth" not in voi:
            continue
        c, w = _first(voi.WindowCenter), _first(voi.WindowWidth)
        for sop in _refs(voi) or {""}:
            windows[sop] = (c, max(1.0, w))
    return PresentationState(
        path=path,
        label=str(ds.get("ContentLabel", "") or "GSPS"),
        description=str(ds.get("ContentDescription", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        referenced=referenced,
        windows=windows,
        graphics=_graphics(ds),
        shutter=_shutter(ds),
    )


def _files(paths: list[str]) -> list[str]:
    """The files of ``paths``: a folder's own files (not its subfolders), files as given."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            names = sorted(os.listdir(p))
            out.extend(f for n in names if os.path.isfile(f := os.path.join(p, n)))
        elif os.path.isfile(p):
            out.append(p)
    return out


def _may_be_gsps(path: str) -> bool:
    """False when the file's meta header says it is not a GSPS: a Part 10 file names its
    SOP class in the first few hundred bytes, so the slices of a 3,000-file series are
    passed over without parsing them (files with no meta header are parsed)."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(4096)
    except OSError:
        return False
    if head[128:132] != b"DICM":
        return True
    return GSPS_SOP_CLASS.encode() in head


def find_presentation_states(
    paths: list[str], sop_uids: set[str], state: TaskState | None = None
) -> list[PresentationState]:
    """The GSPS among the files of the folders ``paths`` and of the folders holding the
    files ``paths`` (a series' files; a folder's own files, not its subfolders) that
    reference any of ``sop_uids``; unreadable files and other objects are passed over."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    state = ensure_state(state)
    folders = {p if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths}
    files = _files(sorted(folders))
    found: list[PresentationState] = []
    for n, f in enumerate(files):
        if n % 50 == 0:
            state.progress(n / max(len(files), 1), "presentation states")
        if not _may_be_gsps(f):
            continue
        try:
            head = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
            if str(head.get("SOPClassUID", "")) != GSPS_SOP_CLASS:
                continue
            pr = parse(pydicom.dcmread(f, stop_before_pixels=True), f)
        except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError):
            continue
        if pr.referenced & sop_uids:
            found.append(pr)
    return found


__all__ = [
    "GSPS_SOP_CLASS",
    "Graphic",
    "PresentationState",
    "Shutter",
    "find_presentation_states",
    "parse",
]
