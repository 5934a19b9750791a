"""Hanging protocols (medview.viewer.protocols) and priors (medview.viewer.priors) on the
real CT and CR headers: which protocol a study gets, what it hangs, saved protocols,
finding a prior in the database and linked scrolling by patient position."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from medview.viewer import priors as PR
from medview.viewer import protocols as HP


@pytest.fixture(scope="module")
def cr_series(xray_dir):
    from medview.io import scan

    return scan(str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm")).series


@pytest.fixture(scope="module")
def ct_series(ct_dir):
    from medview.io import scan

    return scan(str(ct_dir)).series


def test_radiograph_opens_1x1_and_beside_its_prior(cr_series):
    facts = HP.StudyFacts.of(cr_series)
    assert (facts.modality, facts.body_part, facts.slices) == ("CR", "CHEST", 1)
    proto = HP.choose(facts)
    assert proto is not None and proto.name == "Radiograph"
    assert HP.plan(proto, 1) == ("1x1", [HP.Assignment(0, None, None, "axial", None, None)])
    with_prior = HP.choose(HP.StudyFacts.of(cr_series, priors=2))
    layout, places = HP.plan(with_prior, 1, 2)
    assert (with_prior.name, layout) == ("Radiograph with prior", "1x2")
    assert [(a.position, a.series, a.prior) for a in places] == [(0, None, None), (1, None, 0)]


def test_ct_gets_mpr_soft_tissue_and_a_chest_ct_lung_and_mediastinum(ct_series):
    facts = HP.StudyFacts.of(ct_series)
    assert facts.modality == "CT" and facts.body_part == "PARTIALBODY"
    proto = HP.choose(facts)
    assert proto.name == "CT" and HP.plan(proto, 1)[0] == "mpr"
    assert HP.plan(proto, 1)[1][0].preset == "mediastinum"
    chest = dataclasses.replace(facts, descriptions=("CT Thorax w/o contrast",))
    proto = HP.choose(chest)
    layout, places = HP.plan(proto, 1)
    assert (proto.name, layout) == ("CT chest", "1x2")
    assert [(a.position, a.plane, a.preset) for a in places] == [
        (0, "axial", "lung"),
        (1, "axial", "mediastinum"),
    ]


def test_mr_grid_follows_the_series_count():
    proto = HP.choose(HP.StudyFacts(modality="MR", series_count=3, slices=20))
    layout, places = HP.plan(proto, 3)
    assert (proto.name, layout, [a.series for a in places]) == ("MR series grid", "2x2", [0, 1, 2])
    assert HP.plan(proto, 2)[0] == "1x2" and HP.plan(proto, 1)[0] == "1x1"
    assert HP.choose(HP.StudyFacts(modality="OT", slices=1)) is None  # no protocol: fallback


def _prior_copy(src, folder, study_uid: str, date: str, shift_mm: float = 0.0):
    """Copies of real DICOM files as another study of the same patient (new UIDs)."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for path in src:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = date
        if shift_mm and "ImagePositionPatient" in ds:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y, z + shift_mm]
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm")
    return folder


def test_find_priors_in_the_database(medview_home, xray_dir, tmp_path):
    from pydicom.uid import generate_uid

    from medview.io import scan
    from medview.viewer.session import import_into_db

    cr = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    older = _prior_copy([cr], tmp_path / "older", generate_uid(), "18991231")
    newer = _prior_copy([cr], tmp_path / "newer", generate_uid(), "19020101")
    for folder in (older, newer):
        import_into_db(str(folder))
    current = scan(str(cr)).series[0]
    found = PR.find_priors(current)
    assert [s.study_date for s in found] == ["18991231"]  # the later study is not a prior
    assert found[0].patient_id == current.patient_id and found[0].instances


def test_linked_scrolling_by_patient_position(ct_dir, tmp_path):
    from medview.io import load_path

    ct = load_path(ct_dir)
    k_spacing = ct.spacing[2]
    # the same slices, 2 slices higher in the same frame of reference
    shifted = load_path(
        _prior_copy(sorted(ct_dir.glob("*.dcm")), tmp_path / "shift", "1.2.3.4", "", 2 * k_spacing)
    )
    assert PR.same_frame(ct, shifted)
    z_dir = float(np.sign(ct.direction[2, 2]))
    for k in (3, 10, 17):
        got = PR.linked_index(ct, "axial", k, shifted)
        assert got == k - int(2 * z_dir)  # the slice at the same table position
        z_src = PR.slice_centre(ct, "axial", k)[2]
        assert PR.slice_centre(shifted, "axial", got)[2] == pytest.approx(z_src, abs=1e-3)
    assert PR.linked_index(ct, "axial", 0, shifted) in (0, 2)  # clamped to the volume
    assert PR.linked_index(ct, "coronal", 100, shifted) == 100
    # another frame of reference: a manual offset, set by re-linking two shown slices
    link = PR.Link()
    other = dataclasses.replace(shifted)
    other.instances = [
        dataclasses.replace(i, frame_of_reference_uid="9.9") for i in other.instances
    ]
    assert not PR.same_frame(ct, other)
    link.relink(ct, "axial", 5, other, 8)
    assert link.offset == 3 and link.follow(ct, "axial", 10, other) == 13


def test_rigid_registration_links_volumes_in_different_frames(ct_dir, tmp_path):
    """A copy of the real CT without its 3 lowest slices, moved 3 mm left and 4 mm up in
    another frame of reference: index matching is 3 slices off, position matching has no
    common frame, the SimpleITK registration finds the shift and links k -> k - 3."""
    import pydicom

    from medview.io import load_path

    ct = load_path(ct_dir)
    folder = tmp_path / "moved"
    folder.mkdir()
    for n, inst in enumerate(ct.instances[3:]):
        ds = pydicom.dcmread(inst.path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + 3.0, y, z + 4.0]
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.7"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
            f"1.2.826.0.1.3680043.8.498.{n + 10}"
        )
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.9"
        ds.save_as(folder / f"{n}.dcm")
    moved = load_path(folder)
    assert moved.shape[0] == 17 and not PR.same_frame(ct, moved)
    transform = PR.register_rigid(ct, moved)
    np.testing.assert_allclose(transform[:3, 3], [3.0, 0.0, 4.0], atol=0.6)
    np.testing.assert_allclose(transform[:3, :3], np.eye(3), atol=0.02)
    link = PR.Link(transform=transform)
    assert [link.follow(ct, "axial", k, moved) for k in (5, 10, 15)] == [2, 7, 12]
    assert PR.linked_index(ct, "axial", 10, moved) == 10  # without it: index for index
