"""Comparison with prior studies (Qt-free): finding them, and linked scrolling.

:func:`find_priors` (a worker function) lists the same patient's other studies in the
local database, newest first, each as its main series. :func:`linked_index` maps a
slice of one viewport to the slice of another that shows the same place: by patient
position when both volumes share a Frame of Reference (PS3.3 C.7.4.1: the same
patient coordinate system), otherwise by a manual offset in slices that the user
sets by scrolling one side while the link is off (:class:`Link`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medview.imaging.geometry import PLANE_AXIS, plane_count
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.io.model import SeriesInfo, Volume


def _date(s: Any) -> str:
    return str(getattr(s, "study_date", "") or "").replace("-", "")


def find_priors(current: SeriesInfo, state: TaskState | None = None) -> list[SeriesInfo]:
    """The patient's other studies in the local database, newest first (one main series,
    the one with the most images, per study). Studies dated after ``current`` are left
    out; with no patient ID there are no priors."""
    from medview.viewer.session import _database, series_from_database

    state = ensure_state(state)
    pid = str(getattr(current, "patient_id", "") or "")
    if not pid:
        return []
    mine = _date(current)
    out: list[SeriesInfo] = []
    with _database() as db:
        for study in db.studies(text=pid):
            state.check()
            if str(study.get("patient_id") or "") != pid:
                continue
            if study.get("study_uid") == current.study_uid:
                continue
            date = str(study.get("study_date") or "")
            if mine and date and date > mine:
                continue
            rows = db.series(study["study_uid"])
            if rows:
                main = max(rows, key=lambda r: len(r.get("files") or []))
                out.append(series_from_database(study, main))
    out.sort(key=_date, reverse=True)
    return out


def frame_of_reference(vol: Volume | None) -> str:
    """The volume's Frame of Reference UID ("" when unknown)."""
    insts = getattr(vol, "instances", None) or []
    return str(getattr(insts[0], "frame_of_reference_uid", "") or "") if insts else ""


def same_frame(a: Volume | None, b: Volume | None) -> bool:
    """True when both volumes are in one patient coordinate system (same FoR UID)."""
    fa, fb = frame_of_reference(a), frame_of_reference(b)
    return bool(fa) and fa == fb


def _patient_to_voxel(vol: Volume, p: np.ndarray) -> np.ndarray:
    d = np.asarray(vol.direction, dtype=float)
    ijk_mm = np.linalg.solve(d, p - np.asarray(vol.origin, dtype=float))
    return ijk_mm / np.asarray(vol.spacing, dtype=float)


def slice_centre(vol: Volume, plane: str, index: int) -> np.ndarray:
    """Patient (LPS) coordinate, mm, of the centre of slice ``index`` of ``plane``."""
    z, y, x = vol.shape
    ijk = [(x - 1) / 2.0, (y - 1) / 2.0, (z - 1) / 2.0]
    ijk[PLANE_AXIS[plane]] = float(index)
    return np.array(vol.voxel_to_patient(*ijk))


def linked_index(
    src: Volume,
    plane: str,
    index: int,
    dst: Volume,
    offset: int = 0,
    by_position: bool = True,
    transform: np.ndarray | None = None,
) -> int:
    """The slice of ``dst`` (same plane) that goes with slice ``index`` of ``src``.

    With ``transform`` (a 4x4 map of ``src`` patient coordinates to ``dst``'s, e.g. from
    :func:`register_rigid`): the ``dst`` slice nearest to the mapped centre of the
    ``src`` slice. Else, ``by_position`` and a shared Frame of Reference: the ``dst``
    slice nearest to the ``src`` slice's position along the plane's normal. Otherwise
    ``index``. Plus ``offset`` slices, clamped to ``dst``'s slices.
    """
    axis = PLANE_AXIS[plane]
    if transform is not None:
        p = np.append(slice_centre(src, plane, index), 1.0)
        k = int(round(float(_patient_to_voxel(dst, (transform @ p)[:3])[axis])))
    elif by_position and same_frame(src, dst):
        ijk = _patient_to_voxel(dst, slice_centre(src, plane, index))
        k = int(round(float(ijk[axis])))
    else:
        k = int(index)
    n = plane_count(dst, plane)
    return int(min(max(k + int(offset), 0), n - 1))


