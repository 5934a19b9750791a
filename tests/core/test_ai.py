"""medview.ai: registry, preprocessing, inference, explanations, analyze CLI.

Tests needing ../shared/data skip with a reason when it is absent; tests of the
shipped models skip when models/ has not been trained in this checkout.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PNEUMONIAMNIST, REPO, need

MODELS = REPO / "models"
CNN = MODELS / "pneumonia_cnn"
AE = MODELS / "pneumonia_ae"


def need_model(folder: Path) -> Path:
    if not (folder / "metadata.json").exists():
        pytest.skip(f"needs the trained model in {folder}")
    return folder


@pytest.fixture(scope="module")
def pmnist() -> dict[str, np.ndarray]:
    with np.load(need(PNEUMONIAMNIST)) as d:
        return {k: d[k] for k in d}


def _tiny_model(folder: Path, size: int = 28, seed: int = 0, **params) -> Path:
    """A small randomly initialised classifier written through the registry."""
    import torch

    from medview.ai import nets
    from medview.ai.registry import write_model

    torch.manual_seed(seed)
    arch = {
        "name": "small_resnet",
        "params": {"widths": [8, 16], "blocks": [1, 1], "num_outputs": 1, **params},
    }
    module = nets.build(arch["name"], arch["params"]).eval()
    meta = {
        "name": folder.name,
        "version": "0.0.1",
        "task": "classification",
        "architecture": arch,
        "input": {"channels": 1, "size": [size, size], "mean": 0.5, "std": 0.25},
        "output": {"labels": ["normal", "pneumonia"], "threshold": 0.5, "temperature": 1.0},
        "weights": {},
    }
    write_model(folder, module, meta)
    return folder


# -- metrics -------------------------------------------------------------------------


def test_metrics_match_sklearn():
    from sklearn.metrics import roc_auc_score

    from medview.ai import metrics as M

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # ties on purpose
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    p = M.sigmoid(s)
    t = M.balanced_threshold(y, p)
    best = max(M.binary_metrics(y, p, c)["balanced_accuracy"] for c in np.unique(p))
    assert M.binary_metrics(y, p, t)["balanced_accuracy"] == pytest.approx(best)
    # a well-specified temperature is recovered
    z = rng.normal(scale=3.0, size=5000)
    yy = (rng.random(5000) < M.sigmoid(z / 2.0)).astype(int)
    assert M.fit_temperature(yy, z) == pytest.approx(2.0, rel=0.15)


# -- preprocessing -----------------------------------------------------------------


def test_png_from_pneumoniamnist_array_gives_same_input_and_output(tmp_path, pmnist):
    """Item 4: a 28x28 PNG written from an array == that array through training prep."""
    from PIL import Image

    from medview.ai.preprocess import InputSpec, iter_path_images, prepare, prepare_batch

    spec = InputSpec(polarity="chest-auto")
    arrays = pmnist["val_images"][:12]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"val_{i:02d}.png")
    items = [it for it in iter_path_images(tmp_path) if not isinstance(it, Exception)]
    assert len(items) == len(arrays)
    by_name = {Path(it.path).name: it for it in items}
    train_batch = prepare_batch(arrays, spec)  # the training pipeline
    for i, a in enumerate(arrays):
        img = by_name[f"val_{i:02d}.png"].image
        assert np.array_equal(img, a)
        assert np.array_equal(prepare(img, spec), train_batch[i])

    cnn = need_model(CNN)
    from medview.ai.inference import analyze_path, load_model

    lm = load_model(str(cnn), "cpu")
    direct = lm.probabilities(train_batch)[:, 1]
    results, errors = analyze_path(tmp_path, [str(cnn)], device="cpu")
    assert not errors
    got = {Path(r.path).name: r.probabilities["pneumonia"] for r in results}
    for i in range(len(arrays)):
        assert got[f"val_{i:02d}.png"] == pytest.approx(direct[i], abs=1e-9)


def test_polarity_guard_never_changes_training_inputs(pmnist):
    from medview.ai.preprocess import looks_negative

    for key in ("train_images", "val_images"):
        flipped = [i for i, a in enumerate(pmnist[key]) if looks_negative(a)]
        assert flipped == [], f"{key}: guard would flip {flipped}"
        # ... and it does flip their negatives
        neg = [looks_negative(255 - a) for a in pmnist[key][:500]]
        assert np.mean(neg) > 0.95


def test_large_image_is_center_cropped_and_area_resized():
    from medview.ai.preprocess import InputSpec, fit_display

    img = np.zeros((100, 140), np.uint8)
    img[:, 20:120] = 200  # the centre square is uniformly 200
    out = fit_display(img, InputSpec(height=28, width=28))
    assert out.shape == (28, 28)
    assert np.all(out == 200)


# -- registry --------------------------------------------------------------------------


def test_tampered_weights_are_refused(tmp_path, capsys):
    from medview.ai.registry import ModelError, get_model

    folder = _tiny_model(tmp_path / "tiny")
    info = get_model(str(folder))
    info.load_module("cpu")  # fine before tampering
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01  # flip one bit of one weight
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        get_model(str(folder)).load_module("cpu")
    msg = str(err.value)
    assert "sha256" in msg and "refusing" in msg and "\n" not in msg
    assert str(w) in msg

    from medview.cli import main

    png = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(png)
    rc = main(["analyze", str(png), "--model", str(folder), "--json"])
    out, errtxt = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert len(errtxt.strip().splitlines()) == 1 and "sha256" in errtxt


def test_missing_sha_and_bad_card_are_refused(tmp_path):
    from medview.ai.registry import ModelError, get_model, read_model_folder

    folder = _tiny_model(tmp_path / "nosha")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["weights"]["sha256"] = ""
    from medview.modelcards import write_card

    write_card(folder, meta)  # a consistent manifest: the missing sha256 itself is refused
    with pytest.raises(ModelError, match="no weights sha256"):
        get_model(str(folder)).load_module("cpu")
    (folder / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read model card"):
        read_model_folder(folder)


def test_user_models_folder_is_discovered_and_overrides(tmp_path, monkeypatch):
    from medview.ai.registry import discover

    monkeypatch.setenv("MEDVIEW_MODELS", str(tmp_path / "user"))
    _tiny_model(tmp_path / "user" / "clinic_model")
    found = discover()
    assert found["clinic_model"].source == "user"


def test_registry_takes_a_224px_architecture(tmp_path, xray_dir):
    """Any input size: a 224-px model loads, runs, explains and maps back to the image."""
    from medview.ai.inference import analyze_path

    folder = _tiny_model(tmp_path / "big224", size=224, stem_stride=2)
    results, errors = analyze_path(
        xray_dir / "cr_chest_pa_jpeg_baseline.dcm", [str(folder)], device="cpu", heatmaps=True
    )
    assert not errors and len(results) == 1
    r = results[0]
    assert r.heatmap.shape == (224, 224)
    assert r.overlay_heatmap().shape == (1024, 1024)
    assert sum(r.probabilities.values()) == pytest.approx(1.0)
    assert r.device == "cpu" and r.elapsed_ms > 0


# -- inference -------------------------------------------------------------------------


def test_deterministic_outputs_on_cpu(tmp_path, pmnist):
    from medview.ai.inference import LoadedModel
    from medview.ai.preprocess import prepare_batch
    from medview.ai.registry import get_model

    folder = CNN if (CNN / "metadata.json").exists() else _tiny_model(tmp_path / "det")
    info = get_model(str(folder))
    x = prepare_batch(pmnist["val_images"][:16], info.input_spec)
    a = LoadedModel(info, "cpu").probabilities(x)
    b = LoadedModel(info, "cpu").probabilities(x)
    assert np.array_equal(a, b)
    lm = LoadedModel(info, "cpu")
    cam1, cam2 = lm.gradcam(x[:1]), lm.gradcam(x[:1])
    assert np.array_equal(cam1, cam2)
    assert cam1.shape == (28, 28) and cam1.min() >= 0 and cam1.max() == pytest.approx(1.0)


def test_auto_device_falls_back_to_cpu_but_explicit_cuda_does_not():
    import torch

    from medview.ai.devices import resolve_device

    dev = resolve_device("auto")
    if not torch.cuda.is_available():
        assert dev.type in ("cpu", "mps")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:  # an explicit device that is missing is an error, never a silent CPU run
        with pytest.raises(ValueError, match="CUDA requested but not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_shipped_classifier_val_metrics_match_model_card(pmnist):
    from medview.ai import metrics as M
    from medview.ai.inference import load_model
    from medview.ai.preprocess import prepare_batch

    cnn = need_model(CNN)
    lm = load_model(str(cnn), "cpu")
    card = json.loads((cnn / "metadata.json").read_text())
    y = pmnist["val_labels"].reshape(-1)
    p = lm.probabilities(prepare_batch(pmnist["val_images"], lm.spec))[:, 1]
    v = card["validation"]
    assert M.roc_auc(y, p) == pytest.approx(v["auc"], abs=1e-3)
    m = M.binary_metrics(y, p, card["output"]["threshold"])
    assert m["accuracy"] == pytest.approx(v["accuracy"], abs=2e-3)
    assert m["sensitivity"] == pytest.approx(v["sensitivity"], abs=3e-3)
    assert m["specificity"] == pytest.approx(v["specificity"], abs=8e-3)
    assert M.expected_calibration_error(y, p) == pytest.approx(v["ece_15bins"], abs=2e-3)
    assert v["auc"] >= 0.97  # what this model must at least reach on val


def test_shipped_autoencoder_val_auc_matches_model_card(pmnist):
    from medview.ai import metrics as M
    from medview.ai.inference import load_model
    from medview.ai.preprocess import prepare_batch

    ae = need_model(AE)
    lm = load_model(str(ae), "cpu")
    card = json.loads((ae / "metadata.json").read_text())
    y = pmnist["val_labels"].reshape(-1)
    scores, maps, lat = lm.anomaly(prepare_batch(pmnist["val_images"], lm.spec))
    assert M.roc_auc(y, scores) == pytest.approx(
        card["validation"]["auc_unsupervised_pneumonia"], abs=1e-3
    )
    assert maps.shape == (len(y), 28, 28) and maps.min() >= 0 and maps.max() <= 1
    assert lat.shape == (len(y), card["output"]["latent_dim"])


def test_ct_series_runs_in_batches_with_progress_and_cancel(ct_dir, tmp_path):
    from medview.ai.inference import analyze_images
    from medview.ai.preprocess import volume_images
    from medview.errors import Cancelled
    from medview.io import load_path
    from medview.tasks import TaskState

    folder = _tiny_model(tmp_path / "ct")
    vol = load_path(ct_dir)
    n = vol.shape[0]
    partials, fractions = [], []
    st = TaskState(on_progress=lambda f, m: fractions.append(f), on_partial=partials.append)

    def analyze(state: TaskState) -> list:
        """The CT's slices in batches of 8, on the CPU."""
        images = volume_images(vol, str(ct_dir))
        return analyze_images(
            images, [str(folder)], batch_size=8, total=n, device="cpu", state=state
        )

    res = analyze(st)
    assert len(res) == n and [r.index for r in res] == list(range(n))
    assert [len(p) for p in partials] == [8, 8, n - 16]
    assert fractions[-1] == pytest.approx(1.0)

    # cancel after the first batch: stops before the second
    seen = []

    def on_partial(batch):
        seen.append(batch)
        st2.cancel()

    st2 = TaskState(on_partial=on_partial)
    with pytest.raises(Cancelled):
        analyze(st2)
    assert len(seen) == 1


