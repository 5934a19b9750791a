"""Export DICOM files to a folder or a zip, optionally de-identified (PS3.15 Annex E).

``export_paths`` is the one entry point for the CLI (``medview export``) and, later, the GUI
(it takes a :class:`~medview.tasks.TaskState`). De-identified files are renamed
``study_001/series_001/IM00001.dcm`` (original names can carry identifiers); a plain export
keeps the names relative to each input. DICOMDIR files are not exported (their records name
the patient; rebuild one from the export).
"""

from __future__ import annotations

import io
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from medview.errors import FileProblem
from medview.results.deid import (
    IMPLEMENTATION_UID,
    PIXEL_TAGS,
    Deidentifier,
    ProfileOptions,
    burned_in_warning,
)
from medview.results.fastdeid import fast_anonymize
from medview.results.splice import element_starts, file_bytes, raw_item, splice_dataset
from medview.tasks import TaskState, ensure_state

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class ExportReport:
    """What an export wrote, skipped and warned about."""

    out: str
    anonymized: bool
    options: dict[str, Any]
    written: list[dict[str, str]] = field(default_factory=list)  # {"source", "output"}
    skipped: list[FileProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    studies: dict[str, list[str]] = field(default_factory=dict)  # original study -> series UIDs
    study_files: dict[str, int] = field(default_factory=dict)  # original study -> files written
    zip_path: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "zip": self.zip_path,
            "anonymized": self.anonymized,
            "options": self.options,
            "files": len(self.written),
            "written": self.written,
            "skipped": [p.as_dict() for p in self.skipped],
            "warnings": self.warnings,
            "studies": len(self.studies),
            "seconds": round(self.seconds, 3),
        }


class ExportOptions(TypedDict, total=False):
    """The keyword options of :func:`export_paths` besides ``anonymize`` (what
    :func:`medview.results.jobs.export_job` passes on); an absent one takes its default."""

    shift_days: int | None
    keep_patient_characteristics: bool
    zip_output: bool


def _input_files(paths: list[str]) -> tuple[list[tuple[str, str]], list[FileProblem]]:
    """(file, name relative to its input) for every file under ``paths``."""
    files: list[tuple[str, str]] = []
    problems: list[FileProblem] = []
    for p in paths:
        if os.path.isfile(p):
            files.append((p, os.path.basename(p)))
        elif os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                for name in sorted(names):
                    full = os.path.join(root, name)
                    files.append((full, os.path.relpath(full, p)))
        else:
            problems.append(FileProblem(p, "no such file or folder"))
    return files, problems


def read_dicom(path: str, defer: bool = True) -> Any:
    """Read a DICOM file (also one without preamble); :class:`ValueError` with a reason if not."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    kw: dict[str, Any] = {"defer_size": 4096} if defer else {}
    try:
        return pydicom.dcmread(path, **kw)
    except InvalidDicomError:
        pass
    except Exception as exc:  # truncated, corrupt
        raise ValueError(f"unreadable DICOM ({' '.join(str(exc).split())[:120]})") from None
    try:
        ds = pydicom.dcmread(path, force=True, **kw)
        ok = any(k in ds for k in ("SOPClassUID", "PixelData", "PatientName", "StudyInstanceUID"))
    except Exception:
        ok = False
    if not ok:
        raise ValueError("not a DICOM file")
    return ds


def _transfer_syntax(ds: Any) -> str:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _pixel_tail(ds: Any, path: str, ts: str) -> int | None:
    """File offset of the Pixel Data element when it is the dataset's last element and can be
    copied verbatim after a rewritten header; None otherwise (then the whole dataset is written)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

    if ts == DeflatedExplicitVRLittleEndian or 0x7FE00010 not in ds:
        return None
    if any(int(t) > 0x7FE00010 for t in ds.keys()):
        return None
    raw = raw_item(ds, 0x7FE00010)
    tell = getattr(raw, "value_tell", None)
    if tell is None:
        return None
    start = int(tell) - (8 if ts == ImplicitVRLittleEndian else 12)
    with open(path, "rb") as f:
        f.seek(start)
        head = f.read(4)
    big = ts == "1.2.840.10008.1.2.2"
    expect = b"\x7f\xe0\x00\x10" if big else b"\xe0\x7f\x10\x00"
    return start if head == expect else None


