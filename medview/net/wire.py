"""Byte-level DICOM helpers for the receive path: no pydicom on the C-STORE's way.

:func:`file_meta_bytes` encodes the preamble and File Meta Information of a received
instance; :func:`header_uids` walks a little-endian dataset's elements (every element up
to the pixel data, into sequences and items at any depth) and returns its Study, Series
and SOP Instance UIDs, refusing anything whose lengths and delimiters do not add up, as
pydicom's reader would. Both are about 10x faster than pydicom's writer and reader for a
CT header (the receiver calls them once per instance, before it answers).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, cast

from medview.io import filemeta
from medview.io.filemeta import LONG_VRS

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQ_END = 0xFFFEE0DD
# where pydicom's ``stop_before_pixels`` stops: (Float / Double Float) Pixel Data
_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))
_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 64
_UIDS = {0x0020000D: 0, 0x0020000E: 1, 0x00080018: 2}  # study, series, SOP instance
# an element's header: tag and value length (implicit VR, and items and delimiters), or
# tag, VR and 16-bit length (explicit VR; a long VR's 32-bit length follows, PS3.5 7.1.2)
_IMPLICIT_HEAD = struct.Struct("<HHL")
_EXPLICIT_HEAD = struct.Struct("<HH2sH")
_UL = struct.Struct("<L")
_VR_OK = frozenset(bytes((a, b)) for a in range(65, 91) for b in range(65, 91))  # two capitals


class MalformedDataset(ValueError):
    """The bytes are not a well-formed dataset; ``str()`` says where, without values."""


def walkable(transfer_syntax: str) -> bool:
    """Whether :func:`header_uids` reads this transfer syntax's datasets (all little
    endian ones that are not deflated: the native and every compressed syntax)."""
    ts = str(transfer_syntax)
    return ts.startswith("1.2.840.10008.1.2") and ts not in (_BIG_ENDIAN, _DEFLATED)


def file_meta_bytes(sop_class: str, sop_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information (group 0002, explicit VR little
    endian) for one instance; the UIDs must be ASCII of at most 64 characters."""
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

    for uid in (sop_class, sop_uid, transfer_syntax):
        if not 0 < len(uid) <= 64 or not uid.isascii():
            raise MalformedDataset("a UID in the request is empty, too long or not ASCII")
    return filemeta.file_meta_bytes(
        sop_class, sop_uid, transfer_syntax, str(PYDICOM_IMPLEMENTATION_UID)
    )


def header_uids(data: bytes | bytearray | memoryview, transfer_syntax: str) -> tuple[str, str, str]:
    """(StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID) of a dataset encoded in
    ``transfer_syntax`` (see :func:`walkable`); "" for a missing one. Raises
    :class:`MalformedDataset` when an element runs past the end, a sequence or item is
    not closed, nesting is deeper than 64, or an explicit VR is not two letters."""
    return walk_header(data, transfer_syntax).uids


# A top-level element found by the walk: (tag, VR or b"" when implicit, value length as
# encoded (0xFFFFFFFF: undefined), value start, value end (before a sequence delimiter))
Element = tuple[int, bytes, int, int, int]


@dataclass
class WalkedHeader:
    """What :func:`walk_header` found: the UIDs, every top-level element before the pixel
    data (``elements``) and where the header ends (``end``: the pixel data element's
    start, or the end of the dataset), in ``implicit`` VR or not."""

    uids: tuple[str, str, str]
    elements: list[Element]
    end: int
    implicit: bool


def walk_header(data: bytes | bytearray | memoryview, transfer_syntax: str) -> WalkedHeader:
    """Walk a dataset as :func:`header_uids` does, keeping its top-level elements: what
    :func:`header_dataset` needs to build the header without parsing it again."""
    found = ["", "", ""]
    implicit = str(transfer_syntax) == IMPLICIT_LE
    walker = _Walker(memoryview(data), implicit, found)
    end = walker.elements(0, len(data), depth=0, top=True, until_item_end=False)
    return WalkedHeader((found[0], found[1], found[2]), walker.top, end, implicit)


