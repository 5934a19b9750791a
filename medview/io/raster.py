"""Non-DICOM images: PNG/JPEG/TIFF X-rays (Pillow) and NIfTI/MHA/NRRD (SimpleITK)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from medview.errors import ReadError
from medview.io.model import InstanceInfo, SeriesInfo, Volume


def _pseudo_uid(path: str) -> str:
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    return f"file:{digest}:{os.path.basename(path)}"


def read_raster(path: str) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF/BMP to (H, W) uint8/uint16 or (H, W, 3) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.array(im, dtype=np.uint16)
            elif mode == "I":
                arr = np.array(im, dtype=np.int32)
                arr = (
                    arr.astype(np.uint16)
                    if arr.min() >= 0 and arr.max() <= 65535
                    else arr.astype(np.int16)
                )
            elif mode == "F":
                arr = np.array(im, dtype=np.float32)
            elif mode in ("L", "P", "1", "LA"):
                if mode == "P":
                    im = im.convert("RGB")
                    arr = np.array(im)
                else:
                    arr = np.array(im.convert("L"))
            else:
                arr = np.array(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise ReadError("file not found", path) from exc
    except UnidentifiedImageError as exc:
        raise ReadError("not a readable image file", path) from exc
    except OSError as exc:
        raise ReadError(
            f"truncated or corrupt image ({' '.join(str(exc).split())[:100]})", path
        ) from exc
    if (
        arr.ndim == 3
        and arr.shape[2] == 3
        and np.array_equal(arr[..., 0], arr[..., 1])
        and np.array_equal(arr[..., 1], arr[..., 2])
    ):
        arr = arr[..., 0].copy()  # grey image stored as RGB
    return arr


def raster_series(path: str) -> SeriesInfo:
    """Header-like facts of a raster image (it is decoded to know its size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
            mode = im.mode
    except FileNotFoundError as exc:
        raise ReadError("file not found", path) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise ReadError("not a readable image file", path) from exc
    uid = _pseudo_uid(path)
    inst = InstanceInfo(
        path=path,
        sop_uid=uid,
        series_uid=uid,
        rows=height,
        columns=width,
        kind="raster",
        modality="OT",
        photometric="RGB" if mode in ("RGB", "RGBA", "P") else "MONOCHROME2",
    )
    s = SeriesInfo(
        series_uid=uid,
        modality="OT",
        description=os.path.basename(path),
        rows=height,
        columns=width,
        frames=1,
        slices=1,
        photometric=inst.photometric,
        instances=[inst],
        kind="raster",
        transfer_syntax="",
        spacing=(1.0, 1.0, 1.0),
    )
    s.warnings.append("not DICOM: pixel spacing unknown, measurements are in pixels")
    return s


def load_raster(series: SeriesInfo) -> Volume:
    path = series.instances[0].path
    arr = read_raster(path)
    if arr.ndim == 3:
        vol_arr = arr[np.newaxis]
        photometric = "RGB"
    else:
        vol_arr = arr[np.newaxis]
        photometric = "MONOCHROME2"
    return Volume(
        array=vol_arr,
        modality="OT",
        photometric=photometric,
        instances=series.instances,
        warnings=list(series.warnings),
        series=series,
        spacing_known=False,
    )


def _sitk():
    import SimpleITK as sitk

    return sitk


def volume_series(path: str) -> SeriesInfo:
    """Facts of a NIfTI/MHA/NRRD volume from its header (SimpleITK ImageFileReader)."""
    sitk = _sitk()
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        size = reader.GetSize()
        spacing = reader.GetSpacing()
        origin = reader.GetOrigin()
        direction = reader.GetDirection()
        comps = reader.GetNumberOfComponents()
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        reason = (
            "not a readable volume file"
            if "Unable to determine ImageIO" in msg
            else f"could not read volume ({msg[-100:]})"
        )
        raise ReadError(reason, path) from exc
    uid = _pseudo_uid(path)
    size3 = tuple(size) + (1,) * (3 - len(size))
    sp3 = tuple(spacing) + (1.0,) * (3 - len(spacing))
    inst = InstanceInfo(
        path=path,
        sop_uid=uid,
        series_uid=uid,
        rows=size3[1],
        columns=size3[0],
        frames=size3[2],
        kind="volume",
        modality="",
    )
    s = SeriesInfo(
        series_uid=uid,
        description=os.path.basename(path),
        rows=size3[1],
        columns=size3[0],
        frames=size3[2],
        slices=size3[2],
        spacing=(float(sp3[0]), float(sp3[1]), float(sp3[2])),
        photometric="RGB" if comps == 3 else "MONOCHROME2",
        instances=[inst],
        kind="volume",
        spacing_known=True,
    )
    if len(origin) == 3:
        s.origin = tuple(float(v) for v in origin)  # type: ignore[assignment]
    if len(direction) == 9:
        s.direction = tuple(float(v) for v in direction)
    return s


def load_volume_file(series: SeriesInfo) -> Volume:
    sitk = _sitk()
    path = series.instances[0].path
    try:
        img = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise ReadError(
            f"could not read volume ({' '.join(str(exc).split())[-100:]})", path
        ) from exc
    arr = sitk.GetArrayViewFromImage(img)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        integral = finite.size > 0 and np.all(
            np.equal(np.mod(finite[:: max(1, finite.size // 100000)], 1), 0)
        )
        if integral and finite.min() >= -32768 and finite.max() <= 32767:
            out = arr.astype(np.int16)
        else:
            out = arr.astype(np.float32)
    elif arr.dtype.itemsize > 2 and arr.dtype.kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        out = arr.astype(np.int16 if lo >= -32768 and hi <= 32767 else np.int32)
    else:
        out = np.array(arr)
    direction = (
        np.array(img.GetDirection(), dtype=float).reshape(3, 3)
        if img.GetDimension() == 3
        else np.eye(3)
    )
    spacing = tuple(img.GetSpacing()) + (1.0,) * (3 - img.GetDimension())
    origin = tuple(img.GetOrigin()) + (0.0,) * (3 - img.GetDimension())
    return Volume(
        array=np.ascontiguousarray(out),
        spacing=tuple(float(v) for v in spacing[:3]),
        origin=tuple(float(v) for v in origin[:3]),
        direction=direction,
        modality="",
        instances=series.instances,
        warnings=list(series.warnings),
        series=series,
        spacing_known=True,
        spacing_source="file header",
    )
