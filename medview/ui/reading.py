"""Reading tools of the main window: slab projections, image/cine export, screenshot JSON.

Widgets and handlers only; the logic is Qt-free: :mod:`medview.imaging.projection`
(MIP/MinIP/average), :mod:`medview.viewer.export` (GIF/MP4/PNG/JPEG),
:mod:`medview.viewer.snapshot` (what the window shows, as JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QToolBar

from medview.ui.hanging import protocol_of
from medview.viewer import snapshot

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.viewport import Viewport

#: projection combo entries: (label, projection)
PROJECTION_CHOICES: tuple[tuple[str, str | None], ...] = (
    ("Slice", None),
    ("MIP", "mip"),
    ("MinIP", "minip"),
    ("AvgIP", "avg"),
)
#: the slab thickness a projection starts with, mm (0 in the box: the whole volume)
DEFAULT_SLAB_MM = 10.0


# ---------------------------------------------------------------- projections
def build_projection_controls(win: MainWindow, tb: QToolBar) -> None:
    """A projection combo and a slab-thickness box (mm, 0 = whole volume) on ``tb``;
    they act on the active viewport and follow it (``win.projection_box``, ``slab_box``)."""
    box = QComboBox(win)
    for label, proj in PROJECTION_CHOICES:
        box.addItem(label, proj)
    box.setToolTip("Slab projection of the active viewport: maximum, minimum or average")
    slab = QDoubleSpinBox(win)
    slab.setRange(0.0, 500.0)
    slab.setDecimals(0)
    slab.setSingleStep(5.0)
    slab.setSuffix(" mm")
    slab.setSpecialValueText("whole")
    slab.setValue(DEFAULT_SLAB_MM)
    slab.setToolTip("Slab thickness centred on the slice (0: the whole volume)")
    win.projection_box, win.slab_box = box, slab
    box.activated.connect(lambda _i: apply_projection(win, box.currentData(), slab.value()))
    slab.valueChanged.connect(lambda v: _slab_changed(win, v))
    tb.addWidget(box)
    tb.addWidget(slab)


def _slab_changed(win: MainWindow, value: float) -> None:
    if win.active.view.projection:
        apply_projection(win, win.active.view.projection, value)


def apply_projection(win: MainWindow, projection: str | None, slab_mm: float | None) -> None:
    """Show ``projection`` over ``slab_mm`` (0/None: whole volume) in the active viewport."""
    vp = win.active
    if projection and vp.volume is not None and vp.volume.is_color:
        win.notify("slab projections need a greyscale image, not colour", "warning")
        projection = None
    vp.set_projection(projection, slab_mm or None)
    sync_projection_controls(win, vp)


def sync_projection_controls(win: MainWindow, vp: Viewport) -> None:
    """Show ``vp``'s projection in the toolbar (without acting on it)."""
    box, slab = getattr(win, "projection_box", None), getattr(win, "slab_box", None)
    if box is None or slab is None:
        return
    n = next((i for i, (_l, p) in enumerate(PROJECTION_CHOICES) if p == vp.view.projection), 0)
    box.setCurrentIndex(n)
    if vp.view.projection:
        slab.blockSignals(True)
        slab.setValue(vp.view.slab_mm or 0.0)
        slab.blockSignals(False)


# ---------------------------------------------------------------- export
def viewport_image(vp: Viewport, overlays: bool) -> Any:
    """What ``vp`` shows as a QImage: the viewport as on screen (``overlays``: corner text,
    measurements, AI heat map with its disclaimer), else the bare image at its own
    pixel size (aspect corrected), exactly what ``medview render`` writes."""
    from medview.ui.viewport.items import qimage

    if overlays or vp.volume is None:
        return vp.grab().toImage()
    return qimage(vp.view.render(vp.volume, vp.effective_invert(), aspect=True)).copy()


def save_viewport_dialog(win: MainWindow, overlays: bool = True) -> None:
    """File > Save viewport image (PNG or JPEG, with or without overlays)."""
    title = "Save viewport" + ("" if overlays else " without overlays")
    path, _ = QFileDialog.getSaveFileName(
        win, title, "viewport.png", "PNG (*.png);;JPEG (*.jpg *.jpeg)"
    )
    if path:
        save_viewport(win, path, overlays)


def save_viewport(win: MainWindow, path: str, overlays: bool = True) -> bool:
    """Write the active viewport to ``path`` (.png, .jpg); a one-line notice on failure."""
    suffix = os.path.splitext(path)[1].lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix)
    if fmt is None:
        win.notify(f"{path}: an image is saved as .png or .jpg")
        return False
    if not viewport_image(win.active, overlays).save(path, fmt, 92 if fmt == "JPEG" else -1):
        win.notify(f"{path}: could not write the image")
        return False
    return True


