"""The image viewport: one plane of a volume with window/level, zoom, measurements.

A :class:`Viewport` shows slice ``index`` of ``plane`` of a
:class:`~medview.io.model.Volume`, rendered with the core's
:func:`~medview.imaging.display.render_slice` (the same pipeline as
``medview render``). What it shows and how (slice, window, zoom, pan, rotation,
flips, crosshair) is a Qt-free :class:`~medview.viewer.view_state.ViewState`
(``vp.view``; ``vp.index``, ``vp.zoom``... read and write it); its image -> screen
map becomes one :class:`QTransform`, so pixels are never resampled on the CPU and
measurements stay in image coordinates. Plane geometry is
:mod:`medview.imaging.geometry`, the painters are :mod:`.items` and the mouse and
keyboard tools :mod:`.tools`.

While a series loads, :meth:`Viewport.begin_loading` / :meth:`show_partial` show
each slice as soon as the worker decodes it; :meth:`set_volume` replaces them
by the assembled volume.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from medview.imaging import display, measure
from medview.imaging.geometry import plane_count, plane_shape, plane_spacing, voxel_to_pixel
from medview.imaging.measure import Measurement
from medview.ui.viewport import info, items
from medview.ui.viewport.tools import Cine, Tools
from medview.viewer.view_state import ViewState

if TYPE_CHECKING:
    from PySide6 import QtGui

log = logging.getLogger(__name__)


class _ViewField:
    """A viewport attribute that lives in its :class:`ViewState` (``vp.view``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = {"user_invert": "invert"}.get(name, name)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.view, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.view, self.name, value)


