"""Find what a path holds: files, folders, DICOMDIR media, raster and volume files.

Scanning reads headers only. DICOM instances are grouped into series by
SeriesInstanceUID, and a series whose orientation, size or pixel type changes is
split into parts (``UID``, ``UID#2``, ...). Each part's slices are ordered by
ImagePositionPatient projected on the slice normal (not by file name or
InstanceNumber), and missing slices, uneven spacing and gantry tilt are reported
as warnings.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator

import numpy as np

from medview.errors import FileProblem, MedviewError, ReadError
from medview.io import decoders, limits
from medview.io.dicom import read_header
from medview.io.model import InstanceInfo, ScanResult, SeriesInfo
from medview.tasks import TaskState, ensure_state

RASTER_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
VOLUME_EXTS = {".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr"}
SKIP_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
SKIP_EXTS = {
    ".txt",
    ".md",
    ".json",
    ".xml",
    ".csv",
    ".html",
    ".pdf",
    ".log",
    ".zip",
    ".gz",
    ".raw",
    ".dump",
    ".icc",
    ".py",
    ".sh",
    ".bat",
    ".exe",
    ".ini",
    ".inf",
}


def _ext(path: str) -> str:
    low = path.lower()
    if low.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(low)[1]


def is_dicomdir(path: str) -> bool:
    return os.path.basename(path).upper() in ("DICOMDIR",) or os.path.basename(
        path
    ).upper().startswith("DICOMDIR")


def iter_files(root: str, notes: list[FileProblem] | None = None) -> Iterator[str]:
    """All regular files below ``root`` (recursive, sorted, hidden files skipped).

    FIFOs, devices, sockets, links to them or out of ``root``, and folder loops are
    skipped, with a one-line note each in ``notes``
    (:func:`medview.io.limits.walk_files`).
    """
    for path in limits.walk_files(root, notes if notes is not None else []):
        if os.path.basename(path).lower() not in SKIP_NAMES:
            yield path


def dicomdir_files(path: str) -> list[str]:
    """Files referenced by a DICOMDIR's directory records (PS3.10 / PS3.3 F.5)."""
    import warnings

    import pydicom
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            fs = FileSet(ds)
    except Exception as exc:  # pydicom's text can quote raw bytes: the type is enough
        raise ReadError(f"not a readable DICOMDIR ({type(exc).__name__})", path) from exc
    files = []
    top = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for inst in fs:
        try:
            ref = os.fspath(inst.path)
        except Exception:
            continue
        if os.path.commonpath([top, os.path.realpath(ref)]) == top:
            files.append(ref)  # a record pointing out of the medium's folder is ignored
    if not files and len(fs) == 0:
        raise ReadError("the DICOMDIR lists no images", path)
    return files


def _collect(
    paths: Iterable[str], errors: list[FileProblem]
) -> tuple[list[str], list[str], list[str]]:
    """Split inputs into (dicom candidates, raster files, volume files)."""
    dicom, raster, volume = [], [], []
    seen: set[str] = set()

    def add(p: str, explicit: bool) -> None:
        rp = os.path.realpath(p)
        if rp in seen:
            return
        seen.add(rp)
        special = limits.special_file_reason(p)
        if special is not None:
            errors.append(FileProblem(p, special))
            return
        ext = _ext(p)
        if ext in RASTER_EXTS:
            raster.append(p)
        elif ext in VOLUME_EXTS:
            volume.append(p)
        elif is_dicomdir(p):
            try:
                for f in dicomdir_files(p):
                    add(f, True)
            except MedviewError as exc:
                errors.append(FileProblem(p, exc.reason))
        elif ext in SKIP_EXTS and not explicit:
            return  # documentation next to the images in a folder
        else:
            dicom.append(p)

    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            top_dicomdir = os.path.join(path, "DICOMDIR")
            if os.path.isfile(top_dicomdir):
                add(top_dicomdir, True)
            for f in iter_files(path, errors):
                if not is_dicomdir(f):
                    add(f, False)
        elif os.path.exists(path) or os.path.islink(path):
            add(path, True)
        else:
            errors.append(FileProblem(path, "no such file or folder"))
    return dicom, raster, volume


