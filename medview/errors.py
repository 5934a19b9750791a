"""Error types shared by the core.

Every error a user can cause with a file (truncated, corrupt, unsupported) is a
:class:`MedviewError` carrying the offending path and a one-line reason, so the
CLI and the GUI can show ``path: reason`` instead of a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike


class MedviewError(Exception):
    """A user-facing error: ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, reason: str, path: str | PathLike[str] | None = None) -> None:
        self.reason = " ".join(str(reason).split())  # force one line
        self.path = str(path) if path is not None else None
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


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

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def one_line(exc: BaseException) -> str:
    """A single-line description of any exception, for logs and notifications."""
    if isinstance(exc, MedviewError):
        return str(exc)  # "path: reason": a notification must name the file
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
