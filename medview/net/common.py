"""Shared pieces of the networking core: error types, transfer syntaxes, UID checks."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from medview.errors import MedviewError

log = logging.getLogger("medview.net")

DEFAULT_CALLING_AET = "MEDVIEW"
DEFAULT_TIMEOUT = 30.0

# Service SOP classes (DICOM PS3.4 annexes A and C). pynetdicom's ``sop_class`` module
# creates its names at import time, which a type checker cannot see, so they are named here.
VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII, no backslash


class NetError(MedviewError):
    """A networking error with a one-line reason; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class RemoteRefused(NetError):
    """The remote answered but refused (association rejected, failure status) or found nothing."""

    exit_code = 1


class Unreachable(NetError):
    """No answer: connection refused, timeout, name not resolved."""

    exit_code = 2


class BadRequest(NetError):
    """The request itself is invalid (bad UID, date, AE title, missing option)."""

    exit_code = 2


def valid_uid(uid: object) -> bool:
    """A syntactically valid DICOM UID (digits and dots, no leading zeros, <= 64 chars).

    Received UIDs become file names in the store, so this also keeps ``..`` and path
    separators out of it."""
    return isinstance(uid, str) and 0 < len(uid) <= 64 and bool(_UID_RE.match(uid))


def check_uid(uid: str, what: str) -> str:
    """Return ``uid`` stripped, or raise :class:`BadRequest` naming ``what``."""
    uid = (uid or "").strip()
    if not valid_uid(uid):
        raise BadRequest(f"{what} {uid!r} is not a valid DICOM UID")
    return uid


def check_aet(aet: str, what: str = "AE title") -> str:
    """Return ``aet`` stripped, or raise :class:`BadRequest` (1-16 printable ASCII chars)."""
    aet = (aet or "").strip()
    if not _AET_RE.match(aet):
        raise BadRequest(f"{what} {aet!r} must be 1 to 16 printable ASCII characters")
    return aet


_DATE_RE = re.compile(r"^(\d{8})?(-(\d{8})?)?$")


def check_date_range(text: str | None) -> str | None:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``-YYYYMMDD`` or ``YYYYMMDD-``; else BadRequest."""
    if not text:
        return None
    text = text.strip()
    if not _DATE_RE.match(text) or text == "-":
        raise BadRequest(f"study date {text!r} must be YYYYMMDD or YYYYMMDD-YYYYMMDD")
    return text


# Transfer syntaxes medview's readers decode: the native ones always, compressed ones when
# a pydicom pixel decoder is installed for them.
_NATIVE = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
]
_COMPRESSED = [
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
]


@lru_cache(maxsize=1)
def accepted_transfer_syntaxes() -> tuple[str, ...]:
    """Transfer syntaxes the storage SCP accepts: native first, then decodable compressed."""
    from pydicom.pixels import get_decoder

    out = list(_NATIVE)
    for ts in _COMPRESSED:
        try:
            if get_decoder(ts).is_available:
                out.append(ts)
        except Exception:  # no decoder registered for this syntax in this pydicom
            continue
    return tuple(out)


# The storage SOP classes proposed in the SCP role for C-GET. An association carries at
# most 128 presentation contexts and the sender picks one transfer syntax per context, so
# image classes get one context per common encoding (the remote then sends what it stores
# instead of transcoding, which many PACS cannot do) and other classes one native context.
GET_IMAGE_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX processing
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1",  # MG processing
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary capture
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT image
]
GET_OTHER_CLASSES = [
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale softcopy presentation state
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
]
_GET_ENCODINGS = [
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.5",  # RLE
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
]


def get_storage_contexts() -> list[tuple[str, list[str]]]:
    """(SOP class, transfer syntaxes) contexts to propose in the SCP role for C-GET."""
    native = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    ok = set(accepted_transfer_syntaxes())
    out: list[tuple[str, list[str]]] = []
    for sop in GET_IMAGE_CLASSES:
        out.append((sop, native))
        out.extend((sop, [ts]) for ts in _GET_ENCODINGS if ts in ok)
    out.extend((sop, native) for sop in GET_OTHER_CLASSES)
    return out
