"""Header checks made before any pixel is decoded or any array is allocated.

A decoder given a header that lies (BitsAllocated 64 on a JPEG, 65535 x 65535 pixels
in a 2 KB file, a frame count with no fragments behind it) may abort the process,
panic, or allocate many gigabytes. :func:`pixel_problem` finds such files from the
header and the pixel data element's own framing alone:

* attribute combinations allowed by PS3.3 C.7.6.3 (Image Pixel Module): Samples per
  Pixel vs Photometric Interpretation, Bits Allocated / Bits Stored, Pixel
  Representation; and by PS3.5 8.2 / A.4 for the encapsulated transfer syntaxes
  (JPEG 8 or 12 bits, JPEG-LS and JPEG 2000 8 or 16 bits allocated, RLE at most 15
  segments);
* native pixel data: the element's length and the bytes present in the file against
  Rows x Columns x frames x samples x bits;
* encapsulated pixel data: every fragment inside the file, at least one fragment per
  frame (PS3.5 A.4);
* the decoded size against the per-image memory budget (:mod:`medview.io.limits`).
"""

from __future__ import annotations

import math
import os
import struct
from typing import BinaryIO

from medview.io import limits
from medview.io.model import InstanceInfo

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
DEFLATED = "1.2.840.10008.1.2.1.99"
MONO = {"MONOCHROME1", "MONOCHROME2"}
THREE_SAMPLES = {
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_420",
    "YBR_PARTIAL_422",
    "YBR_ICT",
    "YBR_RCT",
}
# (Bits Allocated allowed, largest Bits Stored) per encapsulated transfer syntax (PS3.5 8.2)
_JPEG_8 = ({8}, 8)
_JPEG_12 = ({8, 16}, 12)
_LOSSLESS = ({8, 16}, 16)
ENCAPSULATED_BITS: dict[str, tuple[set[int], int]] = {
    "1.2.840.10008.1.2.4.50": _JPEG_8,
    "1.2.840.10008.1.2.4.51": _JPEG_12,
    "1.2.840.10008.1.2.4.57": _LOSSLESS,
    "1.2.840.10008.1.2.4.70": _LOSSLESS,
    "1.2.840.10008.1.2.4.80": _LOSSLESS,
    "1.2.840.10008.1.2.4.81": _LOSSLESS,
    "1.2.840.10008.1.2.4.90": _LOSSLESS,
    "1.2.840.10008.1.2.4.91": _LOSSLESS,
    "1.2.840.10008.1.2.4.201": _LOSSLESS,
    "1.2.840.10008.1.2.4.202": _LOSSLESS,
    "1.2.840.10008.1.2.4.203": _LOSSLESS,
    "1.2.840.10008.1.2.5": ({8, 16, 32}, 32),
}
RLE = "1.2.840.10008.1.2.5"
_ITEM = b"\xfe\xff\x00\xe0"
_SEQ_END = b"\xfe\xff\xdd\xe0"
#: Most fragments walked in one file (a header check must stay quick).
MAX_FRAGMENTS = 1_000_000


