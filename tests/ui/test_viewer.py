"""Viewport tests on the real CT series: window/level, scrolling, MPR geometry,
measurements (mm and HU), AI overlay, cine. Offscreen Qt via pytest-qt."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from medview.imaging.measure import Measurement, roi_mask  # noqa: E402
from medview.ui.viewport import Viewport, pixel_to_voxel, voxel_to_pixel  # noqa: E402


def expected_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear VOI written out independently of the core."""
    c, w = center - 0.5, width - 1.0
    y = ((values.astype(np.float64) - c) / w + 0.5) * 255.0
    y = np.where(values <= c - w / 2, 0.0, np.where(values > c + w / 2, 255.0, y))
    return y


@pytest.fixture()
def vp(qtbot, ct_volume):
    v = Viewport()
    qtbot.addWidget(v)
    v.resize(512, 512)
    v.show()
    qtbot.waitExposed(v)
    v.set_volume(ct_volume, index=10)
    v.one_to_one()  # 512x512 widget, 1:1 zoom: widget pixel == image pixel
    return v


def test_window_level_changes_pixels_as_the_window_says(vp, ct_volume):
    hu = ct_volume.modality_values(10)
    assert vp.window == pytest.approx((40.0, 300.0))  # the file's window (W 300, L 40)
    clipped = 0
    for center, width in [(40.0, 400.0), (-600.0, 1500.0), (400.0, 1800.0)]:
        vp.set_window(center, width)
        img = vp.rendered().astype(np.float64)
        exp = expected_window(hu, center, width)
        assert np.abs(img - exp).max() <= 1.0  # uint8 truncation
        air = hu < center - width / 2
        bone = hu > center + width / 2
        assert (img[air] == 0).all() and (img[bone] == 255).all()
        clipped += int(air.sum()) + int(bone.sum())
    assert clipped > 1000  # the clipping branches were exercised
    soft = vp.rendered().copy()
    vp.set_window(-600.0, 1500.0)
    lung = vp.rendered()
    assert (lung.astype(int) - soft.astype(int)).std() > 5  # the picture really changed


def test_right_drag_changes_window_live(vp, qtbot):
    c0, w0 = vp.window
    start = QPoint(256, 256)
    QTest.mousePress(vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start)
    for dx in range(1, 41, 4):
        QTest.mouseMove(vp, start + QPoint(dx, dx // 2))
    QTest.mouseRelease(
        vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, start + QPoint(40, 20)
    )
    c1, w1 = vp.window
    assert w1 > w0 and c1 > c0  # right = wider, down = higher level


def test_presets_and_invert(vp):
    from medview.ui.presets import resolve_preset

    vp.apply_preset(resolve_preset("lung"))
    assert vp.window == (-600.0, 1500.0)
    vp.apply_preset("file")
    assert vp.window == pytest.approx((40.0, 300.0))
    vp.apply_preset("auto")
    assert vp.window != (40.0, 300.0) and vp.window[1] > 100
    before = vp.rendered().copy()
    vp.toggle_invert()
    assert np.array_equal(vp.rendered(), 255 - before)


def test_wheel_and_keys_scroll(vp, qtbot, ct_volume):
    assert vp.index == 10
    QTest.keyClick(vp, Qt.Key.Key_Down)
    assert vp.index == 11
    QTest.keyClick(vp, Qt.Key.Key_Up)
    QTest.keyClick(vp, Qt.Key.Key_Up)
    assert vp.index == 9
    QTest.keyClick(vp, Qt.Key.Key_End)
    assert vp.index == 19
    QTest.keyClick(vp, Qt.Key.Key_Home)
    assert vp.index == 0
    from tests.helpers.qt_helpers import wheel_event

    vp.wheelEvent(wheel_event(100, 100, -120))
    assert vp.index == 1
    # the shown slice is slice 1 of the volume through the core's pipeline
    vp.set_window(40, 400)
    exp = expected_window(ct_volume.modality_values(1), 40, 400)
    assert np.abs(vp.rendered().astype(float) - exp).max() <= 1.0


def test_cursor_readout_gives_hu_and_patient_coordinate(vp, ct_volume):
    text = vp.readout(QPointF(300.5, 200.5))
    hu = ct_volume.modality_values(10)[200, 300]
    assert f"{hu:.0f} HU" in text
    x, y, z = ct_volume.voxel_to_patient(300, 200, 10)
    assert f"({x:.1f}, {y:.1f}, {z:.1f}) mm" in text


def test_mpr_geometry_against_the_volume(qtbot, ct_volume):
    z, y, x = ct_volume.shape
    sx, sy, sz = ct_volume.spacing
    for plane, n, shape, spacing in [
        ("coronal", y, (z, x), (sz, sx)),
        ("sagittal", x, (z, y), (sz, sy)),
    ]:
        v = Viewport(plane=plane)
        qtbot.addWidget(v)
        v.resize(600, 300)
        v.set_volume(ct_volume, index=200)
        assert v.slice_count() == n
        assert v.image_size() == shape
        assert v.image_spacing() == pytest.approx(spacing)
        vals = v.current_values()
        ref = ct_volume.array[:, 200, :] if plane == "coronal" else ct_volume.array[:, :, 200]
        # head at the top: the slice axis points superior, so rows run from the last slice
        assert np.array_equal(vals, ref[::-1].astype(np.float32))
        # voxel <-> pixel mapping round trip and HU under a point
        for ijk in [(10.0, 200.0, 3.0), (200.0, 200.0, 17.0)]:
            idx, px, py = voxel_to_pixel(ct_volume, plane, *ijk)
            assert idx == (200 if plane == "coronal" and ijk[1] == 200 else idx)
            back = pixel_to_voxel(ct_volume, plane, idx, px, py)
            assert back == pytest.approx(ijk)
        # aspect: the plane is drawn sz/sx taller per row than per column
        t = v.transform()
        p0, p1 = t.map(QPointF(0, 0)), t.map(QPointF(0, 10))
        q1 = t.map(QPointF(10, 0))
        ratio = math.hypot(p1.x() - p0.x(), p1.y() - p0.y()) / math.hypot(
            q1.x() - p0.x(), q1.y() - p0.y()
        )
        assert ratio == pytest.approx(spacing[0] / spacing[1], rel=1e-6)
        v.close()


def _drag(vp, a: tuple[int, int], b: tuple[int, int]) -> None:
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(*a))
    mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
    QTest.mouseMove(vp, QPoint(*mid))
    QTest.mouseMove(vp, QPoint(*b))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(*b))