def scan(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], state: TaskState | None = None
) -> ScanResult:
    """Read the headers of everything under ``paths`` and group it into series.

    Bad files are reported in ``errors`` (path and one-line reason) and skipped;
    everything else is read. An empty folder is an error of its own.
    """
    state = ensure_state(state)
    given = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    roots = [os.fspath(p) for p in given]
    result = ScanResult()
    dicom, raster, volume = _collect(roots, result.errors)
    total = max(1, len(dicom) + len(raster) + len(volume))
    add_headers(result, _read_headers(dicom, state, total))
    for path in raster:
        from medview.io.raster import raster_series

        try:
            result.series.append(raster_series(path))
        except MedviewError as exc:
            result.errors.append(FileProblem(path, exc.reason))
    for path in volume:
        from medview.io.raster import volume_series

        try:
            result.series.append(volume_series(path))
        except MedviewError as exc:
            result.errors.append(FileProblem(path, exc.reason))
    if not result.series and not result.errors:
        for p in roots:
            if os.path.isdir(p):
                result.errors.append(FileProblem(p, "empty folder: no images found"))
    state.progress(1.0, "scan finished")
    return result


def add_headers(
    result: ScanResult, items: Iterable[tuple[str, InstanceInfo | MedviewError]]
) -> None:
    """Group read headers (``(path, InstanceInfo or the error reading it)``) into
    ``result.series``; unreadable files and files without readable image data go to
    ``result.errors`` (what :func:`scan` does with the headers it reads)."""
    headers: list[InstanceInfo] = []
    for path, item in items:
        if isinstance(item, MedviewError):
            result.errors.append(FileProblem(path, item.reason))
            continue
        info = item
        if not info.rows or not info.columns:
            what = info.modality or "non-image"
            result.errors.append(FileProblem(path, f"no image data ({what} object)"))
            continue
        if info.pixel_problem:
            result.errors.append(FileProblem(path, info.pixel_problem))
            continue
        headers.append(info)
    result.series.extend(group_series(headers))


def _headers_chunk(paths: list[str]) -> list[InstanceInfo | MedviewError]:
    """Read a chunk of headers (runs in a worker process); errors are returned, not raised."""
    out: list[InstanceInfo | MedviewError] = []
    for p in paths:
        try:
            out.append(read_header(p))
        except MedviewError as exc:
            out.append(exc)
    return out


PARALLEL_SCAN_MIN = 64


