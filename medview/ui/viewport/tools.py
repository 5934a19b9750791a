"""The viewport's mouse and keyboard tools: one small handler per tool.

A press starts a :class:`Drag` with the tool it drives: the left button uses the
chosen tool (or edits the measurement handle under the mouse), the right button
windows (a right click without moving opens the context menu) and the middle
button pans. Moves and the release go to that tool's handler. The angle tool takes
three points: press-drag-release draws the first arm, the third point follows the
mouse and a click fixes it.

Camera changes go through the viewport, which applies them to its
:class:`~medview.viewer.view_state.ViewState`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtGui import QAction, QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QMenu

from medview.imaging.geometry import pixel_to_voxel
from medview.imaging.measure import Measurement
from medview.ui.viewport.items import measure_name

if TYPE_CHECKING:
    from medview.ui.viewport.canvas import Viewport

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
DRAW_TOOLS = ("ruler", "rect", "ellipse", "angle")
HANDLE_PX = 6  # a handle is grabbed within this many screen pixels
CLICK_PX = 3  # a press that moves less than this (Manhattan) is a click


@dataclass
class Drag:
    """One press-move-release of a mouse button."""

    button: Qt.MouseButton
    start: QPointF
    last: QPointF
    moved: bool = False
    tool: str | None = None
    handle: tuple[Measurement, int] | None = None  # the measurement point being edited
    edited: bool = False
    acc: float = 0.0  # scroll tool: fractional slices not yet scrolled


class Tools:
    """The tool state machine of one viewport."""

    def __init__(self, vp: Viewport) -> None:
        self.vp = vp
        self.drag: Drag | None = None
        self.drawing: Measurement | None = None  # being drawn, not yet stored
        self.menu: QMenu | None = None
        self._move: dict[str, Callable[[Drag, QPointF, QPointF], None]] = {
            "wl": self._move_window,
            "pan": self._move_pan,
            "zoom": self._move_zoom,
            "scroll": self._move_scroll,
            "crosshair": lambda d, pos, delta: self.move_crosshair(self.vp.to_image(pos)),
            **{tool: self._move_draw for tool in DRAW_TOOLS},
        }

    # ------------------------------------------------------------------ state
    def _angle_open(self) -> bool:
        """An angle whose third point follows the mouse."""
        m = self.drawing
        return m is not None and m.kind == "angle" and len(m.points) == 3

    def hit(self, pos: QPointF) -> tuple[Measurement, int] | None:
        """The measurement point (measurement, point number) under a widget point."""
        t = self.vp.transform()
        for m in reversed(self.vp.measurements_here()):
            for n, (x, y) in enumerate(m.points):
                q = t.map(QPointF(x, y))
                if abs(q.x() - pos.x()) <= HANDLE_PX and abs(q.y() - pos.y()) <= HANDLE_PX:
                    return m, n
        return None

    def move_crosshair(self, q: QPointF) -> None:
        """Put the crosshair on the voxel under image point ``q`` (clamped to the volume)."""
        vp = self.vp
        if vp.volume is None:
            return
        i, j, k = pixel_to_voxel(vp.volume, vp.plane, vp.index, q.x(), q.y())
        z, y, x = vp.volume.shape
        ijk = (min(max(i, 0), x - 1), min(max(j, 0), y - 1), min(max(k, 0), z - 1))
        vp.crosshair = ijk
        vp.update()
        vp.crosshair_moved.emit(*ijk)

    def finish_drawing(self) -> None:
        """Store the measurement being drawn."""
        m, self.drawing = self.drawing, None
        if m is None:
            return
        key, frame = self.vp.image_key(m.index)  # reformats too: SERIES_UID/plane + index
        m.image_key, m.frame = key, frame
        self.vp.selected = m
        self.vp.add_measurement(m)

    def cancel_drawing(self) -> bool:
        """Drop the measurement being drawn (Escape). True if there was one."""
        if self.drawing is None:
            return False
        self.drawing = None
        self.vp.update()
        return True

    # ------------------------------------------------------------------ press
    def press(self, e: QMouseEvent) -> None:
        vp = self.vp
        pos = e.position()
        self.drag = d = Drag(button=e.button(), start=pos, last=pos)
        if not vp.has_image:
            return
        if e.button() == Qt.MouseButton.LeftButton:
            self._press_left(d, pos)
        elif e.button() == Qt.MouseButton.RightButton:
            d.tool = "wl"
        elif e.button() == Qt.MouseButton.MiddleButton:
            d.tool = "pan"

    def _press_left(self, d: Drag, pos: QPointF) -> None:
        vp = self.vp
        hit = self.hit(pos)
        if hit is not None:
            vp.selected = hit[0]
            d.handle = hit
            vp.update()
            return
        if self._angle_open():
            self.finish_drawing()
            return
        d.tool = vp.tool
        q = vp.to_image(pos)
        if d.tool in DRAW_TOOLS:
            if vp.plane != "axial" and vp.volume is None:
                return
            points = [(q.x(), q.y()), (q.x(), q.y())]
            self.drawing = Measurement(kind=d.tool, points=points, index=vp.index, plane=vp.plane)
            vp.selected = None
        elif d.tool == "crosshair":
            self.move_crosshair(q)

    # ------------------------------------------------------------------- move
    def move(self, e: QMouseEvent) -> None:
        vp = self.vp
        pos = e.position()
        vp.last_mouse = pos
        text = vp.readout(pos)
        if text:
            vp.cursor_info.emit(text)
        d = self.drag
        if d is None:
            if self._angle_open():  # the third point follows the mouse
                q = vp.to_image(pos)
                self.drawing.points[2] = (q.x(), q.y())
                vp.recompute(self.drawing)
                vp.update()
            return
        delta = pos - d.last
        d.last = pos
        if (pos - d.start).manhattanLength() > CLICK_PX:
            d.moved = True
        if d.handle is not None:
            m, n = d.handle
            q = vp.to_image(pos)
            m.points[n] = (q.x(), q.y())
            vp.recompute(m)
            d.edited = True
            vp.update()
            return
        handler = self._move.get(d.tool or "")
        if handler is not None:
            handler(d, pos, delta)

    def _move_draw(self, d: Drag, pos: QPointF, delta: QPointF) -> None:
        if self.drawing is None:
            return
        q = self.vp.to_image(pos)
        self.drawing.points[1] = (q.x(), q.y())
        self.vp.recompute(self.drawing)
        self.vp.update()

    def _move_window(self, d: Drag, pos: QPointF, delta: QPointF) -> None:
        """Vertical drag moves the level, horizontal the width, scaled to the image range."""
        vp = self.vp
        if vp.window is None:
            return
        c, w = vp.window
        vals = vp.current_values()
        span = 4096.0
        if vals is not None and vals.size:
            span = max(float(np.ptp(vals[::4, ::4])), 64.0)
        k = span / 1024.0
        vp.set_window(c + delta.y() * k, max(1.0, w + delta.x() * k))

    def _move_pan(self, d: Drag, pos: QPointF, delta: QPointF) -> None:
        self.vp.pan_by(delta.x(), delta.y())

    def _move_zoom(self, d: Drag, pos: QPointF, delta: QPointF) -> None:
        self.vp.zoom_by(math.exp(-delta.y() / 150.0), d.start)

    def _move_scroll(self, d: Drag, pos: QPointF, delta: QPointF) -> None:
        acc = d.acc + delta.y() / 6.0
        steps = int(acc)
        d.acc = acc - steps
        if steps:
            self.vp.scroll(steps)

    # ---------------------------------------------------------------- release
    def release(self, e: QMouseEvent) -> None:
        d, self.drag = self.drag, None
        if d is None:
            return
        if d.handle is not None:
            if d.edited:
                self.vp.measurement_changed.emit(d.handle[0])
            return
        if e.button() == Qt.MouseButton.RightButton and not d.moved:
            self.context_menu(e.globalPosition().toPoint(), e.position())
            return
        m = self.drawing
        if m is None or d.tool not in DRAW_TOOLS:
            return
        if not d.moved:  # a click without a drag draws nothing (except an open angle)
            if m.kind != "angle" or len(m.points) < 3:
                self.drawing = None
                self.vp.update()
            return
        if m.kind == "angle":
            if len(m.points) == 2:
                m.points.append(m.points[1])  # third point follows the mouse
                self.vp.recompute(m)
                self.vp.update()
            return
        self.finish_drawing()

    def wheel(self, e: QWheelEvent) -> None:
        """Scroll slices; with Ctrl, zoom at the mouse."""
        vp = self.vp
        dy = e.angleDelta().y()
        if dy == 0:
            return
        if e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            vp.zoom_by(1.15 if dy > 0 else 1 / 1.15, e.position())
        else:
            vp.scroll(-int(dy / 120) or (-1 if dy > 0 else 1))
        text = vp.readout(e.position())
        if text:
            vp.cursor_info.emit(text)
        e.accept()

    # --------------------------------------------------------------- keyboard
    def key(self, e: QKeyEvent) -> bool:
        """Slice keys, Delete and Escape. True when the key was used."""
        vp = self.vp
        k = e.key()
        n = vp.slice_count()
        steps = {
            Qt.Key.Key_Up: -1,
            Qt.Key.Key_Left: -1,
            Qt.Key.Key_Down: 1,
            Qt.Key.Key_Right: 1,
            Qt.Key.Key_PageUp: -max(1, n // 10),
            Qt.Key.Key_PageDown: max(1, n // 10),
        }
        if k in steps:
            vp.scroll(steps[k])
        elif k == Qt.Key.Key_Home:
            vp.set_index(0)
        elif k == Qt.Key.Key_End:
            vp.set_index(n - 1)
        elif k in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and vp.selected is not None:
            vp.delete_measurement(vp.selected)
        elif k == Qt.Key.Key_Escape and self.drawing is not None:
            self.cancel_drawing()
        else:
            return False
        return True

    # ------------------------------------------------------------ context menu
    def context_menu(self, global_pos: QPoint, pos: QPointF) -> None:
        """Delete measurements, fit, 1:1, invert, auto window, the file's window."""
        vp = self.vp
        menu = QMenu(vp)
        hit = self.hit(pos)
        if hit is not None:
            m = hit[0]
            act = menu.addAction(f"Delete {measure_name(m.kind)}")
            act.triggered.connect(lambda: vp.delete_measurement(m))
            menu.addSeparator()
        here = vp.measurements_here()
        if here:
            act = menu.addAction("Delete measurements on this image")
            act.triggered.connect(lambda: [vp.delete_measurement(x) for x in list(here)])
        for text, fn in (
            ("Fit", vp.fit),
            ("1:1", vp.one_to_one),
            ("Invert", vp.toggle_invert),
            ("Auto window", lambda: vp.apply_preset("auto")),
            ("Window from file", lambda: vp.apply_preset("file")),
        ):
            a = QAction(text, menu)
            a.triggered.connect(fn)
            menu.addAction(a)
        menu.popup(global_pos)
        self.menu = menu


class Cine(QTimer):
    """Cine playback: steps the viewport through its slices at :attr:`fps`, looping."""

    def __init__(self, vp: Viewport) -> None:
        super().__init__(vp)
        self.vp = vp
        self.fps = 10.0
        self.timeout.connect(self._step)

    def play(self, fps: float | None = None) -> None:
        if fps:
            self.fps = float(fps)
        if self.vp.slice_count() > 1:
            self.start(max(1, int(1000.0 / max(self.fps, 0.5))))

    def toggle(self) -> bool:
        """Play or stop; True when playing."""
        if self.isActive():
            self.stop()
        else:
            self.play()
        return self.isActive()

    def set_fps(self, fps: float) -> None:
        self.fps = max(0.5, float(fps))
        if self.isActive():
            self.start(max(1, int(1000.0 / self.fps)))

    def _step(self) -> None:
        n = self.vp.slice_count()
        if n <= 1:
            self.stop()
            return
        self.vp.set_index((self.vp.index + 1) % n)