def test_ruler_length_is_pixels_times_spacing(vp, ct_volume, qtbot):
    sx, sy, _ = ct_volume.spacing
    assert vp.to_image(QPointF(100, 200)) == QPointF(100, 200)
    vp.tool = "ruler"
    added = []
    vp.measurement_added.connect(added.append)
    _drag(vp, (100, 200), (300, 200))
    assert len(added) == 1
    m = added[0]
    assert m.kind == "ruler" and m.index == 10
    assert m.stats["length"] == pytest.approx(200 * sx, rel=1e-9)
    assert m.image_key == ct_volume.instances[10].sop_uid
    _drag(vp, (100, 100), (400, 500))
    assert added[1].stats["length"] == pytest.approx(math.hypot(300 * sx, 400 * sy), rel=1e-9)
    assert "mm" in " ".join(vp.overlay_lines()["br"]) or vp.spacing_known()


def test_rect_and_ellipse_roi_match_numpy(vp, ct_volume):
    hu = ct_volume.modality_values(10).astype(np.float64)
    added = []
    vp.measurement_added.connect(added.append)
    vp.tool = "rect"
    _drag(vp, (100, 100), (150, 140))
    s = added[0].stats
    ref = hu[100:140, 100:150]
    assert s["n"] == ref.size == 50 * 40
    assert s["mean"] == pytest.approx(ref.mean())
    assert s["sd"] == pytest.approx(ref.std())
    assert (s["min"], s["max"]) == (ref.min(), ref.max())
    sx, sy, _ = ct_volume.spacing
    assert s["area"] == pytest.approx(50 * sx * 40 * sy)
    vp.tool = "ellipse"
    _drag(vp, (200, 220), (300, 280))
    e = added[1].stats
    rows, cols = np.mgrid[0:512, 0:512]
    inside = ((cols + 0.5 - 250) / 50) ** 2 + ((rows + 0.5 - 250) / 30) ** 2 <= 1
    assert e["n"] == int(inside.sum())
    assert e["mean"] == pytest.approx(hu[inside].mean())
    assert e["area"] == pytest.approx(math.pi * 50 * sx * 30 * sy)
    assert np.array_equal(roi_mask("ellipse", (200, 220), (300, 280), (512, 512)), inside)


def test_angle_tool(vp):
    vp.tool = "angle"
    added = []
    vp.measurement_added.connect(added.append)
    _drag(vp, (300, 300), (200, 300))  # first arm: from 300,300 to the vertex 200,300
    QTest.mouseMove(vp, QPoint(200, 200))
    QTest.mouseClick(
        vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(200, 200)
    )
    assert len(added) == 1
    assert added[0].stats["angle"] == pytest.approx(90.0, abs=0.5)


def test_delete_selected_measurement(vp):
    vp.add_measurement(Measurement("ruler", [(10, 10), (50, 10)], index=vp.index))
    m = vp.measurements[0]
    vp.selected = m
    deleted = []
    vp.measurement_deleted.connect(deleted.append)
    QTest.keyClick(vp, Qt.Key.Key_Delete)
    assert deleted == [m] and not vp.measurements


