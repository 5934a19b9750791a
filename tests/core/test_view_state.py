"""ViewState (medview.viewer.view_state): the viewport's camera maths without Qt."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from medview.viewer.view_state import ViewState

SHAPE = (300, 400)  # rows, cols
SPACING = (2.5, 0.5)  # row, col mm: a coronal reformat of a thick-slice CT
VIEW = (800.0, 600.0)


def screen(state: ViewState, x: float, y: float, shape=SHAPE, spacing=SPACING, view=VIEW):
    m = state.image_to_screen(shape, spacing, view)
    p = m @ np.array([x, y, 1.0])
    return float(p[0]), float(p[1])


def image(state: ViewState, sx: float, sy: float):
    m = np.linalg.inv(state.image_to_screen(SHAPE, SPACING, VIEW))
    p = m @ np.array([sx, sy, 1.0])
    return float(p[0]), float(p[1])


def test_identity_at_one_to_one_in_a_same_sized_viewport():
    s = ViewState()
    s.one_to_one(1.0)
    m = s.image_to_screen((512, 512), (1.0, 1.0), (512.0, 512.0))
    np.testing.assert_allclose(m, np.eye(3), atol=1e-12)
    assert not s.fit_mode and s.zoom_percent(1.0) == pytest.approx(100.0)


def test_centre_pan_and_aspect():
    s = ViewState(zoom=1.5, pan=(10.0, -20.0))
    rows, cols = SHAPE
    assert screen(s, cols / 2, rows / 2) == pytest.approx((VIEW[0] / 2 + 10, VIEW[1] / 2 - 20))
    x0, y0 = screen(s, 0, 0)
    x1, _ = screen(s, 10, 0)
    _, y1 = screen(s, 0, 10)
    # ten rows are 25 mm, ten columns 5 mm, both at 1.5 screen pixels per mm
    assert (x1 - x0, y1 - y0) == pytest.approx((10 * 0.5 * 1.5, 10 * 2.5 * 1.5))


def test_fit_shows_the_whole_image_and_follows_rotation():
    s = ViewState()
    s.fit(SHAPE, SPACING, VIEW)
    rows, cols = SHAPE
    corners = [screen(s, x, y) for x in (0, cols) for y in (0, rows)]
    xs, ys = zip(*corners, strict=True)
    assert min(xs) >= -1e-9 and max(xs) <= VIEW[0] + 1e-9
    assert min(ys) >= -1e-9 and max(ys) <= VIEW[1] + 1e-9
    # 750 mm tall, 200 mm wide: the height limits the zoom
    assert s.zoom == pytest.approx(min(VIEW[0] / 200.0, VIEW[1] / 750.0))
    s.rotate(1, SHAPE, SPACING, VIEW)  # now 750 mm wide, 200 mm tall
    assert s.rotation == 1 and s.zoom == pytest.approx(min(VIEW[0] / 750.0, VIEW[1] / 200.0))
    s.pan_by(5, 5)
    zoom = s.zoom
    s.rotate(1, SHAPE, SPACING, VIEW)  # out of fit mode: the zoom stays
    assert not s.fit_mode and s.zoom == zoom and s.rotation == 2
    s.rotate(-3, SHAPE, SPACING, VIEW)
    assert s.rotation == 3


def test_rotation_is_clockwise_on_screen():
    s = ViewState(zoom=1.0, rotation=1)
    x0, y0 = screen(s, 100, 100)
    x1, y1 = screen(s, 110, 100)  # image +x ...
    assert x1 == pytest.approx(x0) and y1 > y0  # ... points down the screen
    (rx, ry), (dx, dy) = s.screen_axes()
    assert (rx, ry) == pytest.approx((0.0, -1.0))  # screen-right is image -y
    assert (dx, dy) == pytest.approx((1.0, 0.0))


@pytest.mark.parametrize("rotation", range(4))
def test_flips_act_on_the_screen_axes_whatever_the_rotation(rotation):
    base = ViewState(zoom=1.0, rotation=rotation)
    pts = [(0.0, 0.0), (123.0, 45.0), (400.0, 300.0)]
    before = [screen(base, *p) for p in pts]
    cx, cy = VIEW[0] / 2, VIEW[1] / 2
    h = ViewState(zoom=1.0, rotation=rotation)
    h.flip(horizontal=True)
    for (bx, by), p in zip(before, pts, strict=True):
        assert screen(h, *p) == pytest.approx((2 * cx - bx, by))
    v = ViewState(zoom=1.0, rotation=rotation)
    v.flip(horizontal=False)
    for (bx, by), p in zip(before, pts, strict=True):
        assert screen(v, *p) == pytest.approx((bx, 2 * cy - by))
    h.flip(horizontal=True)
    assert (h.flip_h, h.flip_v) == (False, False)


def test_zoom_at_keeps_the_point_under_the_mouse():
    s = ViewState(zoom=2.0, pan=(30.0, -12.0), fit_mode=True)
    anchor = (613.0, 144.0)
    under = image(s, *anchor)
    s.zoom_at(1.15, anchor, VIEW)
    assert not s.fit_mode and s.zoom == pytest.approx(2.3)
    assert image(s, *anchor) == pytest.approx(under)
    s.zoom_at(1000.0, None, VIEW)  # one step at most x20, the zoom at most 200
    assert s.zoom == pytest.approx(46.0)
    for _ in range(5):
        s.zoom_at(1000.0, None, VIEW)
    assert s.zoom == 200.0
    for _ in range(10):
        s.zoom_at(1e-6, anchor, VIEW)
    assert s.zoom == 0.02


def test_reset_clears_rotation_flips_and_pan_but_not_the_window():
    s = ViewState(window=(40.0, 400.0), invert=True, index=7)
    s.rotate(3, SHAPE, SPACING, VIEW)
    s.flip(True)
    s.flip(False)
    s.pan_by(50, 60)
    s.reset(SHAPE, SPACING, VIEW)
    assert (s.rotation, s.flip_h, s.flip_v, s.pan, s.fit_mode) == (0, False, False, (0, 0), True)
    assert s.zoom == pytest.approx(s.fit_zoom(SHAPE, SPACING, VIEW))
    assert (s.window, s.invert, s.index) == ((40.0, 400.0), True, 7)


def test_clamp_index():
    s = ViewState()
    assert [s.clamp_index(i, 20) for i in (-5, 0, 19, 25)] == [0, 0, 19, 19]
    assert s.clamp_index(3, 0) == 0


def test_matches_the_qt_transform_the_viewport_used_before():
    """The affine map equals the QTransform chain the viewport built by hand."""
    qtgui = pytest.importorskip("PySide6.QtGui")
    qtcore = pytest.importorskip("PySide6.QtCore")
    QTransform, QPointF = qtgui.QTransform, qtcore.QPointF  # noqa: N806
    rows, cols = SHAPE
    rs, cs = SPACING
    for rotation, fh, fv in itertools.product(range(4), (False, True), (False, True)):
        s = ViewState(zoom=1.7, pan=(13.0, -7.0), rotation=rotation, flip_h=fh, flip_v=fv)
        t = QTransform.fromTranslate(-cols / 2.0, -rows / 2.0)
        t *= QTransform.fromScale(cs, rs)
        t *= QTransform.fromScale(-1.0 if fh else 1.0, -1.0 if fv else 1.0)
        rot = QTransform()
        rot.rotate(90.0 * rotation)
        t *= rot
        t *= QTransform.fromScale(1.7, 1.7)
        t *= QTransform.fromTranslate(VIEW[0] / 2.0 + 13.0, VIEW[1] / 2.0 - 7.0)
        for x, y in ((0.0, 0.0), (37.0, 211.0), (400.0, 300.0)):
            q = t.map(QPointF(x, y))
            assert screen(s, x, y) == pytest.approx((q.x(), q.y()), abs=1e-9)