def attribute_problem(info: InstanceInfo, float_bits: int | None = None) -> str | None:
    """Why the Image Pixel Module attributes of ``info`` cannot describe an image, or None.

    ``float_bits``: 32 or 64 when the pixels are Float / Double Float Pixel Data.
    """
    spp, ba, bs = info.samples_per_pixel, info.bits_allocated, info.bits_stored
    pi = info.photometric.upper().strip()
    ts = info.transfer_syntax
    if info.rows <= 0 or info.columns <= 0 or info.rows > 65535 or info.columns > 65535:
        return f"impossible image size {info.columns}x{info.rows}"
    if info.frames > 2**31 - 1:
        return f"impossible NumberOfFrames {info.frames}"
    if spp not in (1, 3):
        return f"SamplesPerPixel {spp} is not supported (1 or 3, PS3.3 C.7.6.3.1.1)"
    if pi in MONO or pi == "PALETTE COLOR":
        if spp != 1:
            return f"PhotometricInterpretation {pi} needs SamplesPerPixel 1, not {spp}"
    elif pi in THREE_SAMPLES:
        if spp != 3:
            return f"PhotometricInterpretation {pi} needs SamplesPerPixel 3, not {spp}"
    elif pi:
        return f"PhotometricInterpretation {pi[:32]!r} is not supported"
    if float_bits is not None:
        if ba != float_bits or spp != 1:
            return f"float pixel data needs BitsAllocated {float_bits} and 1 sample, not {ba}"
        return None
    if ba not in (1, 8, 16, 32):
        return f"BitsAllocated {ba} is not supported for integer pixel data (1, 8, 16 or 32)"
    if not 1 <= bs <= ba:
        return f"BitsStored {bs} does not fit BitsAllocated {ba}"
    if info.pixel_representation not in (0, 1):
        return f"PixelRepresentation {info.pixel_representation} (must be 0 or 1)"
    if pi == "PALETTE COLOR" and ba not in (8, 16):
        return f"PALETTE COLOR needs BitsAllocated 8 or 16, not {ba}"
    if spp == 3 and ba not in (8, 16):
        return f"colour images need BitsAllocated 8 or 16, not {ba}"
    if ba == 1 and (spp != 1 or ts not in NATIVE | {DEFLATED}):
        return "BitsAllocated 1 is only defined for native monochrome pixel data"
    allowed = ENCAPSULATED_BITS.get(ts)
    if allowed is not None:
        bits, max_stored = allowed
        if ba not in bits or bs > max_stored:
            return (
                f"BitsAllocated {ba} / BitsStored {bs} are not allowed for this transfer "
                f"syntax (PS3.5 8.2: BitsAllocated {'/'.join(map(str, sorted(bits)))}, "
                f"BitsStored up to {max_stored})"
            )
        if ts == "1.2.840.10008.1.2.5" and spp * ba // 8 > 15:
            return "RLE allows at most 15 segments (PS3.5 G.2)"
    return None


