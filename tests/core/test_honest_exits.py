"""Issue 10 item 5, honest exits and messages: no silent wrong output.

* CT (HU) presets are refused on images that are not CT; unknown presets are errors.
* Every non-zero exit prints one line naming the reason.
* NIfTI/NRRD/MHA volumes are reoriented to LPS so they display like DICOM.
* MPR planes share one automatic window per volume.
* Unnamed studies are grouped by study UID, not merged into one "(no name)" patient.
"""

from __future__ import annotations

import numpy as np
import pytest

from medview.cli import main


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", ["cr_chest_pa_jpeg_baseline.dcm", "nih_00000001_000.png"])
def test_render_refuses_ct_preset_on_radiograph(xray_dir, tmp_path, capsys, name):
    out = tmp_path / "x.png"
    rc = main(["render", str(xray_dir / name), "--preset", "lung", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert name in line and "lung" in line and "Hounsfield" in line
    assert not out.exists()


def test_render_ct_preset_still_works_on_ct(ct_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["render", str(ct_dir), "--preset", "lung", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert capsys.readouterr().err == ""


def test_render_ct_preset_on_volume_of_unknown_modality_warns(shared_data, tmp_path, capsys):
    """A NIfTI has no modality: the HU window is applied, with one warning line."""
    path = shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz"
    out = tmp_path / "x.png"
    assert main(["render", str(path), "--preset", "bone", "--out", str(out)]) == 0
    line = _one_line(capsys.readouterr().err)
    assert "example_ct_sm.nii.gz" in line and "Hounsfield" in line
    assert out.exists()


def test_render_unknown_preset_exits_2(ct_dir, tmp_path, capsys):
    rc = main(["render", str(ct_dir), "--preset", "foo", "--out", str(tmp_path / "x.png")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "unknown preset 'foo'" in line and "lung" in line


def test_gui_unknown_preset_exits_2_before_any_window(tmp_path, capsys, medview_home):
    out = tmp_path / "shot.png"
    rc = main(["--preset", "foo", "--screenshot", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "foo" in line and "unknown" in line
    assert not out.exists()


# ------------------------------------------------------------------ import / info
def test_import_nifti_says_why(shared_data, tmp_path, capsys):
    path = shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz"
    rc = main(["import", str(path), "--db", str(tmp_path / "db.sqlite")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert "example_ct_sm.nii.gz" in line and "not imported" in line


def test_import_png_says_why(xray_dir, tmp_path, capsys):
    rc = main(["import", str(xray_dir / "nih_00000001_000.png"), "--db", str(tmp_path / "d.db")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and "nih_00000001_000.png" in line and "not imported" in line


def test_import_records_folder_says_why(records_dir, tmp_path, capsys):
    folder = records_dir / "synthea_fhir"
    rc = main(["import", str(folder), "--db", str(tmp_path / "db.sqlite")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2
    assert f"no DICOM files found under {folder}" in line
    assert "empty" not in line  # the folder holds 12 JSON bundles


def test_import_empty_folder_says_why(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["import", str(empty), "--db", str(tmp_path / "db.sqlite")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and str(empty) in line and "empty" in line


def test_import_mixed_folder_indexes_dicom_and_notes_the_rest(ct_dir, shared_data, tmp_path):
    """DICOM plus a NIfTI: exit 0, the NIfTI named on stderr (not an error exit)."""
    import subprocess
    import sys

    nii = shared_data / "ct" / "totalseg_example_dicom_seg.nii.gz"
    p = subprocess.run(
        [sys.executable, "-m", "medview", "import", str(ct_dir), str(nii)]
        + ["--db", str(tmp_path / "db.sqlite")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "indexed 20 image(s)" in p.stdout
    assert "totalseg_example_dicom_seg.nii.gz" in p.stderr and "not imported" in p.stderr


def test_info_of_records_folder_says_why(records_dir, capsys):
    folder = records_dir / "synthea_fhir"
    rc = main(["info", str(folder)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and str(folder) in line and "empty" not in line


# ------------------------------------------------------------------ NIfTI orientation
def test_nifti_label_volume_lines_up_with_its_dicom_series(ct_dir, shared_data):
    """The seg NIfTI is stored LAS (rows posterior->anterior); loaded it is LPS like the DICOM."""
    import SimpleITK as sitk

    from medview.imaging.display import extract_plane
    from medview.io import load_path

    path = shared_data / "ct" / "totalseg_example_dicom_seg.nii.gz"
    ct = load_path(ct_dir)
    seg = load_path(path)
    assert seg.shape == ct.shape
    assert np.allclose(seg.direction, ct.direction)
    assert seg.origin == pytest.approx(ct.origin, abs=1e-3)
    assert seg.spacing == pytest.approx(ct.spacing, abs=1e-4)
    # voxel values match the file's (same labels, same counts)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert np.array_equal(np.bincount(seg.array.ravel()), np.bincount(raw.ravel()))
    # the same voxel index is the same place in the patient: labelled organs are soft tissue,
    # and the body outline (HU > -500) covers almost every labelled voxel
    mask = seg.array > 0
    assert 0 < float(np.median(ct.array[mask])) < 120
    assert float(np.mean(ct.array[mask] > -500)) > 0.95
    # and the displayed axial slices line up
    img_ct, _ = extract_plane(ct, 10, "axial")
    img_seg, _ = extract_plane(seg, 10, "axial")
    assert float(np.mean(img_ct[img_seg > 0] > -500)) > 0.95


def _ras_volume(path, arr_zyx: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Write a NIfTI in RAS storage order (ITK direction diag(-1, -1, 1))."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr_zyx)
    img.SetSpacing((0.8, 0.9, 2.5))
    img.SetOrigin((100.0, 50.0, -20.0))
    img.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(path))
    return img.GetOrigin(), img.GetSpacing()


def test_synthetic_ras_nifti_shows_in_radiological_convention(tmp_path):
    import SimpleITK as sitk

    from medview.io import load_path, scan

    arr = np.zeros((4, 6, 8), np.int16)
    arr[1, 0, 0] = 1000  # stored first column/row: the patient's LEFT, POSTERIOR corner
    arr[2, 5, 7] = -500  # the patient's right, anterior corner
    path = tmp_path / "ras.nii.gz"
    _ras_volume(path, arr)
    ref = sitk.ReadImage(str(path))
    left_post = ref.TransformIndexToPhysicalPoint((0, 0, 1))
    vol = load_path(path)
    assert np.allclose(vol.direction, np.eye(3))
    # radiological display: the patient's left on the viewer's right, posterior at the bottom
    k, j, i = np.argwhere(vol.array == 1000)[0]
    assert (k, j, i) == (1, 5, 7)
    assert vol.voxel_to_patient(i, j, k) == pytest.approx(left_post, abs=1e-6)
    k2, j2, i2 = np.argwhere(vol.array == -500)[0]
    assert (k2, j2, i2) == (2, 0, 0)
    assert sorted(vol.array.ravel().tolist()) == sorted(arr.ravel().tolist())
    # the header facts of the scan agree with the loaded volume
    s = scan(path).series[0]
    assert (s.slices, s.rows, s.columns) == vol.shape
    assert s.spacing == pytest.approx(vol.spacing)
    assert s.origin == pytest.approx(vol.origin)
    assert np.allclose(np.reshape(s.direction, (3, 3)), vol.direction)


def test_permuted_nifti_header_matches_loaded_volume(tmp_path):
    """A sagittally stored volume (axes permuted): the scan header predicts the load."""
    import SimpleITK as sitk

    from medview.io import load_path, scan

    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(5, 7, 9), dtype=np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 2.0, 3.0))
    img.SetOrigin((10.0, -5.0, 7.0))
    # i -> anterior (-y), j -> inferior (-z), k -> left (+x)
    img.SetDirection((0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    path = tmp_path / "sag.nrrd"
    sitk.WriteImage(img, str(path))
    vol = load_path(path)
    s = scan(path).series[0]
    assert np.allclose(vol.direction, np.eye(3))
    assert (s.slices, s.rows, s.columns) == vol.shape == (7, 9, 5)
    assert s.spacing == pytest.approx(vol.spacing) and vol.spacing == pytest.approx((3, 1, 2))
    assert s.origin == pytest.approx(vol.origin)
    # every voxel keeps its value and its place in the patient
    for kji in [(0, 0, 0), (6, 8, 4), (3, 2, 1)]:
        k, j, i = kji
        p = vol.voxel_to_patient(i, j, k)
        idx = img.TransformPhysicalPointToIndex(p)
        assert vol.array[k, j, i] == arr[idx[2], idx[1], idx[0]]


# ------------------------------------------------------------------ MPR window
def test_one_automatic_window_per_volume(shared_data):
    from medview.imaging.display import PLANES, plane_size, render_slice, volume_window
    from medview.io import load_path

    vol = load_path(shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz")
    assert vol.window is None
    w = volume_window(vol)
    assert w is not None and w[1] > 500  # a CT spans air to bone
    assert volume_window(vol) == w
    # render_slice with no window uses the volume's window in every plane
    for plane in PLANES:
        idx = plane_size(vol, plane) // 2
        assert np.array_equal(
            render_slice(vol, idx, plane, aspect=False),
            render_slice(vol, idx, plane, window=w, aspect=False),
        )


# ------------------------------------------------------------------ GUI
def _unnamed_study(src, folder, n: int):
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    ds = dcmread(src)
    ds.PatientName = ""
    ds.PatientID = ""
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / f"im{n}.dcm")
    return ds.StudyInstanceUID


# ------------------------------------------------------------------ audit of the other exits
@pytest.mark.parametrize("command", [["studies"], ["import", "{dcm}"]])
def test_unreadable_database_is_one_line_not_a_traceback(tmp_path, capsys, command):
    from pydicom.data import get_testdata_file

    bad = tmp_path / "notes.db"
    bad.write_text("not a database\n")
    argv = [a.format(dcm=get_testdata_file("CT_small.dcm")) for a in command]
    rc = main([*argv, "--db", str(bad)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and str(bad) in line and "database" in line


def test_render_reformat_of_a_single_image_exits_2(xray_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    path = xray_dir / "nih_00000001_000.png"
    rc = main(["render", str(path), "--plane", "coronal", "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and str(path) in line and "single image" in line
    assert not out.exists()


def test_reorientation_is_simpleitk_dicomorient_lps(shared_data, tmp_path):
    """Our axis reordering gives the same voxels and geometry as DICOMOrient(img, "LPS")."""
    import SimpleITK as sitk

    from medview.io import load_path

    rng = np.random.default_rng(1)
    synthetic = sitk.GetImageFromArray(rng.integers(0, 500, size=(5, 6, 7), dtype=np.int16))
    synthetic.SetDirection((0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0))
    synthetic.SetOrigin((3.0, 4.0, 5.0))
    synthetic.SetSpacing((0.5, 1.5, 2.5))
    sitk.WriteImage(synthetic, str(tmp_path / "odd.mha"))
    paths = [
        tmp_path / "odd.mha",
        shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz",
        shared_data / "ct" / "totalseg_volumes" / "example_mr_sm.nii.gz",
        shared_data / "ct" / "totalseg_example_dicom_seg.nii.gz",
    ]
    for path in paths:
        ref = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
        vol = load_path(path)
        assert np.array_equal(vol.array, sitk.GetArrayViewFromImage(ref)), path.name
        assert vol.origin == pytest.approx(ref.GetOrigin(), abs=1e-4)
        assert vol.spacing == pytest.approx(ref.GetSpacing())
        assert np.allclose(vol.direction, np.reshape(ref.GetDirection(), (3, 3)))


def test_render_of_records_folder_says_what_it_holds(records_dir, tmp_path, capsys):
    folder = records_dir / "synthea_csv_ma27"
    rc = main(["render", str(folder), "--out", str(tmp_path / "x.png")])
    line = _one_line(capsys.readouterr().err)
    assert rc == 2 and f"no images found under {folder}" in line and ".csv" in line
    assert "empty" not in line
