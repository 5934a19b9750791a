"""The 3D view (layout ``3d``): VTK volume rendering of the first viewport's series.

Frames come from :class:`medview.viewer.volume3d.VolumeRenderer` (offscreen VTK on its
own thread) through a :class:`~medview.ui.workers.TaskSlot`, so the GUI thread only
paints finished images; the first frame of a volume is a draft (half resolution, see
:meth:`~medview.viewer.volume3d.VolumeRenderer.render_progressive`) refined at once. Drag to rotate (a half-size frame while dragging, the full one
on release), wheel to zoom, a preset box (bone, lung, soft tissue, angio), three range
sliders for the clipping box and a reset button. Built when the 3D layout is first
shown: VTK is imported then, not at start-up.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from medview.ui.workers import TaskSlot
from medview.viewer import volume3d

log = logging.getLogger(__name__)


class _Canvas(QWidget):
    """Paints the last frame, scaled to fit, and the mouse camera controls."""

    def __init__(self, owner: View3DWidget) -> None:
        super().__init__(owner)
        self.owner = owner
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self._drag: QPointF | None = None

    def paintEvent(self, _event: Any) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        img = self.owner.image
        if img is not None and not img.isNull():
            scale = min(self.width() / img.width(), self.height() / img.height())
            w, h = img.width() * scale, img.height() * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(target, img)
        p.setPen(QColor(220, 220, 220))
        if self.owner.message:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.owner.message)
        p.drawText(
            self.rect().adjusted(6, 4, -6, -4),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
            self.owner.caption(),
        )
        p.end()

    def mousePressEvent(self, e: Any) -> None:  # noqa: N802
        self._drag = e.position()

    def mouseMoveEvent(self, e: Any) -> None:  # noqa: N802
        if self._drag is None:
            return
        d = e.position() - self._drag
        self._drag = e.position()
        v = self.owner.view
        v.azimuth = (v.azimuth - d.x() * 0.5) % 360.0
        v.elevation = max(-89.0, min(89.0, v.elevation + d.y() * 0.5))
        self.owner.request(draft=True)

    def mouseReleaseEvent(self, _e: Any) -> None:  # noqa: N802
        if self._drag is not None:
            self._drag = None
            self.owner.request()

    def wheelEvent(self, e: Any) -> None:  # noqa: N802
        steps = e.angleDelta().y() / 120.0
        v = self.owner.view
        v.zoom = max(0.2, min(10.0, v.zoom * (1.15**steps)))
        self.owner.request()

    def resizeEvent(self, e: Any) -> None:  # noqa: N802
        super().resizeEvent(e)
        self.owner.request()


class View3DWidget(QWidget):
    """The 3D volume view. See the module docstring."""

    def __init__(self, parent: QWidget | None = None, host: Any | None = None) -> None:
        super().__init__(parent)
        self.view = volume3d.View3D()
        self.volume: Any | None = None
        self.renderer: volume3d.VolumeRenderer | None = None
        self.image: QImage | None = None
        self.message = "3D: open a CT or MR series"
        self.frames = 0
        self.slot = TaskSlot(self)
        if host is not None and hasattr(host, "side_slots"):
            host.side_slots.append(self.slot)  # the window is busy while a frame renders
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        self.canvas = _Canvas(self)
        lay.addWidget(self.canvas, 1)
        lay.addLayout(self._controls())

    def _controls(self) -> QHBoxLayout:
        from superqt import QRangeSlider

        row = QHBoxLayout()
        self.preset_box = QComboBox(self)
        for name in volume3d.PRESETS:
            self.preset_box.addItem(name)
        self.preset_box.currentTextChanged.connect(self._preset)
        row.addWidget(QLabel("Preset", self))
        row.addWidget(self.preset_box)
        self.clip_sliders = []
        for label in ("Clip x", "y", "z"):
            s = QRangeSlider(Qt.Orientation.Horizontal, self)
            s.setRange(0, 100)
            s.setValue((0, 100))
            s.setToolTip("Clipping box along the volume's columns, rows and slices")
            s.valueChanged.connect(lambda _v: self._clip())
            row.addWidget(QLabel(label, self))
            row.addWidget(s, 1)
            self.clip_sliders.append(s)
        reset = QPushButton("Reset 3D", self)
        reset.clicked.connect(self.reset)
        row.addWidget(reset)
        return row

    # ------------------------------------------------------------------ state
    def caption(self) -> str:
        """Bottom-left text: preset and camera."""
        v = self.view
        return (
            f"3D {v.preset}  az {v.azimuth:.0f}\N{DEGREE SIGN} el {v.elevation:.0f}\N{DEGREE SIGN}"
        )

    def _preset(self, name: str) -> None:
        self.view.preset = name
        self.request()

    def _clip(self) -> None:
        vals: list[float] = []
        for s in self.clip_sliders:
            lo, hi = s.value()
            vals += [lo / 100.0, max(hi, lo + 1) / 100.0]
        self.view.clip = tuple(vals)  # type: ignore[assignment]
        self.request()

    def reset(self) -> None:
        """Front view, whole volume, zoom 1 (the preset stays)."""
        self.view = volume3d.View3D(preset=self.view.preset)
        for s in self.clip_sliders:
            s.blockSignals(True)
            s.setValue((0, 100))
            s.blockSignals(False)
        self.request()

    def set_volume(self, vol: Any | None) -> None:
        """Render ``vol`` (None: nothing); a new volume gets a new VTK pipeline."""
        if vol is self.volume:
            return
        self._close_renderer()
        self.volume, self.image = vol, None
        if vol is None:
            self.message = "3D: open a CT or MR series"
        elif not volume3d.vtk_available():
            self.message = "3D rendering needs VTK: pip install 'vtk>=9.3'"
        else:
            try:
                self.renderer = volume3d.VolumeRenderer(vol)
                self.message = "Rendering\N{HORIZONTAL ELLIPSIS}"
            except ValueError as exc:
                self.message = f"3D: {exc}"
        self.canvas.update()
        self.request()

    def request(self, draft: bool = False) -> None:
        """Render the current view on a worker (half size while dragging)."""
        if self.renderer is None or not self.isVisible():
            return
        w, h = self.canvas.width(), self.canvas.height()
        if draft:
            w, h = w // 2, h // 2
        view = dataclasses.replace(self.view, size=(max(32, w), max(32, h)))
        # nothing shown yet for this volume: a quick draft first, then the full frame
        first = self.image is None and not draft
        self.slot.run(
            self.renderer.render_progressive if first else self.renderer.render,
            view,
            name="3d",
            on_partial=lambda frame: self._rendered(frame, draft=True),
            on_result=self._rendered,
            on_error=self._failed,
        )

    def _rendered(self, frame: Any, draft: bool = False) -> None:
        if frame is None:
            return  # a newer request replaced it
        from medview.ui.viewport.items import qimage

        self.image = qimage(frame).copy()
        self.frames += 0 if draft else 1  # full frames (the screenshot JSON's "frames")
        self.message = ""
        self.canvas.update()

    def _failed(self, msg: str) -> None:
        self.message = f"3D rendering failed: {msg}"
        self.canvas.update()

    def _close_renderer(self) -> None:
        old, self.renderer = self.renderer, None
        if old is not None:
            self.slot.cancel()
            TaskSlot(self).run(old.close, name="3d-close")

    def showEvent(self, e: Any) -> None:  # noqa: N802
        super().showEvent(e)
        self.request()

    def shutdown(self) -> None:
        """Stop rendering and release VTK (on close)."""
        self.slot.cancel()
        old, self.renderer = self.renderer, None
        if old is not None:
            old.close()
