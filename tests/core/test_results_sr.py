"""DICOM SR (TID 1500) of measurements and AI findings: written for the real CT and CR,
re-read by pydicom and highdicom, dciodvfy / dsrdump / dcmdump, and the round trip."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pydicom
import pytest

from medview.cli import main as cli_main
from medview.io import load_series, scan
from medview.io.database import StudyDatabase
from medview.results import audit
from medview.results.sr import build_sr, image_refs, import_sr, read_sr, write_sr
from tests.helpers.tools import dciodvfy_errors, dumps_cleanly, tool

REPO = Path(__file__).resolve().parents[2]


def measure_rows(vol, sops: list[str]) -> list[dict]:
    """Measurements as the viewer stores them, with stats computed by the viewer's own code
    (medview.imaging.measure, pure numpy) on the real pixel values."""
    from medview.imaging.measure import Measurement, compute

    rs, cs = vol.spacing[1], vol.spacing[0]
    rows = []
    shapes = [
        ("ruler", [(100.5, 200.5), (300.5, 260.5)]),
        ("angle", [(100.0, 100.0), (200.0, 200.0), (300.0, 120.0)]),
        ("ellipse", [(200.0, 220.0), (300.0, 300.0)]),
        ("rect", [(150.0, 150.0), (250.0, 230.0)]),
    ]
    for n, (kind, pts) in enumerate(shapes):
        k = n % len(sops)
        m = Measurement(kind=kind, points=pts, index=k, image_key=sops[k])
        compute(m, vol.modality_values(k), (rs, cs))
        rows.append({"id": n + 1, "sop_uid": sops[k], "kind": kind, "data": m.data()})
    return rows


@pytest.fixture()
def ct_series(ct_dir: Path):
    info = scan(str(ct_dir)).series[0]
    vol = load_series(info)
    return info, vol


def write_ct_sr(ct_series, out: Path) -> tuple[list[str], list[dict], Path]:
    """An SR of :func:`measure_rows` on the CT: (the slices' SOP UIDs, the rows, the file)."""
    info, vol = ct_series
    sops = [i.sop_uid for i in vol.instances]
    rows = measure_rows(vol, sops)
    refs = image_refs([str(i.path) for i in info.instances])
    return sops, rows, write_sr(build_sr(refs, rows), out)


def test_ct_sr_valid_and_round_trips(tmp_path: Path, ct_series) -> None:
    info, vol = ct_series
    sops, rows, out = write_ct_sr(ct_series, tmp_path / "ct_sr.dcm")

    assert dciodvfy_errors(out) == []
    dump = subprocess.run([tool("dsrdump"), str(out)], capture_output=True, text=True)
    assert dump.returncode == 0 and "Imaging Measurement Report" in dump.stdout
    assert '"Length"' in dump.stdout and "[hnsf'U]" in dump.stdout
    assert dumps_cleanly(out)

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.StudyInstanceUID == info.study_uid

    back = read_sr(out)
    assert len(back.measurements) == len(rows)
    for orig, got in zip(rows, back.measurements, strict=True):
        assert got["sop_uid"] == orig["sop_uid"] and got["kind"] == orig["kind"]
        if orig["kind"] in ("ruler", "angle"):
            assert got["data"]["points"] == orig["data"]["points"]
        for key, value in orig["data"]["stats"].items():
            if key != "n":
                assert math.isclose(got["data"]["stats"][key], value, rel_tol=1e-6), key


def test_roi_geometry_round_trip_gives_the_same_stats(tmp_path: Path, ct_series) -> None:
    """Rect/ellipse come back as the same region: the viewer's stats on them are unchanged."""
    from medview.imaging.measure import Measurement, compute

    info, vol = ct_series
    sops, rows, out = write_ct_sr(ct_series, tmp_path / "sr.dcm")
    rs, cs = vol.spacing[1], vol.spacing[0]
    for orig, got in zip(rows, read_sr(out).measurements, strict=True):
        k = sops.index(got["sop_uid"])
        m = Measurement(kind=got["kind"], points=[tuple(p) for p in got["data"]["points"]])
        stats = compute(m, vol.modality_values(k), (rs, cs))
        for key, value in orig["data"]["stats"].items():
            assert math.isclose(stats[key], value, rel_tol=1e-9, abs_tol=1e-9), key


def test_cr_sr_with_ai_finding(tmp_path: Path, xray_dir: Path) -> None:
    from medview.ai.inference import run_on_volume
    from medview.results.sr import finding_from_result

    path = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    info = scan(str(path)).series[0]
    vol = load_series(info)
    results = run_on_volume(vol, [0], ["pneumonia_cnn"], device="cpu", heatmaps=False)
    findings = [finding_from_result(r) for r in results]
    rows = measure_rows(vol, [info.instances[0].sop_uid])
    out = write_sr(build_sr(image_refs([str(path)]), rows, findings), tmp_path / "cr_sr.dcm")
    assert dciodvfy_errors(out) == []

    import highdicom as hd

    sr = hd.sr.srread(str(out))
    assert len(sr.content.get_planar_roi_measurement_groups()) == 4
    back = read_sr(out)
    (f,) = back.findings
    card = json.loads((REPO / "models/pneumonia_cnn/metadata.json").read_text())
    assert f["model"] == "pneumonia_cnn" and f["version"] == card["version"]
    assert f["sha256"] == card["weights"]["sha256"]
    assert math.isclose(f["probability"], results[0].probabilities["pneumonia"], rel_tol=1e-6)
    assert f["threshold"] == card["output"]["threshold"]
    assert f["predicted"] == results[0].predicted
    assert f["device"] == results[0].device
    # no length in mm: the CR has Imager Pixel Spacing, so mm it is; ruler in the SR is mm
    assert back.measurements[0]["data"]["stats"]["length"] == pytest.approx(
        rows[0]["data"]["stats"]["length"]
    )


def test_import_sr_restores_measurements(tmp_path: Path, ct_series, medview_home) -> None:
    info, vol = ct_series
    sops, rows, out = write_ct_sr(ct_series, tmp_path / "sr.dcm")
    db = StudyDatabase(tmp_path / "db.sqlite")
    assert import_sr(out, db) == len(rows)
    assert import_sr(out, db) == 0  # not doubled
    stored = db.measurements(rows[0]["sop_uid"])
    assert stored[0]["kind"] == "ruler"
    assert stored[0]["data"]["points"] == rows[0]["data"]["points"]


def test_cli_sr_writes_audits_and_fails_cleanly(tmp_path: Path, ct_dir: Path, medview_home, capsys):
    info = scan(str(ct_dir)).series[0]
    db = StudyDatabase()
    sop = info.instances[0].sop_uid
    db.save_measurement(
        sop,
        "ruler",
        {
            "points": [[10.5, 10.5], [50.5, 10.5]],
            "plane": "axial",
            "frame": 0,
            "stats": {"length": 39.06},
        },
    )
    db.close()
    out = tmp_path / "x.dcm"
    assert cli_main(["sr", str(ct_dir), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["measurements"] == 1 and out.exists()
    ev = audit.read().events[-1]
    assert ev["action"] == "sr" and ev["study_uid"] == info.study_uid
    assert cli_main(["sr", str(out), "--import", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["measurements"][0]["sop_uid"] == sop
    # a series without anything to report: exit 2, one line
    empty = tmp_path / "home2"
    assert cli_main(["sr", str(ct_dir), "--out", str(out), "--db", str(empty / "d.sqlite")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing to report" in err and len(err.splitlines()) == 1


def test_analyze_sr_out_one_sr_per_series(tmp_path: Path, xray_dir: Path, medview_home, capsys):
    out = tmp_path / "srs"
    path = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    assert cli_main(["analyze", str(path), "--model", "pneumonia_cnn", "--sr-out", str(out)]) == 0
    (sr_file,) = [f for f in out.glob("*.dcm") if "_map" not in f.name]
    assert dciodvfy_errors(sr_file) == []
    # the Grad-CAM map as a Secondary Capture: valid, in the same study, disclaimer burnt in
    (map_file,) = sorted(out.glob("*_map*.dcm"))
    assert dciodvfy_errors(map_file) == []
    sc = pydicom.dcmread(map_file)
    src = pydicom.dcmread(path, stop_before_pixels=True)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.BurnedInAnnotation == "YES"
    assert sc.StudyInstanceUID == src.StudyInstanceUID
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert "not for diagnostic use" in sc.ImageComments
    rgb = sc.pixel_array
    assert rgb.shape == (int(src.Rows), int(src.Columns), 3)
    bottom = rgb[-rgb.shape[0] // 30 :]  # the caption strip: yellow text on black
    yellow = (bottom[..., 0] > 200) & (bottom[..., 1] > 200) & (bottom[..., 2] < 80)
    assert yellow.sum() > 100
    (finding,) = read_sr(sr_file).findings
    info = scan(str(path)).series[0]
    assert finding["sop_uids"] == [info.instances[0].sop_uid]
    assert finding["model"] == "pneumonia_cnn"
    ev = audit.read().events[-1]
    assert ev["action"] == "analyze" and ev["model"][0]["name"] == "pneumonia_cnn"