def copy_viewport(win: MainWindow, overlays: bool = True) -> None:
    """Edit > Copy viewport image: to the clipboard."""
    from PySide6.QtGui import QGuiApplication

    QGuiApplication.clipboard().setImage(viewport_image(win.active, overlays))
    win.notify("viewport image copied", "info")


def export_cine_dialog(win: MainWindow) -> None:
    """File > Export cine: every slice of the active viewport's plane as GIF or MP4,
    written on a worker with the viewport's window and projection; in the 3D layout a
    full rotation of the 3D view (:func:`export_rotation`)."""
    from medview.viewer import export

    rotate = win.area.layout_name == "3d"
    vp = win.active
    if vp.volume is None or vp.loading or (rotate and win.area.view3d.renderer is None):
        win.notify("nothing to export: load a series first", "info")
        return
    filters = "Animated GIF (*.gif)" + (";;MP4 video (*.mp4)" if export.mp4_available() else "")
    title, name = ("Export 3D rotation", "rotation.gif") if rotate else ("Export cine", "cine.gif")
    path, _ = QFileDialog.getSaveFileName(win, title, name, filters)
    if path:
        (export_rotation if rotate else export_cine)(win, path)


def _export_slot(win: MainWindow) -> Any:
    from medview.ui.workers import TaskSlot

    slot = getattr(win, "export_slot", None)
    if slot is None:
        slot = win.export_slot = TaskSlot(win)
        win.side_slots.append(slot)
    return slot


def export_rotation(win: MainWindow, path: str, frames: int = 36) -> Any:
    """A full turn of the 3D view as it is now (preset, elevation, zoom, clipping box,
    size), ``frames`` frames at the cine rate, written to ``path`` on a worker by the 3D
    view's own renderer; returns the task handle."""
    from medview.viewer.export import write_rotation

    v3 = win.area.view3d
    w, h = v3.canvas.width(), v3.canvas.height()
    view = dataclasses.replace(v3.view, size=(max(32, w - w % 2), max(32, h - h % 2)))
    h_ = _export_slot(win).run(
        write_rotation,
        path,
        v3.renderer.volume,
        view,
        frames,
        win.active.cine.fps,
        v3.renderer,
        name="rotation",
        on_result=lambda n: win.notify(f"{path}: {n} frames written", "info"),
        on_error=win.notify,
    )
    win.progress.track(h_, f"Exporting {os.path.basename(path)}")
    return h_


def export_cine(win: MainWindow, path: str) -> Any:
    """Write the active viewport's cine to ``path`` on a worker; returns the task handle."""
    from medview.viewer.export import write_cine_of

    vp = win.active
    v = vp.view
    h = _export_slot(win).run(
        write_cine_of,
        path,
        vp.volume,
        v.plane,
        v.window,
        v.projection,
        v.slab_mm,
        vp.cine.fps,
        name="cine",
        on_result=lambda n: win.notify(f"{path}: {n} frames written", "info"),
        on_error=win.notify,
    )
    win.progress.track(h, f"Exporting {os.path.basename(path)}")
    return h


# ---------------------------------------------------------------- screenshot JSON
def describe(win: MainWindow) -> dict[str, Any]:
    """:func:`medview.viewer.snapshot.describe_window` of ``win``."""
    area = win.area
    vis = area.visible_viewports()
    facts = [
        snapshot.ViewportFacts(
            v.view,
            v.volume,
            v.pending,
            v.loading,
            v.gsps.label if v.gsps is not None and v.gsps_visible else None,
        )
        for v in vis
    ]
    maxed = area.viewports.index(area.maximized) if area.maximized is not None else None
    doc = snapshot.describe_window(
        area.layout_name,
        facts,
        active=vis.index(win.active) if win.active in vis else 0,
        maximized=maxed,
        protocol=protocol_of(win),
    )
    v3 = area.view3d
    if v3 is not None and area.layout_name == "3d":
        first = getattr(v3.renderer, "first_frame_s", None)
        doc["view3d"] = {
            **v3.view.as_dict(),
            "frames": v3.frames,
            "first_frame_s": None if first is None else round(first, 3),
            "backend": getattr(v3.renderer, "backend", ""),
            "message": v3.message,
        }
    return doc


def json_path_for(png: str) -> str:
    """``FILE.png`` -> ``FILE.json`` (any other name: ``NAME.json`` beside it)."""
    root, ext = os.path.splitext(png)
    return (root if ext else png) + ".json"


def write_screenshot_json(win: MainWindow, png: str) -> str:
    """Write :func:`describe` beside the screenshot; returns the JSON path."""
    path = json_path_for(png)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(describe(win), fh, indent=2)
        fh.write("\n")
    return path
