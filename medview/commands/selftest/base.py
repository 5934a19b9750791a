"""Shared pieces of the self-test: sample files, the check context, results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Models a complete medview install ships under models/ (issue 3 and issue 5).
AI_MODELS = ("pneumonia_cnn", "pneumonia_ae")
FORECAST_MODEL = "glucose_lstm"

# Sample files (from pydicom's own test data, bundled by packaging/medview.spec).
SAMPLE_CT = "CT_small.dcm"
SAMPLE_MR = "MR_small.dcm"
LOSSLESS_VARIANTS = (
    ("RLE", "MR_small_RLE.dcm"),
    ("JPEG-LS", "MR_small_jpeg_ls_lossless.dcm"),
    ("JPEG 2000", "MR_small_jp2klossless.dcm"),
)
LOSSY_SAMPLE = ("JPEG baseline", "SC_rgb_jpeg.dcm")
SAMPLE_FILES = (SAMPLE_CT, SAMPLE_MR, *(f for _, f in LOSSLESS_VARIANTS), LOSSY_SAMPLE[1])

POOL_TIMEOUT_S = 120.0
GUI_TIMEOUT_S = 60.0

# Synthetic records (codes as the importers key them).
GLUCOSE = ("2339-0", "Glucose [Mass/volume] in Blood")
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood")
HYPERTENSION = ("59621000", "Essential hypertension")
DIABETES = ("44054006", "Diabetes mellitus type 2")
LISINOPRIL = ("314076", "lisinopril 10 MG Oral Tablet")
AMLODIPINE = ("197361", "amlodipine 5 MG Oral Tablet")
METFORMIN = ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet")
TARGET_PATIENT = "selftest-1"


class CheckFailed(Exception):
    """A check ran but its result was wrong (the message says how)."""


@dataclass
class CheckResult:
    """One check's outcome, printed as one line."""

    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        """``  ok    NAME  detail  [ms]`` (or FAIL)."""
        status = "ok  " if self.ok else "FAIL"
        return f"  {status}  {self.name:<26s} {self.detail}  [{self.seconds * 1000:.0f} ms]"


class Context:
    """Values shared between checks (the loaded CT, the rendered slice, the records)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ct: Any = None
        self.image: Any = None
        self.records: Any = None
        self.torch_error: str = ""  # set when torch failed to import (never import it twice)


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters."""
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def sample_dir() -> Path:
    """Folder holding the sample DICOM files.

    pydicom's bundled ``data/test_files`` (found next to the installed package, so a
    frozen app finds the copy the spec bundles); ``resources/samples`` is a fallback.
    Never :func:`pydicom.data.get_testdata_file`, which may try to download.
    """
    candidates = []
    try:
        import pydicom.data

        candidates.append(Path(pydicom.data.__file__).resolve().parent / "test_files")
    except ImportError:
        pass
    from medview.paths import resources_dir

    candidates.append(resources_dir() / "samples")
    for c in candidates:
        if (c / SAMPLE_CT).is_file():
            return c
    raise CheckFailed(
        f"sample DICOM {SAMPLE_CT} not found (looked in {', '.join(str(c) for c in candidates)})"
    )


def sample(name: str) -> Path:
    """A sample file by name; a failed check when the install lacks it."""
    p = sample_dir() / name
    if not p.is_file():
        raise CheckFailed(f"{p}: sample file missing from the install")
    return p
