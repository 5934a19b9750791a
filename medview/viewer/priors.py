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
    src: Volume, plane: str, index: int, dst: Volume, offset: int = 0, by_position: bool = True
) -> int:
    """The slice of ``dst`` (same plane) that goes with slice ``index`` of ``src``.

    ``by_position`` and a shared Frame of Reference: the ``dst`` slice nearest to the
    ``src`` slice's position along the plane's normal, plus ``offset`` slices. Otherwise
    ``index + offset``. Always clamped to ``dst``'s slices.
    """
    axis = PLANE_AXIS[plane]
    if by_position and same_frame(src, dst):
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

    def follow(self, src: Volume, plane: str, index: int, dst: Volume) -> int:
        """The follower's slice for the leader's ``index``."""
        return linked_index(src, plane, index, dst, self.offset, self.by_position)

    def relink(self, src: Volume, plane: str, src_index: int, dst: Volume, dst_index: int) -> None:
        """Keep the current pair of slices together from now on (the manual offset)."""
        self.offset = 0
        self.offset = int(dst_index) - self.follow(src, plane, src_index, dst)


__all__ = [
    "Link",
    "find_priors",
    "frame_of_reference",
    "linked_index",
    "same_frame",
    "slice_centre",
]