def _encoding(ds: Any, ts: str) -> tuple[bool, bool] | None:
    """(implicit VR, little endian) of the transfer syntax when the dataset was read that way;
    None for deflate, unknown syntaxes and mislabelled files."""
    from pydicom.uid import UID

    uid = UID(ts)
    if not uid.is_transfer_syntax or uid.is_deflated:
        return None
    enc = (bool(uid.is_implicit_VR), bool(uid.is_little_endian))
    return enc if tuple(getattr(ds, "original_encoding", ())) == enc else None


def check_complete(ds: Any, path: str) -> None:
    """ValueError when the file ends inside its last element (pydicom reads such files
    silently, short): the pixel data or the header were cut off."""
    keys = list(ds.keys())
    if not keys:
        raise ValueError("not a DICOM file")
    raw = raw_item(ds, keys[-1])
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        if 0x7FE00010 in ds and not getattr(raw, "is_raw", True):
            _check_native_pixels(ds)
        return
    size = os.path.getsize(path)
    end = int(tell) + int(length)
    if end > size:
        where = "the pixel data" if int(keys[-1]) in PIXEL_TAGS else "the header"
        raise ValueError(f"truncated file: it ends inside {where} ({size} of {end} bytes)")
    if int(keys[-1]) not in PIXEL_TAGS and size - end >= 8 and _rest_is_element(path, end):
        raise ValueError("truncated file: it ends inside the header")


def _rest_is_element(path: str, end: int) -> bool:
    """Whether the bytes after the last parsed element start like another element (a group
    number that is not 0000, FFFC padding or zeros): a cut-off element pydicom dropped."""
    with open(path, "rb") as f:
        f.seek(end)
        head = f.read(4)
    group = int.from_bytes(head[:2], "little")
    return len(head) == 4 and group not in (0x0000, 0xFFFC, 0xFFFE)


def _check_native_pixels(ds: Any) -> None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
        have = len(ds.PixelData)
    except Exception:
        return
    if getattr(ds.file_meta, "TransferSyntaxUID", None) is not None and (
        ds.file_meta.TransferSyntaxUID.is_compressed
    ):
        return
    expected = rows * cols * frames * spp * bits // 8
    if have < expected:
        raise ValueError(f"truncated file: {have} of {expected} bytes of pixel data present")


