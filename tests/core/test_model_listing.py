"""One list of the installed models (issue 17): `medview analyze --list-models` and
`medview models list` name every model with its kind (2D image, 3D volume, forecast),
where a default run goes and the command that runs it; a volume model asked for among
image models is refused with one line naming the right command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medview.cli import main

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@pytest.fixture()
def bundled(monkeypatch, tmp_path):
    for name in ("ct_seg", "pneumonia_cnn", "glucose_lstm"):
        if not (MODELS / name / "metadata.json").exists():
            pytest.skip(f"models/{name} not in this checkout")
    monkeypatch.setenv("MEDVIEW_MODELS", str(tmp_path / "no_user_models"))


def _rows(out: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["name"]: r for r in rows}


def test_analyze_list_models_json_names_every_kind(bundled, capsys):
    assert main(["analyze", "--list-models", "--json"]) == 0
    rows = _rows(capsys.readouterr().out)
    ct, cnn, glu = rows["ct_seg"], rows["pneumonia_cnn"], rows["glucose_lstm"]
    assert (ct["kind"], ct["dims"], ct["task"]) == ("volume", 3, "segmentation")
    assert ct["command"] == "medview analyze SERIES_FOLDER --model ct_seg"
    assert ct["labels"] == ["background", "body", "lungs", "bone"]
    assert (cnn["kind"], cnn["dims"]) == ("image", 2)
    assert cnn["command"] == "medview analyze IMAGE_OR_FOLDER --model pneumonia_cnn"
    assert cnn["threshold"] is not None and cnn["input"]["size"] == [28, 28]
    assert (glu["kind"], glu["command"]) == ("forecast", "medview forecast --cgm FILE.csv")
    from medview.ai.devices import resolve_device

    here = str(resolve_device("auto"))
    assert ct["runs_on"] == cnn["runs_on"] == here and glu["runs_on"] == "cpu"


def test_analyze_list_models_text_is_a_table(bundled, capsys):
    assert main(["analyze", "--list-models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "version", "kind", "task"]
    ct = next(line for line in lines if line.startswith("ct_seg "))
    assert "volume 3D" in ct and ct.endswith("medview analyze SERIES_FOLDER --model ct_seg")
    cnn = next(line for line in lines if line.startswith("pneumonia_cnn "))
    assert "image 2D" in cnn and "classification" in cnn


def test_models_list_shows_kind_and_device(bundled, capsys):
    main(["models", "list", "--json"])
    rows = _rows(capsys.readouterr().out)
    assert (rows["ct_seg"]["kind"], rows["ct_seg"]["dims"]) == ("volume", 3)
    assert (rows["pneumonia_ae"]["kind"], rows["pneumonia_ae"]["dims"]) == ("image", 2)
    assert rows["ct_seg"]["format"] == "safetensors"  # the earlier fields stay
    main(["models", "list"])
    text = capsys.readouterr().out
    assert any(line.startswith("ct_seg") and "volume 3D" in line for line in text.splitlines())


def test_a_volume_model_among_image_models_is_refused_with_the_command(bundled, tmp_path, capsys):
    png = tmp_path / "x.png"
    png.write_bytes(b"")  # never read: the models are checked first
    assert main(["analyze", str(png), "--model", "ct_seg", "--model", "pneumonia_cnn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "ct_seg is a volume (3D) model" in err[0]
    assert "medview analyze SERIES_FOLDER --model ct_seg" in err[0]
