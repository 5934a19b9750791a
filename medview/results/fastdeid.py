"""Fast path of the anonymised export: de-identify a file's header element by element from its
bytes, remembering what each distinct element became.

Every rule of the profile (:class:`~medview.results.deid.Deidentifier`) acts on one element at
a time and is deterministic within one export (keyed UID hash, fixed date shift, fixed dummy
values); only Patient Name / Patient ID (one pseudonym per patient) and the de-identification
marks depend on the whole dataset. So the top-level elements of a file are walked as bytes
(little-endian files: explicit or implicit VR, sequences of defined or undefined length) and:

* elements the profile keeps are copied as they are, removed ones dropped, without decoding;
* every other element (UIDs, names, dates, sequences) goes through the very same
  ``Deidentifier.dataset`` code on a one-element dataset read by pydicom, and its output bytes
  are remembered for that exact input (with the file's Specific Character Set): the next file
  of the series, which repeats most of them, needs no pydicom at all for those;
* Patient Name / ID and the marks are written as ``Deidentifier.dataset`` writes them.

Anything unusual (no preamble, big endian, deflate, a malformed length, an element after the
pixel data, a truncated file, a DICOMDIR) returns None: the caller takes the pydicom path,
which also gives the one-line reason for files it refuses. The tests check both paths give
the same dataset.
"""

from __future__ import annotations

import io
import os
import struct
from typing import Any

from medview.io.filemeta import LONG_VRS, file_meta_bytes
from medview.results.deid import EXTRA_RULES, PIXEL_TAGS, Deidentifier, resolve_action, rule_for

IMPLICIT = "1.2.840.10008.1.2"
NOT_LITTLE = ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")  # big endian, deflate
PIXEL_DATA = 0x7FE00010
PATIENT_TAGS = (0x00100010, 0x00100020)
MARK_TAGS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)
CHARSET = 0x00080005
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: bytes read first (a CT header is 2-10 kB); the rest of the file when the header is longer
PREFIX = 1 << 14
#: the most remembered elements per process (then the memory starts again)
MAX_MEMO = 50000
UNDEFINED = 0xFFFFFFFF


class _Fallback(Exception):
    """Not for the fast path: the caller uses pydicom."""


class _NeedMore(Exception):
    """The header goes beyond the bytes read so far."""


_MEMO: dict[tuple[bytes, ...], Any] = {}
_MEMO_OWNER: list[bytes] = [b""]
_VR_CACHE: dict[int, str] = {}
_ACTIONS: dict[int, str] = {}  # tag -> action, for the options of the memo's owner


def _memo(deid: Deidentifier) -> dict[tuple[bytes, ...], Any]:
    owner = deid.secret + repr(deid.options).encode()
    if _MEMO_OWNER[0] != owner or len(_MEMO) > MAX_MEMO:
        _MEMO.clear()
        _ACTIONS.clear()
        _CATS.clear()
        _MEMO_OWNER[0] = owner
    return _MEMO


def _dictionary_vr(tag: int) -> str:
    vr = _VR_CACHE.get(tag)
    if vr is None:
        from pydicom.datadict import dictionary_VR

        try:
            vr = str(dictionary_VR(tag))
        except KeyError:
            vr = "UN"
        _VR_CACHE[tag] = vr
    return vr


def _action(tag: int, deid: Deidentifier) -> str:
    action = _ACTIONS.get(tag)
    if action is None:
        action = resolve_action(rule_for(tag), "", deid.options) or EXTRA_RULES.get(tag, "")
        _ACTIONS[tag] = action
    return action


# ---------------------------------------------------------------- walking the bytes
_EXPLICIT = struct.Struct("<HH2sH")
_IMPLICIT = struct.Struct("<HHI")
_LONG = struct.Struct("<I")
#: the VRs of PS3.5 6.2 (bytes -> str); anything else in an explicit-VR header: pydicom path
_VRS = {
    v.encode(): v
    for v in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
        "UL UN UR US UT UV"
    ).split()
}


