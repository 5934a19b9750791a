"""The display pipeline (pure ndarray -> ndarray functions)."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medview.imaging.display import (
    apply_lut_table,
    apply_modality_lut,
    apply_window,
    auto_window,
    extract_plane,
    invert_uint8,
    render_slice,
    resample_rows,
)
from medview.io import load_path
from medview.io.model import Volume


def test_modality_lut_is_linear():
    arr = np.array([0, 1000, 2000], dtype=np.uint16)
    assert apply_modality_lut(arr, 1.0, -1024.0).tolist() == [-1024, -24, 976]
    assert apply_modality_lut(arr, 0.5, 10.0).tolist() == [10, 510, 1010]


def test_window_follows_the_standard_formula():
    # PS3.3 C.11.2.1.2.1 with center 40, width 400: below -160 black, above 240 white
    x = np.array([-1000, -160, 40, 239.5, 1000], dtype=np.float32)
    out = apply_window(x, 40, 400)
    assert out.dtype == np.uint8
    assert out[0] == 0 and out[-1] == 255
    assert out[1] == 0 and out[3] == 255
    assert abs(int(out[2]) - 128) <= 1


def test_window_width_one_is_a_threshold():
    out = apply_window(np.array([0, 100, 101]), 100.5, 1)
    assert out.tolist() == [0, 0, 255]


def test_auto_window_ignores_outliers():
    rng = np.random.default_rng(0)
    arr = rng.normal(100, 10, size=(256, 256)).astype(np.int16)
    arr[0, 0] = 30000
    c, w = auto_window(arr)
    assert 90 < c < 110 and w < 100


def test_lut_table_clamps():
    table = np.array([10, 20, 30])
    assert apply_lut_table(np.array([-5, 0, 1, 2, 9]), 0, table).tolist() == [10, 10, 20, 30, 30]


def test_invert():
    assert invert_uint8(np.array([0, 255, 100], dtype=np.uint8)).tolist() == [255, 0, 155]


def test_resample_rows_stretches_linearly():
    arr = np.array([[0], [10]], dtype=np.float32)
    out = resample_rows(arr, 2.0)
    assert out.shape == (4, 1)
    assert out[0, 0] == 0 and out[-1, 0] == 10 and 0 < out[1, 0] < out[2, 0] < 10


def _toy_volume():
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    return Volume(array=arr, spacing=(0.5, 0.5, 2.0))


def test_mpr_geometry():
    vol = _toy_volume()
    ax, sp = extract_plane(vol, 2, "axial")
    assert ax.shape == (5, 6) and sp == (0.5, 0.5)
    cor, sp = extract_plane(vol, 1, "coronal")
    assert cor.shape == (4, 6) and sp == (2.0, 0.5)
    assert np.array_equal(cor, vol.array[::-1, 1, :])  # head at the top
    sag, sp = extract_plane(vol, 3, "sagittal")
    assert sag.shape == (4, 5) and np.array_equal(sag, vol.array[::-1, :, 3])
    # rendering corrects the aspect: 4 slices of 2 mm over 0.5 mm pixels -> 16 rows
    img = render_slice(vol, 1, "coronal", window=(50, 100))
    assert img.shape == (16, 6)
    with pytest.raises(IndexError):
        extract_plane(vol, 5, "axial")


def test_render_window_changes_pixels_as_the_window_says():
    vol = load_path(get_testdata_file("CT_small.dcm"))
    hu = vol.modality_values(0)
    narrow = render_slice(vol, 0, window=(40, 80))
    wide = render_slice(vol, 0, window=(40, 2000))
    # pixels inside the narrow window map linearly; outside they saturate
    inside = (hu > 0) & (hu < 80)
    assert inside.any()
    expect = apply_window(hu, 40, 80)
    assert np.array_equal(narrow, expect)
    assert (narrow[hu > 80] == 255).all() and (narrow[hu < 0] == 0).all()
    assert wide.std() < narrow.std()


def test_voi_lut_sequence_is_used():
    vol = load_path(get_testdata_file("vlut_04.dcm"))
    assert vol.voi_lut is not None
    img = render_slice(vol, 0)
    assert img.dtype == np.uint8 and np.ptp(img) > 100


def test_monochrome1_renders_inverted_like_its_monochrome2_twin(tmp_path):
    """A MONOCHROME1 file whose stored values are the inverse of a MONOCHROME2
    file's must render identically (PS3.3 C.7.6.3.1.2)."""
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    stored = ds.pixel_array.astype(np.int32)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inv = (stored.max() + stored.min() - stored).astype(np.int16)
    ds.PixelData = inv.tobytes()
    ds.save_as(tmp_path / "m1.dcm")
    m2 = load_path(get_testdata_file("CT_small.dcm"))
    m1 = load_path(tmp_path / "m1.dcm")
    lo, hi = float(stored.min()), float(stored.max())
    c2 = (lo + hi) / 2 - 1024 + 100
    # the mirrored window in the inverted file's HU (+1: the standard's c - 0.5)
    c1 = (lo + hi) - 2048 - c2 + 1
    a = render_slice(m2, 0, window=(c2, 300))
    b = render_slice(m1, 0, window=(c1, 300))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_real_cr_monochrome_pair(xray_dir, tmp_path):
    """../shared/data/xray holds one CR in two files whose pixel data are byte-identical,
    one labelled MONOCHROME2 and one MONOCHROME1. By PS3.3 C.7.6.3.1.2 the MONOCHROME1
    one must display as the negative of the other; a MONOCHROME1 twin whose stored values
    are inverted (as a modality writes it) must display exactly like the MONOCHROME2 file."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    m2 = load_path(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")
    m1 = load_path(xray_dir / "cr_chest_pa_monochrome1.dcm")
    a, b = render_slice(m2, 0), render_slice(m1, 0)
    assert np.array_equal(b, invert_uint8(a))
    ds = pydicom.dcmread(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")
    ds.decompress()
    ds.PixelData = (255 - ds.pixel_array.astype(np.uint8)).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "m1_twin.dcm")
    twin = render_slice(load_path(tmp_path / "m1_twin.dcm"), 0)
    assert np.abs(twin.astype(int) - a.astype(int)).max() <= 1
