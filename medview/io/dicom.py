"""DICOM headers and pixel decoding with pydicom and its pixel plugins.

Compressed transfer syntaxes are decoded by the plugins pydicom finds
(pylibjpeg-libjpeg, pylibjpeg-openjpeg, pylibjpeg-rle, python-gdcm); medview has
no codec of its own. Headers are read with ``stop_before_pixels`` so scanning is
fast; for native little-endian files the byte offset of the pixel data is kept,
which lets volume assembly read the pixels with one ``numpy.fromfile`` per file.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from types import ModuleType
from typing import Any

import numpy as np

from medview.errors import ReadError, UnsupportedError
from medview.io import limits, pixelcheck, reasons
from medview.io.model import InstanceInfo

# Transfer syntaxes whose pixel data is stored natively in little endian.
_NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
# (7FE0,0008) Float, (7FE0,0009) Double Float and (7FE0,0010) Pixel Data, LE and BE
_PIXEL_TAGS = {
    b"\xe0\x7f\x10\x00",
    b"\xe0\x7f\x08\x00",
    b"\xe0\x7f\x09\x00",
    b"\x7f\xe0\x00\x10",
    b"\x7f\xe0\x00\x08",
    b"\x7f\xe0\x00\x09",
}


def _pydicom() -> ModuleType:
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pixelcheck.prefer_raising_plugins()  # in every medview process, workers or not
    return pydicom


_TAG_CACHE: dict[str, int] = {}
# Keywords converted by pydicom (binary VRs, or text whose character set matters).
_CONVERTED = {
    "PatientName",
    "StudyDescription",
    "SeriesDescription",
    "WindowCenterWidthExplanation",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
}


def _tag(keyword: str) -> int:
    tag = _TAG_CACHE.get(keyword)
    if tag is None:
        from pydicom.datadict import tag_for_keyword

        found = tag_for_keyword(keyword)
        if found is None:
            raise KeyError(f"not a DICOM keyword: {keyword}")
        tag = _TAG_CACHE[keyword] = int(found)
    return tag


def _text(ds: Any, keyword: str) -> str | None:
    """An element's value as text, read from the raw bytes when that is safe.

    Converting every element through pydicom dominated header scanning, so the
    ASCII-valued elements medview needs (UIDs, codes, numbers as DS/IS, dates)
    are decoded directly from the raw element; the rest go through pydicom.
    """
    if keyword in _CONVERTED:
        try:
            value = ds.get(keyword, None)
        except Exception:
            return None
        if value is None:
            return None
        if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
            return "\\".join(str(v) for v in value)
        return str(value)
    try:
        elem = ds.get_item(_tag(keyword))
    except Exception:
        return None
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.decode("latin-1").strip("\x00 ")
    if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _parts(ds: Any, keyword: str) -> list[str]:
    text = _text(ds, keyword)
    if not text:
        return []
    return [p.strip() for p in text.split("\\")]


def _str(ds: Any, keyword: str) -> str:
    parts = _parts(ds, keyword)
    return parts[0] if parts else ""


def _int(ds: Any, keyword: str, default: int | None = None) -> int | None:
    parts = _parts(ds, keyword)
    try:
        return int(float(parts[0])) if parts and parts[0] else default
    except ValueError:
        return default


def _float(
    ds: Any, keyword: str, default: float | None = None, finite: bool = True
) -> float | None:
    """The first value as a float; ``default`` when absent, unreadable or (``finite``)
    NaN or infinite."""
    parts = _parts(ds, keyword)
    try:
        value = float(parts[0]) if parts and parts[0] else default
    except ValueError:
        return default
    if finite and value is not None and not math.isfinite(value):
        return default
    return value


def _floats(ds: Any, keyword: str, n: int) -> tuple[float, ...] | None:
    """``n`` finite floats, or None."""
    parts = _parts(ds, keyword)
    if len(parts) != n:
        return None
    try:
        values = tuple(float(v) for v in parts)
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _functional(ds: Any, group: str, item: str) -> Any | None:
    """First item of a shared functional group macro (enhanced multi-frame IODs)."""
    if 0x52009229 not in ds and 0x52009230 not in ds:
        return None
    try:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            seq = shared[0].get(group)
            if seq:
                return seq[0].get(item)
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per:
            seq = per[0].get(group)
            if seq:
                return seq[0].get(item)
    except Exception:
        return None
    return None


def window_from(ds: Any) -> tuple[float, float] | None:
    """(center, width) from Window Center/Width (PS3.3 C.11.2.1.2), first pair."""
    center = _float(ds, "WindowCenter")
    width = _float(ds, "WindowWidth")
    if center is None or width is None:
        voi = _functional(ds, "FrameVOILUTSequence", "WindowCenter")
        wid = _functional(ds, "FrameVOILUTSequence", "WindowWidth")
        if voi is None or wid is None:
            return None
        try:
            center = float(voi[0] if type(voi).__name__ == "MultiValue" else voi)
            width = float(wid[0] if type(wid).__name__ == "MultiValue" else wid)
        except Exception:
            return None
    if width is None or not width > 0 or not math.isfinite(center) or not math.isfinite(width):
        return None
    return float(center), float(width)


# InstanceInfo fields that hold the first value of a DICOM element as text, as it stands
_TEXT_FIELDS = (
    ("series_uid", "SeriesInstanceUID"),
    ("study_uid", "StudyInstanceUID"),
    ("frame_of_reference_uid", "FrameOfReferenceUID"),
    ("patient_id", "PatientID"),
    ("patient_name", "PatientName"),
    ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"),
    ("study_date", "StudyDate"),
    ("study_time", "StudyTime"),
    ("study_description", "StudyDescription"),
    ("accession_number", "AccessionNumber"),
    ("series_description", "SeriesDescription"),
    ("body_part", "BodyPartExamined"),
    ("photometric", "PhotometricInterpretation"),
    ("rescale_type", "RescaleType"),
    ("window_explanation", "WindowCenterWidthExplanation"),
)


def header_from_dataset(ds: Any, path: str) -> InstanceInfo:
    """Fill an :class:`InstanceInfo` from a pydicom Dataset (pixels not needed)."""
    meta = getattr(ds, "file_meta", None)
    ts = ""
    if meta is not None:
        ts = str(meta.get("TransferSyntaxUID", "") or "")
    info = InstanceInfo(path=path)
    info.sop_uid = _str(ds, "SOPInstanceUID")
    info.sop_class_uid = _str(ds, "SOPClassUID")
    if meta is not None:  # anonymisers sometimes blank the dataset's copies
        info.sop_uid = info.sop_uid or str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        info.sop_class_uid = info.sop_class_uid or str(
            meta.get("MediaStorageSOPClassUID", "") or ""
        )
    for attr, keyword in _TEXT_FIELDS:
        setattr(info, attr, _str(ds, keyword))
    info.series_number = _int(ds, "SeriesNumber")
    info.modality = _code(_str(ds, "Modality"))
    info.instance_number = _int(ds, "InstanceNumber")
    info.acquisition_number = _int(ds, "AcquisitionNumber")
    info.rows = _int(ds, "Rows", 0) or 0
    info.columns = _int(ds, "Columns", 0) or 0
    info.frames = max(1, _int(ds, "NumberOfFrames", 1) or 1)
    info.samples_per_pixel = _int(ds, "SamplesPerPixel", 1) or 1
    info.bits_allocated = _int(ds, "BitsAllocated", 0) or 0
    info.bits_stored = _int(ds, "BitsStored", info.bits_allocated) or 0
    info.pixel_representation = _int(ds, "PixelRepresentation", 0) or 0
    info.transfer_syntax = ts
    info.position = _floats(ds, "ImagePositionPatient", 3)  # type: ignore[assignment]
    info.orientation = _floats(ds, "ImageOrientationPatient", 6)
    if info.orientation is None:
        o = _functional(ds, "PlaneOrientationSequence", "ImageOrientationPatient")
        if o is not None and len(o) == 6:
            info.orientation = tuple(float(v) for v in o)
    if info.position is None and info.frames > 1:
        p = _functional(ds, "PlanePositionSequence", "ImagePositionPatient")
        if p is not None and len(p) == 3:
            info.position = tuple(float(v) for v in p)  # type: ignore[assignment]
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        sp = _floats(ds, kw, 2)
        if sp and sp[0] > 0 and sp[1] > 0:
            info.pixel_spacing = (sp[0], sp[1])
            info.spacing_source = kw
            break
    if info.pixel_spacing is None:
        sp = _functional(ds, "PixelMeasuresSequence", "PixelSpacing")
        if sp is not None and len(sp) == 2 and float(sp[0]) > 0:
            info.pixel_spacing = (float(sp[0]), float(sp[1]))
            info.spacing_source = "PixelSpacing"
    info.slice_thickness = _float(ds, "SliceThickness")
    if info.slice_thickness is None:
        st = _functional(ds, "PixelMeasuresSequence", "SliceThickness")
        info.slice_thickness = float(st) if st not in (None, "") else None
    info.spacing_between_slices = _float(ds, "SpacingBetweenSlices")
    slope = _float(ds, "RescaleSlope", finite=False)  # NaN/inf refused by pixelcheck
    intercept = _float(ds, "RescaleIntercept", finite=False)
    if slope is None:
        slope = _functional(ds, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, "PixelValueTransformationSequence", "RescaleIntercept")
    info.rescale_slope = _as_float(slope, 1.0)
    info.rescale_intercept = _as_float(intercept, 0.0)
    if info.rescale_slope == 0:
        info.rescale_slope = 1.0
    info.window = window_from(ds)
    info.has_voi_lut = "VOILUTSequence" in ds
    info.has_modality_lut = "ModalityLUTSequence" in ds
    _fill_missing_uids(info)
    return info


def _code(text: str) -> str:
    """A Code String (CS: at most 16 of A-Z, 0-9, space, underscore), else "": a corrupt
    length makes pydicom read kilobytes of other elements (names, IDs) as the value."""
    if len(text) > 16 or any(not (c.isascii() and (c.isalnum() or c in " _")) for c in text):
        return ""
    return text


def _as_float(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def derived_uid(*parts: object) -> str:
    """A deterministic UID under the 2.25 root (PS3.5 B.2) derived from ``parts``."""
    import hashlib

    digest = hashlib.sha1("|".join(str(p) for p in parts).encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


# Stand-ins for blanked UIDs, in this order (a derived series UID uses the study UID):
# (field, the element it stands for, the fields it is derived from)
_DERIVED_UIDS = (
    (
        "study_uid",
        "StudyInstanceUID",
        ("patient_id", "patient_name", "study_date", "study_time", "frame_of_reference_uid"),
    ),
    (
        "series_uid",
        "SeriesInstanceUID",
        ("study_uid", "frame_of_reference_uid", "series_number", "series_description", "modality"),
    ),
    ("sop_uid", "SOPInstanceUID", ("path",)),
)


def _fill_missing_uids(info: InstanceInfo) -> None:
    """Stand-in UIDs for anonymised files that blanked them, so grouping still works."""
    for attr, keyword, parts in _DERIVED_UIDS:
        if not getattr(info, attr):
            kind = attr.removesuffix("_uid")  # "study", "series", "sop"
            setattr(info, attr, derived_uid(kind, *(getattr(info, p) for p in parts)))
            info.missing_uids.append(keyword)


def read_header(
    path: str | os.PathLike[str], parsed: tuple[Any, int] | None = None
) -> InstanceInfo:
    """Read one DICOM file's header (no pixels); raise :class:`ReadError` if it is not one.
    ``parsed``: its header already parsed (e.g. from the bytes a receiver stored) and the
    offset of its pixel data element; the file is then opened for the pixel checks only."""
    pydicom = _pydicom()
    path = os.fspath(path)
    try:
        with limits.open_regular(path) as fp:
            head = fp.read(132) if parsed is None else b""
            # no preamble: accept only what parses as a dataset with DICOM image keys
            force = parsed is None and (len(head) < 132 or head[128:132] != b"DICM")
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if parsed is None:
                    ds = pydicom.dcmread(fp, stop_before_pixels=True, force=force)
                    pos = fp.tell()
                else:
                    ds, pos = parsed
                info = header_from_dataset(ds, path)
                if (
                    force
                    and not info.rows
                    and {"SOPInstanceUID", "SeriesInstanceUID"} <= set(info.missing_uids)
                ):
                    raise ReadError("not a DICOM file", path)
                _check_pixels(fp, pos, info)
                _find_native_pixels(fp, pos, info, ds)
    except ReadError:  # limits.open_regular names missing, folder and unreadable paths
        raise
    except EOFError as exc:
        raise ReadError("truncated file (ends inside the header)", path) from exc
    except RecursionError as exc:
        raise ReadError("not a readable DICOM file (sequences nested too deep)", path) from exc
    except MemoryError as exc:
        raise ReadError(
            "not a readable DICOM file (an element declares a huge length)", path
        ) from exc
    except Exception as exc:  # pydicom raises many types for garbage input
        raise ReadError(reasons.parse_failure(exc), path) from exc
    return info


def _check_pixels(fp: Any, pos: int, info: InstanceInfo) -> None:
    """Header-only checks: is there pixel data at all, can a decoder read this syntax?"""
    if not info.rows or not info.columns:
        return
    if info.transfer_syntax == "1.2.840.10008.1.2.1.99":
        return  # deflated: the raw bytes past the header are compressed
    fp.seek(pos)
    tag = fp.read(4)
    if tag not in _PIXEL_TAGS:
        info.pixel_problem = "no pixel data"
        return
    problem = pixelcheck.pixel_problem(fp, pos, info)
    if problem:
        info.pixel_problem = problem
        return
    ts = info.transfer_syntax
    if ts and ts not in _NATIVE_LE and ts not in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        if not decoder_available(ts):
            info.pixel_problem = (
                f"unsupported transfer syntax {reasons.ts_name(ts)}: no installed decoder"
            )


_decoder_cache: dict[str, bool] = {}


def decoder_available(ts: str) -> bool:
    """Whether one of pydicom's installed pixel plugins can decode transfer syntax ``ts``."""
    if ts not in _decoder_cache:
        try:
            from pydicom.pixels import get_decoder

            _decoder_cache[ts] = bool(get_decoder(ts).is_available)
        except Exception:
            _decoder_cache[ts] = False
    return _decoder_cache[ts]


