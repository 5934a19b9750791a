"""One-line reasons for files pydicom or a pixel decoder could not read.

pydicom's parser messages can quote raw element bytes (names, IDs, up to kilobytes of a
corrupt header), so header failures are described in fixed words plus the exception
type; decoder messages are cut short.
"""

from __future__ import annotations

from medview.io.model import InstanceInfo


def parse_failure(exc: BaseException) -> str:
    """A one-line reason for a header pydicom could not parse. pydicom's messages can
    quote raw element bytes (names, IDs), so only fixed wording and the exception type
    are used."""
    text = str(exc)[:2000]
    if "DICM" in text or "File is missing DICOM File Meta" in text or "preamble" in text:
        return "not a DICOM file"
    low = text.lower()
    if "length" in low or "value" in low and "exceeds" in low:
        detail = "an element length is corrupt"
    elif "end of file" in low or "truncat" in low or isinstance(exc, EOFError):
        detail = "truncated file"
    elif "transfer syntax" in low:
        detail = "the transfer syntax does not match the data"
    else:
        detail = "corrupt header"
    return f"not a readable DICOM file ({detail}; {type(exc).__name__})"


def decode_failure(exc: BaseException, info: InstanceInfo, available: bool) -> str:
    """A one-line reason for pixel data a decoder could not read."""
    text = " ".join(str(exc).split())
    low = text.lower()
    if "less than expected" in low or "truncat" in low or "end of file" in low:
        return f"truncated or corrupt pixel data ({text[:100]})"
    if "no pixel data" in low:
        return "no pixel data"
    if (
        "unable to decode" in text.lower()
        or "no available" in text.lower()
        or "plugin" in text.lower()
    ):
        name = ts_name(info.transfer_syntax)
        if "exceptions were raised by all" in low and available:
            return f"corrupt compressed pixel data: no installed {name} decoder could read it"
        return f"unsupported transfer syntax {name}: no installed decoder could read it"
    if (
        "buffer" in text.lower()
        or "length" in text.lower()
        or "short" in text.lower()
        or "truncat" in text.lower()
    ):
        return f"truncated or corrupt pixel data ({text[:120]})"
    return f"could not decode pixel data ({type(exc).__name__}: {text[:120]})"


def ts_name(uid: str) -> str:
    """``name (uid)`` of a transfer syntax."""
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return f"{name} ({uid})" if name and name != uid else uid
    except Exception:
        return uid or "(none)"


def short_error(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to a readable length."""
    text = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["decode_failure", "parse_failure", "short_error", "ts_name"]
