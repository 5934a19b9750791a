"""The image viewport: one plane of a volume with window/level, zoom, measurements.

A :class:`Viewport` shows slice ``index`` of ``plane`` of a
:class:`~medview.io.model.Volume`, rendered with the core's
:func:`~medview.imaging.display.render_slice` (the same pipeline as
``medview render``). Geometry (zoom, pan, rotation, flips and the aspect ratio
from the pixel spacing) is a single :class:`QTransform` from image pixel
coordinates to widget coordinates, so pixels are never resampled on the CPU and
measurements stay in image coordinates.

While a series loads, :meth:`Viewport.begin_loading` / :meth:`show_partial` show
each slice as soon as the worker decodes it; :meth:`set_volume` replaces them
by the assembled volume.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QMenu, QSizePolicy, QWidget

from medview.ui import measure
from medview.ui.measure import Measurement

log = logging.getLogger(__name__)

TOOLS = ("wl", "pan", "zoom", "scroll", "ruler", "angle", "rect", "ellipse", "crosshair")
TOOL_LABELS = {
    "wl": "Window/level",
    "pan": "Pan",
    "zoom": "Zoom",
    "scroll": "Scroll",
    "ruler": "Ruler",
    "angle": "Angle",
    "rect": "Rectangle ROI",
    "ellipse": "Ellipse ROI",
    "crosshair": "Crosshair",
}
PLANE_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # voxel axis (i=0, j=1, k=2) of the index


def _display():
    from medview.imaging import display

    return display


# ---------------------------------------------------------------------------
# plane geometry (mirrors medview.imaging.display.extract_plane)
# ---------------------------------------------------------------------------
def plane_flipped(vol: Any, plane: str) -> bool:
    """True when extract_plane flips the rows of a reformat (head at the top)."""
    if plane == "axial":
        return False
    k_axis = np.asarray(vol.direction, dtype=float)[:, 2]
    return bool(k_axis[2] >= 0)


def plane_count(vol: Any, plane: str) -> int:
    z, y, x = vol.shape
    return {"axial": z, "coronal": y, "sagittal": x}[plane]


def pixel_to_voxel(
    vol: Any, plane: str, index: int, x: float, y: float
) -> tuple[float, float, float]:
    """Image coordinates (x along columns, y along rows; pixel centres at +0.5) of
    slice ``index`` of ``plane`` -> voxel indices (i, j, k) (centres at integers)."""
    c, r = x - 0.5, y - 0.5
    nz = vol.shape[0]
    if plane == "axial":
        return c, r, float(index)
    k = (nz - 1 - r) if plane_flipped(vol, plane) else r
    if plane == "coronal":
        return c, float(index), k
    return float(index), c, k


def voxel_to_pixel(vol: Any, plane: str, i: float, j: float, k: float) -> tuple[int, float, float]:
    """Voxel indices -> (slice index, x, y) image coordinates in ``plane``."""
    nz = vol.shape[0]
    if plane == "axial":
        return int(round(k)), i + 0.5, j + 0.5
    r = (nz - 1 - k) if plane_flipped(vol, plane) else k
    if plane == "coronal":
        return int(round(j)), i + 0.5, r + 0.5
    return int(round(i)), j + 0.5, r + 0.5


def plane_axes_lps(vol: Any, plane: str) -> tuple[np.ndarray, np.ndarray]:
    """Patient (LPS) unit directions of the image's +column and +row axes."""
    d = np.asarray(vol.direction, dtype=float)
    ii, jj, kk = d[:, 0], d[:, 1], d[:, 2]
    down_k = -kk if plane_flipped(vol, plane) else kk
    if plane == "axial":
        return ii, jj
    if plane == "coronal":
        return ii, down_k
    return jj, down_k