class Viewport(QWidget):
    """One image viewport. See the module docstring."""

    index_changed = Signal(int)
    window_changed = Signal(float, float)
    activated = Signal()
    cursor_info = Signal(str)
    crosshair_moved = Signal(float, float, float)  # voxel (i, j, k)
    measurement_added = Signal(object)
    measurement_changed = Signal(object)
    measurement_deleted = Signal(object)
    maximize_requested = Signal()
    image_changed = Signal()
    notify = Signal(str)

    plane = _ViewField()
    index = _ViewField()
    window = _ViewField()  # (center, width); shadows QWidget.window(), as it always did
    user_invert = _ViewField()
    zoom = _ViewField()  # screen pixels per mm
    rotation = _ViewField()  # quarter turns clockwise
    flip_h = _ViewField()
    flip_v = _ViewField()
    fit_mode = _ViewField()
    crosshair = _ViewField()  # voxel (i, j, k)

    def __init__(self, parent: QWidget | None = None, plane: str = "axial") -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.view = ViewState(plane=plane)
        self.volume: Any | None = None
        self.pending: Any | None = None  # SeriesInfo being loaded, before the first slice
        self.loaded: int | None = None  # while loading: slices 0..loaded-1 are decoded
        self.overlays_visible = True
        self.active = False
        self.tool = "wl"
        self.tools = Tools(self)
        self.measurements: list[Measurement] = []
        self.selected: Measurement | None = None
        self.ai_overlay: Any | None = None  # medview.ui.context.Overlay
        self.ai_image: QImage | None = None
        self.gsps: Any | None = None  # medview.viewer.gsps.PresentationState shown over it
        self.gsps_visible = True
        self.message = ""  # centred text (loading..., errors)
        self.load_text = ""  # bottom-left while loading
        self.title = ""  # e.g. plane name in MPR
        self._cache_key: tuple | None = None
        self.qimg: QImage | None = None
        self.qimg_shape: tuple[int, int] = (0, 0)
        self._values_key: tuple | None = None
        self._values: np.ndarray | None = None
        self._partial_window: tuple[float, float] | None = None
        self.last_mouse = QPointF(-1, -1)
        self.render_ms = 0.0
        self.cine = Cine(self)
        self.text_font = QFont(self.font())
        self.text_font.setPointSizeF(9.0)
        self.text_font.setStyleHint(QFont.StyleHint.SansSerif)

    @property
    def pan(self) -> QPointF:
        """Screen offset of the image centre from the viewport centre."""
        return QPointF(*self.view.pan)

    @pan.setter
    def pan(self, value: QPointF) -> None:
        self.view.pan = (float(value.x()), float(value.y()))

    # ------------------------------------------------------------------ data
    def clear(self, message: str = "") -> None:
        self.stop_cine()
        self.volume = None
        self.pending = None
        self.loaded = None
        self.measurements = []
        self.selected = None
        self.ai_overlay = None
        self.ai_image = None
        self.gsps = None
        self.crosshair = None
        self.message = message
        self.load_text = ""
        self._invalidate()
        self.update()
        self.image_changed.emit()

    def begin_loading(self, series: Any) -> None:
        """Show the series' overlay text; slices follow via :meth:`show_partial`."""
        self.clear()
        self.pending = series
        self.message = "Loading\N{HORIZONTAL ELLIPSIS}"
        self.index = 0
        self.update()

    def show_partial(self, vol: Any, k: int) -> None:
        """The loader's volume (still being filled) with slice ``k`` decoded."""
        if self.pending is None or self.volume is not None:
            return
        if self.plane != "axial":
            return  # reformats need the whole volume
        self.volume = vol
        self.loaded = max(1, int(k) + 1)
        self.message = ""
        self.index = int(k)
        self.window = None
        self.user_invert = False
        self.reset_view()
        if not vol.is_color:
            self.window = self._default_window()
        self._partial_window = self.window  # replaced by the whole volume's once loaded
        self.load_text = f"loading {self.loaded}/{self.slice_count()}"
        self._invalidate()
        self.update()
        self.index_changed.emit(self.index)
        self.image_changed.emit()

    def loading_progress(self, done: int) -> None:
        """``done`` slices are decoded (the loader fills them in slice order)."""
        if self.loaded is None or self.volume is None:
            return
        self.loaded = max(self.loaded, min(int(done), self.slice_count()))
        self.load_text = f"loading {self.loaded}/{self.slice_count()}"
        self.update()

    def loading_cancelled(self) -> None:
        """Loading stopped: keep the slices that arrived, or clear."""
        if self.volume is not None and self.loaded is not None:
            self.pending = None
            self.load_text = f"cancelled: {self.loaded}/{self.slice_count()} slices loaded"
            self.update()
        else:
            self.clear("Loading cancelled")

    def set_volume(self, vol: Any, index: int | None = None, keep_view: bool = False) -> None:
        """Show ``vol`` fully loaded. ``index`` defaults to the slice shown while
        loading, else the middle slice."""
        was_partial = self.volume is vol and self.loaded is not None
        self.stop_cine()
        self.volume = vol
        self.pending = None
        self.loaded = None
        self.message = ""
        self.load_text = ""
        n = plane_count(vol, self.plane)
        if index is None:
            index = self.index if was_partial else n // 2
        self.index = int(min(max(index, 0), n - 1))
        if not keep_view and not was_partial:
            self.window = None
            self.user_invert = False
            self.reset_view()
        if was_partial and self.window == getattr(self, "_partial_window", None):
            self.window = None  # the automatic window of the first slices: use the volume's
        if self.window is None and not vol.is_color:
            self.window = self._default_window()
        self._invalidate()
        self.update()
        self.index_changed.emit(self.index)
        self.image_changed.emit()

    @property
    def has_image(self) -> bool:
        return self.volume is not None

    @property
    def loading(self) -> bool:
        return self.pending is not None

    def slice_count(self) -> int:
        if self.volume is not None:
            return plane_count(self.volume, self.plane)
        return 0

    def _default_window(self) -> tuple[float, float] | None:
        """The file's window, else the volume's automatic one (the same in every MPR
        plane); None for colour and for a file VOI LUT (render_slice applies it)."""
        return display.volume_window(self.volume) if self.volume is not None else None

    # --------------------------------------------------------------- slices
    def set_index(self, index: int) -> None:
        n = self.slice_count()
        if n <= 0:
            return
        if self.loaded is not None:
            n = min(n, self.loaded)
        index = int(min(max(index, 0), n - 1))
        if index == self.index:
            return
        self.index = index
        if self.selected is not None and self.selected.index != index:
            self.selected = None
        self._invalidate(values=False)
        self.update()
        self.index_changed.emit(index)

    def scroll(self, delta: int) -> None:
        self.set_index(self.index + delta)

    def set_projection(self, projection: str | None, slab_mm: float | None = None) -> None:
        """Show a MIP / MinIP / average slab centred on the slice (None: the slice alone)."""
        self.view.set_projection(projection, slab_mm)
        self._invalidate(values=False)
        self.update()
        self.image_changed.emit()

    def set_plane(self, plane: str) -> None:
        self.plane = plane
        if self.volume is not None:
            self.set_volume(self.volume, keep_view=False)

    # ----------------------------------------------------------- rendering
    def _invalidate(self, values: bool = True) -> None:
        self._cache_key = None
        if values:
            self._values_key = None

    def effective_invert(self) -> bool:
        base = bool(self.volume.invert) if self.volume is not None else False
        return base != self.user_invert

    def rendered(self) -> np.ndarray | None:
        """The current slice as uint8 (what is drawn), rendering it if needed."""
        v = self.view
        key = (id(self.volume), v.plane, v.index, v.window, self.effective_invert(), v.projection)
        key += (v.slab_mm, self.loaded)
        if self._cache_key == key and self.qimg is not None:
            return self.qimg._keep  # noqa: SLF001
        t0 = time.perf_counter()
        vol = self.volume
        if vol is None:
            return None
        try:
            out = self.view.render(vol, self.effective_invert())
        except Exception as exc:  # a broken slice must not break painting
            log.warning("render failed: %s", exc)
            self.message = f"cannot render slice {self.index + 1}: {exc}"
            self.qimg = None
            self._cache_key = key
            return None
        self.qimg = items.qimage(out)
        self.qimg_shape = out.shape[:2]
        self._cache_key = key
        self.render_ms = (time.perf_counter() - t0) * 1000.0
        return out

    def current_values(self) -> np.ndarray | None:
        """Modality values (HU for CT) of the shown slice, float32 (cached)."""
        key = (id(self.volume), self.plane, self.index, self.loaded)
        if self._values_key == key:
            return self._values
        values = None
        vol = self.volume
        if vol is not None:  # the plane's stored values through the modality LUT
            img, _ = display.extract_plane(vol, self.index, self.plane)
            slope, intercept = vol.rescale_slope, vol.rescale_intercept
            values = img if vol.is_color else display.apply_modality_lut(img, slope, intercept)
        self._values, self._values_key = values, key
        return values

    # ------------------------------------------------------------ geometry
    def image_spacing(self) -> tuple[float, float]:
        """(row, column) spacing in mm of the displayed plane (1, 1 when unknown)."""
        if self.volume is not None:
            return plane_spacing(self.volume, self.plane)
        return 1.0, 1.0

    def image_size(self) -> tuple[int, int]:
        """(rows, cols) of the displayed plane."""
        if self.volume is not None:
            return plane_shape(self.volume, self.plane)
        if self.pending is not None:
            return int(self.pending.rows or 1), int(self.pending.columns or 1)
        return 1, 1

    def _frame(self) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]]:
        """(image shape, image spacing, viewport size): what the camera maths needs."""
        return self.image_size(), self.image_spacing(), (float(self.width()), float(self.height()))

    def transform(self) -> QTransform:
        """Image pixel coordinates -> widget coordinates."""
        m = self.view.image_to_screen(*self._frame())
        return QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2])

    def to_image(self, p: QPointF) -> QPointF:
        inv, ok = self.transform().inverted()
        return inv.map(p) if ok else QPointF(-1, -1)

    def fit_zoom(self) -> float:
        return self.view.fit_zoom(*self._frame())

    def reset_view(self) -> None:
        self.view.reset(*self._frame())
        self.update()

    def fit(self) -> None:
        self.view.fit(*self._frame())
        self.update()

    def one_to_one(self) -> None:
        """One image column pixel = one screen pixel."""
        self.view.one_to_one(self.image_spacing()[1])
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        at = None if anchor is None else (anchor.x(), anchor.y())
        self.view.zoom_at(factor, at, self._frame()[2])
        self.update()

    def pan_by(self, dx: float, dy: float) -> None:
        self.view.pan_by(dx, dy)
        self.update()

    def zoom_percent(self) -> float:
        return self.view.zoom_percent(self.image_spacing()[1])

    def rotate(self, quarter_turns: int) -> None:
        self.view.rotate(quarter_turns, *self._frame())
        self.update()

    def flip(self, horizontal: bool) -> None:
        """Flips act on the screen axes, whatever the rotation."""
        self.view.flip(horizontal)
        self.update()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802
        self.view.refit(*self._frame())
        super().resizeEvent(event)

    # -------------------------------------------------------------- window
    def set_window(self, center: float, width: float, emit: bool = True) -> None:
        width = max(1.0, float(width))
        new = (float(center), width)
        if new == self.window:
            return
        self.window = new
        self._invalidate(values=False)
        self.update()
        if emit:
            self.window_changed.emit(new[0], new[1])

    def apply_preset(self, preset: str | tuple[float, float]) -> None:
        """A (center, width), ``"file"`` or ``"auto"``."""
        if isinstance(preset, tuple):
            self.set_window(*preset)
            return
        if self.volume is None:
            return
        values = self.current_values()
        if preset == "auto" and values is not None:
            # the volume's automatic window: the same in every MPR plane
            self.set_window(
                *(display.volume_auto_window(self.volume) or display.auto_window(values))
            )
        elif preset == "file":
            vol = self.volume
            if vol is not None and vol.window is not None:
                self.set_window(*vol.window)
            elif vol is not None and vol.voi_lut is not None:
                self.window = None
                self._invalidate(values=False)
                self.update()
            elif values is not None:
                self.notify.emit("this image has no window in the file; using auto")
                self.set_window(*display.auto_window(values))

    def toggle_invert(self) -> None:
        self.user_invert = not self.user_invert
        self._invalidate(values=False)
        self.update()

    # ----------------------------------------------------------------- cine
    def stop_cine(self) -> None:
        """Stop the cine (play, toggle and the frame rate: :attr:`cine`)."""
        self.cine.stop()

    # --------------------------------------------------------- overlays/AI
    def set_ai_overlay(self, overlay: Any | None) -> None:
        self.ai_overlay = overlay
        self.ai_image = None
        if overlay is not None:
            try:
                self.ai_image = items.heatmap_image(
                    overlay.heatmap, overlay.colormap, float(overlay.opacity)
                )
            except Exception as exc:
                self.notify.emit(f"AI overlay cannot be shown: {exc}")
                self.ai_overlay = None
        self.update()

    def set_crosshair(self, ijk: tuple[float, float, float] | None) -> None:
        self.crosshair = ijk
        if ijk is not None and self.volume is not None:
            idx, _, _ = voxel_to_pixel(self.volume, self.plane, *ijk)
            if idx != self.index:
                self.set_index(idx)
        self.update()

    # ------------------------------------------------------- measurements
    def image_key(self, index: int | None = None) -> tuple[str, int]:
        """(SOPInstanceUID or path, frame) of an axial slice, for storage."""
        k = self.index if index is None else index
        return info.image_key(self.volume, self.plane, k)

    def measurements_here(self) -> list[Measurement]:
        return [m for m in self.measurements if m.plane == self.plane and m.index == self.index]

    def add_measurement(self, m: Measurement, emit: bool = True) -> None:
        self.recompute(m)
        self.measurements.append(m)
        self.update()
        if emit:
            self.measurement_added.emit(m)

    def delete_measurement(self, m: Measurement) -> None:
        if m in self.measurements:
            self.measurements.remove(m)
            if self.selected is m:
                self.selected = None
            self.update()
            self.measurement_deleted.emit(m)

    def recompute(self, m: Measurement) -> None:
        values = self.current_values() if m.index == self.index and m.plane == self.plane else None
        if (
            values is None
            and self.volume is not None
            and m.plane == "axial"
            and not self.volume.is_color
        ):
            values = self.volume.modality_values(m.index)
        measure.compute(m, values, self.image_spacing())

    def spacing_known(self) -> bool:
        if self.volume is not None:
            return bool(self.volume.spacing_known)
        return False

    def spacing_note(self) -> str:
        return info.spacing_note(self.volume)

    # --------------------------------------------------------------- paint
    def paintEvent(self, event: QtGui.QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        img = self.rendered() if self.has_image else None
        t = self.transform()
        if img is not None and self.qimg is not None:
            items.paint_image(p, self, t)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(self.text_font)
        if self.crosshair is not None and self.volume is not None:
            items.paint_crosshair(p, self, t)
        for m in self.measurements_here():
            items.paint_measurement(p, self, t, m)
        if self.tools.drawing is not None:
            items.paint_measurement(p, self, t, self.tools.drawing)
        if self.gsps is not None and self.gsps_visible and self.plane == "axial":
            items.paint_gsps(p, self, t)
        if self.overlays_visible:
            items.paint_corners(p, self)
        if self.ai_overlay is not None and self.ai_image is not None:
            items.paint_ai_label(p, self)
        items.paint_key_marker(p, self)
        items.paint_message_and_border(p, self)
        p.end()

    # ----------------------------------------------------------- image info
    def unit(self) -> str:
        if self.volume is not None:
            return self.volume.unit
        return ""

    def overlay_lines(self) -> dict[str, list[str]]:
        """Corner texts: keys tl, tr, bl, br."""
        return info.corner_lines(self)

    def is_multiframe(self) -> bool:
        return info.is_multiframe(self.volume)

    def has_geometry(self) -> bool:
        """True when the images carry ImagePositionPatient / ImageOrientationPatient."""
        return info.has_geometry(self.volume)

    def slice_position(self) -> float | None:
        """Position of the slice along its normal in patient mm (z for axial)."""
        return info.slice_position(self.volume, self.plane, self.index)

    def readout(self, pos: QPointF) -> str:
        """Pixel value (HU for CT) and patient coordinate under a widget point."""
        return info.readout(self, pos)

    # ---------------------------------------------------------------- events
    def mousePressEvent(self, e: QtGui.QMouseEvent) -> None:  # noqa: N802
        self.activated.emit()
        self.setFocus()
        self.tools.press(e)

    def mouseMoveEvent(self, e: QtGui.QMouseEvent) -> None:  # noqa: N802
        self.tools.move(e)

    def mouseReleaseEvent(self, e: QtGui.QMouseEvent) -> None:  # noqa: N802
        self.tools.release(e)

    def mouseDoubleClickEvent(self, e: QtGui.QMouseEvent) -> None:  # noqa: N802
        if self.tools.drawing is None:
            self.maximize_requested.emit()

    def wheelEvent(self, e: QtGui.QWheelEvent) -> None:  # noqa: N802
        self.tools.wheel(e)

    def keyPressEvent(self, e: QtGui.QKeyEvent) -> None:  # noqa: N802
        if self.tools.key(e):
            e.accept()
        else:
            super().keyPressEvent(e)

    def dragEnterEvent(self, e: QtGui.QDragEnterEvent) -> None:  # noqa: N802
        if e.mimeData().hasUrls() or e.mimeData().hasFormat("application/x-medview-series"):
            e.acceptProposedAction()

    def dropEvent(self, e: QtGui.QDropEvent) -> None:  # noqa: N802
        self.activated.emit()
        win = self.window_handle_owner()
        if win is not None and hasattr(win, "handle_drop"):
            win.handle_drop(e.mimeData(), self)
            e.acceptProposedAction()

    def window_handle_owner(self) -> Any | None:
        w = self.parent()
        while w is not None and not hasattr(w, "handle_drop"):
            w = w.parent()
        return w
