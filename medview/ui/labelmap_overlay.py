"""A 3D model's label map drawn over every viewport (axial, coronal, sagittal).

:class:`LabelMapOverlays` puts one transparent :class:`LabelMapLayer` on top of each
viewport of the window (a child widget, transparent to the mouse, so the viewport code is
untouched). A layer shows the plane and slice its viewport shows, cut from the label map
with the viewer's own plane rule (:func:`medview.imaging.geometry.take_plane`) and drawn
through the viewport's image -> screen transform, so it follows zoom, pan, rotation and
flips. Labels are coloured from the model card, half transparent; the background is clear.
Only viewports showing the segmented volume get it.

The panel that makes label maps (:class:`LabelMapSource`, the "CT label map" panel) sends
``labelmap_changed(result | None)`` and ``labelmap_visible(bool)``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, SignalInstance
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from medview.imaging.geometry import plane_count, take_plane

ALPHA = 110  # of 255, for every label but the background


@runtime_checkable
class LabelMapSource(Protocol):
    """A panel that produces label maps (a SegmentationResult) for the viewports."""

    labelmap_changed: SignalInstance  # Signal(object): a result or None
    labelmap_visible: SignalInstance  # Signal(bool)


def color_lut(colors: list[str], alpha: int = ALPHA) -> np.ndarray:
    """(256, 4) uint8 RGBA per label value; label 0 and unnamed values are clear."""
    lut = np.zeros((256, 4), np.uint8)
    for k, name in enumerate(colors[:256]):
        if k == 0:
            continue
        c = QColor(name)
        lut[k] = (c.red(), c.green(), c.blue(), alpha)
    return lut


def same_grid(result: Any, vol: Any) -> bool:
    """True when ``vol`` is the volume the label map was computed on (or has its grid)."""
    if vol is None or result is None:
        return False
    if getattr(result, "volume", None) is vol:
        return True
    return bool(
        vol.array.shape[:3] == result.labels.shape
        and np.allclose(vol.spacing, result.volume.spacing)
        and np.allclose(vol.origin, result.volume.origin)
    )


class LabelMapLayer(QWidget):
    """The label map of one viewport's current plane and slice (see the module doc)."""

    def __init__(self, viewport: Any) -> None:
        super().__init__(viewport)
        self.vp = viewport
        self.result: Any | None = None
        self.lut = np.zeros((256, 4), np.uint8)
        self.shown = True
        self._key: tuple | None = None
        self._img: QImage | None = None
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents, True)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground, True)
        self.setGeometry(viewport.rect())
        self.raise_()
        self.show()  # a child made after its parent was shown stays hidden until shown
        viewport.installEventFilter(self)

    def set_result(self, result: Any | None, lut: np.ndarray) -> None:
        self.result, self.lut, self._key, self._img = result, lut, None, None
        self.update()

    def active(self) -> bool:
        """A label map is set, shown, and belongs to the viewport's volume."""
        return self.shown and self.result is not None and same_grid(self.result, self.vp.volume)

    def image(self) -> QImage | None:
        """The RGBA image of the current plane and slice (cached)."""
        vp, res = self.vp, self.result
        if res is None:
            return None
        vol = vp.volume
        key = (id(res), vp.plane, vp.index)
        if key == self._key:
            return self._img
        if not 0 <= vp.index < plane_count(vol, vp.plane):
            return None
        cut = np.ascontiguousarray(take_plane(res.labels, vol, vp.index, vp.plane))
        rgba = np.ascontiguousarray(self.lut[cut])
        h, w = cut.shape
        img = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
        img._keep = rgba  # type: ignore[attr-defined]  # the buffer lives with the image
        self._key, self._img = key, img
        return img

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.vp and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.vp.rect())
            self.raise_()
        return False

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        if not self.active():
            return
        img = self.image()
        if img is None:
            return
        p = QPainter(self)
        p.setTransform(self.vp.transform())
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        p.drawImage(0, 0, img)
        p.end()


class LabelMapOverlays(QObject):
    """One :class:`LabelMapLayer` per viewport; follows a :class:`LabelMapSource`."""

    def __init__(self, viewports: list[Any], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.layers = [LabelMapLayer(vp) for vp in viewports]
        for vp in viewports:  # the label slice follows the viewport's slice and view
            vp.index_changed.connect(lambda _i, vp=vp: self._repaint(vp))
            vp.image_changed.connect(lambda vp=vp: self._repaint(vp))
        self.result: Any | None = None
        self.visible = True

    def connect_source(self, source: LabelMapSource) -> None:
        source.labelmap_changed.connect(self.set_result)
        source.labelmap_visible.connect(self.set_visible)

    def _repaint(self, vp: Any) -> None:
        for layer in self.layers:
            if layer.vp is vp:
                layer.raise_()
                layer.update()

    def set_result(self, result: Any | None) -> None:
        """Show ``result``'s label map (None: remove it) on every viewport of its volume."""
        self.result = result
        lut = color_lut(list(result.colors)) if result is not None else np.zeros((256, 4), np.uint8)
        for layer in self.layers:
            layer.set_result(result, lut)

    def set_visible(self, on: bool) -> None:
        """Toggle the label map on all viewports (the result is kept)."""
        self.visible = bool(on)
        for layer in self.layers:
            layer.shown = self.visible
            layer.update()

    def shown_on(self) -> list[Any]:
        """The viewports that currently draw the label map (for tests and the panel)."""
        return [layer.vp for layer in self.layers if layer.active()]
