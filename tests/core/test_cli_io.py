"""The headless CLI (info, render, import, studies) as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medview.cli import main


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medview", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_info_json_shape(ct_dir):
    p = run_cli("info", str(ct_dir), "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert set(data) == {"series", "errors"}
    s = data["series"][0]
    assert set(s) == {
        "series_uid",
        "study_uid",
        "patient_id",
        "modality",
        "description",
        "rows",
        "columns",
        "frames",
        "slices",
        "spacing",
        "transfer_syntax",
        "photometric",
        "warnings",
    }
    assert s["modality"] == "CT" and s["slices"] == 20 and s["rows"] == 512
    assert s["spacing"] == pytest.approx([0.9765625, 0.9765625, 2.0], abs=1e-5)


@pytest.mark.parametrize(
    "maker,reason",
    [
        (lambda d: d / "missing.dcm", "no such file"),
        (lambda d: _write(d / "junk.dcm", b"hello" * 100), "not a DICOM file"),
        (
            lambda d: _write(
                d / "cut.dcm", open(get_testdata_file("CT_small.dcm"), "rb").read()[:9000]
            ),
            "truncated",
        ),
        (lambda d: d, "empty folder"),
    ],
    ids=["missing", "non-dicom", "truncated", "empty-folder"],
)
def test_bad_input_exit_2_one_line(tmp_path, maker, reason):
    target = maker(tmp_path)
    p = run_cli("info", str(target))
    assert p.returncode == 2
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and str(target) in lines[0] and reason in lines[0]
    assert "Traceback" not in p.stderr
    p = run_cli("render", str(target), "--out", str(tmp_path / "x.png"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and reason in p.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_folder_with_a_bad_file_lists_it_and_reads_the_rest(tmp_path, capsys):
    import shutil

    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ok.dcm")
    (tmp_path / "bad.dcm").write_bytes(b"\x00\x01" * 300)
    assert main(["info", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["series"]) == 1
    assert [e["path"].endswith("bad.dcm") for e in data["errors"]] == [True]


def test_render_matches_the_display_pipeline(ct_dir, tmp_path):
    from PIL import Image

    from medview.imaging.display import render_slice
    from medview.io import load_path

    out = tmp_path / "s.png"
    assert (
        main(["render", str(ct_dir), "--out", str(out), "--index", "5", "--window", "40,400"]) == 0
    )
    png = np.array(Image.open(out))
    ref = render_slice(load_path(ct_dir), 5, window=(40, 400))
    assert np.array_equal(png, ref)
    out2 = tmp_path / "c.png"
    assert (
        main(["render", str(ct_dir), "--out", str(out2), "--plane", "coronal", "--preset", "bone"])
        == 0
    )
    assert np.array(Image.open(out2)).shape == (41, 512)  # 20 x 2 mm over 0.977 mm pixels


def test_render_bad_arguments(ct_dir, tmp_path, capsys):
    assert main(["render", str(ct_dir), "--out", str(tmp_path / "a.png"), "--index", "99"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["render", str(ct_dir), "--out", str(tmp_path / "a.png"), "--window", "abc"]) == 2


def test_import_and_studies(tmp_path, capsys):
    db = tmp_path / "studies.sqlite"
    root = os.path.dirname(get_testdata_file("DICOMDIR"))
    assert main(["import", root, "--db", str(db), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["new_instances"] == first["instances"] == 31
    assert main(["import", root, "--db", str(db), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["new_instances"] == 0 and again["instances"] == 31  # idempotent
    assert main(["studies", "--db", str(db), "--json"]) == 0
    studies = json.loads(capsys.readouterr().out)["studies"]
    # expected counts from the DICOMDIR's own records, read with pydicom's FileSet
    import pydicom
    from pydicom.fileset import FileSet

    fs = FileSet(pydicom.dcmread(get_testdata_file("DICOMDIR")))
    assert len(studies) == len({i.StudyInstanceUID for i in fs}) == 6
    assert main(["studies", "--db", str(db), "--json", "--modality", "CT"]) == 0
    assert {s["patient_id"] for s in json.loads(capsys.readouterr().out)["studies"]} == {
        "77654033",
        "98890234",
    }


def test_help_lists_the_commands():
    p = run_cli("--help")
    assert p.returncode == 0
    for cmd in ("info", "render", "import", "studies"):
        assert cmd in p.stdout


def test_one_line_names_the_file():
    """GUI notifications use one_line(): a MedviewError must keep its path."""
    from medview.errors import ReadError, one_line

    assert one_line(ReadError("truncated file", "/x/bad.dcm")) == "/x/bad.dcm: truncated file"
    assert one_line(ValueError("a\nb")) == "ValueError: a b"
