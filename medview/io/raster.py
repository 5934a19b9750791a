"""Non-DICOM images: PNG/JPEG/TIFF X-rays (Pillow) and NIfTI/MHA/NRRD (SimpleITK)."""

from __future__ import annotations

import hashlib
import os
from types import ModuleType
from typing import Any

import numpy as np

from medview.errors import MedviewError, ReadError
from medview.io import decoders, limits
from medview.io.model import InstanceInfo, SeriesInfo, Volume

#: Largest ratio of decoded to stored bytes deflate (gzip, zlib) can reach (about 1032:1).
DEFLATE_MAX_RATIO = 1100


def _pillow() -> ModuleType:
    """Pillow with its decompression-bomb limit set from the per-image memory budget
    (4 bytes a pixel, RGBA); :func:`_open_image` turns its warning into an error."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max(1, limits.image_budget() // 4)
    return Image


def _open_image(path: str) -> Any:
    """``Image.open`` of a regular file, a decompression bomb a one-line ReadError."""
    import warnings

    image = _pillow()
    fp = limits.open_regular(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", image.DecompressionBombWarning)
            return image.open(fp)
    except (image.DecompressionBombError, image.DecompressionBombWarning) as exc:
        fp.close()
        raise ReadError(
            f"image too large: over {image.MAX_IMAGE_PIXELS} pixels, above the memory "
            "budget (set MEDVIEW_MAX_IMAGE_MB to raise it)",
            path,
        ) from exc
    except BaseException:
        fp.close()
        raise


def _pseudo_uid(path: str) -> str:
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
    return f"file:{digest}:{os.path.basename(path)}"


def read_raster(path: str) -> np.ndarray:
    """Decode a PNG/JPEG/TIFF/BMP to (H, W) uint8/uint16 or (H, W, 3) uint8.

    Runs in a decoder worker when called through :func:`load_raster` (Pillow's codecs
    are native code); images over the per-image budget are refused before decoding.
    """
    from PIL import UnidentifiedImageError

    try:
        with _open_image(path) as im:
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
    except MedviewError:
        raise
    except UnidentifiedImageError as exc:
        raise ReadError("not a readable image file", path) from exc
    except MemoryError as exc:
        raise ReadError("image too large for the decoder's memory limit", path) from exc
    except (OSError, ValueError, SyntaxError) as exc:
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
    """Header-like facts of a raster image (its header only; bombs refused here)."""
    from PIL import UnidentifiedImageError

    try:
        with _open_image(path) as im:
            width, height = im.size
            mode = im.mode
    except MedviewError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
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
    """A PNG/JPEG/TIFF/BMP as a one-slice volume (decoded in a decoder worker)."""
    path = series.instances[0].path
    arr = decoders.run_isolated(read_raster, path)
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


VolumeHeader = tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...], int]


def read_volume_header(path: str) -> VolumeHeader:
    """(size, spacing, origin, direction, components) of a NIfTI/MHA/NRRD header, after
    checking the declared size against the file (:func:`check_volume_size`).

    SimpleITK is native code: :func:`volume_series` runs this in a decoder worker.
    """
    sitk = _sitk()
    if limits.special_file_reason(path):
        raise ReadError(limits.special_file_reason(path) or "not a regular file", path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
        size = tuple(int(v) for v in reader.GetSize())
        comps = int(reader.GetNumberOfComponents())
        probe = sitk.Image([1] * len(size), reader.GetPixelID(), max(1, comps))
        check_volume_size(path, size, max(1, comps) * probe.GetSizeOfPixelComponent())
        return (
            size,
            tuple(reader.GetSpacing()),
            tuple(reader.GetOrigin()),
            tuple(reader.GetDirection()),
            comps,
        )
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        reason = (
            "not a readable volume file"
            if "Unable to determine ImageIO" in msg
            else f"could not read volume ({msg[-100:]})"
        )
        raise ReadError(reason, path) from exc


def _volume_storage(path: str) -> tuple[str, int]:
    """("raw" | "deflate" | "unknown", bytes on disk) of a volume file's pixel data."""
    low = path.lower()
    size = os.path.getsize(path)
    if low.endswith(".gz"):
        return "deflate", size
    if low.endswith((".nhdr", ".mhd")):
        return "unknown", size  # pixel data in another file
    if low.endswith((".nrrd", ".mha")):
        with limits.open_regular(path) as fp:
            head = fp.read(65536).decode("latin-1").lower()
        if "compresseddata = true" in head or "encoding: gz" in head:
            return "deflate", size
        if "encoding: bz" in head or "compresseddata" in head and "false" not in head:
            return "unknown", size
    return "raw", size