def _element(buf: bytes, pos: int, implicit: bool) -> tuple[int, str, int]:
    """(tag, VR or "" for implicit, end) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise _NeedMore
    if implicit or buf[pos : pos + 2] == b"\xfe\xff":
        group, elem, length = _IMPLICIT.unpack_from(buf, pos)
        vr, start = "", pos + 8
    else:
        group, elem, raw_vr, length = _EXPLICIT.unpack_from(buf, pos)
        vr = _VRS.get(raw_vr, "")
        if not vr:
            raise _Fallback
        if raw_vr in LONG_VRS:
            if pos + 12 > len(buf):
                raise _NeedMore
            (length,) = _LONG.unpack_from(buf, pos + 8)
            start = pos + 12
        else:
            start = pos + 8
    tag = group << 16 | elem
    if length == UNDEFINED:
        if vr == "UN":
            raise _Fallback  # implicit VR content inside an explicit file
        return tag, vr, _skip_items(buf, start, implicit)
    end = start + length
    if end > len(buf):
        raise _NeedMore
    return tag, vr, end


def _skip_items(buf: bytes, pos: int, implicit: bool) -> int:
    """End of an undefined-length value: items up to the sequence delimiter."""
    while True:
        if pos + 8 > len(buf):
            raise _NeedMore
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | elem
        if tag == 0xFFFEE0DD:
            return pos + 8
        if tag != 0xFFFEE000:
            raise _Fallback
        if length != UNDEFINED:
            pos += 8 + length
            continue
        pos += 8
        while True:  # an undefined-length item: elements up to the item delimiter
            if pos + 8 > len(buf):
                raise _NeedMore
            g, e = struct.unpack_from("<HH", buf, pos)
            if (g, e) == (0xFFFE, 0xE00D):
                pos += 8
                break
            pos = _element(buf, pos, implicit)[2]


def _meta(buf: bytes) -> tuple[dict[int, bytes], int]:
    """File meta elements (tag -> value bytes) and where the dataset starts."""
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise _Fallback
    pos, out = 132, {}
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        tag, _vr, end = _element(buf, pos, False)
        head = 12 if buf[pos + 4 : pos + 6] in LONG_VRS else 8
        out[tag] = buf[pos + head : end]
        pos = end
    return out, pos


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").strip("\0 ")


def _value(buf: bytes, start: int, end: int, implicit: bool) -> bytes:
    head = 8 if implicit or buf[start + 4 : start + 6] not in LONG_VRS else 12
    return buf[start + head : end]


# ---------------------------------------------------------------- de-identifying
def _tiny(blob: bytes, implicit: bool) -> Any:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset

    fp: Any = DicomBytesIO(blob)
    return read_dataset(fp, implicit, True)


def _encode(ds: Any, tag: int, implicit: bool) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    out = DicomBytesIO()
    out.is_implicit_VR = implicit
    out.is_little_endian = True
    write_data_element(out, ds[tag], ds._character_set)
    return bytes(out.getvalue())


_UID_CHARS = frozenset(b"0123456789.\\")


def _cleaned_uid(raw: bytes, tag: int, deid: Deidentifier, implicit: bool) -> bytes | None:
    """A plain UI element the way ``Deidentifier._uids`` treats it (action U: every UID but a
    well-known one replaced; none or D: every UID but a class, transfer syntax or DICOM one),
    without pydicom; None for anything unusual (then pydicom)."""
    from pydicom.datadict import keyword_for_tag

    from medview.results.deid import _is_well_known_uid, keeps_uid

    head = 8 if implicit else (12 if raw[4:6] in LONG_VRS else 8)
    value = raw[head:].rstrip(b"\0 ")
    if not value or not set(value) <= _UID_CHARS:
        return None
    action = _ACTIONS.get(tag, "")
    if action not in ("U", "", "D"):
        return None
    kw = keyword_for_tag(tag) or ""
    old = value.decode("ascii").split("\\")
    new = []
    for v in old:
        if (
            not v
            or (action != "U" and keeps_uid(kw, v))
            or (action == "U" and _is_well_known_uid(v))
        ):
            new.append(v)
        else:
            new.append(deid.uid(v))
    if new == old:
        return raw
    out = "\\".join(new).encode("ascii")
    if len(out) % 2:
        out += b"\0"
    if implicit:
        return raw[:4] + struct.pack("<I", len(out)) + out
    if len(out) > 0xFFFF:
        return None
    return raw[:6] + struct.pack("<H", len(out)) + out


def _cleaned(
    raw: bytes, charset: bytes, tag: int, deid: Deidentifier, implicit: bool, vr: str = ""
) -> bytes:
    """What ``Deidentifier.dataset`` makes of this one element (b"" when removed)."""
    from medview.results.splice import raw_item

    if vr == "UI":
        quick = _cleaned_uid(raw, tag, deid, implicit)
        if quick is not None:
            return quick
    ds = _tiny(charset + raw, implicit)
    deid.dataset(ds, top=False)
    if tag not in ds:
        return b""
    if getattr(raw_item(ds, tag), "is_raw", False):
        return raw  # unchanged: the bytes as read
    return _encode(ds, tag, implicit)


def _patient(
    parts: dict[int, bytes], charset: bytes, deid: Deidentifier, implicit: bool
) -> list[tuple[int, bytes]]:
    """Patient Name, Patient ID (the pseudonym) and the marks, as ``dataset(top=True)``."""
    ds = _tiny(charset + b"".join(parts[t] for t in PATIENT_TAGS if t in parts), implicit)
    pid = str(ds.get("PatientID", "") or "")
    pname = str(ds.get("PatientName", "") or "")
    pseud = deid.pseudonym(pid, pname)
    for t in PATIENT_TAGS:
        if t in ds:
            del ds[t]
    ds.PatientName = pseud
    ds.PatientID = pseud
    deid._mark(ds)
    keep = (*PATIENT_TAGS, *MARK_TAGS)
    return [(t, _encode(ds, t, implicit)) for t in sorted(int(k) for k in ds.keys()) if t in keep]


#: tags whose value the export reports (source UIDs, burned-in text warning)
FACT_TAGS = {
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00080016: "SOPClassUID",
    0x00080060: "Modality",
    0x00280301: "BurnedInAnnotation",
}
_SPECIAL = frozenset((*FACT_TAGS, CHARSET))
DROP, KEEP, CLEAN, PATIENT = range(4)
_CATS: dict[tuple[int, str], int] = {}  # (tag, VR) -> what to do, for the memo's owner


def _vr_of(tag: int) -> str:
    return _dictionary_vr(tag)


def _category(tag: int, vr: str, deid: Deidentifier) -> int:
    """What the profile does to a top-level element: DROP, KEEP (bytes as read), CLEAN
    (through ``Deidentifier.dataset``) or PATIENT (name and ID: the pseudonym)."""
    if (tag >> 16) % 2 == 1 or (tag & 0xFFFF) == 0 or tag in MARK_TAGS:
        return DROP  # private, group length, marks (written anew)
    if tag in PATIENT_TAGS:
        return PATIENT
    if tag in PIXEL_TAGS:
        return KEEP
    if not vr or vr == "UN":
        vr = _dictionary_vr(tag)
    action = _action(tag, deid)
    if action == "X":
        return DROP
    if (action == "K" and vr != "SQ") or (action == "" and vr not in ("UI", "PN", "SQ")):
        return KEEP
    return CLEAN


def _dataset_bytes(
    buf: bytes, pos: int, implicit: bool, deid: Deidentifier
) -> tuple[list[tuple[int, bytes]], int | None, dict[str, str]]:
    """(tag, output bytes) of the top-level elements, the pixel data offset (None: none) and
    the source facts (UIDs, modality, burned-in annotation, SOP class)."""
    memo = _memo(deid)
    cats = _CATS
    out: list[tuple[int, bytes]] = []
    facts: dict[str, str] = {}
    patient: dict[int, bytes] = {}
    charset = b""
    tail = None
    enc = b"I" if implicit else b"E"
    size = len(buf)
    while pos < size:
        start = pos
        if buf[pos : pos + 4] == b"\xe0\x7f\x10\x00":  # Pixel Data: the verbatim tail
            tail = start
            break
        tag, vr, pos = _element(buf, pos, implicit)
        cat = cats.get((tag, vr))
        if cat is None:
            cat = cats[(tag, vr)] = _category(tag, vr, deid)
        if tag in _SPECIAL:
            if tag == CHARSET:
                charset = buf[start:pos]
            else:
                facts[FACT_TAGS[tag]] = _text(_value(buf, start, pos, implicit))
        if cat == KEEP:
            out.append((tag, buf[start:pos]))
        elif cat == CLEAN:
            raw = buf[start:pos]
            key = (enc, charset, raw)
            done = memo.get(key)
            if done is None:
                done = memo[key] = _cleaned(raw, charset, tag, deid, implicit, vr or _vr_of(tag))
            if done:
                out.append((tag, done))
        elif cat == PATIENT:
            patient[tag] = buf[start:pos]
    pkey: tuple[bytes, ...] = (
        b"patient",
        enc,
        charset,
        *(patient.get(t, b"") for t in PATIENT_TAGS),
    )
    gen = memo.get(pkey)
    if gen is None:
        gen = memo[pkey] = _patient(patient, charset, deid, implicit)
    out += gen  # sorted by tag by the caller
    return out, tail, facts


def _sop_uid(parts: list[tuple[int, bytes]], implicit: bool) -> str:
    for tag, raw in parts:
        if tag == 0x00080018:
            return _text(_value(raw, 0, len(raw), implicit))
    return ""


def meta_bytes(sop_class: str, sop_instance: str, ts: str) -> bytes:
    """Preamble, ``DICM`` and the file meta group medview writes (PS3.10 7.1), with
    medview's implementation class UID (see :func:`medview.io.filemeta.file_meta_bytes`)."""
    from medview.results.deid import IMPLEMENTATION_UID

    return file_meta_bytes(sop_class, sop_instance, ts, IMPLEMENTATION_UID)


