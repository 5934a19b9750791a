"""Reading studies: DICOM (any common transfer syntax), DICOMDIR, folders,
PNG/JPEG/TIFF X-rays and NIfTI/MHA/NRRD volumes, all through one Qt-free API.

>>> from medview.io import scan, load_series
>>> result = scan("/path/to/study")        # headers only, fast
>>> volume = load_series(result.series[0])  # pixels, decoded in parallel
"""

from __future__ import annotations

import os
from typing import Any

from medview.io.dicom import read_header
from medview.io.model import InstanceInfo, ScanResult, SeriesInfo, Volume
from medview.io.scanning import scan, scan_one
from medview.io.volume import load_series
from medview.tasks import TaskState

__all__ = [
    "InstanceInfo",
    "ScanResult",
    "SeriesInfo",
    "Volume",
    "load_path",
    "load_series",
    "read_header",
    "read_dataset",
    "scan",
    "scan_one",
]


def load_path(
    path: str | os.PathLike[str], series_uid: str | None = None, state: TaskState | None = None
) -> Volume:
    """Scan ``path`` and load one series (``series_uid``, or the first found)."""
    from medview.errors import ReadError

    res = scan(path)
    if not res.series:
        if res.errors:
            raise ReadError(res.errors[0].reason, res.errors[0].path)
        raise ReadError("no images found", os.fspath(path))
    series = res.series[0]
    if series_uid:
        found = res.find(series_uid)
        if found is None:
            raise ReadError(f"no series with UID {series_uid}", os.fspath(path))
        series = found
    return load_series(series, state)


def read_dataset(path: str) -> Any:
    """The full pydicom Dataset of a file without its pixel data (for the tag browser)."""
    import warnings

    import pydicom

    from medview.errors import ReadError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise ReadError(f"not a readable DICOM file ({type(exc).__name__})", path) from exc
