"""Build large test series from the real CT in ../shared/data for benchmarks.

The 20 real slices are re-used in turn, each written under new UIDs at a new
ImagePositionPatient so the series is a plausible 2 mm stack of N slices. File
names are random, so nothing but the positions gives the slice order.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CT_DIR = (
    Path(os.environ.get("MEDVIEW_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "ct"
    / "totalseg_example_dicom"
)


def build_series(
    out_dir: str | os.PathLike[str], n: int = 300, compressed: bool = False, seed: int = 0
) -> Path:
    """Write an ``n``-slice CT series to ``out_dir`` (JPEG 2000 lossless if ``compressed``,
    else explicit VR little endian) and return the folder."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    if not CT_DIR.is_dir():
        raise SystemExit(f"needs the real CT series at {CT_DIR}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(CT_DIR.glob("*.dcm"))
    datasets = []
    for f in sources:
        ds = pydicom.dcmread(f)
        if not compressed:
            ds.decompress()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        datasets.append(ds)
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    rng = random.Random(seed)
    series_uid, study_uid = generate_uid(), generate_uid()
    z0 = float(datasets[0].ImagePositionPatient[2])
    names = [f"IM{rng.getrandbits(48):012x}.dcm" for _ in range(n)]
    for k in range(n):
        ds = datasets[k % len(datasets)]
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.PatientID = "BENCH001"
        ds.PatientName = "Bench^Series"
        ds.InstanceNumber = k + 1
        pos = list(ds.ImagePositionPatient)
        ds.ImagePositionPatient = [pos[0], pos[1], z0 + 2.0 * k]
        ds.SliceLocation = z0 + 2.0 * k
        ds.save_as(out / names[k], enforce_file_format=True)
    return out


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "/tmp/medview-bench-series"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    build_series(target, count, compressed="--compressed" in sys.argv)
    print(target)
