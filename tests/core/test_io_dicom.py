"""Readers on real files nobody here wrote: pydicom's test files, pydicom-data, ../shared/data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medview.errors import ReadError
from medview.io import load_path, load_series, read_header, scan
from medview.io.dicom import decode_file


def tf(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return str(path)


# (compressed twin, uncompressed reference, lossless?)
TWINS = [
    ("MR_small_RLE.dcm", "MR_small.dcm", True),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm", True),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm", True),
    ("MR_small_bigendian.dcm", "MR_small.dcm", True),
    ("MR_small_implicit.dcm", "MR_small.dcm", True),
    ("emri_small_RLE.dcm", "emri_small.dcm", True),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm", True),
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm", True),
    ("emri_small_big_endian.dcm", "emri_small.dcm", True),
    ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm", True),
    # pydicom maps big-endian 16-bit palette entries one 8-bit level differently
    ("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm", False),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", True),
    ("SC_rgb_expb.dcm", "SC_rgb.dcm", True),
    ("rtdose_rle.dcm", "rtdose.dcm", True),
    ("693_J2KR.dcm", "693_UNCR.dcm", True),  # pydicom-data: real CT
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm", True),  # pydicom-data: real CR chest
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm", True),
    ("US1_J2KR.dcm", "US1_UNCR.dcm", True),  # YBR_RCT colour
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm", False),
    ("JPGExtended.dcm", "JPEG2000_UNC.dcm", False),
    ("693_J2KI.dcm", "693_UNCI.dcm", False),
    ("RG1_J2KI.dcm", "RG1_UNCI.dcm", False),
    ("MR2_J2KI.dcm", "MR2_UNCI.dcm", False),
    ("US1_J2KI.dcm", "US1_UNCI.dcm", False),
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", True),
]


@pytest.mark.parametrize("coded,ref,lossless", TWINS, ids=[t[0] for t in TWINS])
def test_compressed_equals_uncompressed_twin(coded, ref, lossless):
    va, vb = load_path(tf(coded)), load_path(tf(ref))
    if va.is_color:
        a, b = va.array.astype(np.float64), vb.array.astype(np.float64)
    else:  # compare modality values: twins may store them differently (raw + rescale vs HU)
        a = np.stack([va.modality_values(k) for k in range(va.shape[0])]).astype(np.float64)
        b = np.stack([vb.modality_values(k) for k in range(vb.shape[0])]).astype(np.float64)
    assert a.shape == b.shape
    if lossless:
        assert np.array_equal(a, b)
    else:
        span = float(b.max() - b.min()) or 1.0
        assert np.abs(a - b).mean() / span < 0.02, "lossy decode too far from the original"


@pytest.mark.parametrize(
    "name",
    [
        "image_dfl.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "JPEGLSNearLossless_08.dcm",
        "color3d_jpeg_baseline.dcm",
        "examples_palette.dcm",
        "gdcm-US-ALOKA-16.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
    ],
)
def test_every_transfer_syntax_and_colour_model_decodes(name):
    vol = load_path(tf(name))
    assert vol.array.size > 0
    assert vol.array.dtype in (np.uint8, np.int16, np.uint16)
    assert np.ptp(vol.array) > 0, "decoded to a flat (black) image"


def test_ybr_and_palette_become_rgb():
    ybr = load_path(tf("SC_ybr_full_422_uncompressed.dcm"))
    rgb = load_path(tf("SC_rgb.dcm"))
    assert ybr.is_color and ybr.array.shape[-1] == 3
    # the test images show the same colour bars: red, green, blue... within YBR rounding
    assert np.abs(ybr.array.astype(int) - rgb.array.astype(int)).mean() < 4
    pal = load_path(tf("OBXXXX1A.dcm"))
    assert pal.is_color and pal.array.dtype == np.uint8


def test_multiframe_is_a_stack():
    vol = load_path(tf("emri_small.dcm"))
    assert vol.shape == (10, 64, 64)


def test_ct_values_are_hounsfield_int16():
    vol = load_path(tf("693_UNCR.dcm"))
    assert vol.array.dtype == np.int16
    assert vol.unit == "HU" and vol.rescale_slope == 1 and vol.rescale_intercept == 0
    corner = vol.array[0, :20, :20]
    assert corner.max() <= -900, "outside the body should be air (about -1000 HU)"


def test_monochrome1_sets_inversion():
    vol = load_path(tf("RG1_UNCR.dcm"))
    assert vol.invert is True
    # this real CR stores PixelSpacing "0\\0": spacing must be treated as unknown
    assert not vol.spacing_known
    assert any("pixel spacing unknown" in w for w in vol.warnings)


def test_dicomdir_follows_records():
    res = scan(tf("DICOMDIR"))
    assert not [e for e in res.errors if "DICOMDIR" in e.path]
    total = sum(len(s.instances) for s in res.series)
    assert total == 31  # the 31 image records of pydicom's dicomdirtests set
    modalities = {s.modality for s in res.series}
    assert {"CT", "MR", "CR"} <= modalities


@pytest.mark.parametrize("variant", ["DICOMDIR-implicit", "DICOMDIR-bigEnd", "DICOMDIR-reordered"])
def test_dicomdir_variants(variant):
    res = scan(tf(variant))
    assert sum(len(s.instances) for s in res.series) == 31


def test_dicomdir_empty_is_a_clear_error():
    res = scan(tf("DICOMDIR-empty.dcm"))
    assert not res.series
    assert res.errors and "DICOMDIR" in res.errors[0].path


@pytest.mark.parametrize(
    "name,reason",
    [
        ("MR_truncated.dcm", "truncated"),
        ("emri_small_jpeg_2k_lossless_too_short.dcm", "truncated"),
        ("rtplan.dcm", "no image data"),
        ("no_meta.dcm", "not a DICOM file"),
    ],
)
def test_bad_files_give_one_line_reason(name, reason):
    path = tf(name)
    with pytest.raises(ReadError) as err:
        vol = load_path(path)
        vol.array.sum()
    msg = str(err.value)
    assert "\n" not in msg
    assert path in msg and reason in msg


def test_non_dicom_file_is_rejected(tmp_path):
    junk = tmp_path / "notes.dcm"
    junk.write_bytes(b"this is not dicom at all" * 20)
    with pytest.raises(ReadError, match="not a DICOM file"):
        read_header(junk)


def test_folder_with_bad_files_reads_the_rest(tmp_path):
    for n in ("CT_small.dcm", "MR_small.dcm", "MR_truncated.dcm"):
        shutil.copy(tf(n), tmp_path / n)
    (tmp_path / "garbage.dcm").write_bytes(b"\x00" * 50)
    (tmp_path / "half.dcm").write_bytes(open(tf("CT_small.dcm"), "rb").read()[:3000])
    res = scan(tmp_path)
    assert sorted(s.modality for s in res.series) == ["CT", "MR"]
    bad = {e.path.split("/")[-1]: e.reason for e in res.errors}
    assert set(bad) == {"MR_truncated.dcm", "garbage.dcm", "half.dcm"}
    assert all("\n" not in r for r in bad.values())


def test_empty_folder_is_an_error(tmp_path):
    res = scan(tmp_path)
    assert not res.series
    assert res.errors[0].reason.startswith("empty folder")


def test_mixed_series_split_by_size(tmp_path):
    import pydicom

    a = pydicom.dcmread(tf("CT_small.dcm"))
    b = pydicom.dcmread(tf("MR_small.dcm"))
    b.SeriesInstanceUID = a.SeriesInstanceUID  # same series UID, different size
    a.save_as(tmp_path / "a.dcm")
    b.save_as(tmp_path / "b.dcm")
    res = scan(tmp_path)
    assert len(res.series) == 2
    assert res.series[1].series_uid.endswith("#2")
    assert any("split" in w for w in res.series[0].warnings)


def test_slices_ordered_by_position_not_name(tmp_path):
    import pydicom

    src = pydicom.dcmread(tf("CT_small.dcm"))
    zs = [10.0, 0.0, 5.0, 20.0, 15.0]  # file order differs from position order
    for n, z in enumerate(zs):
        src.SOPInstanceUID = f"1.2.3.{n}"
        src.InstanceNumber = 5 - n  # misleading instance numbers
        src.ImagePositionPatient = [0, 0, z]
        src.PixelData = (np.full((128, 128), int(z), dtype=np.int16)).tobytes()
        src.save_as(tmp_path / f"{n:02d}.dcm")
    res = scan(tmp_path)
    s = res.series[0]
    assert s.slice_positions == sorted(s.slice_positions) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert s.spacing[2] == pytest.approx(5.0)
    vol = load_series(s)
    assert [float(vol.modality_values(k)[0, 0]) + 1024 for k in range(5)] == [0, 5, 10, 15, 20]
    assert not s.warnings


def test_missing_slice_uneven_and_tilt_are_reported(tmp_path):
    import pydicom

    src = pydicom.dcmread(tf("CT_small.dcm"))
    for n, z in enumerate([0.0, 5.0, 10.0, 20.0, 25.0]):  # 15 is missing
        src.SOPInstanceUID = f"1.2.3.{n}"
        src.ImagePositionPatient = [0, 0, z]
        src.save_as(tmp_path / f"{n}.dcm")
    w = scan(tmp_path).series[0].warnings
    assert any("missing slices: 1" in x for x in w)
    tilt = tmp_path / "tilt"
    tilt.mkdir()
    for n in range(5):
        src.SOPInstanceUID = f"1.2.4.{n}"
        src.ImagePositionPatient = [0, 2.0 * n, 5.0 * n]  # offset along y: gantry tilt
        src.save_as(tilt / f"{n}.dcm")
    w = scan(tilt).series[0].warnings
    assert any("gantry tilt" in x for x in w)


# -- the real CT and X-rays in ../shared/data --------------------------------------


def test_real_ct_series(ct_dir, shared_data):
    import SimpleITK as sitk

    res = scan(ct_dir)
    assert len(res.series) == 1 and not res.errors
    s = res.series[0]
    assert s.slices == 20 and s.transfer_syntax == "1.2.840.10008.1.2.4.90"
    assert all(b > a for a, b in zip(s.slice_positions[:-1], s.slice_positions[1:], strict=True)), (
        "positions strictly increase"
    )
    vol = load_series(s)
    assert vol.array.dtype == np.int16 and vol.unit == "HU"
    ref = sitk.ReadImage(str(shared_data / "ct" / "totalseg_example_dicom_seg.nii.gz"))
    assert vol.shape == tuple(reversed(ref.GetSize()))  # (z, y, x) vs (x, y, z)
    assert vol.spacing == pytest.approx(ref.GetSpacing(), abs=1e-4)
    # same physical box: the first voxel of either volume is a corner of the other's
    ref_dir = np.array(ref.GetDirection()).reshape(3, 3)
    ref_far = np.array(ref.GetOrigin()) + ref_dir @ (
        (np.array(ref.GetSize()) - 1) * np.array(ref.GetSpacing())
    )
    ours_far = np.array(vol.voxel_to_patient(511, 511, 19))
    ours_lo = np.minimum(vol.origin, ours_far)
    ref_lo = np.minimum(ref.GetOrigin(), ref_far)
    assert ours_lo == pytest.approx(ref_lo, abs=1e-3)
    # Hounsfield units: air outside the patient, soft tissue inside (liver/muscle ~ 0..100)
    assert np.median(vol.array[:, :30, :30]) == pytest.approx(-1024, abs=30)
    labels = sitk.GetArrayFromImage(ref)  # (z, y, x), rows flipped relative to ours
    if ref_dir[1, 1] < 0:
        labels = labels[:, ::-1, :]
    tissue = vol.array[labels > 0]
    assert 0 < float(np.median(tissue)) < 120, "labelled organs should be soft tissue"


def test_real_cr_copies(xray_dir):
    m2 = load_path(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")
    m1 = load_path(xray_dir / "cr_chest_pa_monochrome1.dcm")
    assert m2.invert is False and m1.invert is True
    assert m1.spacing == pytest.approx((0.168, 0.168, 1.0))


def test_png_xrays(xray_dir):
    for png in sorted(xray_dir.glob("*.png")):
        vol = load_path(png)
        assert vol.shape[1:] == (512, 512)
        assert vol.array.dtype == np.uint8
        assert not vol.spacing_known


def test_16bit_png_and_tiff(tmp_path):
    from PIL import Image

    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "x16.png")
    Image.fromarray(arr).save(tmp_path / "x16.tif")
    for name in ("x16.png", "x16.tif"):
        vol = load_path(tmp_path / name)
        assert vol.array.dtype == np.uint16
        assert np.array_equal(vol.array[0], arr)


def test_nifti_volume(shared_data):
    vol = load_path(shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz")
    assert vol.array.ndim == 3 and vol.array.dtype in (np.int16, np.uint16, np.float32)
    assert vol.spacing_known and min(vol.spacing) > 0


def test_decode_file_reports_unsupported_syntax(tmp_path, monkeypatch):
    from medview.io import dicom

    monkeypatch.setattr(dicom, "decoder_available", lambda ts: False)
    res = scan(tf("JPEG2000.dcm"))
    assert not res.series and "unsupported transfer syntax" in res.errors[0].reason
    arr, _ = decode_file(tf("MR_small.dcm"))
    assert arr.shape == (1, 64, 64)
