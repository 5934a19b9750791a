"""Small helpers shared by the CLI commands (kept light: no heavy imports)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any


def print_json(obj: Any, indent: int | None = None) -> None:
    """Write ``obj`` as JSON to stdout (one line unless ``indent``); unknown types as str."""
    json.dump(obj, sys.stdout, indent=indent, default=str)
    sys.stdout.write("\n")


def error(
    path: str | os.PathLike[str] | BaseException | None,
    reason: str | None = None,
    *,
    prog: str = "medview",
    status: int = 2,
) -> int:
    """Print ONE line ``prog: path: reason`` to stderr and return ``status`` (2: bad input).

    The one error exit of every command. ``error(path, reason)`` names the file;
    ``error(exc)`` prints the exception's message (a
    :class:`~medview.errors.MedviewError` reads ``path: reason``);
    ``error("message")`` prints the message.
    """
    if isinstance(path, BaseException):  # MedviewError: "path: reason" already
        said = str(path).strip() or type(path).__name__
        text = said if reason is None else f"{said}: {reason}"
    elif reason is None:
        text = str(path)
    elif path is None or str(path) == "":
        text = reason
    else:
        text = f"{os.fspath(path)}: {reason}"
    from medview.errors import printable  # control characters from a file never reach a terminal

    print(f"{prog}: {printable(' '.join(text.split()))}", file=sys.stderr)
    return status


class CommandError(ValueError):
    """A bad input found by a shared helper (:func:`open_database`, :func:`need_paths`):
    ``medview.cli.main`` prints it as :func:`error` does, one line ``prog: message``, and
    exits with ``status`` (2), so a command need not catch it to return the status itself."""

    def __init__(self, message: str, prog: str = "medview", status: int = 2) -> None:
        super().__init__(message)
        self.prog = prog
        self.status = status

    def report(self) -> int:
        """Print the one line; the exit status."""
        return error(str(self), prog=self.prog, status=self.status)


def need_paths(*paths: str, prog: str = "medview") -> None:
    """:class:`CommandError` ``PATH: no such file or folder`` for the first missing path."""
    for path in paths:
        if not os.path.exists(path):
            raise CommandError(f"{path}: no such file or folder", prog=prog)


def parse_window(text: str | None) -> tuple[float, float] | None:
    """'CENTER,WIDTH' -> (center, width); raises ValueError with a clear message."""
    if not text:
        return None
    try:
        c, w = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--window must be CENTER,WIDTH (e.g. 40,400), not {text!r}") from None
    if w < 1:
        raise ValueError("--window width must be at least 1")
    return c, w


def folder_contents(path: str) -> str:
    """What a folder with no readable image holds, for a one-line reason:
    ``"an empty folder"`` or ``"12 other files (.json)"``."""
    exts: Counter[str] = Counter()
    for _root, _dirs, files in os.walk(path):
        for name in files:
            low = name.lower()
            ext = ".nii.gz" if low.endswith(".nii.gz") else os.path.splitext(low)[1]
            exts[ext or "no extension"] += 1
    n = sum(exts.values())
    if not n:
        return "an empty folder"
    kinds = ", ".join(e for e, _ in exts.most_common(4)) + (", ..." if len(exts) > 4 else "")
    return f"{n} other file{'s' if n != 1 else ''} ({kinds})"


def nothing_found(path: str, reason: str, what: str = "images") -> str:
    """One line for scan's "empty folder" problem that is true of folders that are not
    empty (e.g. CSV/JSON records): ``"no images found under DIR: 10 other files (.csv)"``.
    Other reasons are returned as ``"path: reason"``."""
    if reason.startswith("empty folder") and os.path.isdir(path):
        return f"no {what} found under {path}: {folder_contents(path)}"
    return f"{path}: {reason}"


def not_dicom_reason(path: str, kind: str) -> str:
    """Why a non-DICOM file found by ``scan`` is not put into the study database."""
    low = path.lower()
    if kind == "volume":
        fmt = "NIfTI" if (low.endswith(".nii") or low.endswith(".nii.gz")) else "volume file"
        if low.endswith((".nrrd", ".nhdr")):
            fmt = "NRRD"
        elif low.endswith((".mha", ".mhd")):
            fmt = "MetaImage"
        what = f"{fmt} volumes are" if fmt != "volume file" else "volume files are"
    else:
        what = "plain images (PNG/JPEG/TIFF) are"
    return f"{path}: {what} opened (medview PATH), not imported into the DICOM database"


def open_database(path: str | None) -> Any:
    """The study database at ``path`` (default: the per-user one), or a
    :class:`CommandError` (a :class:`ValueError`) whose text is one line naming the file
    and the reason."""
    import sqlite3

    from medview.io.database import StudyDatabase

    if path is None:
        from medview.paths import database_path

        path = str(database_path())
    try:
        return StudyDatabase(path)
    except (sqlite3.Error, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CommandError(f"{path}: cannot open the study database ({reason})") from None
