"""``load_records(path)``: detect the format of a path and import it."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from medview.errors import ReadError, UnsupportedError
from medview.records.fhir import read_fhir
from medview.records.model import RecordSet
from medview.records.synthea import is_synthea_folder, read_synthea_csv
from medview.tasks import TaskState, ensure_state

FHIR_SUFFIXES = (".json", ".ndjson")


def _fhir_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FHIR_SUFFIXES)


def detect_format(path: str | PathLike[str]) -> str:
    """``"synthea-csv"`` or ``"fhir"``; raises a one-line MedviewError otherwise."""
    p = Path(path)
    if not p.exists():
        raise ReadError("no such file or folder", p)
    if p.is_dir():
        if is_synthea_folder(p):
            return "synthea-csv"
        if _fhir_files(p):
            return "fhir"
        raise UnsupportedError(
            "no Synthea CSV (patients.csv) and no FHIR .json/.ndjson files in this folder", p
        )
    if p.suffix.lower() in FHIR_SUFFIXES:
        return "fhir"
    if p.suffix.lower() == ".csv" and is_synthea_folder(p.parent):
        return "synthea-csv"
    raise UnsupportedError(
        "not a records file: expected a FHIR .json/.ndjson file, a folder of them, "
        "or a Synthea CSV folder",
        p,
    )


def load_records(path: str | PathLike[str], state: TaskState | None = None) -> RecordSet:
    """Import patient records from ``path``.

    ``path`` is a FHIR R4 JSON bundle or NDJSON bulk-export file, a folder of such
    files (searched recursively), or a Synthea CSV folder (one holding
    ``patients.csv``; a CSV file inside one imports the whole folder). Malformed
    resources and rows are listed in ``RecordSet.problems`` and skipped.
    Raises :class:`~medview.errors.MedviewError` when nothing importable is there.
    """
    state = ensure_state(state)
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "synthea-csv":
        return read_synthea_csv(p if p.is_dir() else p.parent, state)
    files = _fhir_files(p) if p.is_dir() else [p]
    return read_fhir(files, state)
