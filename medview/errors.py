"""Error types shared by the core.

Every error a user can cause with a file (truncated, corrupt, unsupported) is a
:class:`MedviewError` carrying the offending path and a one-line reason, so the
CLI and the GUI can show ``path: reason`` instead of a traceback.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from os import PathLike
from typing import Any

#: Control characters (C0, DEL, C1) and Unicode bidi/format controls that can move the
#: cursor, retitle a terminal or reorder text when printed.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
#: Longest text one reason may carry (a corrupt file must not flood a terminal or a log).
MAX_REASON = 300


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int | None = None) -> str:
    """``text`` safe for a terminal, a log line or a GUI label: one line, every control
    character and escape sequence written out as ``\\xNN`` (``ESC [2J`` becomes
    ``\\x1b[2J``), cut to ``limit`` characters with an ellipsis.

    The one escaping helper: the CLI commands, the import report and the GUI
    notifications pass any text that came from a file (descriptions, names, UIDs,
    paths, reasons) through it.
    """
    s = _UNSAFE.sub(_escape_char, str(text))
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, Infinity) replaced by None (JSON ``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class MedviewError(Exception):
    """A user-facing error: ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None) -> None:
        # one line, no control characters, bounded: a reason never carries a file's bytes
        self.reason = printable(" ".join(str(reason).split()), MAX_REASON)
        self.path = str(path) if path is not None else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{printable(self.path)}: {self.reason}" if self.path else self.reason


class ReadError(MedviewError):
    """A file could not be read or decoded."""


class UnsupportedError(MedviewError):
    """A file is readable but uses something medview does not support."""


class Cancelled(Exception):
    """Raised inside a task when its :class:`~medview.tasks.TaskState` was cancelled."""


@dataclass(frozen=True)
class FileProblem:
    """A problem with one file, reported and skipped while the rest is read."""

    path: str
    reason: str

    def __post_init__(self) -> None:
        # one line, escaped, bounded: a reason never carries kilobytes of a file's bytes
        object.__setattr__(self, "reason", printable(" ".join(self.reason.split()), MAX_REASON))

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}

    def __str__(self) -> str:
        return f"{printable(self.path)}: {self.reason}"


def one_line(exc: BaseException) -> str:
    """A single-line description of any exception, for logs and notifications."""
    if isinstance(exc, MedviewError):
        return str(exc)  # "path: reason": a notification must name the file
    text = printable(" ".join(str(exc).split()), MAX_REASON)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