def _pixel_data_is_last(f: Any, tail: int, implicit: bool, size: int) -> bool:
    """Whether the Pixel Data element at ``tail`` ends the file of ``size`` bytes."""
    f.seek(tail)
    head = f.read(12)
    if len(head) < 8:
        return False
    if implicit:
        length = struct.unpack_from("<I", head, 4)[0]
        start = tail + 8
    elif head[4:6] in LONG_VRS and len(head) == 12:
        length = struct.unpack_from("<I", head, 8)[0]
        start = tail + 12
    else:
        return False
    if length != UNDEFINED:
        return start + length == size
    f.seek(size - 8)  # encapsulated: the file ends with the sequence delimiter
    return f.read(8) == b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def fast_anonymize(
    path: str, deid: Deidentifier, inline: bool = False
) -> tuple[bytes, int | None, dict[str, Any]] | None:
    """(header bytes, offset of the verbatim pixel tail or None, source facts) as
    :func:`medview.results.export.anonymize_file` returns them, or None: use that.
    ``inline``: read the whole file once and return the whole output (tail None), so the
    writer does not open the source again."""
    try:
        with open(path, "rb") as f:
            buf = f.read() if inline else f.read(PREFIX)
            try:
                res = _anonymize(buf, deid, whole=inline or len(buf) < PREFIX)
            except _NeedMore:
                if inline:
                    return None
                buf += f.read()
                res = _anonymize(buf, deid, whole=True)
            head, tail, source = res
            implicit = source.pop("implicit")
            if tail is None:
                return res
            if inline:
                last = _pixel_data_is_last(io.BytesIO(buf), tail, implicit, len(buf))
            else:
                last = _pixel_data_is_last(f, tail, implicit, os.fstat(f.fileno()).st_size)
            if not last:
                return None
            return (head + buf[tail:], None, source) if inline else res
    except (_Fallback, _NeedMore, struct.error, OSError, ValueError, KeyError):
        return None