def _read_headers(
    paths: list[str], state: TaskState, total: int
) -> Iterator[tuple[str, InstanceInfo | MedviewError]]:
    """Yield ``(path, InstanceInfo | MedviewError)`` once per path, in order.

    pydicom parses headers in Python (holding the GIL), so big folders are split
    into chunks read by the decoder worker processes. If the pool breaks part way,
    the rest is read in this process, starting after the last path yielded.
    """
    from concurrent.futures.process import BrokenProcessPool

    yielded = 0
    workers = decoders.decode_workers()
    pool = decoders.decoder_pool() if len(paths) >= PARALLEL_SCAN_MIN else None
    if pool is not None:
        size = max(16, len(paths) // (max(2, workers) * 4))
        chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
        futures = []
        try:
            try:
                futures = [pool.submit(_headers_chunk, c) for c in chunks]
                for chunk, fut in zip(chunks, futures, strict=True):
                    state.check()
                    items = fut.result()
                    for p, item in zip(chunk, items, strict=True):
                        yield p, item
                        yielded += 1
                    state.progress(yielded / total, f"reading headers {yielded}/{total}")
            finally:
                for f in futures:
                    f.cancel()
        except BrokenProcessPool:  # e.g. a worker was killed: read the rest here
            decoders.mark_broken()
    for n in range(yielded, len(paths)):
        p = paths[n]
        if n % 16 == 0:
            state.progress(n / total, f"reading headers {n}/{total}")
        try:
            yield p, read_header(p)
        except MedviewError as exc:
            yield p, exc


# -- grouping and geometry ---------------------------------------------------------


def _orientation_key(o: tuple[float, ...] | None) -> tuple[float, ...] | None:
    return None if o is None else tuple(round(v, 3) for v in o)


def group_series(headers: list[InstanceInfo]) -> list[SeriesInfo]:
    """Group instances by SeriesInstanceUID, split on geometry changes, order slices."""
    by_uid: OrderedDict[str, list[InstanceInfo]] = OrderedDict()
    for h in headers:
        uid = h.series_uid or f"nouid:{h.path}"
        by_uid.setdefault(uid, []).append(h)
    out: list[SeriesInfo] = []
    for uid, items in by_uid.items():
        parts: OrderedDict[tuple, list[InstanceInfo]] = OrderedDict()
        for h in items:
            key = (
                h.rows,
                h.columns,
                _orientation_key(h.orientation),
                h.samples_per_pixel,
                h.photometric,
                h.frames > 1 and h.sop_uid,
            )
            parts.setdefault(key, []).append(h)
        split = len(parts) > 1
        for n, part in enumerate(parts.values(), start=1):
            sid = uid if n == 1 else f"{uid}#{n}"
            series = _make_series(sid, part)
            if split:
                series.warnings.append(
                    f"series {uid} was split into {len(parts)} parts because orientation, "
                    "size or pixel type changes; this is part {n}".replace("{n}", str(n))
                )
            out.append(series)
    return out


def _make_series(uid: str, items: list[InstanceInfo]) -> SeriesInfo:
    first = items[0]
    s = SeriesInfo(series_uid=uid).take_study_facts(first)
    s.description = first.series_description
    s.series_number = first.series_number
    s.rows, s.columns = first.rows, first.columns
    s.frames = first.frames
    s.transfer_syntax = first.transfer_syntax
    s.photometric = first.photometric
    s.kind = "dicom"
    if first.missing_uids:
        s.warnings.append(
            f"{', '.join(first.missing_uids)} missing (anonymised?): derived from other tags"
        )
    sops = [h.sop_uid for h in items]
    if len(set(sops)) < len(sops):
        s.warnings.append("several files share a SOPInstanceUID (copies of the same image?)")
    tss = {h.transfer_syntax for h in items}
    if len(tss) > 1:
        s.warnings.append(f"mixed transfer syntaxes in the series: {', '.join(sorted(tss))}")
    ordered, geometry_warnings = order_slices(items)
    s.instances = ordered
    s.warnings.extend(geometry_warnings)
    _set_geometry(s)
    return s


def order_slices(items: list[InstanceInfo]) -> tuple[list[InstanceInfo], list[str]]:
    """Sort by position along the slice normal when every slice has a position.

    Falls back to InstanceNumber (then file name) for images without geometry,
    e.g. projection radiographs, and says so when that affects a 3D series.
    """
    warnings: list[str] = []
    if len(items) == 1:
        return list(items), warnings
    o = items[0].orientation
    placed = [(h.position, h) for h in items if h.position is not None]
    if o is not None and len(placed) == len(items):
        normal = np.cross(np.array(o[:3]), np.array(o[3:]))
        keyed = sorted(placed, key=lambda ph: float(np.dot(normal, ph[0])))
        return [h for _, h in keyed], warnings
    if items[0].modality in ("CT", "MR", "PT", "NM") and len(items) > 2:
        warnings.append("slices have no ImagePositionPatient: ordered by InstanceNumber")
    return sorted(
        items,
        key=lambda h: (h.instance_number if h.instance_number is not None else 1 << 30, h.path),
    ), warnings


def _set_geometry(s: SeriesInfo) -> None:
    first = s.instances[0]
    row_sp, col_sp = first.pixel_spacing or (1.0, 1.0)
    s.spacing_known = first.pixel_spacing is not None
    n = len(s.instances)
    s.slices = n * first.frames if n > 1 else first.frames
    o = first.orientation or (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    row_dir = np.array(o[:3], dtype=float)
    col_dir = np.array(o[3:], dtype=float)
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 1e-6:
        normal = np.array([0.0, 0.0, 1.0])
        s.warnings.append("ImageOrientationPatient is degenerate; assumed axial")
    normal = normal / np.linalg.norm(normal)
    z_sp = first.spacing_between_slices or first.slice_thickness or 1.0
    if first.frames > 1 and n == 1:
        z_sp = _multiframe_spacing(first) or z_sp
    slice_dir = normal
    if n > 1 and all(h.position is not None for h in s.instances):
        pos = np.array([h.position for h in s.instances], dtype=float)
        proj = pos @ normal
        s.slice_positions = [float(v) for v in proj]
        diffs = np.diff(proj)
        dup = int(np.sum(np.abs(diffs) < 1e-3))
        if dup:
            s.warnings.append(
                f"{dup} slice(s) share a position with another slice (duplicates or several acquisitions)"
            )
        good = diffs[np.abs(diffs) >= 1e-3]
        if good.size:
            step = float(np.median(good))
            z_sp = abs(step)
            if step > 0:
                gaps = int(np.sum(good > 1.5 * step))
                if gaps:
                    missing = int(np.sum(np.round(good[good > 1.5 * step] / step) - 1))
                    s.warnings.append(
                        f"missing slices: {missing} slice(s) missing in {gaps} gap(s) (spacing {step:.3g} mm)"
                    )
                dev = float(np.max(np.abs(good - step)))
                if dev > 0.1 * step and not np.any(good > 1.5 * step):
                    s.warnings.append(
                        f"uneven slice spacing: {good.min():.3g} to {good.max():.3g} mm"
                    )
            span = pos[-1] - pos[0]
            if np.linalg.norm(span) > 1e-6:
                along = span / np.linalg.norm(span)
                angle = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(along, normal)))))))
                if angle > 0.5:
                    s.warnings.append(
                        f"gantry tilt: slices are offset along the slice plane by {angle:.1f} degrees"
                    )
                if np.dot(along, normal) < 0:
                    slice_dir = -normal
                if angle <= 0.5:
                    slice_dir = along
    elif n > 1 and first.modality in ("CT", "MR", "PT"):
        s.warnings.append("slice spacing unknown (no positions): assumed SliceThickness or 1 mm")
    s.spacing = (float(col_sp), float(row_sp), float(z_sp))
    s.origin = tuple(float(v) for v in (first.position or (0.0, 0.0, 0.0)))  # type: ignore[assignment]
    d = np.column_stack([row_dir, col_dir, slice_dir])
    s.direction = tuple(float(v) for v in d.reshape(-1))
    if not s.spacing_known and s.kind == "dicom":
        s.warnings.append("pixel spacing unknown: measurements are in pixels")
    elif first.spacing_source == "ImagerPixelSpacing":
        s.warnings.append(
            "spacing from ImagerPixelSpacing (at the detector, not corrected for magnification)"
        )


