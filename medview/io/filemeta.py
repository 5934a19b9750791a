"""Explicit VR little endian encoding of the File Meta Information (DICOM PS3.10 7.1)
and the VRs with a 4-byte length (PS3.5 7.1.2), shared by the byte-level writers: the
network receiver (:mod:`medview.net.wire`) and the fast de-identifying export
(:mod:`medview.results.fastdeid`). Written here, not with pydicom, because those paths
copy datasets without parsing them (pydicom's ``write_file_meta_info`` needs a Dataset
and costs more than the copy itself)."""

from __future__ import annotations

import struct

# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
IMPLEMENTATION_VERSION = b"MEDVIEW "  # SH, padded to even length


def short_element(tag: int, vr: bytes, value: bytes) -> bytes:
    """An explicit VR little endian element with a 2-byte length."""
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def uid_value(uid: str) -> bytes:
    """A UID's value bytes, padded with NUL to an even length (PS3.5 9.1)."""
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def file_meta_bytes(
    sop_class: str, sop_instance: str, transfer_syntax: str, implementation_uid: str
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group: version, SOP class and
    instance (left out when empty), transfer syntax, implementation class UID and
    medview's implementation version name -- what pydicom writes for the same values."""
    body = b"".join(
        (
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            short_element(0x00020002, b"UI", uid_value(sop_class)),
            short_element(0x00020003, b"UI", uid_value(sop_instance)) if sop_instance else b"",
            short_element(0x00020010, b"UI", uid_value(transfer_syntax)),
            short_element(0x00020012, b"UI", uid_value(implementation_uid)),
            short_element(0x00020013, b"SH", IMPLEMENTATION_VERSION),
        )
    )
    group_length = short_element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + group_length + body
