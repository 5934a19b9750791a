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


def tiny_pneumoniamnist(out: Path, train_per_class: int, val_per_class: int) -> Path:
    """A small real slice of PneumoniaMNIST written to ``out`` (an .npz with the train/val
    arrays of the original): the first ``train_per_class`` train and ``val_per_class`` val
    images of each class. Skips the test when ../shared/data is absent."""
    import numpy as np

    from tests.conftest import PNEUMONIAMNIST, need

    with np.load(need(PNEUMONIAMNIST)) as d:
        arrays = {}
        for split, n in (("train", train_per_class), ("val", val_per_class)):
            labels = d[f"{split}_labels"]
            idx = np.concatenate([np.flatnonzero(labels[:, 0] == c)[:n] for c in (0, 1)])
            arrays[f"{split}_images"] = d[f"{split}_images"][idx]
            arrays[f"{split}_labels"] = labels[idx]
    np.savez(out, **arrays)
    return out


def pneumoniamnist_pngs(out: Path, n: int) -> Path:
    """The first ``n`` PneumoniaMNIST val images as 28x28 PNGs ``img00.png``... in the new
    folder ``out`` (an archive of images without DICOM metadata). Skips without the data."""
    import numpy as np
    from PIL import Image

    from tests.conftest import PNEUMONIAMNIST, need

    with np.load(need(PNEUMONIAMNIST)) as d:
        imgs = d["val_images"][:n]
    out.mkdir()
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(out / f"img{i:02d}.png")
    return out