def check_volume_size(path: str, size: tuple[int, ...], pixel_bytes: int) -> None:
    """Refuse a volume header whose declared voxels need more bytes than the file can
    hold (raw: its size; deflate: about 1032 times its size) or than the budget."""
    needed = pixel_bytes
    for n in size:
        if n <= 0:
            raise ReadError(f"impossible volume size {'x'.join(map(str, size))}", path)
        needed *= n
    storage, on_disk = _volume_storage(path)
    if storage == "raw" and needed > on_disk:
        raise ReadError(
            f"the header declares {limits.human_bytes(needed)} of voxels but the file "
            f"holds {limits.human_bytes(on_disk)}",
            path,
        )
    if storage == "deflate" and needed > on_disk * DEFLATE_MAX_RATIO:
        raise ReadError(
            f"the header declares {limits.human_bytes(needed)} of voxels, more than "
            f"{limits.human_bytes(on_disk)} of compressed data can hold",
            path,
        )
    limits.check_budget(needed, "the volume header", path)


def volume_series(path: str) -> SeriesInfo:
    """Facts of a NIfTI/MHA/NRRD volume from its header (SimpleITK ImageFileReader, in a
    decoder worker)."""
    size, spacing, origin, direction, comps = decoders.run_isolated(read_volume_header, path)
    uid = _pseudo_uid(path)
    sz = tuple(size) + (1,) * (3 - len(size))
    sp = tuple(spacing) + (1.0,) * (3 - len(spacing))
    size3 = (int(sz[0]), int(sz[1]), int(sz[2]))
    sp3 = (float(sp[0]), float(sp[1]), float(sp[2]))
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


VolumeData = tuple[np.ndarray, tuple[float, ...], tuple[float, ...], tuple[float, ...], int]


def read_volume_data(path: str) -> VolumeData:
    """(voxels (z, y, x[, c]), direction, spacing, origin, dimension) of a volume file;
    runs in a decoder worker (SimpleITK is native code), its header checked again."""
    sitk = _sitk()
    read_volume_header(path)
    try:
        img = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise ReadError(
            f"could not read volume ({' '.join(str(exc).split())[-100:]})", path
        ) from exc
    except MemoryError as exc:
        raise ReadError("volume too large for the decoder's memory limit", path) from exc
    arr = np.array(sitk.GetArrayViewFromImage(img))
    return (
        arr,
        tuple(img.GetDirection()),
        tuple(img.GetSpacing()),
        tuple(img.GetOrigin()),
        int(img.GetDimension()),
    )


def load_volume_file(series: SeriesInfo) -> Volume:
    """A NIfTI/MHA/NRRD volume, decoded in a decoder worker, reoriented to LPS."""
    path = series.instances[0].path
    arr, img_direction, img_spacing, img_origin, dim = decoders.run_isolated(read_volume_data, path)
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
        out = arr
    direction = np.array(img_direction, dtype=float).reshape(3, 3) if dim == 3 else np.eye(3)
    spacing = tuple(img_spacing) + (1.0,) * (3 - dim)
    origin = tuple(img_origin) + (0.0,) * (3 - dim)
    if dim == 3:
        # show it like DICOM: axes to patient L, P, S (a NIfTI is usually stored RAS)
        size3 = (int(arr.shape[2]), int(arr.shape[1]), int(arr.shape[0]))
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
