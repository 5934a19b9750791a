"""Intended use enforced in every AI front end (issue 10 items 3 and 5).

Every AI result, whatever produced it (single image, ``run_batch``, a series,
``run_on_volume``, ``medview analyze`` text and ``--json``, the GUI panel), carries
an intended-use verdict from the model card: the real abdominal CT and the adult
CR are outside it, a PneumoniaMNIST image (no metadata) is inside but unverified.
Also: ``--device cuda`` without CUDA is an error, and a retrained model gets its own
version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PNEUMONIAMNIST, REPO, need
from tests.helpers.data_helpers import tiny_pneumoniamnist

MODELS = REPO / "models"
BOTH = ["pneumonia_cnn", "pneumonia_ae"]


def need_models() -> None:
    for name in BOTH:
        if not (MODELS / name / "metadata.json").exists():
            pytest.skip(f"needs the trained model in models/{name}")


@pytest.fixture(scope="module")
def pmnist_png(tmp_path_factory) -> Path:
    """One PneumoniaMNIST val image written as a 28x28 PNG (no DICOM metadata)."""
    from PIL import Image

    with np.load(need(PNEUMONIAMNIST)) as d:
        img = d["val_images"][0]
    path = tmp_path_factory.mktemp("pmnist") / "pmnist_val_0.png"
    Image.fromarray(img).save(path)
    return path


def _card(name: str) -> dict:
    return json.loads((MODELS / name / "metadata.json").read_text())


def _assert_verdicts(results, in_scope: bool, must_mention: str) -> None:
    """Every result has a verdict of the expected sign, naming ``must_mention``."""
    assert results
    for r in results:
        v = r if isinstance(r, dict) else r.as_json()
        assert isinstance(v["in_scope"], bool) and isinstance(v["scope_reasons"], list)
        assert v["in_scope"] is in_scope, v
        assert any(must_mention in x for x in v["scope_reasons"]), v["scope_reasons"]


# -- the check itself ------------------------------------------------------------------


def test_shipped_cards_declare_structured_intended_use_and_still_verify():
    from medview.ai.registry import get_model

    need_models()
    for name in BOTH:
        scope = _card(name)["intended_use_scope"]
        assert scope["modalities"] == ["CR", "DX"] and scope["body_parts"] == ["CHEST"]
        assert scope["projections"] == ["PA", "AP"] and scope["age_years"] == {"min": 1, "max": 5}
        get_model(name).verify()  # the sha256 covers the weights only: card edits are fine


def test_check_scope_reasons_and_unknowns():
    from medview.ai.scope import age_from_dates, check_scope, parse_age

    need_models()
    card = _card("pneumonia_cnn")
    ok, why = check_scope(card, {"modality": "CT", "body_part": "ABDOMEN"})
    assert not ok
    assert "modality CT outside intended use (CR, DX)" in why
    assert "body part ABDOMEN outside intended use (CHEST)" in why
    assert "patient age unknown" in why and "projection unknown" in why
    ok, why = check_scope(card, {"modality": "CR", "body_part": "CHEST", "age_years": 62.0})
    assert not ok and "patient age 62 y outside intended use (1-5 y)" in why
    ok, why = check_scope(card, {"modality": "DX", "view_position": "LL", "age_years": 3.0})
    assert not ok and "projection LL outside intended use (PA, AP)" in why
    ok, why = check_scope(
        card,
        {"modality": "DX", "body_part": "THORAX", "view_position": "AP", "age_years": 5.5},
    )
    assert ok and why == []  # every criterion known and met (5.5 y is 5 completed years)
    ok, why = check_scope(card, {})  # a PNG: in scope, but unverified, and said so
    assert ok and "patient age unknown" in why and "modality unknown" in why
    assert parse_age("062Y") == 62 and parse_age("006M") == 0.5 and parse_age("62") == 62
    assert parse_age("") is None and parse_age("abc") is None
    assert age_from_dates("20200615", "20230614") == 2 and age_from_dates("", "20230101") is None
    ok, why = check_scope(card, {"modality": "CR", "age_years": 0.5})
    assert not ok and "patient age 6 months outside intended use (1-5 y)" in why


# -- every front end --------------------------------------------------------------------


def test_core_front_ends_carry_the_verdict(ct_dir, xray_dir, pmnist_png):
    """analyze_path (file, series), run_batch, analyze_images and run_on_volume."""
    from medview.ai.inference import analyze_images, analyze_path, load_model, run_batch
    from medview.ai.preprocess import iter_path_images, volume_images
    from medview.io import load_path

    need_models()
    adult_cr = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    cases = [
        (ct_dir, False, "modality CT outside intended use (CR, DX)", 20),
        (adult_cr, False, "patient age 62 y outside intended use (1-5 y)", 1),
        (pmnist_png, True, "patient age unknown", 1),
    ]
    lms = [load_model(n, "cpu") for n in BOTH]
    for path, in_scope, mention, n in cases:
        res, errors = analyze_path(path, BOTH, device="cpu", heatmaps=True)
        assert not errors and len(res) == 2 * n
        _assert_verdicts(res, in_scope, mention)
        images = [x for x in iter_path_images(path) if not isinstance(x, Exception)]
        assert len(images) == n
        for lm in lms:
            _assert_verdicts(run_batch(lm, images[:4]), in_scope, mention)
        _assert_verdicts(analyze_images(images[:3], BOTH, device="cpu"), in_scope, mention)
        vol = load_path(path)
        from medview.ai.inference import run_on_volume

        got = run_on_volume(vol, list(range(min(3, n))), BOTH, device="cpu", heatmaps=False)
        _assert_verdicts(got, in_scope, mention)  # run_on_volume keeps modality and age
        first = next(iter(volume_images(vol, indices=[0])))
        assert first.meta.get("modality") == ("OT" if in_scope else vol.modality)


def test_cli_text_and_json_carry_the_verdict(ct_dir, xray_dir, pmnist_png, capsys):
    from medview.cli import main

    need_models()
    adult_cr = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    for path, in_scope, mention, n in [
        (ct_dir, False, "modality CT outside intended use", 20),
        (adult_cr, False, "patient age 62 y outside intended use", 1),
        (pmnist_png, True, "patient age unknown", 1),
    ]:
        assert main(["analyze", str(path), "--json", "--device", "cpu"]) == 0
        rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
        assert len(rows) == 2 * n
        for row in rows:  # the old fields are all still there
            for key in ("path", "index", "model", "version", "device", "predicted", "warnings"):
                assert key in row
            assert row["slice"] == row["index"] + 1
        _assert_verdicts(rows, in_scope, mention)
        assert main(["analyze", str(path), "--device", "cpu"]) == 0
        lines = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("#")]
        assert len(lines) == 2 * n
        tag = "[in intended use" if in_scope else "[OUTSIDE INTENDED USE: "
        assert all(tag in x and mention in x for x in lines), lines[:2]
        if n > 1:  # slices numbered from 1, like the viewport
            assert any("[slice 1]" in x for x in lines) and any("[slice 20]" in x for x in lines)
            assert not any("[slice 0]" in x for x in lines)


def test_heatmaps_name_their_class_and_what_they_are(xray_dir, tmp_path):
    from medview.ai.inference import analyze_path

    need_models()
    res, _ = analyze_path(
        xray_dir / "cr_chest_pa_jpeg_baseline.dcm", BOTH, device="cpu", heatmaps=True
    )
    cam = next(r for r in res if r.heatmap_kind == "grad-cam")
    assert cam.heatmap_label == f"Grad-CAM for class '{cam.predicted}'"
    ae = next(r for r in res if r.heatmap_kind == "anomaly")
    nv = _card("pneumonia_ae")["explain"]["not_validated_for"]
    assert ae.heatmap_label.startswith("Anomaly map") and nv in ae.heatmap_label


# -- devices -------------------------------------------------------------------------------


def test_analyze_device_cuda_without_cuda_is_exit_2(xray_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path = xray_dir / "nih_00000001_000.png"
    proc = subprocess.run(
        [sys.executable, "-m", "medview", "analyze", str(path), "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "CUDA requested but not available" in err[0]
    assert proc.stdout == ""


def test_resolve_device_only_auto_falls_back():
    import torch

    from medview.ai.devices import DeviceUnavailable, resolve_device

    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="CUDA requested but not available"):
            resolve_device("cuda")
        with pytest.raises(DeviceUnavailable):
            resolve_device("cuda:0")
        assert resolve_device("auto").type in ("cpu", "mps")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        with pytest.raises(DeviceUnavailable, match="MPS requested but not available"):
            resolve_device("mps")


# -- retrained models ------------------------------------------------------------------------


def _tiny_npz(tmp_path: Path) -> Path:
    """A small real slice of PneumoniaMNIST (48 train, 32 val images, both classes)."""
    return tiny_pneumoniamnist(tmp_path / "tiny.npz", 24, 16)


@pytest.mark.parametrize("target", ["classifier", "autoencoder"])
def test_retrained_model_gets_its_own_version(tmp_path, target, monkeypatch, capsys):
    from medview.ai.registry import get_model, sha256_file
    from medview.cli import main

    need_models()
    monkeypatch.setenv("MEDVIEW_TRAIN_THREADS", "1")
    data = _tiny_npz(tmp_path)
    out = tmp_path / "retrained"
    rc = main(["train", target, "--out", str(out), "--epochs", "1", "--data", str(data)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    name = "pneumonia_cnn" if target == "classifier" else "pneumonia_ae"
    bundled = _card(name)
    new = json.loads((out / "metadata.json").read_text())
    sha = sha256_file(out / "model.safetensors")
    assert new["weights"]["sha256"] == sha != bundled["weights"]["sha256"]
    assert new["version"] == f"{bundled['version']}-retrained-{sha[:8]}" == printed["version"]
    assert new["retrained_from"] == {
        "name": name,
        "version": bundled["version"],
        "sha256": bundled["weights"]["sha256"],
    }
    assert new["intended_use_scope"] == bundled["intended_use_scope"]
    info = get_model(str(out))
    info.verify()
    # results cached by (model name, version) cannot be confused with the bundled model's
    assert (info.name, info.version) != (bundled["name"], bundled["version"])
    assert "Retrained from" in (out / "README.md").read_text()


def test_overlay_png_wraps_long_captions_and_has_a_colour_bar(tmp_path):
    """The anomaly map's caption (what it is, what it is not validated for) is not cut."""
    from PIL import Image

    from medview.ai.overlay import colormap_lut, save_overlay_png

    gray = np.full((256, 256), 128, np.uint8)
    heat = np.zeros((256, 256), np.float32)
    short = np.asarray(Image.open(save_overlay_png(tmp_path / "s.png", gray, heat, caption="x")))
    long_caption = "OUTSIDE INTENDED USE | pneumonia_ae: " + "not validated for adults " * 12
    long = np.asarray(
        Image.open(save_overlay_png(tmp_path / "l.png", gray, heat, caption=long_caption))
    )

    def strip_rows(a: np.ndarray) -> int:  # black caption rows at the bottom, left edge
        return int(np.argmax(a[::-1, 0].max(axis=1) > 0))

    assert strip_rows(long) >= 3 * strip_rows(short) > 0  # wrapped onto more lines
    # the colour bar's top (high) and bottom (low) colours are in the right-hand column
    lut = colormap_lut("jet")
    col = long[:, long.shape[1] - 8].astype(int)
    for c in (lut[253], lut[2]):  # (the very ends are under the bar's outline)
        assert np.any(np.abs(col - c.astype(int)).max(axis=1) <= 8)