def _multiframe_spacing(info: InstanceInfo) -> float | None:
    """Slice spacing of a multi-frame file from its per-frame positions, if present."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(info.path, stop_before_pixels=True, force=True)
        per = ds.get("PerFrameFunctionalGroupsSequence")
        if per and len(per) > 1 and info.orientation is not None:
            o = info.orientation
            normal = np.cross(np.array(o[:3]), np.array(o[3:]))
            pos = []
            for item in per:
                pp = item.PlanePositionSequence[0].ImagePositionPatient
                pos.append(float(np.dot(normal, [float(v) for v in pp])))
            d = np.diff(pos)
            if d.size and np.all(np.abs(d) > 1e-6):
                return float(np.median(np.abs(d)))
        offsets = ds.get("GridFrameOffsetVector")
        if offsets and len(offsets) > 1:
            return float(abs(float(offsets[1]) - float(offsets[0])))
    except Exception:
        return None
    return None


def scan_one(path: str | os.PathLike[str]) -> SeriesInfo:
    """The first series of ``path``; raises :class:`MedviewError` when there is none."""
    res = scan(path)
    if not res.series:
        if res.errors:
            e = res.errors[0]
            raise ReadError(e.reason, e.path)
        raise ReadError("no images found", os.fspath(path))
    return res.series[0]


__all__ = [
    "add_headers",
    "dicomdir_files",
    "group_series",
    "iter_files",
    "order_slices",
    "scan",
    "scan_one",
]