def test_unknown_spacing_is_said(qtbot):
    from medview.io.model import Volume

    vol = Volume(array=np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
    v = Viewport()
    qtbot.addWidget(v)
    v.resize(256, 256)
    v.set_volume(vol)
    v.add_measurement(Measurement("ruler", [(0, 0), (10, 0)]))
    from medview.imaging import measure

    lines = measure.label(v.measurements[0], v.unit(), v.spacing_known())
    assert lines == ["10.0 px (spacing unknown)"]
    assert "spacing unknown" in v.overlay_lines()["br"]


def test_zoom_pan_rotate_flip_reset(vp):
    vp.fit()
    z = vp.zoom
    vp.zoom_by(2.0)
    assert vp.zoom == pytest.approx(2 * z)
    vp.rotate(1)
    t = vp.transform()
    a, b = t.map(QPointF(0, 0)), t.map(QPointF(10, 0))
    assert abs(b.x() - a.x()) < 1e-6 and b.y() > a.y()  # image +x points down after 90 deg cw
    vp.flip(True)
    vp.reset_view()
    assert (vp.rotation, vp.flip_h, vp.flip_v) == (0, False, False)
    assert vp.zoom == pytest.approx(vp.fit_zoom())
    vp.one_to_one()
    assert vp.zoom_percent() == pytest.approx(100.0)


def test_ai_overlay_is_drawn_with_label(vp, qtbot):
    from medview.ui.context import Overlay

    vp.set_window(40, 400)
    base = vp.grab().toImage()
    heat = np.zeros((512, 512), np.float32)
    heat[200:300, 200:300] = 0.4  # "hot" at 0.4: full red, little green, no blue
    vp.set_ai_overlay(Overlay(heatmap=heat, opacity=0.5, colormap="hot"))
    img = vp.grab().toImage()
    c_in, c0 = img.pixelColor(250, 250), base.pixelColor(250, 250)
    assert c_in.red() - c_in.blue() > 60 and c0.red() == c0.blue()  # grey turned red
    outside = img.pixelColor(100, 400), base.pixelColor(100, 400)
    assert outside[0] == outside[1]
    # the red "not for diagnostic use" label band at the top centre
    top = img.pixelColor(256, 10)
    assert top.red() > 120 and top.green() < 80
    vp.set_ai_overlay(None)
    assert vp.grab().toImage().pixelColor(250, 250) == c0


def test_cine_runs_through_frames(qtbot):
    from pydicom.data import get_testdata_file

    from medview.io import load_path

    vol = load_path(get_testdata_file("emri_small.dcm", download=False))
    assert vol.shape[0] == 10
    v = Viewport()
    qtbot.addWidget(v)
    v.resize(200, 200)
    v.set_volume(vol, index=0)
    assert v.overlay_lines()["bl"][0].startswith("Fr: 1/10")
    seen = set()
    v.index_changed.connect(seen.add)
    v.cine.play(50)
    qtbot.waitUntil(lambda: len(seen) >= 5, timeout=3000)
    v.stop_cine()
    assert not v.cine.isActive()


def test_orientation_letters_follow_rotation(vp):
    from medview.ui.viewport import orientation_letters, plane_axes_lps

    col, row = plane_axes_lps(vp.volume, "axial")
    assert orientation_letters(col) == "L" and orientation_letters(row) == "P"
    assert orientation_letters(-col) == "R"


def test_slab_projection_in_the_viewport(vp, ct_volume):
    from medview.imaging.projection import render_projection
    from medview.viewer.snapshot import ViewportFacts, viewport_record

    vp.set_window(40, 400)
    plain = vp.rendered().copy()
    vp.set_projection("mip", 20.0)
    shown = vp.rendered()
    ref = render_projection(ct_volume, 10, "axial", "mip", 20.0, window=(40, 400), aspect=False)
    np.testing.assert_array_equal(shown, ref)
    assert (shown >= plain).all() and (shown > plain).any()
    assert "MIP 20 mm: 7-16" in vp.overlay_lines()["bl"]  # 1-based, 0-based 6..15
    vp.scroll(5)  # the slab follows the slice, kept inside the volume
    assert "MIP 20 mm: 11-20" in vp.overlay_lines()["bl"]
    rec = viewport_record(0, ViewportFacts(vp.view, vp.volume))
    assert (rec["projection"], rec["slab"], rec["slab_first0"], rec["slab_last0"]) == (
        "mip",
        20.0,
        10,
        19,
    )
    assert (rec["index"], rec["index0"]) == (16, 15)
    vp.set_projection("minip", None)  # the whole volume
    assert "MinIP whole volume: 1-20" in vp.overlay_lines()["bl"]
    vp.set_projection(None)
    np.testing.assert_array_equal(vp.rendered(), vp.view.render(ct_volume, False))
    assert not any("MIP" in line for line in vp.overlay_lines()["bl"])