def header_dataset(data: bytes, header: WalkedHeader) -> Any:
    """A pydicom Dataset of the header walked in ``data`` (the dataset's bytes up to at
    least ``header.end``), made of the raw elements pydicom's reader would have made
    (``stop_before_pixels``): values are converted by pydicom when they are read."""
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag
    from pydicom.values import empty_value_for_VR

    elems: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag, vr, length, start, end in header.elements:
        implicit = header.implicit
        vr_text: str | None = vr.decode("ascii") if vr else None
        if length == _UNDEFINED and vr_text in (None, "UN"):
            # pydicom reads these as sequences (items in implicit VR for UN, PS3.5 6.2.2)
            implicit = implicit or vr_text == "UN"
            vr_text = "SQ" if vr_text == "UN" else None
        value = data[start:end] if end > start else empty_value_for_VR(vr_text, raw=True)
        # (raw=True: b"" or None, as pydicom's reader stores an empty value)
        btag = BaseTag(tag)
        raw = cast(bytes | None, value)
        elems[btag] = RawDataElement(btag, vr_text, length, raw, start, implicit, True)
    return Dataset(elems)


class _Walker:
    def __init__(self, buf: memoryview, implicit: bool, found: list[str]) -> None:
        self.buf = buf
        self.n = len(buf)
        self.implicit = implicit
        self.found = found
        self.top: list[Element] = []

    def _item_header(self, pos: int) -> tuple[int, int]:
        """(tag, length) of the item or delimiter at ``pos`` (no VR: PS3.5 7.5)."""
        if pos + 8 > self.n:
            raise MalformedDataset(f"element header cut off at byte {pos}")
        group, elem, length = _IMPLICIT_HEAD.unpack_from(self.buf, pos)
        return group << 16 | elem, length

    def elements(
        self,
        pos: int,
        end: int,
        depth: int,
        top: bool,
        until_item_end: bool,
        implicit: bool = False,
    ) -> int:
        """Walk elements from ``pos``; returns the position after them (after the item
        delimiter when ``until_item_end``)."""
        implicit = implicit or self.implicit
        # each element's header read inline: the receiver walks every header before it
        # answers, and this loop is most of that time
        buf, n = self.buf, self.n
        implicit_head, explicit_head, ul = (
            _IMPLICIT_HEAD.unpack_from,
            _EXPLICIT_HEAD.unpack_from,
            _UL.unpack_from,
        )
        keep = self.top.append if top else None
        item_end = _ITEM_END if until_item_end else -1
        pixel_tags = _PIXEL_TAGS if top else ()
        uids, undefined, long_vrs, vr_ok = _UIDS, _UNDEFINED, LONG_VRS, _VR_OK
        while pos < end:
            if pos + 8 > n:
                raise MalformedDataset(f"element header cut off at byte {pos}")
            size = 8
            if implicit:
                group, elem, length = implicit_head(buf, pos)
                vr = b""
            else:
                group, elem, vr, length = explicit_head(buf, pos)
                if group == 0xFFFE:  # items and delimiters have no VR
                    vr, length = b"", ul(buf, pos + 4)[0]
                elif vr in long_vrs:
                    if pos + 12 > n:
                        raise MalformedDataset(f"element header cut off at byte {pos}")
                    length, size = ul(buf, pos + 8)[0], 12
                elif vr not in vr_ok:
                    raise MalformedDataset(f"invalid VR at byte {pos}")
            tag = group << 16 | elem
            if tag == item_end:
                return pos + 8
            if tag in pixel_tags:  # (empty below the top level)
                return pos
            pos += size
            if length == undefined:
                # a sequence (or UN holding one, whose items are implicit VR, or
                # encapsulated fragments): items up to the sequence delimiter
                start = pos
                pos = self.sequence(pos, depth + 1, implicit or vr == b"UN")
                if keep is not None:
                    keep((tag, vr, length, start, pos - 8))
                continue
            if pos + length > end:
                raise MalformedDataset(
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end"
                )
            if keep is not None:
                if tag in uids:
                    value = bytes(buf[pos : pos + length]).rstrip(b"\x00 ")
                    self.found[uids[tag]] = value.decode("latin-1")
                keep((tag, vr, length, pos, pos + length))
            pos += length
        if until_item_end:
            raise MalformedDataset("item without its delimiter")
        return pos

    def sequence(self, pos: int, depth: int, implicit: bool) -> int:
        if depth > _MAX_DEPTH:
            raise MalformedDataset("sequences nested too deep")
        while True:
            tag, length = self._item_header(pos)
            pos += 8
            if tag == _SEQ_END:
                return pos
            if tag != _ITEM:
                raise MalformedDataset("sequence without its delimiter")
            if length == _UNDEFINED:
                pos = self.elements(pos, self.n, depth, False, True, implicit)
            elif pos + length > self.n:
                raise MalformedDataset("item runs past the end")
            else:
                self.elements(pos, pos + length, depth, False, False, implicit)
                pos += length