def _find_native_pixels(fp: Any, pos: int, info: InstanceInfo, ds: Any) -> None:
    """Record where native pixel data starts, so the volume loader can skip pydicom."""
    if info.transfer_syntax not in _NATIVE_LE or info.samples_per_pixel != 1:
        return
    if info.photometric.upper() not in ("MONOCHROME1", "MONOCHROME2"):
        return
    if info.bits_allocated not in (8, 16) or info.has_modality_lut or info.has_voi_lut:
        return
    fp.seek(pos)
    tag = fp.read(4)
    if tag != _PIXEL_TAG_LE:
        return
    implicit = info.transfer_syntax == "1.2.840.10008.1.2"
    if implicit:
        raw = fp.read(4)
        if len(raw) < 4:
            return
        (length,) = struct.unpack("<I", raw)
        offset = pos + 8
    else:
        vr = fp.read(4)
        raw = fp.read(4)
        if len(raw) < 4 or vr[:2] not in (b"OW", b"OB"):
            return
        (length,) = struct.unpack("<I", raw)
        offset = pos + 12
    expected = info.rows * info.columns * info.frames * (info.bits_allocated // 8)
    if length == 0xFFFFFFFF or length < expected or expected == 0:
        return
    size = os.fstat(fp.fileno()).st_size
    if offset + expected > size:
        have = max(0, size - offset)
        info.pixel_problem = f"truncated file: {have} of {expected} bytes of pixel data present"
        return
    info.pixel_offset = offset
    info.pixel_length = expected


def _stored_dtype(info: InstanceInfo) -> np.dtype:
    if info.bits_allocated == 8:
        return np.dtype(np.int8 if info.pixel_representation else np.uint8)
    return np.dtype("<i2" if info.pixel_representation else "<u2")


def read_native_frames(info: InstanceInfo) -> np.ndarray:
    """Read native pixel data directly: (frames, rows, cols) in the stored type."""
    assert info.pixel_offset is not None
    count = info.rows * info.columns * info.frames
    with limits.open_regular(info.path) as fp:
        fp.seek(info.pixel_offset)
        arr = np.fromfile(fp, dtype=_stored_dtype(info), count=count)
    if arr.size != count:
        raise ReadError("truncated pixel data", info.path)
    arr = arr.reshape(info.frames, info.rows, info.columns)
    return _mask_bits(arr, info)


def _mask_bits(arr: np.ndarray, info: InstanceInfo) -> np.ndarray:
    """Honour BitsStored < BitsAllocated (sign-extend or mask the unused high bits)."""
    bits, alloc = info.bits_stored, info.bits_allocated
    if not bits or bits >= alloc or arr.dtype.kind not in "iu":
        return arr
    if info.pixel_representation:
        shift = alloc - bits
        work = arr.astype(np.int32) << shift
        return (work >> shift).astype(arr.dtype)
    return arr & np.array((1 << bits) - 1, dtype=arr.dtype)


def _dataset_to_decode(path: str) -> tuple[Any, InstanceInfo]:
    """The whole dataset of a regular file and its header facts, checked for decoding
    (pixel attributes, finite rescale, the per-image budget) before any pixel is read."""
    pydicom = _pydicom()
    try:
        with limits.open_regular(path) as fp, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(fp, force=True)
    except ReadError:
        raise
    except (Exception, RecursionError) as exc:
        raise ReadError(reasons.parse_failure(exc), path) from exc
    truncated = any("End of file" in str(w.message) for w in caught)
    info = header_from_dataset(ds, path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        if truncated:
            raise ReadError("truncated file: it ends inside the pixel data", path)
        raise ReadError("no pixel data", path)
    float_bits = 32 if "FloatPixelData" in ds else 64 if "DoubleFloatPixelData" in ds else None
    problem = pixelcheck.attribute_problem(info, float_bits) or pixelcheck.finite_problem(info)
    if problem:
        raise ReadError(problem, path)
    limits.check_budget(pixelcheck.decoded_bytes(info), "Rows x Columns x frames", path)
    return ds, info


def decode_file(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode every frame of a DICOM file.

    Returns ``(frames, extra)``: grayscale as (frames, rows, cols) in the stored
    type (after the Modality LUT Sequence, if present, as uint16), colour as
    (frames, rows, cols, 3) uint8 RGB (YBR converted, palette applied). ``extra``
    carries the VOI LUT table (``"voi_lut"``) if the file has one, and
    ``"warnings"`` when a LUT sequence is present but could not be used. Runs in worker processes, so
    it takes and returns only picklable values.
    """
    from pydicom.pixels import apply_color_lut

    ds, info = _dataset_to_decode(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (Exception, RecursionError) as exc:
        raise ReadError(
            reasons.decode_failure(exc, info, decoder_available(info.transfer_syntax)), path
        ) from exc
    except BaseException as exc:  # a Rust panic (pyo3 PanicException) is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ReadError(f"the pixel decoder failed ({type(exc).__name__})", path) from exc
    extra: dict[str, Any] = {}
    lut_warnings: list[str] = []
    photometric = info.photometric.upper()
    if photometric == "PALETTE COLOR":
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise UnsupportedError(f"palette colour lookup failed ({exc})", path) from exc
    is_color = arr.ndim == 4 or (
        arr.ndim == 3
        and info.frames == 1
        and arr.shape[-1] in (3, 4)
        and (info.samples_per_pixel == 3 or photometric == "PALETTE COLOR")
    )
    if info.frames == 1:
        arr = arr[np.newaxis]
    if is_color:
        if arr.dtype != np.uint8:
            maxval = float(arr.max()) if arr.size else 0.0
            bits = 16 if maxval > 255 else 8
            arr = (
                (arr.astype(np.float32) * (255.0 / ((1 << bits) - 1))).clip(0, 255).astype(np.uint8)
            )
        arr = arr[..., :3]
    else:
        if info.has_modality_lut:
            try:
                from pydicom.pixels import apply_modality_lut as pd_modality_lut

                arr = np.asarray(pd_modality_lut(arr, ds)).astype(np.uint16)
            except Exception as exc:  # pydicom raises many types for a malformed sequence
                lut_warnings.append(
                    f"Modality LUT Sequence not applied ({reasons.short_error(exc)}): "
                    "values shown are stored values"
                )
        if arr.dtype.kind == "f":
            pass
        elif arr.dtype.itemsize > 2:
            lo, hi = int(arr.min()), int(arr.max())
            if -32768 <= lo and hi <= 32767:
                arr = arr.astype(np.int16)
            elif lo >= 0 and hi <= 65535:
                arr = arr.astype(np.uint16)
        if info.has_voi_lut:
            try:
                item = ds.VOILUTSequence[0]
                desc = [int(v) for v in item.LUTDescriptor]
                table = np.asarray(item.LUTData, dtype=np.float32)
                first = desc[1]
                if desc[0] and len(table) > desc[0]:
                    table = table[: desc[0]]
                extra["voi_lut"] = (first, table)
            except Exception as exc:
                lut_warnings.append(
                    f"VOI LUT Sequence not applied ({reasons.short_error(exc)}): "
                    "the window is used instead"
                )
    if lut_warnings:
        extra["warnings"] = lut_warnings
    return np.ascontiguousarray(arr), extra
