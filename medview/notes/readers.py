"""Readers for reports and notes: plain text, FHIR, IU OpenI XML, DICOM SR, folders, tar.gz.

:func:`read_documents` takes files and folders and returns every document it could
read plus one :class:`~medview.errors.FileProblem` (path and one-line reason) for each
file it could not; a bad file never stops the others.
"""

from __future__ import annotations

import base64
import binascii
import json
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from medview.errors import FileProblem
from medview.io.model import format_da
from medview.notes.model import Document, ReadResult
from medview.tasks import TaskState, ensure_state

#: Largest note read, in bytes (real reports and notes are far smaller).
MAX_NOTE_BYTES = 2 * 1024 * 1024
TEXT_SUFFIXES = (".txt", ".text", ".md", ".rpt", ".note")
FHIR_SUFFIXES = (".json", ".ndjson")
DICOM_SUFFIXES = (".dcm", ".dicom")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class NoteError(Exception):
    """One document could not be read; the message is the one-line reason."""


# --------------------------------------------------------------------------- text
def decode_text(data: bytes, what: str = "note") -> str:
    """Bytes of a note -> str; raises NoteError for empty, binary, huge or non-UTF-8 data."""
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(
            f"{what} too large ({len(data) / 1e6:.1f} MB; medview reads notes up to "
            f"{MAX_NOTE_BYTES / 1e6:.0f} MB)"
        )
    if b"\x00" in data[:8192]:
        raise NoteError(f"binary data, not a text {what}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NoteError(
            f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise NoteError(f"empty {what}")
    return text


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_NOTE_BYTES * 4:
            raise NoteError(f"file too large ({size / 1e6:.1f} MB)")
        return path.read_bytes()
    except OSError as exc:
        raise NoteError(f"cannot read: {exc.strerror or exc}") from None


def read_text_file(path: Path) -> Document:
    """A plain-text report or note."""
    text = decode_text(_read_bytes(path))
    return Document(id=str(path), text=text, source=str(path), kind="text", title=path.name)


# --------------------------------------------------------------------------- IU XML
def parse_iu_xml(data: bytes, name: str) -> Document:
    """One report of the Indiana University chest X-ray collection (OpenI XML).

    The text holds the COMPARISON, INDICATION, FINDINGS and IMPRESSION sections as
    ``LABEL: text`` lines; ``meta["sections"]`` has them by name and
    ``meta["mesh"]`` the indexers' ``<major>`` headings.
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise NoteError(f"invalid XML ({exc})") from None
    sections: dict[str, str] = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").strip().upper()
        if label:
            sections[label] = " ".join("".join(node.itertext()).split())
    if not sections:
        raise NoteError("XML without report sections (AbstractText)")
    uid = root.find("uId")
    rid = uid.get("id") if uid is not None and uid.get("id") else Path(name).stem
    mesh = [(m.text or "").strip() for m in root.iter("major") if (m.text or "").strip()]
    date = root.findtext("articleDate") or None
    lines = [f"{k}: {v}" for k, v in sections.items()]
    return Document(
        id=f"{name}",
        text="\n".join(lines) + "\n",
        source=name,
        kind="iu-xml",
        date=date,
        title=str(rid),
        meta={"report_id": str(rid), "sections": sections, "mesh": mesh},
    )


def iu_plain_text(sections: dict[str, str]) -> str:
    """The FINDINGS/IMPRESSION text an IU report is judged on (``FINDINGS: ...`` lines)."""
    parts = [f"{k}: {sections[k]}" for k in ("FINDINGS", "IMPRESSION") if sections.get(k)]
    return "\n".join(parts) + "\n"


def iter_tar(path: Path, problems: list[FileProblem]) -> Iterator[Document]:
    """Documents inside a .tar(.gz) of IU XML and/or text files."""
    try:
        tf = tarfile.open(path)
    except (OSError, tarfile.TarError) as exc:
        problems.append(FileProblem(str(path), f"cannot open archive: {exc}"))
        return
    with tf:
        for member in tf:
            if not member.isfile():
                continue
            low = member.name.lower()
            label = f"{path}#{member.name}"
            if not (low.endswith(".xml") or low.endswith(TEXT_SUFFIXES)):
                continue
            try:
                fh = tf.extractfile(member)
                data = fh.read() if fh is not None else b""
                if low.endswith(".xml"):
                    yield parse_iu_xml(data, label)
                else:
                    yield Document(label, decode_text(data), str(path), "text", title=member.name)
            except NoteError as exc:
                problems.append(FileProblem(label, str(exc)))
            except (OSError, tarfile.TarError) as exc:
                problems.append(FileProblem(label, f"cannot read from archive: {exc}"))


# --------------------------------------------------------------------------- FHIR
def _ref(ref: Any) -> str | None:
    if isinstance(ref, dict):
        ref = ref.get("reference")
    if not isinstance(ref, str) or not ref.strip():
        return None
    ref = ref.strip()
    if ref.startswith("urn:uuid:"):
        return ref[9:]
    return ref.rstrip("/").rsplit("/", 1)[-1]


def _attachment_text(att: Any, what: str) -> str | None:
    """Text of a FHIR Attachment (``data`` base64); None for non-text attachments."""
    if not isinstance(att, dict):
        raise NoteError(f"{what}: attachment is not an object")
    ctype = str(att.get("contentType") or "text/plain").lower()
    if not ctype.startswith("text/"):
        return None
    data = att.get("data")
    if data is None:
        return None
    if not isinstance(data, str):
        raise NoteError(f"{what}: attachment data is not a base64 string")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what}: malformed base64 in attachment") from None
    return decode_text(raw, what="attachment")


def _coding_display(concept: Any) -> tuple[str, str]:
    if not isinstance(concept, dict):
        return "", ""
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or concept.get("text") or ""), str(c.get("code") or "")
    return str(concept.get("text") or ""), ""


def _fhir_resources(path: Path) -> Iterator[dict]:
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NoteError("not valid UTF-8 JSON") from None
    if path.suffix.lower() == ".ndjson":
        objs = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    objs.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise NoteError(f"invalid JSON on line {i} ({exc.msg})") from None
    else:
        try:
            objs = [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise NoteError(f"invalid JSON at line {exc.lineno} ({exc.msg})") from None

    def walk(o: Any) -> Iterator[dict]:
        if isinstance(o, list):
            for x in o:
                yield from walk(x)
        elif isinstance(o, dict):
            if o.get("resourceType") == "Bundle":
                for e in o.get("entry") or []:
                    if isinstance(e, dict):
                        yield from walk(e.get("resource"))
            elif "resourceType" in o:
                yield o

    yield from walk(objs)


def read_fhir_file(path: Path, problems: list[FileProblem]) -> list[Document]:
    """Notes from a FHIR bundle / resource / NDJSON file.

    ``DiagnosticReport.presentedForm`` (+ ``conclusion``) and
    ``DocumentReference.content.attachment``; a note present both ways (Synthea
    writes each note twice) is kept once. Each document gets the patient's
    Condition (SNOMED) and medication (RxNorm) display names from the same file as
    ``codes``, to link problems and medications.
    """
    resources = list(_fhir_resources(path))
    codes: dict[str, dict[str, dict[str, str]]] = {}
    for res in resources:
        rtype = res.get("resourceType")
        pid = _ref(res.get("subject") or res.get("patient"))
        if not pid:
            continue
        if rtype == "Condition":
            disp, code = _coding_display(res.get("code"))
            if disp:
                codes.setdefault(pid, {}).setdefault("problems", {})[disp] = code
        elif rtype in ("MedicationRequest", "MedicationStatement", "MedicationAdministration"):
            disp, code = _coding_display(res.get("medicationCodeableConcept"))
            if disp:
                codes.setdefault(pid, {}).setdefault("medications", {})[disp] = code
    docs: list[Document] = []
    seen: set[tuple[str | None, str]] = set()
    for res in resources:
        rtype = res.get("resourceType")
        if rtype not in ("DiagnosticReport", "DocumentReference"):
            continue
        rid = str(res.get("id") or "?")
        label = f"{path}#{rtype}/{rid}"
        try:
            texts: list[str] = []
            if rtype == "DiagnosticReport":
                for att in res.get("presentedForm") or []:
                    t = _attachment_text(att, f"{rtype}/{rid}")
                    if t:
                        texts.append(t)
                concl = res.get("conclusion")
                if isinstance(concl, str) and concl.strip():
                    texts.append(f"IMPRESSION: {concl.strip()}")
                date = res.get("effectiveDateTime") or res.get("issued")
                title, _ = _coding_display(res.get("code"))
            else:
                for c in res.get("content") or []:
                    t = _attachment_text((c or {}).get("attachment"), f"{rtype}/{rid}")
                    if t:
                        texts.append(t)
                date = res.get("date") or ((res.get("context") or {}).get("period") or {}).get(
                    "start"
                )
                title, _ = _coding_display(res.get("type"))
        except NoteError as exc:
            problems.append(FileProblem(label, str(exc).split(": ", 1)[-1]))
            continue
        if not texts:
            continue
        text = "\n\n".join(texts)
        pid = _ref(res.get("subject"))
        key = (pid, text.strip())
        if key in seen:
            continue
        seen.add(key)
        pc = codes.get(pid or "", {})
        docs.append(
            Document(
                id=label,
                text=text,
                source=str(path),
                kind="fhir-" + rtype.lower(),
                patient=pid,
                date=str(date) if date else None,
                title=title,
                codes={k: sorted(v.items()) for k, v in pc.items()},
            )
        )
    return docs


# --------------------------------------------------------------------------- DICOM SR
def read_dicom_sr(path: Path) -> Document:
    """The TEXT content items of a DICOM Structured Report, each as ``Concept: text``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise NoteError(f"not a readable DICOM file ({exc})") from None
    if "ContentSequence" not in ds:
        raise NoteError(
            f"DICOM {ds.get('Modality', '?')} object without report content (not an SR)"
        )
    lines: list[str] = []

    def walk(seq: Any) -> None:
        for item in seq:
            vt = item.get("ValueType", "")
            name = ""
            cn = item.get("ConceptNameCodeSequence")
            if cn:
                name = str(cn[0].get("CodeMeaning", "")).strip()
            if vt == "TEXT" and str(item.get("TextValue", "")).strip():
                value = str(item.TextValue).strip()
                lines.append(f"{name}: {value}" if name else value)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    if not lines:
        raise NoteError("DICOM SR without text content")
    date = format_da(ds.get("ContentDate") or ds.get("StudyDate")) or None
    return Document(
        id=str(path),
        text="\n".join(lines) + "\n",
        source=str(path),
        kind="dicom-sr",
        patient=str(ds.get("PatientID") or "") or None,
        date=date,
        title=str(ds.get("SeriesDescription") or ds.get("StudyDescription") or ""),
        meta={"study_uid": str(ds.get("StudyInstanceUID") or "")},
    )


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


# --------------------------------------------------------------------------- dispatch
def _read_one(path: Path, problems: list[FileProblem], in_folder: bool) -> list[Document]:
    low = path.name.lower()
    try:
        if low.endswith(TAR_SUFFIXES):
            return list(iter_tar(path, problems))
        if low.endswith(FHIR_SUFFIXES):
            return read_fhir_file(path, problems)
        if low.endswith(".xml"):
            return [parse_iu_xml(_read_bytes(path), str(path))]
        if low.endswith(DICOM_SUFFIXES) or (path.suffix == "" and _is_dicom(path)):
            try:
                return [read_dicom_sr(path)]
            except NoteError:
                if in_folder:  # image objects of a study folder are not notes
                    return []
                raise
        if low.endswith(TEXT_SUFFIXES) or not in_folder:
            return [read_text_file(path)]
    except NoteError as exc:
        problems.append(FileProblem(str(path), str(exc)))
    return []


def read_documents(
    paths: Iterable[str | PathLike[str]], state: TaskState | None = None
) -> ReadResult:
    """Documents from files and folders (recursive); unreadable files become problems."""
    state = ensure_state(state)
    files: list[tuple[Path, bool]] = []
    result = ReadResult()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend((f, True) for f in sorted(path.rglob("*")) if f.is_file())
        elif path.exists():
            files.append((path, False))
        else:
            result.problems.append(FileProblem(str(path), "no such file or folder"))
    for i, (f, in_folder) in enumerate(files):
        state.progress(i / max(len(files), 1), f"reading {f.name}")
        result.documents.extend(_read_one(f, result.problems, in_folder))
    state.progress(1.0, f"{len(result.documents)} documents")
    return result


def document_from_text(text: str, doc_id: str = "<text>", patient: str | None = None) -> Document:
    """A Document for text already in memory (e.g. pasted into the panel)."""
    return Document(id=doc_id, text=text, source=doc_id, kind="text", patient=patient)


__all__ = [
    "MAX_NOTE_BYTES",
    "NoteError",
    "decode_text",
    "document_from_text",
    "iu_plain_text",
    "iter_tar",
    "parse_iu_xml",
    "read_dicom_sr",
    "read_documents",
    "read_fhir_file",
    "read_text_file",
]
