"""The display pipeline: stored values -> modality values -> VOI -> presentation.

Each step is a small typed ``ndarray -> ndarray`` function citing the part of the
DICOM standard (PS3.3, *Information Object Definitions*, 2024 editions) it
implements. :func:`render_slice` chains them for one slice of a
:class:`~medview.io.model.Volume`; the viewer and ``medview render`` both call it,
so what the CLI writes is what the radiologist sees.

Only the 2D slice being shown is ever converted to float32; volumes stay in their
stored integer type.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from medview.imaging import geometry

if TYPE_CHECKING:
    from medview.io.model import Volume

PLANES = geometry.PLANES

# (center, width) presets radiologists use for CT, in HU. The viewer and
# ``medview render --preset`` both read this table.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (60.0, 400.0),
    "liver": (80.0, 150.0),
}
PRESET_ALIASES = {
    "soft tissue": "mediastinum",
    "soft": "mediastinum",
    "soft_tissue": "mediastinum",
    "softtissue": "mediastinum",
}


def ct_preset(name: str) -> tuple[float, float] | None:
    """(center, width) of a CT preset by name or alias (case-insensitive), else None."""
    key = name.strip().lower()
    return CT_PRESETS.get(PRESET_ALIASES.get(key, key))


def hu_preset_problem(volume: Volume) -> tuple[bool, str]:
    """Whether a CT window preset (a window in Hounsfield units) fits ``volume``.

    Returns ``(applies, note)``: ``(True, "")`` for CT in HU; ``(False, reason)`` when
    the image is known not to be in HU (a radiograph, a PNG, MR: the window would
    show a white or black image); ``(True, note)`` when nobody knows (a NIfTI, NRRD or
    MHA volume has no modality): the preset is applied and ``note`` says so.
    """
    if volume.unit == "HU":
        return True, ""
    modality = volume.modality or ""
    if volume.is_color:
        return False, "a colour image has no Hounsfield units"
    if modality == "CT":
        return True, ""
    if modality and modality != "OT":
        return False, f"{modality} image, not CT: its values are not Hounsfield units"
    kind = getattr(volume.series, "kind", "") if volume.series is not None else ""
    if kind == "volume":
        return True, "modality unknown (not DICOM): values taken as Hounsfield units"
    return False, "not a CT image: its values are not Hounsfield units"


def apply_modality_lut(arr: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """Stored values to modality values (e.g. Hounsfield units) as float32.

    Implements the linear Modality LUT transformation of PS3.3 C.11.1.1.2
    (Rescale Slope and Intercept): ``output = slope * stored + intercept``.

    Parameters
    ----------
    arr : numpy.ndarray
        Stored pixel values (any integer or float type).
    slope, intercept : float
        RescaleSlope (0028,1053) and RescaleIntercept (0028,1052).
    """
    out = arr.astype(np.float32, copy=True)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def apply_lut_table(arr: np.ndarray, first_mapped: int, table: np.ndarray) -> np.ndarray:
    """Look up ``arr`` in a LUT whose first entry maps ``first_mapped`` (clamped at both ends).

    Implements the LUT Descriptor semantics shared by the Modality LUT Sequence
    (PS3.3 C.11.1.1.1) and the VOI LUT Sequence (PS3.3 C.11.2.1.1): values below the
    first mapped value take the first entry, values past the end take the last.
    """
    idx = np.asarray(arr).astype(np.int64) - int(first_mapped)
    np.clip(idx, 0, len(table) - 1, out=idx)
    return np.asarray(table)[idx]


def apply_window(
    arr: np.ndarray,
    center: float,
    width: float,
    out_max: int = 255,
) -> np.ndarray:
    """Linear VOI windowing to ``uint8`` (0..out_max).

    Implements the "LINEAR" VOI LUT Function of PS3.3 C.11.2.1.2.1 (Window Center
    and Window Width): with ``c = center - 0.5`` and ``w = width - 1``,
    ``x <= c - w/2 -> 0``, ``x > c + w/2 -> out_max``, otherwise
    ``((x - c) / w + 0.5) * out_max``. ``width`` must be >= 1.
    """
    if not (math.isfinite(float(center)) and math.isfinite(float(width))):
        center, width = auto_window(arr)  # a NaN window would give a black image
    width = max(float(width), 1.0)
    c = float(center) - 0.5
    w = width - 1.0
    if w <= 0.0:  # a width of 1 is a threshold at the center
        return np.where(np.asarray(arr) > c, out_max, 0).astype(np.uint8)
    scale = np.float32(out_max / w)
    offset = np.float32(out_max * (0.5 - c / w))
    out = np.asarray(arr, dtype=np.float32) * scale + offset
    np.clip(out, 0, out_max, out=out)  # +-inf to the ends
    np.nan_to_num(out, copy=False, nan=0.0)  # NaN voxels (float volumes) shown black
    return out.astype(np.uint8)


def scale_to_uint8(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to 0..255 (used after a VOI LUT table)."""
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        lo, hi = 0.0, 1.0
    span = max(float(hi) - float(lo), 1e-6)
    out = (np.asarray(arr, dtype=np.float32) - np.float32(lo)) * np.float32(255.0 / span)
    np.clip(out, 0, 255, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(np.uint8)


def invert_uint8(arr: np.ndarray) -> np.ndarray:
    """Invert a display image: MONOCHROME1 shows the minimum value as white.

    PS3.3 C.7.6.3.1.2 (Photometric Interpretation, MONOCHROME1): "The minimum
    sample value is intended to be displayed as white after any VOI gray scale
    transformations have been performed."
    """
    return np.subtract(np.uint8(255), arr, dtype=np.uint8)


def auto_window(
    arr: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
) -> tuple[float, float]:
    """A robust (center, width) for images with no window in the file.

    Uses percentiles of a subsample of the values (so a few outliers or the
    padding value outside a CT's circular field of view do not flatten the image).
    Not part of the standard: the standard leaves the default VOI to the viewer
    when none is given (PS3.3 C.11.2).
    """
    a = np.asarray(arr)
    if a.size == 0:
        return 0.0, 1.0
    step = max(1, a.size // 262144)
    sample = a.reshape(-1)[::step].astype(np.float32)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if hi - lo < 1e-6:
        lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return float((lo + hi) / 2.0), float(hi - lo)


def resample_rows(arr: np.ndarray, factor: float) -> np.ndarray:
    """Stretch the row axis by ``factor`` with linear interpolation (aspect correction).

    Reformatted planes (coronal, sagittal) have rows spaced by the slice spacing and
    columns by the pixel spacing; shown with square screen pixels they need their
    row count scaled by ``row_spacing / col_spacing``. Written with numpy because a
    2D linear stretch needs no resampling library (SimpleITK does the 3D work).
    """
    n = arr.shape[0]
    new_n = max(1, int(round(n * factor)))
    if new_n == n:
        return arr
    pos = (np.arange(new_n, dtype=np.float32) + 0.5) / np.float32(factor) - 0.5
    np.clip(pos, 0, n - 1, out=pos)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    t = (pos - i0).astype(np.float32)
    shape = (new_n,) + (1,) * (arr.ndim - 1)
    t = t.reshape(shape)
    a0 = arr[i0].astype(np.float32)
    a1 = arr[i1].astype(np.float32)
    out = a0 + (a1 - a0) * t
    if np.issubdtype(arr.dtype, np.integer):
        out = np.rint(out).astype(arr.dtype)
    return out


def plane_size(volume: Volume, plane: str) -> int:
    """Number of slices available in ``plane`` (:func:`medview.imaging.geometry.plane_count`)."""
    return geometry.plane_count(volume, plane)


def extract_plane(
    volume: Volume, index: int, plane: str = "axial"
) -> tuple[np.ndarray, tuple[float, float]]:
    """One slice of the volume in stored values, oriented for display.

    Returns the 2D (or 2D x 3 colour) array and its (row spacing, column spacing) in
    mm. Axial slices are returned as stored. Coronal and sagittal reformats are
    flipped so that the patient's head is at the top when the slice axis points
    superior (the usual radiological convention): the one flip rule of
    :func:`medview.imaging.geometry.plane_flipped`, which the viewer's mouse
    mapping uses too.
    """
    geometry.check_plane(plane)
    img = geometry.take_plane(volume.array, volume, index, plane)
    return img, geometry.plane_spacing(volume, plane)


#: automatic windows already computed, by ``id(volume)`` (entries leave with the volume)
_VOLUME_WINDOWS: dict[int, tuple[float, float]] = {}
_VOLUME_SAMPLE = 131072


def volume_window(volume: Volume) -> tuple[float, float] | None:
    """The window a volume is shown with when the user chose none, the same in every plane.

    The file's window when it has one; ``None`` for colour images and when the file
    has a VOI LUT (:func:`render_slice` applies it); otherwise one automatic window
    (:func:`auto_window`) from a 3D subsample of the whole volume in modality units,
    computed once per volume. Axial, coronal and sagittal views of the same volume
    therefore look alike (a per-plane window would make each plane differ).
    While a volume is still loading, only its decoded slices are sampled and the
    result is not remembered.
    """
    if volume.is_color:
        return None
    if volume.window is not None:
        return (float(volume.window[0]), float(volume.window[1]))
    if volume.voi_lut is not None:
        return None
    return volume_auto_window(volume)


def volume_auto_window(volume: Volume) -> tuple[float, float] | None:
    """:func:`auto_window` of the whole volume (the "auto" preset), ignoring the file's
    window; ``None`` for colour. Computed once per loaded volume."""
    if volume.is_color:
        return None
    key = id(volume)
    if volume.ready is None and key in _VOLUME_WINDOWS:
        return _VOLUME_WINDOWS[key]
    arr = volume.array
    if arr.shape[0] == 1:  # one image: exactly the slice's own automatic window
        return auto_window(volume.modality_values(0))
    slices = np.arange(arr.shape[0]) if volume.ready is None else np.flatnonzero(volume.ready)
    if slices.size == 0 or arr.size == 0:
        return None
    n = slices.size * arr.shape[1] * arr.shape[2]
    step = max(1, int(np.ceil((n / _VOLUME_SAMPLE) ** (1.0 / 3.0))))
    # strided views, one slice at a time: never a copy of whole slices
    stored = np.stack([arr[k, ::step, ::step] for k in slices[::step]])
    sample = apply_modality_lut(stored, volume.rescale_slope, volume.rescale_intercept)
    win = auto_window(sample)
    if volume.ready is None:
        import weakref

        try:
            weakref.finalize(volume, _VOLUME_WINDOWS.pop, key, None)
        except TypeError:  # not weak-referenceable: do not remember
            return win
        _VOLUME_WINDOWS[key] = win
    return win


@functools.lru_cache(maxsize=16)
def _window_table(
    dtype: str, slope: float, intercept: float, center: float, width: float
) -> np.ndarray:
    dt = np.dtype(dtype)
    every = np.arange(2 ** (8 * dt.itemsize), dtype=f"u{dt.itemsize}").view(dt)
    table = apply_window(apply_modality_lut(every, slope, intercept), center, width)
    table.flags.writeable = False
    return table


def window_stored(
    img: np.ndarray, slope: float, intercept: float, window: tuple[float, float]
) -> np.ndarray:
    """``apply_window(apply_modality_lut(img, slope, intercept), *window)``: for 8- and
    16-bit stored values one lookup in a table of that pipeline applied to every possible
    stored value (the same numbers, 5-10x faster on a 3,000-row reformat)."""
    c, w = (float(v) for v in window)
    if img.dtype.kind not in "iu" or img.dtype.itemsize > 2 or not math.isfinite(c + w):
        return apply_window(apply_modality_lut(img, slope, intercept), c, w)
    table = _window_table(img.dtype.str, float(slope), float(intercept), c, w)
    index = np.ascontiguousarray(img).view(f"u{img.dtype.itemsize}")
    return np.take(table, index)


def display_window(volume: Volume, slice_values: np.ndarray) -> tuple[float, float]:
    """The window used when the user chose none: the file's, else the volume's automatic
    window (:func:`volume_window`, the same for every plane)."""
    if volume.window is not None:
        return volume.window
    return volume_window(volume) or auto_window(slice_values)


def render_slice(
    volume: Volume,
    index: int,
    plane: str = "axial",
    window: tuple[float, float] | None = None,
    invert: bool | None = None,
    aspect: bool = True,
) -> np.ndarray:
    """Render one slice to 8-bit for display: the viewer's and the CLI's pipeline.

    Steps: extract the (reformatted) plane; apply the modality LUT
    (:func:`apply_modality_lut`, PS3.3 C.11.1); apply the VOI transform, i.e.
    ``window`` if given, else the file's VOI LUT Sequence (PS3.3 C.11.2.1.1) or
    Window Center/Width (C.11.2.1.2), else :func:`auto_window`; invert
    MONOCHROME1 (C.7.6.3.1.2); correct the aspect ratio so pixels are square in mm.

    Colour images (RGB after any YBR/palette conversion at load) are returned as
    (H, W, 3) uint8, windowed per channel only when ``window`` is given.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array (H, W) or (H, W, 3).
    """
    if not (math.isfinite(volume.rescale_slope) and math.isfinite(volume.rescale_intercept)):
        from medview.errors import ReadError

        where = volume.instances[0].path if volume.instances else None
        raise ReadError("RescaleSlope/Intercept is not a finite number: cannot be shown", where)
    img, (row_sp, col_sp) = extract_plane(volume, index, plane)
    if volume.is_color:
        out = img if img.dtype == np.uint8 else scale_to_uint8(img, 0, float(img.max() or 1))
        if window is not None:
            out = apply_window(out, *window)
    else:
        out = grayscale_to_uint8(volume, img, window, invert)
    return square_pixels(out, (row_sp, col_sp), aspect)


def grayscale_to_uint8(
    volume: Volume,
    img: np.ndarray,
    window: tuple[float, float] | None = None,
    invert: bool | None = None,
) -> np.ndarray:
    """Stored grayscale values of ``volume`` (a slice, a reformat or a slab projection)
    to 8-bit: the modality LUT (PS3.3 C.11.1), then ``window`` (one table lookup for
    8/16-bit values, :func:`window_stored`), else the file's VOI LUT Sequence (C.11.2.1.1),
    else :func:`display_window`; MONOCHROME1 inverted (C.7.6.3.1.2) unless ``invert``
    says otherwise."""
    slope, intercept = volume.rescale_slope, volume.rescale_intercept
    if window is not None:
        out = window_stored(img, slope, intercept, window)
    else:
        values = apply_modality_lut(img, slope, intercept)
        if volume.voi_lut is not None:
            first, table = volume.voi_lut
            mapped = apply_lut_table(values, first, table)
            out = scale_to_uint8(mapped, float(table.min()), float(table.max()))
        else:
            out = apply_window(values, *display_window(volume, values))
    do_invert = volume.invert if invert is None else invert
    return invert_uint8(out) if do_invert else out


def square_pixels(out: np.ndarray, spacing: tuple[float, float], aspect: bool = True) -> np.ndarray:
    """``out`` (C-contiguous) with its rows resampled so pixels are square in mm, given
    its (row, column) ``spacing``; unchanged when ``aspect`` is off or they already are."""
    row_sp, col_sp = spacing
    if aspect and row_sp > 0 and col_sp > 0 and abs(row_sp / col_sp - 1.0) > 1e-3:
        out = resample_rows(out, row_sp / col_sp)
    return np.ascontiguousarray(out)
