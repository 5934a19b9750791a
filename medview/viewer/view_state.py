"""What one viewport shows and how: a plain dataclass with pure operations (no Qt).

:class:`ViewState` holds the slice (plane, index), the VOI window and the user's
invert toggle, the camera (zoom in screen pixels per mm, pan in screen pixels,
quarter-turn rotation, flips, fit mode) and the MPR crosshair. Its operations
(zoom at a point, pan, rotate, flip, reset, fit) and :meth:`ViewState.image_to_screen`
(the image-pixel -> screen affine map) are what ``medview.ui.viewport`` draws with,
so the camera maths is tested without a QApplication.

Screen coordinates: pixels, x to the right, y down, origin at the top-left corner
of the viewport. Image coordinates: ``x`` along columns, ``y`` along rows
(:mod:`medview.imaging.geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from medview.io.model import Volume

Point = tuple[float, float]
Size = tuple[float, float]  # (width, height)

#: (cos, sin) of 0, 90, 180, 270 degrees clockwise on screen (exact)
_QUARTER = ((1, 0), (0, 1), (-1, 0), (0, -1))
MIN_ZOOM, MAX_ZOOM = 0.02, 200.0
MIN_STEP, MAX_STEP = 0.05, 20.0


@dataclass
class ViewState:
    """One viewport's view of a volume. See the module docstring."""

    plane: str = "axial"
    index: int = 0
    window: tuple[float, float] | None = None  # (center, width); None: the file's VOI LUT
    invert: bool = False  # the user's invert toggle (on top of MONOCHROME1)
    zoom: float = 1.0  # screen pixels per mm
    pan: Point = (0.0, 0.0)  # screen pixels from the centred position
    rotation: int = 0  # quarter turns clockwise
    flip_h: bool = False
    flip_v: bool = False
    fit_mode: bool = True  # the zoom follows the viewport size
    crosshair: tuple[float, float, float] | None = None  # voxel (i, j, k)
    projection: str | None = None  # None: one slice; "mip", "minip" or "avg" over a slab
    slab_mm: float | None = None  # slab thickness centred on ``index``; None: whole volume

    # ------------------------------------------------------------- geometry
    def orientation_matrix(self) -> np.ndarray:
        """2x2 map of image directions (scaled to mm) to screen directions: flips, then rotation."""
        flips = np.diag([-1.0 if self.flip_h else 1.0, -1.0 if self.flip_v else 1.0])
        c, s = _QUARTER[self.rotation % 4]
        rot = np.array([[c, -s], [s, c]], dtype=float)
        return rot @ flips

    def image_to_screen(
        self, shape: tuple[int, int], spacing: tuple[float, float], view: Size
    ) -> np.ndarray:
        """The 3x3 affine map of image coordinates to screen coordinates.

        ``shape`` is the image's (rows, cols), ``spacing`` its (row, column) spacing in
        mm and ``view`` the viewport's (width, height). The image centre lands on the
        viewport centre plus :attr:`pan`; one mm is :attr:`zoom` screen pixels.
        """
        rows, cols = shape
        rs, cs = spacing
        centre = np.array([[1.0, 0.0, -cols / 2.0], [0.0, 1.0, -rows / 2.0], [0.0, 0.0, 1.0]])
        linear = np.eye(3)
        linear[:2, :2] = self.zoom * self.orientation_matrix() @ np.diag([cs, rs])
        shift = np.eye(3)
        shift[:2, 2] = (view[0] / 2.0 + self.pan[0], view[1] / 2.0 + self.pan[1])
        return shift @ linear @ centre

    def screen_axes(self) -> tuple[Point, Point]:
        """The image directions (x, y) that point screen-right and screen-down."""
        inv = np.linalg.inv(self.orientation_matrix())
        right, down = inv[:, 0], inv[:, 1]
        return (float(right[0]), float(right[1])), (float(down[0]), float(down[1]))

    def fit_zoom(self, shape: tuple[int, int], spacing: tuple[float, float], view: Size) -> float:
        """The zoom at which the whole (rotated) image fits the viewport."""
        rows, cols = shape
        rs, cs = spacing
        w_mm, h_mm = cols * cs, rows * rs
        if self.rotation % 2:
            w_mm, h_mm = h_mm, w_mm
        if w_mm <= 0 or h_mm <= 0:
            return 1.0
        return max(1e-3, min(view[0] / w_mm, view[1] / h_mm))

    # ------------------------------------------------------------ operations
    def fit(self, shape: tuple[int, int], spacing: tuple[float, float], view: Size) -> None:
        """Centre the image and zoom so it fits; the zoom then follows resizes."""
        self.fit_mode = True
        self.pan = (0.0, 0.0)
        self.zoom = self.fit_zoom(shape, spacing, view)

    def refit(self, shape: tuple[int, int], spacing: tuple[float, float], view: Size) -> None:
        """After a resize or rotation: keep fitting when in fit mode."""
        if self.fit_mode:
            self.zoom = self.fit_zoom(shape, spacing, view)

    def reset(self, shape: tuple[int, int], spacing: tuple[float, float], view: Size) -> None:
        """No rotation, no flips, fitted and centred (window and slice unchanged)."""
        self.rotation = 0
        self.flip_h = self.flip_v = False
        self.fit(shape, spacing, view)

    def one_to_one(self, col_spacing: float) -> None:
        """One image column pixel = one screen pixel."""
        self.fit_mode = False
        self.zoom = 1.0 / col_spacing if col_spacing > 0 else 1.0

    def zoom_at(self, factor: float, anchor: Point | None, view: Size) -> None:
        """Zoom by ``factor`` (one step clamped to 0.05..20, the zoom to 0.02..200),
        keeping the image point under the screen point ``anchor`` where it is."""
        self.fit_mode = False
        factor = max(MIN_STEP, min(factor, MAX_STEP))
        new = max(MIN_ZOOM, min(self.zoom * factor, MAX_ZOOM))
        if anchor is not None:
            cx, cy = view[0] / 2.0 + self.pan[0], view[1] / 2.0 + self.pan[1]
            keep = 1 - new / self.zoom
            self.pan = (
                self.pan[0] + (anchor[0] - cx) * keep,
                self.pan[1] + (anchor[1] - cy) * keep,
            )
        self.zoom = new

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) screen pixels."""
        self.fit_mode = False
        self.pan = (self.pan[0] + dx, self.pan[1] + dy)

    def rotate(
        self,
        quarter_turns: int,
        shape: tuple[int, int],
        spacing: tuple[float, float],
        view: Size,
    ) -> None:
        """Rotate clockwise by ``quarter_turns`` x 90 degrees (refitting in fit mode)."""
        self.rotation = (self.rotation + quarter_turns) % 4
        self.refit(shape, spacing, view)

    def flip(self, horizontal: bool) -> None:
        """Mirror along the screen's horizontal (left-right) or vertical axis,
        whatever the rotation."""
        if (self.rotation % 2 == 0) == horizontal:
            self.flip_h = not self.flip_h
        else:
            self.flip_v = not self.flip_v

    def zoom_percent(self, col_spacing: float) -> float:
        """Zoom as a percentage of one image pixel per screen pixel."""
        return self.zoom * col_spacing * 100.0

    def clamp_index(self, index: int, count: int) -> int:
        """``index`` limited to 0..count-1 (0 when there are no slices)."""
        return int(min(max(int(index), 0), max(count, 1) - 1))

    def set_projection(self, projection: str | None, slab_mm: float | None) -> None:
        """Show a slab projection (``"mip"``, ``"minip"``, ``"avg"``; ``slab_mm`` None or
        not above 0: the whole volume), or one slice again (``projection`` None)."""
        if projection is not None:
            from medview.imaging.projection import check_projection

            check_projection(projection)
        self.projection = projection
        self.slab_mm = float(slab_mm) if projection and slab_mm and slab_mm > 0 else None

    def render(self, volume: Volume, invert: bool, aspect: bool = False) -> np.ndarray:
        """What this view shows of ``volume`` as uint8: the slice, or its slab projection
        (:func:`medview.imaging.projection.render_projection`; colour images and volumes
        still loading show the slice)."""
        from medview.imaging import display

        if self.projection and not volume.is_color and volume.ready is None:
            from medview.imaging.projection import render_projection

            return render_projection(
                volume,
                self.index,
                self.plane,
                self.projection,
                self.slab_mm,
                window=self.window,
                invert=invert,
                aspect=aspect,
            )
        return display.render_slice(
            volume, self.index, self.plane, window=self.window, invert=invert, aspect=aspect
        )


__all__ = ["ViewState"]
