"""Small readers the tests use to compute expected values from the data files themselves."""

from __future__ import annotations

import csv
from pathlib import Path


def csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header line, as dicts."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def import_radiograph(xray_dir: Path) -> dict:
    """Import the chest radiograph ``cr_chest_pa_jpeg_baseline.dcm`` into the current study
    database (``MEDVIEW_HOME``'s); returns its one study row."""
    from medview.io.database import StudyDatabase

    db = StudyDatabase()
    try:
        db.import_path(str(xray_dir / "cr_chest_pa_jpeg_baseline.dcm"))
        (study,) = db.studies()
    finally:
        db.close()
    return study
