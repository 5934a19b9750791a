"""Reading records text safely: size caps, encodings, strict CSV rows with line numbers.

* Encodings: UTF-8, UTF-8 with a byte-order mark, UTF-16 with a byte-order mark. A line
  that is not UTF-8 (latin-1 or binary bytes) or holds a NUL byte is reported with its
  line number and skipped; the rest of the file is read. A file that is mostly not UTF-8
  (or UTF-16 without a byte-order mark) is refused with one line.
* CSV: a quoted field may span lines only when the record it closes has the header's
  number of fields; otherwise the quote is reported as unterminated at the line where
  it opened, that line is skipped and parsing resumes on the next line (nothing else is
  swallowed).
* Size: files over :data:`MAX_TEXT_BYTES` are refused.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path

from medview.errors import ReadError
from medview.records.model import RecordProblem

MAX_TEXT_BYTES = 512 * 1024 * 1024  # one records file (CSV, JSON, NDJSON)
MAX_QUOTED_LINES = 20  # lines one quoted CSV field may span
MAX_REPR = 40  # characters of a bad value quoted in a problem


def show(value: object) -> str:
    """A short, escaped rendering of a bad value for a problem message."""
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def finite(value: float, what: str) -> float:
    """``value`` when finite; ValueError naming ``what`` otherwise."""
    if not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number")
    return value


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a one-line ReadError when unreadable or over the size cap."""
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise ReadError(
                f"file is {size / 2**20:.0f} MiB, over the {MAX_TEXT_BYTES // 2**20} MiB limit "
                "for a records file",
                path,
            )
        with path.open("rb") as fh:
            return fh.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise ReadError(f"cannot read: {exc.strerror or exc}", path) from exc


def decode_lines(data: bytes, path: Path) -> tuple[list[str | None], list[RecordProblem]]:
    """The file's lines (index 0 = line 1); None for a line that could not be decoded."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text: list[str | None] = [
                ln.removesuffix("\r") for ln in data.decode("utf-16").split("\n")
            ]
            if text and text[-1] == "":
                text.pop()
            return text, []
        except UnicodeDecodeError as exc:
            raise ReadError(f"not valid UTF-16 text (byte {exc.start})", path) from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines: list[str | None] = []
    problems: list[RecordProblem] = []
    for number, chunk in enumerate(raw, start=1):
        try:
            line = chunk.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as exc:
            lines.append(None)
            problems.append(
                RecordProblem(
                    f"{path}:{number}", f"not UTF-8 text (byte 0x{chunk[exc.start]:02x}); skipped"
                )
            )
            continue
        if "\x00" in line:
            lines.append(None)
            problems.append(RecordProblem(f"{path}:{number}", "binary data (NUL byte); skipped"))
            continue
        lines.append(line)
    bad = len(problems)
    if bad and bad > max(10, len(lines) // 2):
        hint = (
            " (UTF-16 without a byte-order mark?)" if data.count(b"\x00") > len(data) // 4 else ""
        )
        raise ReadError(
            f"not UTF-8 text: {bad} of {len(lines)} lines cannot be decoded{hint}; "
            "save the file as UTF-8",
            path,
        )
    return lines, problems


def _parse(text: str, delimiter: str) -> list[str]:
    return next(csv.reader([text], delimiter=delimiter, strict=True), [])


def csv_records(
    lines: list[str | None],
    path: Path,
    delimiter: str,
    ncols: int,
    start: int,
    problems: list[RecordProblem],
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each record from ``lines[start:]``; bad ones -> ``problems``.

    ``ncols`` is the header's number of fields (0: any); a record spanning lines
    must have exactly that many, or its opening quote is reported as unterminated.
    """
    i = start
    while i < len(lines):
        line = lines[i]
        number = i + 1
        i += 1
        if line is None or not line.strip():
            continue
        try:
            yield number, _parse(line, delimiter)
            continue
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                problems.append(RecordProblem(f"{path}:{number}", f"CSV error: {exc}; skipped"))
                continue
        joined = _join_quoted(lines, i, line, delimiter, ncols)
        if joined is None:
            problems.append(RecordProblem(f"{path}:{number}", "unterminated quote; line skipped"))
            continue
        fields, i = joined
        yield number, fields


def _join_quoted(
    lines: list[str | None], i: int, text: str, delimiter: str, ncols: int
) -> tuple[list[str], int] | None:
    """A record whose quoted field continues on the next lines, and the index after it."""
    for k in range(i, min(i + MAX_QUOTED_LINES, len(lines))):
        nxt = lines[k]
        if nxt is None:
            return None
        text = text + "\n" + nxt
        try:
            fields = _parse(text, delimiter)
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                continue
            return None
        return (fields, k + 1) if ncols and len(fields) == ncols else None
    return None
