"""Reading FHIR JSON / NDJSON files into resources, keeping what parses.

A JSON file is decoded as UTF-8 (byte-order mark or not) or UTF-16 with a byte-order
mark. A Bundle that does not parse whole (truncated, one broken entry, nesting deeper
than the parser allows, bytes that are not UTF-8) is read entry by entry: each broken
entry is reported with its line and skipped, the others are kept. NDJSON is read line
by line. Bundles nested in lists or Bundles more than :data:`MAX_NESTING` deep and
files over ``_text.MAX_TEXT_BYTES`` are refused with one line. Problems never quote
the document's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medview.errors import MedviewError, ReadError
from medview.records._text import decode_lines, read_bytes
from medview.records.model import RecordProblem

MAX_NESTING = 8  # Bundles inside lists / Bundles
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # bytes kept by errors="surrogateescape"
_ENTRY_ARRAY = re.compile(r'"entry"\s*:\s*\[')
_ENTRY_START = re.compile(r'\{\s*"(?:fullUrl|resource|request|search)"\s*:')


def _iter_json_resources(obj: Any, where: str, problems: list[RecordProblem]) -> Iterator[dict]:
    """Resources in a parsed JSON document: a Bundle (nested), a list, or one resource."""
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            problems.append(
                RecordProblem(where, f"Bundles or lists nested over {MAX_NESTING} deep; skipped")
            )
            continue
        if isinstance(node, list):
            stack.extend((item, depth + 1) for item in reversed(node))
        elif isinstance(node, dict) and node.get("resourceType") == "Bundle":
            entries = node.get("entry")
            resources = [
                e["resource"]
                for e in (entries if isinstance(entries, list) else [])
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            ]
            stack.extend((r, depth + 1) for r in reversed(resources))
        elif isinstance(node, dict):
            yield node


def _json_error(exc: Exception) -> str:
    """One line for a JSON parse failure (no document text quoted)."""
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg})"
    return f"invalid JSON ({type(exc).__name__}: {str(exc)[:60]})"


def _whole_file_problem(name: str, exc: Exception) -> RecordProblem:
    """The problem for a JSON file that does not parse and has no entry to salvage."""
    if isinstance(exc, json.JSONDecodeError):
        return RecordProblem(name, f"invalid JSON at line {exc.lineno} ({exc.msg})")
    return RecordProblem(name, _json_error(exc))


def _has_bad_text(res: dict) -> bool:
    """True when a string in ``res`` holds bytes that were not UTF-8 (surrogate escapes)."""
    return _ESCAPED_BYTE.search(json.dumps(res, ensure_ascii=False)) is not None


def _salvage_bundle(
    text: str, name: str, problems: list[RecordProblem], exc: Exception
) -> Iterator[tuple[str, Any]]:
    """Entries of a Bundle that does not parse whole, decoded one by one."""
    head = _ENTRY_ARRAY.search(text)
    if head is None:
        problems.append(_whole_file_problem(name, exc))
        return
    decoder = json.JSONDecoder()
    pos, line, counted = head.end(), 1, 0
    entry = 0
    before = len(problems)
    while True:
        nxt = _ENTRY_START.search(text, pos)
        if nxt is None:
            if len(problems) == before:  # e.g. cut after the last whole entry
                problems.append(_whole_file_problem(name, exc))
            return
        pos = nxt.start()
        line += text.count("\n", counted, pos)
        counted = pos
        entry += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError) as err:
            problems.append(RecordProblem(f"{name}:{line}", f"entry {entry}: {_json_error(err)}"))
            pos += 1
            continue
        if isinstance(obj, dict) and isinstance(obj.get("resource"), dict):
            yield f"{name}:{line}", obj["resource"]


def _decode_json_text(data: bytes, path: Path) -> tuple[str, bool]:
    """(text, has undecodable bytes) of a JSON file: UTF-8 (BOM or not) or UTF-16 with a BOM."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), False
        except UnicodeDecodeError as exc:
            raise ReadError(f"not valid UTF-16 text (byte {exc.start})", path) from exc
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape"), True


def _iter_ndjson(path: Path, problems: list[RecordProblem]) -> Iterator[tuple[str, dict]]:
    lines, bad = decode_lines(read_bytes(path), path)
    problems.extend(bad)
    for lineno, line in enumerate(lines, start=1):
        if line is None or not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            problems.append(RecordProblem(where, _json_error(exc)))
            continue
        for res in _iter_json_resources(obj, where, problems):
            yield where, res


def _iter_json(path: Path, problems: list[RecordProblem]) -> Iterator[tuple[str, dict]]:
    name = str(path)
    text, dirty = _decode_json_text(read_bytes(path), path)
    try:
        docs: Iterable[tuple[str, Any]] = [(name, json.loads(text))]
    except (ValueError, RecursionError) as exc:
        docs = _salvage_bundle(text, name, problems, exc)
    for where, obj in docs:
        if isinstance(obj, dict) and "resourceType" not in obj:
            problems.append(RecordProblem(where, "not a FHIR resource or Bundle (no resourceType)"))
            continue
        for res in _iter_json_resources(obj, where, problems):
            if dirty and _has_bad_text(res):
                problems.append(RecordProblem(where, "not UTF-8 text in a resource; skipped"))
                continue
            yield where, res


def iter_fhir_file(path: Path, problems: list[RecordProblem]) -> Iterator[tuple[str, dict]]:
    """(source label, resource) pairs from one .json / .ndjson file; bad parts -> problems.

    A Bundle that does not parse whole (truncated, a broken entry, nesting too deep,
    bytes that are not UTF-8) is read entry by entry: each broken entry is reported
    with its line, the others are kept.
    """
    try:
        if path.suffix.lower() == ".ndjson" or path.name.lower().endswith(".ndjson.txt"):
            yield from _iter_ndjson(path, problems)
        else:
            yield from _iter_json(path, problems)
    except MedviewError as exc:
        problems.append(RecordProblem(str(path), f"{exc.reason}; file skipped"))