@dataclass
class Link:
    """Two viewports scrolled together; ``offset`` is in slices of the follower, added to
    the slice :func:`linked_index` finds (set when the user re-links after scrolling one
    side alone)."""

    by_position: bool = True
    offset: int = 0
    window: bool = True  # window/level linked
    zoom: bool = True  # zoom linked
    transform: np.ndarray | None = None  # leader -> follower patient coordinates (4x4)

    def follow(self, src: Volume, plane: str, index: int, dst: Volume) -> int:
        """The follower's slice for the leader's ``index``."""
        return linked_index(src, plane, index, dst, self.offset, self.by_position, self.transform)

    def relink(self, src: Volume, plane: str, src_index: int, dst: Volume, dst_index: int) -> None:
        """Keep the current pair of slices together from now on (the manual offset)."""
        self.offset = 0
        self.offset = int(dst_index) - self.follow(src, plane, src_index, dst)


def _sitk_image(vol: Volume, step: int) -> Any:
    """``vol`` in modality units, every ``step``-th row and column, as a SimpleITK image
    with its patient geometry (float32 of the subsample only)."""
    import SimpleITK as sitk

    arr = vol.array[:, ::step, ::step]
    values = arr.astype(np.float32) * np.float32(vol.rescale_slope)
    values += np.float32(vol.rescale_intercept)
    img = sitk.GetImageFromArray(values)
    sx, sy, sz = vol.spacing
    img.SetSpacing((float(sx) * step, float(sy) * step, float(sz)))
    img.SetOrigin(tuple(float(v) for v in vol.origin))
    img.SetDirection(tuple(float(v) for v in np.asarray(vol.direction, float).ravel()))
    return img


def register_rigid(fixed: Volume, moving: Volume, state: TaskState | None = None) -> np.ndarray:
    """A rigid (rotation + translation) registration of ``moving`` onto ``fixed`` with
    SimpleITK (Mattes mutual information, so CT and MR pair too; geometric centres
    aligned first; two resolution levels on a 4x in-plane subsample). Returns the 4x4
    map of ``fixed`` patient coordinates to ``moving``'s, for :class:`Link`. A worker
    function: seconds for a 300-slice CT pair on this machine's CPU."""
    import SimpleITK as sitk

    state = ensure_state(state)
    if fixed.is_color or moving.is_color or min(fixed.shape[0], moving.shape[0]) < 2:
        raise ValueError("registration needs two greyscale volumes")
    state.progress(0.05, "preparing the volumes")
    f_img, m_img = _sitk_image(fixed, 4), _sitk_image(moving, 4)
    init = sitk.CenteredTransformInitializer(
        f_img,
        m_img,
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.2, seed=7)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=150, relaxationFactor=0.6
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SetInitialTransform(init, inPlace=False)
    state.progress(0.2, "registering")
    result = reg.Execute(f_img, m_img)
    state.check()
    # the transform maps fixed physical points to moving ones (ITK's resampling sense)
    out = np.eye(4)
    for n, axis in enumerate(np.eye(3)):
        origin = np.array(result.TransformPoint((0.0, 0.0, 0.0)))
        out[:3, n] = np.array(result.TransformPoint(tuple(axis))) - origin
    out[:3, 3] = np.array(result.TransformPoint((0.0, 0.0, 0.0)))
    return out


__all__ = [
    "Link",
    "register_rigid",
    "find_priors",
    "frame_of_reference",
    "linked_index",
    "same_frame",
    "slice_centre",
]
