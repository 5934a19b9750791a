"""Non-DICOM images: PNG/JPEG/TIFF X-rays (Pillow) and NIfTI/MHA/NRRD (SimpleITK)."""

from __future__ import annotations

import hashlib
import os
from types import ModuleType

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
        study_uid=uid,  # nothing links two plain images: each is its own study
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


def lps_reorientation(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, ...]]:
    """How to reorder a volume's axes so that they point to patient L, P, S (like DICOM).

    ``direction`` is 3x3 with columns = the i, j, k axes in patient LPS coordinates
    (ITK/SimpleITK convention). Returns ``(perm, flip)``: output axis ``a`` (x, y, z)
    is input axis ``perm[a]``, reversed when ``flip[a]``. Each input axis goes to the
    patient axis it is closest to, the same choice as SimpleITK's
    ``DICOMOrient(img, "LPS")``. A NIfTI stored RAS (the usual) gets its i and j axes
    reversed, so that axial slices show anterior up and the patient's left on the
    viewer's right, as DICOM does.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    perm = [-1, -1, -1]
    used: set[int] = set()
    for flat in np.argsort(-np.abs(d), axis=None):  # strongest alignments first
        a, c = divmod(int(flat), 3)
        if perm[a] < 0 and c not in used:
            perm[a] = c
            used.add(c)
    flip = tuple(bool(d[a, perm[a]] < 0) for a in range(3))
    return (perm[0], perm[1], perm[2]), flip


def lps_geometry(
    size: tuple[int, int, int],
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    direction: np.ndarray,
) -> tuple[
    tuple[int, int, int], tuple[float, float, float], tuple[float, float, float], np.ndarray
]:
    """(size, spacing, origin, direction) after :func:`lps_reorientation`; sizes and
    spacings are (x, y, z), direction columns are the new i, j, k axes."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    perm, flip = lps_reorientation(d)
    o = np.asarray(origin, dtype=float).copy()
    new_d = np.zeros((3, 3))
    for a, c in enumerate(perm):
        new_d[:, a] = d[:, c]
        if flip[a]:
            o += d[:, c] * float(spacing[c]) * (int(size[c]) - 1)  # the far corner is the start
            new_d[:, a] = -d[:, c]
    new_size = (int(size[perm[0]]), int(size[perm[1]]), int(size[perm[2]]))
    new_sp = (float(spacing[perm[0]]), float(spacing[perm[1]]), float(spacing[perm[2]]))
    return new_size, new_sp, (float(o[0]), float(o[1]), float(o[2])), new_d


def reorient_array(arr: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """A (z, y, x[, c]) array reordered as :func:`lps_reorientation` says (a view)."""
    perm, flip = lps_reorientation(direction)
    # numpy axis of index axis c is 2 - c; colour components stay last
    axes = [2 - perm[2], 2 - perm[1], 2 - perm[0]] + list(range(3, arr.ndim))
    out = np.transpose(arr, axes)
    for a in range(3):
        if flip[a]:
            out = np.flip(out, axis=2 - a)
    return out


def _sitk() -> ModuleType:
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
    if len(size) == 3 and len(direction) == 9 and len(origin) == 3:
        # what load_volume_file will show: the volume reoriented to LPS
        size3, sp3, origin, lps = lps_geometry(size3, sp3, origin, np.reshape(direction, (3, 3)))
        direction = tuple(float(v) for v in lps.reshape(-1))
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
        study_uid=uid,
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
    if img.GetDimension() == 3:
        # show it like DICOM: axes to patient L, P, S (a NIfTI is usually stored RAS)
        size3 = tuple(int(v) for v in img.GetSize())
        out = reorient_array(out, direction)
        _, spacing, origin, direction = lps_geometry(size3, spacing, origin, direction)  # type: ignore[arg-type]
    return Volume(
        array=np.ascontiguousarray(out),
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=direction,
        modality="",
        instances=series.instances,
        warnings=list(series.warnings),
        series=series,
        spacing_known=True,
        spacing_source="file header",
    )
