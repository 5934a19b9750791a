"""PDF report (medview.results.report): rasterised with pdftoppm, text checked with pdftotext."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medview.cli import main as cli_main
from medview.io import scan
from medview.io.database import StudyDatabase
from medview.results import audit
from medview.results.report import build_report, draw_image, gather, key_images
from tests.conftest import REPO
from tests.helpers.tools import tool


def pages_text(pdf: Path) -> list[str]:
    text = subprocess.run(
        [tool("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True
    )
    assert text.returncode == 0
    return [p for p in text.stdout.split("\f") if p.strip()]


@pytest.fixture()
def cr_with_measurements(xray_dir: Path, tmp_path: Path):
    path = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    info = scan(str(path)).series[0]
    db = StudyDatabase(tmp_path / "db.sqlite")
    sop = info.instances[0].sop_uid
    db.save_measurement(
        sop, "ruler", {"points": [[100.5, 200.5], [600.5, 200.5]], "plane": "axial", "frame": 0}
    )
    db.save_measurement(
        sop, "ellipse", {"points": [[300, 300], [500, 420]], "plane": "axial", "frame": 0}
    )
    return path, info, db


def test_report_pages_images_and_disclaimer(tmp_path: Path, cr_with_measurements) -> None:
    from medview import disclaimers

    path, info, db = cr_with_measurements
    inp = gather(info, db, ["pneumonia_cnn"], device="cpu")
    out = build_report(inp, tmp_path / "r.pdf")
    pages = pages_text(out)
    assert len(pages) >= 2
    for page in pages:  # the disclaimer on every page
        assert disclaimers.APP in " ".join(page.split())
    first = " ".join(pages[0].split())
    assert "Key images" in first and "Measurements" in first and "ruler" in first
    whole = " ".join(" ".join(pages).split())
    card = json.loads((REPO / "models" / "pneumonia_cnn" / "metadata.json").read_text())
    assert f"pneumonia_cnn {card['version']}" in whole  # the bundled model's own version
    assert "Intended use:" in whole and "AUC" in whole
    # rasterised: the page shows the X-ray (a large grey area) and the coloured overlay
    subprocess.run(
        [
            tool("pdftoppm"),
            "-r",
            "50",
            "-png",
            "-f",
            "1",
            "-l",
            "1",
            str(out),
            str(tmp_path / "p"),
        ],
        check=True,
    )
    page = np.asarray(Image.open(next(tmp_path.glob("p*.png"))).convert("RGB")).astype(int)
    grey = (np.abs(page[..., 0] - page[..., 1]) < 8) & (page[..., 0] < 200) & (page[..., 0] > 30)
    assert grey.mean() > 0.10
    orange = (
        (page[..., 0] > 200) & (page[..., 1] > 80) & (page[..., 1] < 160) & (page[..., 2] < 110)
    )
    assert orange.sum() > 20


def test_drawn_image_is_render_slice_plus_overlay(cr_with_measurements) -> None:
    from medview.imaging.display import render_slice

    path, info, db = cr_with_measurements
    inp = gather(info, db)
    drawn = np.asarray(draw_image(inp, 0))
    base = render_slice(inp.volume, 0, aspect=False)
    assert drawn.shape[:2] == base.shape[:2]
    changed = np.any(drawn != np.repeat(base[..., None], 3, axis=2), axis=2)
    assert 0 < changed.mean() < 0.1  # the measurements, and nothing else, were drawn
    # the ruler runs along row 200 from column 100 to 600
    assert changed[200, 150:550].mean() > 0.9


def test_key_images_flagged_first(cr_with_measurements, ct_dir: Path) -> None:
    info = scan(str(ct_dir)).series[0]
    inp = gather(info, None)
    assert key_images(inp) == [inp.volume.array.shape[0] // 2]
    inp.key_indices = [3, 7]
    assert key_images(inp) == [3, 7]


def test_cli_report_json_audit_and_errors(
    tmp_path: Path, ct_dir: Path, medview_home, capsys
) -> None:
    out = tmp_path / "ct.pdf"
    assert cli_main(["report", str(ct_dir), "--out", str(out), "--key", "5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["key_images"] == [5] and out.stat().st_size > 10_000
    ev = audit.read().events[-1]
    assert ev["action"] == "report" and ev["output"] == str(out.resolve())
    (tmp_path / "notes.txt").write_text("x")
    assert cli_main(["report", str(tmp_path / "notes.txt"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "notes.txt" in err and len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def synthea(records_dir: Path):
    from collections import Counter

    from medview.records import load_records

    records = load_records(records_dir / "synthea_csv_ma27")
    counts = Counter(o.patient_id for o in records.observations if o.value is not None)
    return records, counts.most_common(1)[0][0]


def test_report_with_linked_records_has_forecast_and_suggestions(
    tmp_path: Path, cr_with_measurements, synthea
) -> None:
    from types import SimpleNamespace

    from medview.results.report_records import records_section

    records, pid = synthea
    _path, info, db = cr_with_measurements
    inp = gather(info, db)
    study_patient = SimpleNamespace(patient_id=pid, patient_name="", patient_birth_date="")
    inp.records = records_section(records, study_patient)
    sec = inp.records
    assert sec.patient_id == pid and sec.forecast is not None and sec.suggestions.suggestions
    out = build_report(inp, tmp_path / "records.pdf")
    text = " ".join(" ".join(pages_text(out)).split())
    assert f"Record patient {pid}" in text
    assert f"{sec.forecast.display or sec.forecast.code} ({sec.forecast.unit})" in text
    assert "from the last value; black: history" in text  # the plot caption
    first = sec.suggestions.suggestions[0]
    assert f"1. {first.display}"[:40] in text
    # the plot is drawn: the forecast page has blue (forecast line) pixels
    subprocess.run(
        [tool("pdftoppm"), "-r", "50", "-png", str(out), str(tmp_path / "page")], check=True
    )
    blue = 0
    for png in sorted(tmp_path.glob("page*.png")):
        a = np.asarray(Image.open(png).convert("RGB")).astype(int)
        blue += int(((a[..., 2] > 180) & (a[..., 0] < 80) & (a[..., 1] < 80)).sum())
    assert blue > 20


def test_cli_report_records_without_link_says_why(
    tmp_path: Path, cr_with_measurements, records_dir: Path, medview_home: Path, capsys
) -> None:
    path, _info, db = cr_with_measurements
    out = tmp_path / "r.pdf"
    code = cli_main(
        [
            "report",
            str(path),
            "--out",
            str(out),
            "--db",
            str(db.path),
            "--records",
            str(records_dir / "synthea_csv_ma27"),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"]["patient"] is None and summary["records"]["link"]
    text = " ".join(" ".join(pages_text(out)).split())
    assert "No record patient linked" in text