def orientation_letters(v: np.ndarray) -> str:
    """'L', 'PH', ... for a patient-space direction (dominant components first)."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(v))
    out = ""
    for ax in order:
        if abs(v[ax]) > 0.3:
            out += names[ax][0] if v[ax] > 0 else names[ax][1]
    return out


# ---------------------------------------------------------------------------
# colour maps for AI heat maps
# ---------------------------------------------------------------------------
def _colormap_lut(name: str) -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)
    if name == "hot":
        r = np.clip(3 * t, 0, 1)
        g = np.clip(3 * t - 1, 0, 1)
        b = np.clip(3 * t - 2, 0, 1)
    elif name == "viridis":
        anchors = (
            np.array(
                [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], float
            )
            / 255.0
        )
        xs = np.linspace(0, 1, len(anchors))
        r, g, b = (np.interp(t, xs, anchors[:, c]) for c in range(3))
    else:  # jet
        r = np.clip(1.5 - np.abs(4 * t - 3), 0, 1)
        g = np.clip(1.5 - np.abs(4 * t - 2), 0, 1)
        b = np.clip(1.5 - np.abs(4 * t - 1), 0, 1)
    return (np.stack([r, g, b], axis=1) * 255).astype(np.uint8)


def heatmap_image(heat: np.ndarray, colormap: str) -> QImage:
    """Values in [0, 1] -> ARGB image; alpha follows the value (0 is transparent)."""
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)
    idx = (h * 255).astype(np.uint8)
    rgb = _colormap_lut(colormap)[idx]
    alpha = np.clip((h - 0.1) * 2.5, 0.0, 1.0) * 255  # below 0.1: transparent
    bgra = np.empty(h.shape + (4,), np.uint8)
    bgra[..., 0] = rgb[..., 2]
    bgra[..., 1] = rgb[..., 1]
    bgra[..., 2] = rgb[..., 0]
    bgra[..., 3] = alpha.astype(np.uint8)
    return _qimage(bgra)


def _qimage(arr: np.ndarray) -> QImage:
    """Wrap a contiguous uint8 array as a QImage (the array is kept alive on it)."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    elif arr.shape[2] == 3:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    else:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_ARGB32)
    img._keep = arr  # noqa: SLF001 - QImage does not own the buffer
    return img


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

    def __init__(self, parent: QWidget | None = None, plane: str = "axial") -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.plane = plane
        self.volume: Any | None = None
        self.pending: Any | None = None  # SeriesInfo being loaded, before the first slice
        self.loaded: int | None = None  # while loading: slices 0..loaded-1 are decoded
        self.index = 0
        self.window: tuple[float, float] | None = None
        self.user_invert = False
        self.zoom = 1.0  # screen pixels per mm
        self.pan = QPointF(0, 0)
        self.rotation = 0  # quarter turns clockwise
        self.flip_h = False
        self.flip_v = False
        self.fit_mode = True
        self.overlays_visible = True
        self.active = False
        self.tool = "wl"
        self.measurements: list[Measurement] = []
        self.selected: Measurement | None = None
        self.ai_overlay: Any | None = None  # medview.ui.context.Overlay
        self._ai_image: QImage | None = None
        self.crosshair: tuple[float, float, float] | None = None  # voxel (i, j, k)
        self.message = ""  # centred text (loading..., errors)
        self.load_text = ""  # bottom-left while loading
        self.title = ""  # e.g. plane name in MPR
        self._cache_key: tuple | None = None
        self._qimg: QImage | None = None
        self._img_shape: tuple[int, int] = (0, 0)
        self._values_key: tuple | None = None
        self._values: np.ndarray | None = None
        self._drag: dict[str, Any] | None = None
        self._drawing: Measurement | None = None
        self._last_mouse = QPointF(-1, -1)
        self.render_ms = 0.0
        self.cine = QTimer(self)
        self.cine.timeout.connect(self._cine_step)
        self.fps = 10.0
        self._font = QFont(self.font())
        self._font.setPointSizeF(9.0)
        self._font.setStyleHint(QFont.StyleHint.SansSerif)

    # ------------------------------------------------------------------ data
    def clear(self, message: str = "") -> None:
        self.stop_cine()
        self.volume = None
        self.pending = None
        self.loaded = None
        self.measurements = []
        self.selected = None
        self.ai_overlay = None
        self._ai_image = None
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
        vol = self.volume
        if vol is None or vol.is_color:
            return None
        if vol.window is not None:
            return (float(vol.window[0]), float(vol.window[1]))
        if vol.voi_lut is not None:
            return None  # render_slice applies the file's VOI LUT
        # one automatic window per volume, the same in every plane (MPR)
        return _display().volume_window(vol)

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
        key = (id(self.volume), self.plane, self.index, self.window, self.effective_invert())
        if self._cache_key == key and self._qimg is not None:
            return self._qimg._keep  # noqa: SLF001
        disp = _display()
        import time

        t0 = time.perf_counter()
        vol, idx, plane = self.volume, self.index, self.plane
        if vol is None:
            return None
        try:
            out = disp.render_slice(
                vol, idx, plane, window=self.window, invert=self.effective_invert(), aspect=False
            )
        except Exception as exc:  # a broken slice must not break painting
            log.warning("render failed: %s", exc)
            self.message = f"cannot render slice {self.index + 1}: {exc}"
            self._qimg = None
            self._cache_key = key
            return None
        self._qimg = _qimage(out)
        self._img_shape = out.shape[:2]
        self._cache_key = key
        self.render_ms = (time.perf_counter() - t0) * 1000.0
        return out

    def current_values(self) -> np.ndarray | None:
        """Modality values (HU for CT) of the shown slice, float32 (cached)."""
        key = (id(self.volume), self.plane, self.index, self.loaded)
        if self._values_key == key:
            return self._values
        disp = _display()
        values = None
        if self.volume is not None:
            vol = self.volume
            if self.plane == "axial":
                values = (
                    vol.modality_values(self.index) if not vol.is_color else vol.array[self.index]
                )
            else:
                img, _ = disp.extract_plane(vol, self.index, self.plane)
                values = (
                    img
                    if vol.is_color
                    else disp.apply_modality_lut(img, vol.rescale_slope, vol.rescale_intercept)
                )
        self._values, self._values_key = values, key
        return values

    def image_spacing(self) -> tuple[float, float]:
        """(row, column) spacing in mm of the displayed plane (1, 1 when unknown)."""
        if self.volume is not None:
            sx, sy, sz = self.volume.spacing
            if self.plane == "axial":
                return float(sy), float(sx)
            if self.plane == "coronal":
                return float(sz), float(sx)
            return float(sz), float(sy)
        return 1.0, 1.0

    def image_size(self) -> tuple[int, int]:
        """(rows, cols) of the displayed plane."""
        if self.volume is not None:
            z, y, x = self.volume.shape
            return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[self.plane]
        if self.pending is not None:
            return int(self.pending.rows or 1), int(self.pending.columns or 1)
        return 1, 1

    # ------------------------------------------------------------ geometry
    def transform(self) -> QTransform:
        """Image pixel coordinates -> widget coordinates."""
        rows, cols = self.image_size()
        rs, cs = self.image_spacing()
        t = QTransform.fromTranslate(-cols / 2.0, -rows / 2.0)
        t *= QTransform.fromScale(cs, rs)
        t *= QTransform.fromScale(-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0)
        rot = QTransform()
        rot.rotate(90.0 * self.rotation)
        t *= rot
        t *= QTransform.fromScale(self.zoom, self.zoom)
        t *= QTransform.fromTranslate(
            self.width() / 2.0 + self.pan.x(), self.height() / 2.0 + self.pan.y()
        )
        return t

    def to_image(self, p: QPointF) -> QPointF:
        inv, ok = self.transform().inverted()
        return inv.map(p) if ok else QPointF(-1, -1)

    def fit_zoom(self) -> float:
        rows, cols = self.image_size()
        rs, cs = self.image_spacing()
        w_mm, h_mm = cols * cs, rows * rs
        if self.rotation % 2:
            w_mm, h_mm = h_mm, w_mm
        if w_mm <= 0 or h_mm <= 0:
            return 1.0
        return max(1e-3, min(self.width() / w_mm, self.height() / h_mm))

    def reset_view(self) -> None:
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.fit()

    def fit(self) -> None:
        self.fit_mode = True
        self.pan = QPointF(0, 0)
        self.zoom = self.fit_zoom()
        self.update()

    def one_to_one(self) -> None:
        """One image column pixel = one screen pixel."""
        self.fit_mode = False
        _, cs = self.image_spacing()
        self.zoom = 1.0 / cs if cs > 0 else 1.0
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.fit_mode = False
        factor = max(0.05, min(factor, 20.0))
        new = max(0.02, min(self.zoom * factor, 200.0))
        if anchor is not None:
            c = QPointF(self.width() / 2.0, self.height() / 2.0) + self.pan
            self.pan += (anchor - c) * (1 - new / self.zoom)
        self.zoom = new
        self.update()

    def zoom_percent(self) -> float:
        _, cs = self.image_spacing()
        return self.zoom * cs * 100.0

    def rotate(self, quarter_turns: int) -> None:
        self.rotation = (self.rotation + quarter_turns) % 4
        if self.fit_mode:
            self.zoom = self.fit_zoom()
        self.update()

    def flip(self, horizontal: bool) -> None:
        # flips act on the screen axes, whatever the rotation
        if (self.rotation % 2 == 0) == horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        if self.fit_mode:
            self.zoom = self.fit_zoom()
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
        disp = _display()
        values = self.current_values()
        if preset == "auto" and values is not None:
            # the volume's automatic window: the same in every MPR plane
            self.set_window(*(disp.volume_auto_window(self.volume) or disp.auto_window(values)))
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
                self.set_window(*disp.auto_window(values))

    def toggle_invert(self) -> None:
        self.user_invert = not self.user_invert
        self._invalidate(values=False)
        self.update()

    # ----------------------------------------------------------------- cine
    def start_cine(self, fps: float | None = None) -> None:
        if fps:
            self.fps = float(fps)
        if self.slice_count() > 1:
            self.cine.start(max(1, int(1000.0 / max(self.fps, 0.5))))

    def stop_cine(self) -> None:
        self.cine.stop()

    def toggle_cine(self) -> bool:
        if self.cine.isActive():
            self.stop_cine()
        else:
            self.start_cine()
        return self.cine.isActive()

    def set_fps(self, fps: float) -> None:
        self.fps = max(0.5, float(fps))
        if self.cine.isActive():
            self.cine.start(max(1, int(1000.0 / self.fps)))

    def _cine_step(self) -> None:
        n = self.slice_count()
        if n <= 1:
            self.stop_cine()
            return
        self.set_index((self.index + 1) % n)

    # --------------------------------------------------------- overlays/AI
    def set_ai_overlay(self, overlay: Any | None) -> None:
        self.ai_overlay = overlay
        self._ai_image = None
        if overlay is not None:
            try:
                self._ai_image = heatmap_image(overlay.heatmap, overlay.colormap)
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
        vol = self.volume
        if vol is None or self.plane != "axial":
            return "", 0
        inst = vol.instance_at(k) if vol.instances else None
        if inst is None:
            return "", 0
        frame = k if len(vol.instances) != vol.shape[0] else 0
        key = inst.sop_uid or f"{inst.path}#{frame}"
        return key, frame

    def measurements_here(self) -> list[Measurement]:
        return [m for m in self.measurements if m.plane == self.plane and m.index == self.index]

    def add_measurement(self, m: Measurement, emit: bool = True) -> None:
        self._recompute(m)
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

    def _recompute(self, m: Measurement) -> None:
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
        src = getattr(self.volume, "spacing_source", "") if self.volume is not None else ""
        return "detector plane" if src == "ImagerPixelSpacing" else ""

    # --------------------------------------------------------------- paint
    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        img = self.rendered() if self.has_image else None
        t = self.transform()
        if img is not None and self._qimg is not None:
            p.save()
            p.setTransform(t)
            if self.zoom * self.image_spacing()[1] < 3.0:
                p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QPointF(0, 0), self._qimg)
            ov = self.ai_overlay
            if (
                self._ai_image is not None
                and ov is not None
                and (ov.index is None or (ov.index == self.index and self.plane == "axial"))
            ):
                if (self._ai_image.height(), self._ai_image.width()) == self._img_shape:
                    p.setOpacity(float(ov.opacity))
                    p.drawImage(QPointF(0, 0), self._ai_image)
                    p.setOpacity(1.0)
            p.restore()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setFont(self._font)
        if self.crosshair is not None and self.volume is not None:
            self._paint_crosshair(p, t)
        for m in self.measurements_here():
            self._paint_measurement(p, t, m)
        if self._drawing is not None:
            self._paint_measurement(p, t, self._drawing)
        if self.overlays_visible:
            self._paint_corners(p)
        if self.ai_overlay is not None and self._ai_image is not None:
            self._paint_ai_label(p)
        if self.message:
            p.setPen(QColor(230, 230, 230))
            p.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.message
            )
        border = QColor(255, 170, 0) if self.active else QColor(60, 60, 60)
        p.setPen(QPen(border, 2 if self.active else 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        p.end()

    def _ai_label_rect(self) -> QRectF:
        """Where the AI caption goes: top centre, wrapped to the viewport's width."""
        text = self.ai_overlay.label or "AI output, not for diagnostic use"
        fm = QFontMetrics(self._font)
        avail = max(80, self.width() - 16)
        br = fm.boundingRect(0, 0, avail, 10000, int(Qt.TextFlag.TextWordWrap), text)
        w = min(avail, br.width()) + 12
        return QRectF((self.width() - w) / 2, 4, w, br.height() + 6)

    def _paint_ai_label(self, p: QPainter) -> None:
        text = self.ai_overlay.label or "AI output, not for diagnostic use"
        r = self._ai_label_rect()
        p.fillRect(r, QColor(160, 0, 0, 200))
        p.setPen(QColor(255, 255, 255))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
        self._paint_ai_legend(p)

    def _paint_ai_legend(self, p: QPainter) -> None:
        """Colour bar of the AI heat map (right edge) with its low/high ends labelled."""
        lut = _colormap_lut(self.ai_overlay.colormap)
        fm = QFontMetrics(self._font)
        bar_h = int(min(160, max(60, self.height() * 0.3)))
        x = self.width() - 22
        y0 = (self.height() - bar_h) / 2
        for k in range(bar_h):  # top = high (1.0), bottom = low (0.0)
            r, g, b = (int(c) for c in lut[int(round(255 * (1 - k / max(bar_h - 1, 1))))])
            p.fillRect(QRectF(x, y0 + k, 12, 1), QColor(r, g, b))
        p.setPen(QColor(230, 230, 230))
        p.drawRect(QRectF(x, y0, 12, bar_h))
        for text, y in (("high", y0 + fm.ascent()), ("low", y0 + bar_h)):
            self._shadow(
                p, QPointF(x - 4 - fm.horizontalAdvance(text), y), text, QColor(230, 230, 230)
            )

    def _paint_crosshair(self, p: QPainter, t: QTransform) -> None:
        idx, x, y = voxel_to_pixel(self.volume, self.plane, *self.crosshair)
        rows, cols = self.image_size()
        colors = {
            "axial": QColor(255, 80, 80),
            "coronal": QColor(80, 200, 80),
            "sagittal": QColor(80, 140, 255),
        }
        others = [pl for pl in ("axial", "coronal", "sagittal") if pl != self.plane]
        # vertical image line (constant x) belongs to the plane indexed by the column axis
        col_plane = {"axial": "sagittal", "coronal": "sagittal", "sagittal": "coronal"}[self.plane]
        row_plane = [pl for pl in others if pl != col_plane][0]
        p.setPen(QPen(colors[col_plane], 1, Qt.PenStyle.DashLine))
        p.drawLine(t.map(QPointF(x, 0)), t.map(QPointF(x, rows)))
        p.setPen(QPen(colors[row_plane], 1, Qt.PenStyle.DashLine))
        p.drawLine(t.map(QPointF(0, y)), t.map(QPointF(cols, y)))

    def _paint_measurement(self, p: QPainter, t: QTransform, m: Measurement) -> None:
        color = QColor(255, 220, 0) if m is not self.selected else QColor(0, 255, 255)
        pen = QPen(color, 1.5)
        p.setPen(pen)
        p.setBrush(Qt.BrushStyle.NoBrush)
        pts = [t.map(QPointF(x, y)) for x, y in m.points]
        if not pts:
            return
        if m.kind == "ruler" and len(pts) >= 2:
            p.drawLine(pts[0], pts[1])
        elif m.kind == "angle":
            for a, b in zip(pts, pts[1:], strict=False):
                p.drawLine(a, b)
        elif m.kind in ("rect", "ellipse") and len(pts) >= 2:
            (x0, y0), (x1, y1) = m.points[0], m.points[1]
            corners = [QPointF(x0, y0), QPointF(x1, y0), QPointF(x1, y1), QPointF(x0, y1)]
            if m.kind == "rect":
                path = QPainterPath()
                path.addPolygon(_poly(t, corners))
                path.closeSubpath()
                p.drawPath(path)
            else:
                path = QPainterPath()
                path.addEllipse(
                    QRectF(QPointF(min(x0, x1), min(y0, y1)), QPointF(max(x0, x1), max(y0, y1)))
                )
                p.drawPath(t.map(path))
        for q in pts:
            p.drawRect(QRectF(q.x() - 2.5, q.y() - 2.5, 5, 5))
        lines = measure.label(m, self.unit(), self.spacing_known(), self.spacing_note())
        if lines:
            anchor = max(pts, key=lambda q: q.x())
            self._text_block(p, anchor + QPointF(8, -4), lines, color)

    def _text_block(self, p: QPainter, at: QPointF, lines: list[str], color: QColor) -> None:
        """Measurement label on a dark box, kept inside the viewport."""
        fm = QFontMetrics(self._font)
        w = max(fm.horizontalAdvance(line) for line in lines) + 6
        h = fm.height() * len(lines) + 4
        x, top = at.x(), at.y() - fm.ascent() - 2
        if x + w > self.width() - 2:
            x = max(2.0, at.x() - w - 16)
        top = min(max(2.0, top), self.height() - h - 2)
        p.fillRect(QRectF(x - 3, top, w, h), QColor(0, 0, 0, 150))
        y = top + 2 + fm.ascent()
        for line in lines:
            p.setPen(QColor(0, 0, 0))
            p.drawText(QPointF(x + 1, y + 1), line)
            p.setPen(color)
            p.drawText(QPointF(x, y), line)
            y += fm.height()

    def unit(self) -> str:
        if self.volume is not None:
            return self.volume.unit
        return ""

    def overlay_lines(self) -> dict[str, list[str]]:
        """Corner texts: keys tl, tr, bl, br."""
        info = self._series_info()
        tl, tr, bl, br = [], [], [], []
        if info is not None:
            name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
            tl += [name or "(no name)", f"ID: {getattr(info, 'patient_id', '') or '-'}"]
            birth = _fmt_date(getattr(info, "patient_birth_date", ""))
            sex = getattr(info, "patient_sex", "")
            if birth or sex:
                tl.append(" ".join(x for x in (f"DOB {birth}" if birth else "", sex) if x))
            tr += [
                str(getattr(info, "study_description", "") or ""),
                _fmt_date(getattr(info, "study_date", "")),
                " ".join(
                    x
                    for x in (
                        str(getattr(info, "modality", "") or ""),
                        str(getattr(info, "description", "") or ""),
                    )
                    if x
                ),
            ]
            tr = [x for x in tr if x]
        n = self.slice_count()
        if n:
            word = "Fr" if self._is_multiframe() else "Im"
            bl.append(f"{self.title + '  ' if self.title else ''}{word}: {self.index + 1}/{n}")
        pos = self.slice_position() if self.spacing_known() else None
        if pos is not None:
            bl.append(f"Pos: {pos:.1f} mm")
        if self.load_text:
            bl.append(self.load_text)
        if self.window is not None:
            bl_w = f"W: {self.window[1]:.0f} L: {self.window[0]:.0f}"
            br.append(bl_w + ("  INV" if self.user_invert else ""))
        elif self.has_image and self.volume is not None and not self.volume.is_color:
            br.append("VOI LUT (file)")
        if self.has_image:
            extra = []
            if self.rotation:
                extra.append(f"rot {self.rotation * 90}\N{DEGREE SIGN}")
            if self.flip_h:
                extra.append("flip H")
            if self.flip_v:
                extra.append("flip V")
            br.append(
                f"Zoom: {self.zoom_percent():.0f}%" + ("  " + " ".join(extra) if extra else "")
            )
            if not self.spacing_known():
                br.append("spacing unknown")
        return {"tl": tl, "tr": tr, "bl": bl, "br": br}

    def _is_multiframe(self) -> bool:
        vol = self.volume
        return bool(vol is not None and vol.instances and len(vol.instances) != vol.shape[0])

    def _series_info(self) -> Any | None:
        if self.volume is not None:
            if self.volume.series is not None:
                return self.volume.series
            return self.volume.instances[0] if self.volume.instances else None
        return self.pending

    def has_geometry(self) -> bool:
        """True when the images carry ImagePositionPatient / ImageOrientationPatient."""
        vol = self.volume
        if vol is None:
            return False
        if getattr(vol.series, "kind", "") == "volume":  # NIfTI/MHA/NRRD: geometry in the header
            return True
        if not vol.instances:
            return False
        inst = vol.instances[0]
        return inst.position is not None and inst.orientation is not None

    def slice_position(self) -> float | None:
        """Position of the slice along its normal in patient mm (z for axial)."""
        vol = self.volume
        if vol is None or not self.has_geometry():
            return None
        i, j, k = pixel_to_voxel(vol, self.plane, self.index, 0.5, 0.5)
        pt = vol.voxel_to_patient(i, j, k)
        return pt[PLANE_AXIS[self.plane]]

    def _paint_corners(self, p: QPainter) -> None:
        fm = QFontMetrics(self._font)
        lh = fm.height()
        lines = self.overlay_lines()
        color = QColor(230, 230, 230)
        m = 6
        top = m + lh + (self._ai_label_rect().height() + 2 if self.ai_overlay is not None else 0)
        for i, s in enumerate(lines["tl"]):
            self._shadow(p, QPointF(m, top - lh + fm.ascent() + i * lh), s, color)
        for i, s in enumerate(lines["tr"]):
            self._shadow(
                p,
                QPointF(
                    self.width() - m - fm.horizontalAdvance(s), top - lh + fm.ascent() + i * lh
                ),
                s,
                color,
            )
        bl, br = lines["bl"], lines["br"]
        for i, s in enumerate(bl):
            y = self.height() - m - (len(bl) - 1 - i) * lh - fm.descent()
            self._shadow(p, QPointF(m, y), s, color)
        for i, s in enumerate(br):
            y = self.height() - m - (len(br) - 1 - i) * lh - fm.descent()
            self._shadow(p, QPointF(self.width() - m - fm.horizontalAdvance(s), y), s, color)
        self._paint_orientation(p, fm)

    def _paint_orientation(self, p: QPainter, fm: QFontMetrics) -> None:
        vol = self.volume
        if vol is None or not vol.spacing_known or not self.has_geometry():
            return
        col, row = plane_axes_lps(vol, self.plane)
        # screen right / down directions through flip and rotation
        t = QTransform()
        t.scale(-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0)
        t.rotate(90.0 * self.rotation)
        inv, _ = t.inverted()
        r = inv.map(QPointF(1, 0))  # image direction that points screen-right
        d = inv.map(QPointF(0, 1))
        right = col * r.x() + row * r.y()
        down = col * d.x() + row * d.y()
        color = QColor(255, 200, 120)
        w, h = self.width(), self.height()
        for text, pos in (
            (
                orientation_letters(right),
                QPointF(w - 6 - fm.horizontalAdvance(orientation_letters(right)), h / 2),
            ),
            (orientation_letters(-right), QPointF(6, h / 2)),
            (orientation_letters(down), QPointF(w / 2, h - 6 - fm.descent() - fm.height() * 0)),
            (orientation_letters(-down), QPointF(w / 2, 6 + fm.ascent())),
        ):
            if text:
                self._shadow(p, pos, text, color)

    def _shadow(self, p: QPainter, at: QPointF, s: str, color: QColor) -> None:
        p.setPen(QColor(0, 0, 0))
        p.drawText(at + QPointF(1, 1), s)
        p.setPen(color)
        p.drawText(at, s)

    # -------------------------------------------------------------- readout
    def readout(self, pos: QPointF) -> str:
        """Pixel value (HU for CT) and patient coordinate under a widget point."""
        if not self.has_image:
            return ""
        q = self.to_image(pos)
        rows, cols = self.image_size()
        c, r = int(math.floor(q.x())), int(math.floor(q.y()))
        if not (0 <= r < rows and 0 <= c < cols):
            return ""
        values = self.current_values()
        parts = [f"x {c} y {r}"]
        if values is not None and r < values.shape[0] and c < values.shape[1]:
            v = values[r, c]
            if np.ndim(v):
                parts.append("RGB " + ",".join(str(int(a)) for a in np.ravel(v)[:3]))
            else:
                u = self.unit()
                parts.append(f"{float(v):.0f} {u}".strip() if u else f"value {float(v):g}")
        if self.volume is not None and self.spacing_known() and self.has_geometry():
            i, j, k = pixel_to_voxel(self.volume, self.plane, self.index, c + 0.5, r + 0.5)
            X, Y, Z = self.volume.voxel_to_patient(i, j, k)  # noqa: N806
            parts.append(f"({X:.1f}, {Y:.1f}, {Z:.1f}) mm")
        return "   ".join(parts)

    # ----------------------------------------------------------------- mouse
    def _hit(self, pos: QPointF) -> tuple[Measurement, int] | None:
        t = self.transform()
        for m in reversed(self.measurements_here()):
            for n, (x, y) in enumerate(m.points):
                q = t.map(QPointF(x, y))
                if abs(q.x() - pos.x()) <= 6 and abs(q.y() - pos.y()) <= 6:
                    return m, n
        return None

    def mousePressEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        self.activated.emit()
        self.setFocus()
        pos = e.position()
        self._drag = {"button": e.button(), "start": pos, "last": pos, "moved": False}
        if not self.has_image:
            return
        if e.button() == Qt.MouseButton.LeftButton:
            hit = self._hit(pos)
            if hit is not None:
                self.selected = hit[0]
                self._drag["handle"] = hit
                self.update()
                return
            if (
                self._drawing is not None
                and self._drawing.kind == "angle"
                and len(self._drawing.points) == 3
            ):
                self._finish_drawing()
                return
            tool = self.tool
            self._drag["tool"] = tool
            q = self.to_image(pos)
            if tool in ("ruler", "rect", "ellipse", "angle"):
                if self.plane != "axial" and self.volume is None:
                    return
                self._drawing = Measurement(
                    kind=tool,
                    points=[(q.x(), q.y()), (q.x(), q.y())],
                    index=self.index,
                    plane=self.plane,
                )
                self.selected = None
            elif tool == "crosshair":
                self._move_crosshair(q)
            elif tool == "wl":
                self._drag["window"] = self.window
        elif e.button() == Qt.MouseButton.RightButton:
            self._drag["tool"] = "wl"
            self._drag["window"] = self.window
        elif e.button() == Qt.MouseButton.MiddleButton:
            self._drag["tool"] = "pan"

    def _move_crosshair(self, q: QPointF) -> None:
        if self.volume is None:
            return
        ijk = pixel_to_voxel(self.volume, self.plane, self.index, q.x(), q.y())
        z, y, x = self.volume.shape
        ijk = (min(max(ijk[0], 0), x - 1), min(max(ijk[1], 0), y - 1), min(max(ijk[2], 0), z - 1))
        self.crosshair = ijk
        self.update()
        self.crosshair_moved.emit(*ijk)

    def mouseMoveEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        pos = e.position()
        self._last_mouse = pos
        text = self.readout(pos)
        if text:
            self.cursor_info.emit(text)
        d = self._drag
        if (
            self._drawing is not None
            and self._drawing.kind == "angle"
            and len(self._drawing.points) == 3
            and d is None
        ):
            q = self.to_image(pos)
            self._drawing.points[2] = (q.x(), q.y())
            self._recompute(self._drawing)
            self.update()
            return
        if d is None:
            return
        delta = pos - d["last"]
        d["last"] = pos
        if (pos - d["start"]).manhattanLength() > 3:
            d["moved"] = True
        if "handle" in d:
            m, n = d["handle"]
            q = self.to_image(pos)
            m.points[n] = (q.x(), q.y())
            self._recompute(m)
            d["edited"] = True
            self.update()
            return
        tool = d.get("tool")
        if self._drawing is not None and tool in ("ruler", "rect", "ellipse", "angle"):
            q = self.to_image(pos)
            self._drawing.points[1] = (q.x(), q.y())
            self._recompute(self._drawing)
            self.update()
        elif tool == "wl" and self.window is not None:
            c, w = self.window
            vals = self.current_values()
            span = 4096.0
            if vals is not None and vals.size:
                span = max(float(np.ptp(vals[::4, ::4])), 64.0)
            k = span / 1024.0
            self.set_window(c + delta.y() * k, max(1.0, w + delta.x() * k))
        elif tool == "pan":
            self.fit_mode = False
            self.pan += delta
            self.update()
        elif tool == "zoom":
            self.zoom_by(math.exp(-delta.y() / 150.0), d["start"])
        elif tool == "scroll":
            acc = d.get("acc", 0.0) + delta.y() / 6.0
            steps = int(acc)
            d["acc"] = acc - steps
            if steps:
                self.scroll(steps)
        elif tool == "crosshair":
            self._move_crosshair(self.to_image(pos))

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        d = self._drag
        self._drag = None
        if d is None:
            return
        if "handle" in d:
            if d.get("edited"):
                self.measurement_changed.emit(d["handle"][0])
            return
        if e.button() == Qt.MouseButton.RightButton and not d.get("moved"):
            self._context_menu(e.globalPosition().toPoint(), e.position())
            return
        m = self._drawing
        if m is not None and d.get("tool") in ("ruler", "rect", "ellipse", "angle"):
            if not d.get("moved"):
                if m.kind != "angle" or len(m.points) < 3:
                    self._drawing = None
                    self.update()
                return
            if m.kind == "angle":
                if len(m.points) == 2:
                    m.points.append(m.points[1])  # third point follows the mouse
                    self._recompute(m)
                    self.update()
                return
            self._finish_drawing()

    def _finish_drawing(self) -> None:
        m = self._drawing
        self._drawing = None
        if m is None:
            return
        key, frame = self.image_key(m.index) if m.plane == "axial" else ("", 0)
        m.image_key, m.frame = key, frame
        self.selected = m
        self.add_measurement(m)

    def mouseDoubleClickEvent(self, e: QMouseEvent) -> None:  # noqa: N802
        if self._drawing is None:
            self.maximize_requested.emit()

    def wheelEvent(self, e: QWheelEvent) -> None:  # noqa: N802
        dy = e.angleDelta().y()
        if dy == 0:
            return
        if e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(1.15 if dy > 0 else 1 / 1.15, e.position())
        else:
            steps = -int(dy / 120) or (-1 if dy > 0 else 1)
            self.scroll(steps)
        text = self.readout(e.position())
        if text:
            self.cursor_info.emit(text)
        e.accept()

    def keyPressEvent(self, e: QKeyEvent) -> None:  # noqa: N802
        k = e.key()
        n = self.slice_count()
        if k in (Qt.Key.Key_Up, Qt.Key.Key_Left):
            self.scroll(-1)
        elif k in (Qt.Key.Key_Down, Qt.Key.Key_Right):
            self.scroll(1)
        elif k == Qt.Key.Key_PageUp:
            self.scroll(-max(1, n // 10))
        elif k == Qt.Key.Key_PageDown:
            self.scroll(max(1, n // 10))
        elif k == Qt.Key.Key_Home:
            self.set_index(0)
        elif k == Qt.Key.Key_End:
            self.set_index(n - 1)
        elif k in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected is not None:
            self.delete_measurement(self.selected)
        elif k == Qt.Key.Key_Escape and self._drawing is not None:
            self._drawing = None
            self.update()
        else:
            super().keyPressEvent(e)
            return
        e.accept()

    def _context_menu(self, global_pos, pos: QPointF) -> None:
        menu = QMenu(self)
        hit = self._hit(pos)
        if hit is not None:
            m = hit[0]
            act = menu.addAction(f"Delete {measure_name(m.kind)}")
            act.triggered.connect(lambda: self.delete_measurement(m))
            menu.addSeparator()
        here = self.measurements_here()
        if here:
            act = menu.addAction("Delete measurements on this image")
            act.triggered.connect(lambda: [self.delete_measurement(x) for x in list(here)])
        for text, fn in (
            ("Fit", self.fit),
            ("1:1", self.one_to_one),
            ("Invert", self.toggle_invert),
            ("Auto window", lambda: self.apply_preset("auto")),
            ("Window from file", lambda: self.apply_preset("file")),
        ):
            a = QAction(text, menu)
            a.triggered.connect(fn)
            menu.addAction(a)
        menu.popup(global_pos)
        self._menu = menu

    # ----------------------------------------------------------- drag/drop
    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls() or e.mimeData().hasFormat("application/x-medview-series"):
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
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


def _poly(t: QTransform, corners: list[QPointF]):
    from PySide6.QtGui import QPolygonF

    return t.map(QPolygonF(corners))


def measure_name(kind: str) -> str:
    return {
        "ruler": "ruler",
        "angle": "angle",
        "rect": "rectangle ROI",
        "ellipse": "ellipse ROI",
    }.get(kind, kind)


def _fmt_date(d: str) -> str:
    d = str(d or "")
    if len(d) == 8 and d.isdigit():
        return f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return d