def decoded_bytes(info: InstanceInfo) -> int:
    """Bytes of the decoded frames of ``info`` (what a decoder will allocate)."""
    per_sample = max(1, info.bits_allocated // 8)
    return info.rows * info.columns * info.samples_per_pixel * per_sample * info.frames


def native_bytes(info: InstanceInfo) -> int:
    """Bytes native pixel data must hold (PS3.5 8.1.1; 1-bit pixels packed)."""
    samples = info.samples_per_pixel
    pi = info.photometric.upper().strip()
    if pi in ("YBR_FULL_422", "YBR_PARTIAL_422"):
        samples = 2  # chroma shared by two pixels: Y Y Cb Cr (PS3.3 C.7.6.3.1.2)
    bits = info.rows * info.columns * info.frames * info.bits_allocated
    if pi == "YBR_PARTIAL_420":
        return (bits * 3 // 2 + 7) // 8
    return (bits * samples + 7) // 8


_PIXEL_VRS = (b"OB", b"OW", b"UN", b"OD", b"OF", b"OL", b"OV")


def _read_element_head(fp: BinaryIO, pos: int, ts: str) -> tuple[int, int] | None:
    """(value length, value offset) of the pixel data element whose tag is at ``pos``."""
    fp.seek(pos)
    head = fp.read(12)
    if len(head) < 8:
        return None
    big = ts == "1.2.840.10008.1.2.2"
    # A file may declare an explicit-VR syntax yet be written implicit (pydicom reads such files
    # and warns, e.g. its SC_rgb_jpeg.dcm): pixel data in explicit VR always has one of these VRs.
    implicit = ts == "1.2.840.10008.1.2" or head[4:6] not in _PIXEL_VRS
    if implicit:
        return struct.unpack("<I", head[4:8])[0], pos + 8
    if len(head) < 12:
        return None
    return struct.unpack(">I" if big else "<I", head[8:12])[0], pos + 12


def _fragments(fp: BinaryIO, offset: int, size: int) -> tuple[int, str | None]:
    """Count the fragments after the Basic Offset Table; (count, problem or None)."""
    pos, count, first = offset, 0, True
    while count <= MAX_FRAGMENTS:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            return count, None if count else "truncated file: it ends inside the pixel data"
        tag, length = head[:4], struct.unpack("<I", head[4:])[0]
        if tag == _SEQ_END:
            return count, None
        if tag != _ITEM:
            return count, "corrupt encapsulated pixel data (an item tag is missing)"
        if length == 0xFFFFFFFF or pos + 8 + length > size:
            return (
                count,
                "truncated or corrupt pixel data: a fragment runs past the end of the file",
            )
        if not first:
            count += 1
        first = False
        pos += 8 + length
    return count, f"more than {MAX_FRAGMENTS} fragments in the pixel data"


def bytes_problem(fp: BinaryIO, pos: int, info: InstanceInfo) -> str | None:
    """Check the pixel data element at ``pos`` (its tag) against the header's sizes."""
    ts = info.transfer_syntax
    if ts == DEFLATED:
        return None  # the bytes past the header are compressed; the budget still holds
    size = os.fstat(fp.fileno()).st_size
    head = _read_element_head(fp, pos, ts)
    if head is None:
        return "truncated file: it ends inside the pixel data"
    length, offset = head
    encapsulated = length == 0xFFFFFFFF
    if ts in NATIVE or not ts:
        if encapsulated:
            return "pixel data is encapsulated but the transfer syntax is not compressed"
        expected = native_bytes(info)
        if length < expected:
            return (
                f"pixel data holds {length} bytes but Rows x Columns x frames x bits "
                f"needs {expected}"
            )
        if offset + expected > size:
            have = max(0, size - offset)
            return f"truncated file: {have} of {expected} bytes of pixel data present"
        return None
    if not encapsulated:
        return "pixel data is not encapsulated but the transfer syntax is compressed"
    count, problem = _fragments(fp, offset, size)
    if problem:
        return problem
    if count < 1 or (info.frames > 1 and count < info.frames):
        return (
            f"NumberOfFrames is {info.frames} but the pixel data holds {count} fragment(s) "
            "(at least one per frame)"
        )
    return None


def finite_problem(info: InstanceInfo) -> str | None:
    """NaN or infinite rescale values would show an all-black or all-white image."""
    for name, value in (
        ("RescaleSlope", info.rescale_slope),
        ("RescaleIntercept", info.rescale_intercept),
    ):
        if not math.isfinite(value):
            return f"{name} is {value}, not a finite number: the pixel values cannot be shown"
    return None


def pixel_problem(fp: BinaryIO, pos: int, info: InstanceInfo) -> str | None:
    """The first reason the pixels of ``info`` must not be decoded, or None.

    ``fp`` is the open file and ``pos`` the offset of the pixel data element's tag.
    """
    fp.seek(pos)
    tag = fp.read(4)
    float_bits = {b"\xe0\x7f\x08\x00": 32, b"\xe0\x7f\x09\x00": 64}.get(tag)
    float_bits = float_bits or {b"\x7f\xe0\x00\x08": 32, b"\x7f\xe0\x00\x09": 64}.get(tag)
    problem = attribute_problem(info, float_bits) or finite_problem(info)
    if problem:
        return problem
    needed = decoded_bytes(info)
    if needed > limits.image_budget():
        try:
            limits.check_budget(needed, "Rows x Columns x frames x samples", info.path)
        except Exception as exc:  # ReadError: its reason is the one line
            return str(getattr(exc, "reason", exc))
    return bytes_problem(fp, pos, info)


_plugins_ordered = False


def prefer_raising_plugins() -> None:
    """Put pydicom's GDCM plugin last for every transfer syntax, and pylibjpeg-rle after
    pydicom's own RLE decoder (idempotent).

    pydicom tries the available plugins in order and moves on when one raises; GDCM
    aborts the process on some malformed streams where pylibjpeg and Pillow raise, and
    the Rust RLE decoder panics where pydicom's raises, so they are last resorts.
    """
    global _plugins_ordered
    if _plugins_ordered:
        return
    _plugins_ordered = True
    try:
        from pydicom.pixels import get_decoder
    except ImportError:
        return
    for ts in ENCAPSULATED_BITS:
        try:
            dec = get_decoder(ts)
            for label in ("pylibjpeg", "gdcm") if ts == RLE else ("gdcm",):
                func = dec._available.get(label)
                if func is None or len(dec._available) < 2:
                    continue
                dec.remove_plugin(label)
                dec.add_plugin(label, (func.__module__, func.__name__))
        except Exception:  # an unknown syntax or a pydicom without these internals
            continue


__all__ = [
    "prefer_raising_plugins",
    "ENCAPSULATED_BITS",
    "attribute_problem",
    "bytes_problem",
    "decoded_bytes",
    "finite_problem",
    "native_bytes",
    "pixel_problem",
]