# -- CLI -------------------------------------------------------------------------------


def _analyze_json(capsys, *argv: str) -> tuple[int, list[dict], str]:
    from medview.cli import main

    rc = main(["analyze", *argv, "--json"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_analyze_cr_monochrome1_and_monochrome2_give_same_probability(xray_dir, capsys, tmp_path):
    need_model(CNN)
    need_model(AE)
    files = [xray_dir / "cr_chest_pa_jpeg_baseline.dcm", xray_dir / "cr_chest_pa_monochrome1.dcm"]
    both = ["--model", "pneumonia_cnn", "--model", "pneumonia_ae", "--device", "cpu"]
    maps_out = ["--heatmap-out", str(tmp_path / "maps")]
    rc, rows, err = _analyze_json(capsys, str(files[0]), *both, *maps_out)
    assert rc == 0, err
    rc, rows2, err = _analyze_json(capsys, str(files[1]), *both)
    assert rc == 0, err
    keys = {
        "path",
        "model",
        "version",
        "device",
        "probabilities",
        "predicted",
        "threshold",
        "anomaly_score",
        "elapsed_ms",
    }
    for row in rows + rows2:
        assert keys <= set(row)
        assert row["device"] == "cpu" and row["elapsed_ms"] > 0
    cnn1 = next(r for r in rows if r["model"] == "pneumonia_cnn")
    cnn2 = next(r for r in rows2 if r["model"] == "pneumonia_cnn")
    assert cnn1["probabilities"]["pneumonia"] == pytest.approx(
        cnn2["probabilities"]["pneumonia"], abs=1e-6
    )
    assert cnn1["predicted"] == cnn2["predicted"]
    assert 0.0 <= cnn1["probabilities"]["pneumonia"] <= 1.0 and cnn1["anomaly_score"] is None
    ae1 = next(r for r in rows if r["model"] == "pneumonia_ae")
    ae2 = next(r for r in rows2 if r["model"] == "pneumonia_ae")
    assert ae1["probabilities"] is None and ae1["anomaly_score"] > 0
    assert ae1["anomaly_score"] == pytest.approx(ae2["anomaly_score"], rel=1e-6)
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert (
        len(maps) == 2 and any("grad-cam" in m for m in maps) and any("anomaly" in m for m in maps)
    )


def test_true_monochrome1_twin_gives_same_probability(xray_dir, capsys, tmp_path):
    """A MONOCHROME1 file whose stored pixels ARE inverted displays identically."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    need_model(CNN)
    src = xray_dir / "cr_chest_pa_jpeg_baseline.dcm"
    ds = pydicom.dcmread(src)
    arr = ds.pixel_array
    ds.PixelData = (255 - arr).astype(np.uint8).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for kw in ("LossyImageCompression", "LossyImageCompressionRatio"):
        if kw in ds:
            delattr(ds, kw)
    twin = tmp_path / "mono1_twin.dcm"
    ds.save_as(twin, enforce_file_format=True)
    rc, rows, err = _analyze_json(capsys, str(src), "--model", "pneumonia_cnn", "--device", "cpu")
    rc2, rows2, err2 = _analyze_json(
        capsys, str(twin), "--model", "pneumonia_cnn", "--device", "cpu"
    )
    assert rc == 0 and rc2 == 0, err + err2
    assert rows[0]["probabilities"]["pneumonia"] == pytest.approx(
        rows2[0]["probabilities"]["pneumonia"], abs=1e-6
    )


def test_analyze_folder_reports_bad_files_and_continues(xray_dir, tmp_path, capsys):
    need_model(CNN)
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(xray_dir / "nih_00000001_000.png", folder / "ok.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rc, rows, err = _analyze_json(
        capsys, str(folder), "--model", "pneumonia_cnn", "--device", "cpu"
    )
    assert rc == 0
    assert [Path(r["path"]).name for r in rows] == ["ok.png"]
    assert "broken.png" in err and len(err.strip().splitlines()) == 1


def test_analyze_bad_input_exit_codes(tmp_path, capsys):
    from medview.cli import main

    assert main(["analyze", str(tmp_path / "nope.dcm"), "--json"]) == 2
    assert "nope.dcm" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path), "--model", "no_such_model"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_analyze_command_module_is_light():
    from tests.helpers.imports import loaded_after

    code = "import medview.cli, medview.commands.analyze, medview.ai\nmedview.cli.build_parser()"
    assert loaded_after(code, ("torch", "PySide6")) == []


def test_discover_skips_other_subsystems_models_but_reports_broken_cards(tmp_path, monkeypatch):
    from medview.ai.registry import discover, discover_cards

    root = tmp_path / "user"
    monkeypatch.setenv("MEDVIEW_MODELS", str(root))
    (root / "forecaster").mkdir(parents=True)
    forecast_card = {  # the one card schema (medview.modelcards), a forecast task
        "name": "f",
        "version": "1",
        "task": "forecast",
        "architecture": {"name": "glucose_lstm", "params": {"layers": 1}},
        "input": {"window": 36},
        "output": {"horizon_steps": 12},
        "weights": {"file": "model.safetensors", "sha256": "0" * 64},
    }
    from medview.modelcards import write_card

    write_card(root / "forecaster", forecast_card)  # with its manifest
    (root / "broken").mkdir()
    (root / "broken" / "metadata.json").write_text(json.dumps({"name": "b", "task": "anomaly"}))
    errors: list[str] = []
    found = discover(errors)
    assert "f" not in found and "b" not in found
    assert len([e for e in errors if str(root) in e]) == 1 and "broken" in errors[-1]
    cards = discover_cards()  # the registry lists every card, forecast included
    assert cards["f"].task == "forecast" and "b" not in cards


def test_heatmap_maps_back_through_the_centre_crop():
    from medview.ai.inference import heatmap_to_source

    out = heatmap_to_source(np.ones((28, 28), np.float32), (100, 140))
    assert out.shape == (100, 140)
    assert np.all(out[:, 20:120] == 1.0) and np.all(out[:, :20] == 0) and np.all(out[:, 120:] == 0)
    tall = heatmap_to_source(np.ones((28, 28), np.float32), (90, 50))
    assert np.all(tall[20:70] == 1.0) and tall[:20].max() == 0 and tall[70:].max() == 0


def test_out_of_scope_images_carry_warnings(ct_dir, xray_dir):
    from medview.ai.inference import analyze_path

    need_model(CNN)
    res, errors = analyze_path(ct_dir, ["pneumonia_cnn"], device="cpu")
    assert not errors and len(res) == 20
    assert all("modality CT" in " ".join(r.warnings) for r in res)
    assert all("modality CT" in " ".join(r.as_json()["warnings"]) for r in res)
    mono1, _ = analyze_path(
        xray_dir / "cr_chest_pa_monochrome1.dcm", ["pneumonia_cnn"], device="cpu"
    )
    mono2, _ = analyze_path(
        xray_dir / "cr_chest_pa_jpeg_baseline.dcm", ["pneumonia_cnn"], device="cpu"
    )
    assert any("polarity guard" in w for w in mono1[0].warnings)
    assert not any("polarity guard" in w for w in mono2[0].warnings)
    # the adult CR (PatientAge 62) is outside the card's 1-5 y: warned, not silently scored
    for r in (mono1[0], mono2[0]):
        assert not r.in_scope
        assert "patient age 62 y outside intended use (1-5 y)" in r.warnings


@pytest.mark.parametrize("target", ["classifier", "autoencoder"])
def test_training_split_is_reproducible_and_writes_one_schema_cards(tmp_path, target, monkeypatch):
    """medview.ai.training: 1 epoch on a real 80-image PneumoniaMNIST slice, twice, seed 0."""
    pytest.importorskip("torch")
    from medview.ai import training
    from medview.modelcards import read_card, sha256_file
    from tests.helpers.data_helpers import tiny_pneumoniamnist

    monkeypatch.setenv("MEDVIEW_TRAIN_THREADS", "1")
    npz = tiny_pneumoniamnist(tmp_path / "tiny.npz", 24, 16)
    fn = training.train_classifier if target == "classifier" else training.train_autoencoder
    lines: list[str] = []
    metas = [fn(npz, tmp_path / f"r{k}", epochs=1, log=lines.append) for k in (0, 1)]
    shas = [sha256_file(tmp_path / f"r{k}" / "model.safetensors") for k in (0, 1)]
    assert shas[0] == shas[1] == metas[0]["weights"]["sha256"]
    assert metas[0]["validation"] == metas[1]["validation"]
    assert metas[0]["validation"]["n"] == 32
    assert lines and lines[0].startswith(f"[{target}] epoch 1/1 ")
    card = read_card(tmp_path / "r0")  # checks the manifest (card + weights) too
    assert card.is_image_model and card.verify() == shas[0]
    assert card.manifest_sha256 == metas[0]["manifest"]["sha256"]
    assert card.meta["intended_use_scope"]["modalities"] == ["CR", "DX"]
    assert "# " + card.name in (tmp_path / "r0" / "README.md").read_text()