def anonymize_file(path: str, deid: Deidentifier) -> tuple[bytes, int | None, Any, dict[str, Any]]:
    """De-identify one file: (header bytes, offset of the pixel tail copied verbatim or None
    when the header bytes are the whole file, the de-identified dataset, the source's study and
    series UIDs and burned-in-text warning). Raises ValueError with a one-line reason."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    ds = read_dicom(path)
    ts = _transfer_syntax(ds)
    encoding = _encoding(ds, ts)
    starts = element_starts(ds, encoding[0]) if encoding is not None else None
    meta_in = getattr(ds, "file_meta", None)
    if str(ds.get("SOPClassUID", "")) == DICOMDIR_CLASS or (
        meta_in is not None and str(meta_in.get("MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS
    ):
        raise ValueError("DICOMDIR not exported (its records name the patient; rebuild it)")
    check_complete(ds, path)
    tail = _pixel_tail(ds, path, ts)
    if tail is not None:
        del ds[0x7FE00010]
    else:
        for t in PIXEL_TAGS:  # load deferred pixel data before the source is left behind
            if t in ds:
                _ = ds[t].value
    source = {
        "study": str(ds.get("StudyInstanceUID", "") or ""),
        "series": str(ds.get("SeriesInstanceUID", "") or ""),
        "warning": burned_in_warning(ds),
    }
    deid.dataset(ds)
    meta = FileMetaDataset()
    sop_class = ds.get("SOPClassUID") or (
        meta_in.get("MediaStorageSOPClassUID") if meta_in else None
    )
    if not sop_class:
        raise ValueError("no SOP Class UID: not a storable DICOM object")
    meta.MediaStorageSOPClassUID = sop_class
    if ds.get("SOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif meta_in is not None and meta_in.get("MediaStorageSOPInstanceUID"):
        meta.MediaStorageSOPInstanceUID = UID(deid.uid(str(meta_in.MediaStorageSOPInstanceUID)))
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "MEDVIEW"
    ds.file_meta = meta
    if tail is not None and starts is not None and encoding is not None:
        data = splice_dataset(ds, path, starts, tail, *encoding)
        if data is not None:
            return file_bytes(meta, data), tail, ds, source
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception:
        # raw elements in an encoding other than the transfer syntax's (a mislabelled file):
        # decode everything, then write in the transfer syntax
        try:
            for key in list(ds.keys()):
                _ = ds[key]
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
        except Exception as exc:
            raise ValueError(f"cannot be written ({' '.join(str(exc).split())[:120]})") from None
    return buf.getvalue(), tail, ds, source


def export_paths(
    paths: list[str],
    out: str,
    anonymize: bool = False,
    shift_days: int | None = None,
    keep_patient_characteristics: bool = False,
    zip_output: bool = False,
    state: TaskState | None = None,
) -> ExportReport:
    """Export the DICOM files under ``paths`` to folder ``out`` (or a zip, see ``zip_output``).

    With ``zip_output`` the files go into ``out`` itself when it ends in ``.zip``, else into
    ``out/export.zip``. Unreadable and non-DICOM files are skipped with a one-line reason each.
    """
    st = ensure_state(state)
    t0 = time.perf_counter()
    opts = ProfileOptions(shift_days, keep_patient_characteristics)
    report = ExportReport(
        out=out,
        anonymized=anonymize,
        options={
            "basic_profile": anonymize,
            "shift_days": shift_days if anonymize else None,
            "keep_patient_characteristics": keep_patient_characteristics if anonymize else False,
        },
    )
    files, report.skipped = _input_files(paths)
    deid = Deidentifier(opts)
    out_path = Path(out)
    zf: zipfile.ZipFile | None = None
    if zip_output:
        zpath = out_path if out_path.suffix.lower() == ".zip" else out_path / "export.zip"
        zpath.parent.mkdir(parents=True, exist_ok=True)
        report.zip_path = str(zpath)
        zf = zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
    else:
        out_path.mkdir(parents=True, exist_ok=True)
    study_no: dict[str, int] = {}
    series_no: dict[tuple[str, str], int] = {}
    count: dict[tuple[int, int], int] = {}
    try:
        for n, (src, rel, res) in enumerate(_prepared(files, deid if anonymize else None)):
            st.progress(n / max(len(files), 1), f"{n}/{len(files)} files")
            if isinstance(res, str):
                report.skipped.append(FileProblem(src, res))
                continue
            head, tail, source = res
            study, series = source["study"], source["series"]
            if anonymize:
                s = study_no.setdefault(study, len(study_no) + 1)
                e = series_no.setdefault((study, series), len(series_no) + 1)
                k = count[(s, e)] = count.get((s, e), 0) + 1
                name = f"study_{s:03d}/series_{e:03d}/IM{k:05d}.dcm"
            else:
                name = rel.replace(os.sep, "/")
            try:
                _write(out_path, zf, name, head, src, tail)
            except OSError as exc:
                report.skipped.append(FileProblem(src, exc.strerror or str(exc)))
                continue
            _note_study(report, study, series)
            report.written.append({"source": src, "output": name})
            if source.get("warning"):
                report.warnings.append(f"{src}: {source['warning']}")
    finally:
        if zf is not None:
            zf.close()
    st.progress(1.0, f"{len(report.written)} files exported")
    report.seconds = time.perf_counter() - t0
    return report


PrepResult = str | tuple[bytes, int | None, dict[str, Any]]

#: de-identify headers from their bytes (:mod:`medview.results.fastdeid`), pydicom only for
#: the elements not seen before in this export and for unusual files; False: pydicom always
FAST_PATH = True
#: in-process fast path: read each source once, whole (True), or its header only and copy the
#: pixel data with ``sendfile`` (False)
INLINE = False

#: files per task handed to a worker process
CHUNK = 16


def prepare_file(path: str, deid: Deidentifier | None, inline: bool = False) -> PrepResult:
    """What to write for one file: (header bytes, offset of the verbatim tail or None, source
    info), or a one-line reason why it is skipped. ``deid`` None: a plain copy. ``inline``
    (in-process only): the fast path returns the whole output (one read of the source)."""
    try:
        if deid is not None:
            fast = fast_anonymize(path, deid, inline) if FAST_PATH else None
            if fast is not None:
                return fast
            head, tail, _ds, source = anonymize_file(path, deid)
            return head, tail, source
        ds = read_dicom(path, defer=True)
        source = {
            "study": str(ds.get("StudyInstanceUID", "") or ""),
            "series": str(ds.get("SeriesInstanceUID", "") or ""),
            "warning": None,
        }
        return b"", 0, source
    except ValueError as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)


def _prepare_chunk(paths: list[str], deid: Deidentifier | None) -> list[PrepResult]:
    return [prepare_file(p, deid) for p in paths]


def _prepared(
    files: list[tuple[str, str]], deid: Deidentifier | None
) -> Iterator[tuple[str, str, PrepResult]]:
    """(file, relative name, result) in input order; headers are rewritten in the shared
    decoder worker processes (:mod:`medview.io.decoders`) when there are enough files."""
    pool = None
    # the fast path is quicker in-process than the round trip to the worker processes; they
    # serve the pydicom path only
    if deid is not None and not FAST_PATH and len(files) >= 2 * CHUNK:
        from medview.io import decoders

        pool = decoders.decoder_pool()
    if pool is None:
        for src, rel in files:
            yield src, rel, prepare_file(src, deid, inline=INLINE)
        return
    from concurrent.futures.process import BrokenProcessPool

    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    futures = [pool.submit(_prepare_chunk, [f for f, _ in c], deid) for c in chunks]
    try:
        for chunk, fut in zip(chunks, futures, strict=True):
            try:
                results = fut.result()
            except BrokenProcessPool:
                from medview.io import decoders

                decoders.mark_broken()
                results = _prepare_chunk([f for f, _ in chunk], deid)
            for (src, rel), res in zip(chunk, results, strict=True):
                yield src, rel, res
    finally:
        for fut in futures:
            fut.cancel()


def _note_study(report: ExportReport, study: str, series: str) -> None:
    report.study_files[study] = report.study_files.get(study, 0) + 1
    lst = report.studies.setdefault(study, [])
    if series and series not in lst:
        lst.append(series)


def _write(
    out: Path, zf: zipfile.ZipFile | None, name: str, head: bytes, src: str, tail: int | None
) -> None:
    """Write ``head`` + the bytes of ``src`` from offset ``tail`` (nothing when None)."""
    if zf is not None:
        data = head
        if tail is not None:
            with open(src, "rb") as f:
                f.seek(tail)
                data += f.read()
        zf.writestr(name, data)
        return
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not head and tail == 0:
        shutil.copyfile(src, target)
        return
    with open(target, "wb") as fo:
        fo.write(head)
        if tail is not None:
            with open(src, "rb") as fi:
                fo.flush()
                _copy_tail(fi, fo, tail)


def _copy_tail(fi: Any, fo: Any, offset: int) -> None:
    """The bytes of ``fi`` from ``offset`` appended to ``fo``: in the kernel (``sendfile``,
    as ``shutil.copyfile`` does for a plain copy) where there is one, else through a buffer."""
    sendfile = getattr(os, "sendfile", None)
    if sendfile is not None:
        try:
            size = os.fstat(fi.fileno()).st_size
            pos = offset
            while pos < size:
                sent = sendfile(fo.fileno(), fi.fileno(), pos, min(size - pos, 1 << 30))
                if sent == 0:
                    break
                pos += sent
            if pos >= size:
                return
            offset = pos
        except OSError:
            pass  # e.g. a file system without sendfile: the buffered copy below
    fi.seek(offset)
    shutil.copyfileobj(fi, fo, 1 << 20)