def _anonymize(
    buf: bytes, deid: Deidentifier, whole: bool
) -> tuple[bytes, int | None, dict[str, Any]]:
    from medview.results.deid import burned_in_warning

    meta_in, pos = _meta(buf)
    ts = _text(meta_in.get(0x00020010, b""))
    if not ts or ts in NOT_LITTLE:
        raise _Fallback
    implicit = ts == IMPLICIT
    parts, tail, facts = _dataset_bytes(buf, pos, implicit, deid)
    if tail is None and not whole:
        raise _NeedMore  # maybe not the whole file: read it all (or use pydicom)
    sop_class = facts.get("SOPClassUID") or _text(meta_in.get(0x00020002, b""))
    if not sop_class or sop_class == DICOMDIR_CLASS:
        raise _Fallback
    sop = _sop_uid(parts, implicit)
    if not sop and meta_in.get(0x00020003):
        sop = deid.uid(_text(meta_in[0x00020003]))
    if not sop:
        raise _Fallback
    parts.sort(key=lambda p: p[0])
    data = b"".join(raw for _t, raw in parts)
    source = {
        "study": facts.get("StudyInstanceUID", ""),
        "series": facts.get("SeriesInstanceUID", ""),
        "warning": burned_in_warning(facts),
        "implicit": implicit,
    }
    return meta_bytes(sop_class, sop, ts) + data, tail, source
