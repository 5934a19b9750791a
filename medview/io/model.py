"""Data model of what medview reads: instances, series and volumes (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

_Facts = TypeVar("_Facts", bound="StudyFacts")


def format_da(value: object) -> str:
    """A DICOM DA value ``YYYYMMDD`` as ``YYYY-MM-DD`` for display (PS3.5 6.2); anything
    else as it is ("" for None): what the browser, the dialogs and the overlays show."""
    d = str(value or "")
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 and d.isdigit() else d


@dataclass(kw_only=True)
class StudyFacts:
    """The patient and study an image belongs to, and its modality: what an instance and
    its series both carry (keyword-only, so each subclass keeps its own first argument)."""

    study_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""  # DICOM DA "YYYYMMDD" or ""
    patient_sex: str = ""
    study_date: str = ""
    study_description: str = ""
    modality: str = ""

    def take_study_facts(self: _Facts, source: StudyFacts) -> _Facts:
        """Copy these fields from ``source`` (the series of an instance or the other way
        round); returns ``self``."""
        for f in fields(StudyFacts):
            setattr(self, f.name, getattr(source, f.name))
        return self


@dataclass
class InstanceInfo(StudyFacts):
    """Header-level facts about one image file (or one file of a series)."""

    path: str
    sop_uid: str = ""
    sop_class_uid: str = ""
    series_uid: str = ""
    frame_of_reference_uid: str = ""
    study_time: str = ""
    accession_number: str = ""
    series_description: str = ""
    series_number: int | None = None
    body_part: str = ""
    instance_number: int | None = None
    acquisition_number: int | None = None
    rows: int = 0
    columns: int = 0
    frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = ""
    bits_allocated: int = 0
    bits_stored: int = 0
    pixel_representation: int = 0
    transfer_syntax: str = ""
    position: tuple[float, float, float] | None = None  # ImagePositionPatient
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6)
    pixel_spacing: tuple[float, float] | None = None  # (row spacing, column spacing) mm
    spacing_source: str = (
        "unknown"  # PixelSpacing | ImagerPixelSpacing | NominalScannedPixelSpacing
    )
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_type: str = ""
    window: tuple[float, float] | None = None  # (center, width) from the file
    window_explanation: str = ""
    has_voi_lut: bool = False
    has_modality_lut: bool = False
    # byte offset/length of native (uncompressed little-endian) pixel data, for fast reads
    pixel_offset: int | None = None
    pixel_length: int | None = None
    kind: str = "dicom"  # "dicom" | "raster" | "volume"
    missing_uids: list[str] = field(default_factory=list)  # UIDs we had to derive
    pixel_problem: str = ""  # why the pixels cannot be read, found from the header alone


@dataclass
class SeriesInfo(StudyFacts):
    """A series (or one geometric part of it) ready to be loaded as a volume."""

    series_uid: str
    description: str = ""
    series_number: int | None = None
    rows: int = 0
    columns: int = 0
    frames: int = 1  # frames per file (multi-frame) or 1
    slices: int = 1  # slices in the assembled volume
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (x, y, z) mm
    transfer_syntax: str = ""
    photometric: str = ""
    warnings: list[str] = field(default_factory=list)
    instances: list[InstanceInfo] = field(default_factory=list)  # in slice order
    kind: str = "dicom"
    # geometry derived at scan time
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major 3x3
    slice_positions: list[float] = field(default_factory=list)  # along the normal, mm
    spacing_known: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The ``medview info --json`` entry for this series."""
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "modality": self.modality,
            "description": self.description,
            "rows": self.rows,
            "columns": self.columns,
            "frames": self.frames,
            "slices": self.slices,
            "spacing": [round(float(s), 6) for s in self.spacing],
            "transfer_syntax": self.transfer_syntax,
            "photometric": self.photometric,
            "warnings": list(self.warnings),
        }


@dataclass
class ScanResult:
    series: list[SeriesInfo] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)  # list[FileProblem]

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": [s.as_dict() for s in self.series],
            "errors": [e.as_dict() for e in self.errors],
        }

    def find(self, uid: str) -> SeriesInfo | None:
        for s in self.series:
            if s.series_uid == uid:
                return s
        return None


@dataclass
class Volume:
    """Pixel data of a series with its geometry and display defaults.

    ``array`` is (z, y, x) in stored integer type (int16/uint16/uint8; int32 for
    signed images with a Modality LUT Sequence), or
    (z, y, x, 3) uint8 for colour. Values are *modality* values when
    ``rescale_slope == 1 and rescale_intercept == 0`` (CT is converted to int16 HU at
    load when exactly representable); otherwise apply the modality LUT with
    :meth:`modality_values`.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (x, y, z) mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: i, j, k axes
    modality: str = ""
    photometric: str = "MONOCHROME2"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    unit: str = ""  # "HU" for CT
    window: tuple[float, float] | None = None  # default (center, width) from the file
    voi_lut: tuple[int, np.ndarray] | None = None  # (first mapped value, table)
    invert: bool = False  # MONOCHROME1: display inverted
    spacing_source: str = "unknown"
    spacing_known: bool = False
    instances: list[InstanceInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    series: SeriesInfo | None = None
    # while loading: which slices are decoded (None once complete or for non-incremental loads)
    ready: np.ndarray | None = None

    @property
    def loaded_prefix(self) -> int:
        """How many leading slices are decoded (all of them once loading finished)."""
        if self.ready is None:
            return self.shape[0]
        missing = np.flatnonzero(~self.ready)
        return int(missing[0]) if missing.size else int(self.ready.size)

    @property
    def is_color(self) -> bool:
        return self.array.ndim == 4

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape[:3]
        return z, y, x

    def modality_values(self, k: int) -> np.ndarray:
        """Slice ``k`` in modality units (HU for CT) as float32 (PS3.3 C.11.1).

        The linear Modality LUT (``slope * stored + intercept``); the same as
        :func:`medview.imaging.display.apply_modality_lut`, written out here so the
        data model does not import the display pipeline that imports it.
        """
        out = self.array[k].astype(np.float32, copy=True)
        if self.rescale_slope != 1.0:
            out *= np.float32(self.rescale_slope)
        if self.rescale_intercept != 0.0:
            out += np.float32(self.rescale_intercept)
        return out

    def voxel_to_patient(self, i: float, j: float, k: float) -> tuple[float, float, float]:
        """Patient (LPS) coordinate in mm of voxel column ``i``, row ``j``, slice ``k``."""
        d = np.asarray(self.direction, dtype=float)
        sx, sy, sz = self.spacing
        p = np.asarray(self.origin, dtype=float) + d @ np.array([i * sx, j * sy, k * sz])
        return float(p[0]), float(p[1]), float(p[2])

    def instance_at(self, k: int) -> InstanceInfo | None:
        if not self.instances:
            return None
        if len(self.instances) == self.shape[0]:
            return self.instances[k]
        return self.instances[0]  # multi-frame: one file for all frames
