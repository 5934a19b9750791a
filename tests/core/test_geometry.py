"""Plane geometry (medview.imaging.geometry): one flip rule for the pixels and the mouse.

Qt-free. Synthetic volumes give every voxel a unique value, so "the pixel under
(x, y) is voxel (i, j, k)" can be checked exactly; the real CT checks that the head
is at the top of its reformats in patient coordinates.
"""

from __future__ import annotations

import numpy as np
import pytest

from medview.imaging import geometry
from medview.imaging.display import extract_plane
from medview.io.model import Volume

SHAPE = (5, 7, 9)  # z, y, x: all different, so a swapped axis cannot pass


def _volume(k_up: bool) -> Volume:
    """Unique values per voxel; the slice axis points to the head or to the feet."""
    arr = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    direction = np.eye(3) if k_up else np.diag([1.0, 1.0, -1.0])
    return Volume(array=arr, spacing=(0.7, 0.8, 2.5), direction=direction)


@pytest.mark.parametrize("k_up", [True, False])
@pytest.mark.parametrize("plane", geometry.PLANES)
def test_extract_plane_and_pixel_to_voxel_agree_on_every_plane(plane, k_up):
    vol = _volume(k_up)
    n = geometry.plane_count(vol, plane)
    for index in range(n):
        img, spacing = extract_plane(vol, index, plane)
        assert img.shape == geometry.plane_shape(vol, plane)
        assert spacing == geometry.plane_spacing(vol, plane)
        for r in range(img.shape[0]):
            for c in range(img.shape[1]):
                i, j, k = geometry.pixel_to_voxel(vol, plane, index, c + 0.5, r + 0.5)
                assert float(i).is_integer() and float(j).is_integer() and float(k).is_integer()
                assert img[r, c] == vol.array[int(k), int(j), int(i)], (plane, index, r, c)
                # and back
                idx, x, y = geometry.voxel_to_pixel(vol, plane, i, j, k)
                assert (idx, x, y) == (index, c + 0.5, r + 0.5)


def test_plane_counts_shapes_and_spacings():
    vol = _volume(True)
    z, y, x = SHAPE
    assert [geometry.plane_count(vol, p) for p in geometry.PLANES] == [z, y, x]
    assert geometry.plane_shape(vol, "axial") == (y, x)
    assert geometry.plane_shape(vol, "coronal") == (z, x)
    assert geometry.plane_shape(vol, "sagittal") == (z, y)
    assert geometry.plane_spacing(vol, "axial") == (0.8, 0.7)
    assert geometry.plane_spacing(vol, "coronal") == (2.5, 0.7)
    assert geometry.plane_spacing(vol, "sagittal") == (2.5, 0.8)
    with pytest.raises(ValueError, match="plane must be one of"):
        geometry.plane_count(vol, "oblique")
    with pytest.raises(IndexError):
        extract_plane(vol, x, "sagittal")


def test_flip_rule_puts_the_head_at_the_top():
    up, down = _volume(True), _volume(False)
    assert not geometry.plane_flipped(up, "axial") and not geometry.plane_flipped(down, "axial")
    assert geometry.plane_flipped(up, "coronal") and geometry.plane_flipped(up, "sagittal")
    assert not geometry.plane_flipped(down, "coronal")
    for vol in (up, down):
        for plane in ("coronal", "sagittal"):
            _, row = geometry.plane_axes_lps(vol, plane)
            assert geometry.orientation_letters(row) == "F"  # down the screen = towards the feet


def test_plane_axes_and_orientation_letters():
    vol = _volume(True)
    letters = {
        p: tuple(geometry.orientation_letters(v) for v in geometry.plane_axes_lps(vol, p))
        for p in geometry.PLANES
    }
    assert letters == {"axial": ("L", "P"), "coronal": ("L", "F"), "sagittal": ("P", "F")}
    assert geometry.orientation_letters(np.array([-1.0, 0.0, 0.0])) == "R"
    assert geometry.orientation_letters(np.array([0.0, -1.0, 0.0])) == "A"
    # oblique: dominant component first, components <= 0.3 ignored
    assert geometry.orientation_letters(np.array([0.5, -0.8, 0.2])) == "AL"
    assert geometry.orientation_letters(np.array([0.0, 0.0, 0.0])) == ""


def test_real_ct_reformats_have_the_head_at_the_top(ct_volume):
    vol = ct_volume
    z, y, x = vol.shape
    for plane in ("coronal", "sagittal"):
        index = geometry.plane_count(vol, plane) // 2
        rows, cols = geometry.plane_shape(vol, plane)
        top = vol.voxel_to_patient(*geometry.pixel_to_voxel(vol, plane, index, cols / 2, 0.5))
        bottom = vol.voxel_to_patient(
            *geometry.pixel_to_voxel(vol, plane, index, cols / 2, rows - 0.5)
        )
        # LPS: +z is the head; the rows span the whole stack of slices
        assert top[2] > bottom[2]
        assert top[2] - bottom[2] == pytest.approx((z - 1) * vol.spacing[2], rel=1e-6)
        img, _ = extract_plane(vol, index, plane)
        i, j, k = geometry.pixel_to_voxel(vol, plane, index, 0.5, 0.5)
        assert img[0, 0] == vol.array[int(k), int(j), int(i)]
    # the CT's own axial orientation, read from its Image Orientation (Patient)
    col, row = geometry.plane_axes_lps(vol, "axial")
    assert geometry.orientation_letters(col) == "L"
    assert geometry.orientation_letters(row) == "P"
