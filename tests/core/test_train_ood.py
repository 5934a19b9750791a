"""``medview train`` refits the in-distribution check of what it trained (issue 17).

A retrained model must not ship with the ``ood.safetensors`` of the weights it replaced:
the classifier's check uses its own pooled features, the autoencoder's (and the
classifier's) its latents and reconstruction error. Tiny real runs (1 epoch on a
PneumoniaMNIST slice) check that the calibration file is rewritten from the new
weights, that the card names its sha256 (manifest re-hashed) and that the model then
loads and gives verdicts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers.data_helpers import tiny_pneumoniamnist

MODELS = REPO / "models"


def _tiny_npz(tmp_path: Path) -> Path:
    """64 train, 32 val images of PneumoniaMNIST, both classes."""
    return tiny_pneumoniamnist(tmp_path / "tiny.npz", 32, 16)


def _train(target: str, out: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    from medview.cli import main

    rc = main(["train", target, "--out", str(out), "--epochs", "1", "--data", str(data)])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


def _check_refit(folder: Path, bundled: str, n_train: int) -> dict:
    """The card's check names the new file's sha256 and the model loads with it."""
    from medview.ai.inference import LoadedModel
    from medview.ai.registry import read_model_folder
    from medview.modelcards import read_card, sha256_file

    card = read_card(folder)
    card.verify()  # manifest (card) and weights agree
    block = card.meta["in_distribution"]
    sha = sha256_file(folder / "ood.safetensors")
    assert block["sha256"] == sha != sha256_file(MODELS / bundled / "ood.safetensors")
    assert block["calibration"].startswith("PneumoniaMNIST train split")
    lm = LoadedModel(read_model_folder(folder), "cpu")  # verifies the calibration sha256
    assert lm.ood is not None and lm.ood.n_train == n_train  # fitted on this train split only
    return block


def test_train_classifier_refits_its_check(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from medview.ai.inference import analyze_images
    from medview.ai.preprocess import SourceImage
    from medview.ai.registry import read_model_folder

    monkeypatch.setenv("MEDVIEW_TRAIN_THREADS", "1")
    data = _tiny_npz(tmp_path)
    out = tmp_path / "cnn"
    printed = _train("classifier", out, data, capsys)
    block = _check_refit(out, "pneumonia_cnn", 64)
    assert block["detectors"] == ["ae_reconstruction", "ae_latent", "image_stats", "features"]
    assert printed["in_distribution"] == {
        str(out): {k: block[k] for k in ("threshold", "sha256", "val_accept_rate")}
    }
    # only the trained folder was written: the bundled calibration is untouched
    bundled = json.loads((MODELS / "pneumonia_cnn" / "metadata.json").read_text())
    assert bundled["in_distribution"]["sha256"] != block["sha256"]
    with np.load(data) as d:
        img = d["val_images"][0]
    (r,) = analyze_images(
        [SourceImage(path="x.png", index=0, image=img)], [read_model_folder(out)], "cpu"
    )
    assert r.in_distribution is not None and r.distribution_reason


def test_train_autoencoder_refits_its_check_and_the_classifier_next_to_it(
    tmp_path, monkeypatch, capsys
):
    """A classifier in the same models folder uses this autoencoder: refitted too."""
    pytest.importorskip("torch")
    from medview.modelcards import sha256_file

    monkeypatch.setenv("MEDVIEW_TRAIN_THREADS", "1")
    data = _tiny_npz(tmp_path)
    root = tmp_path / "models"
    shutil.copytree(MODELS / "pneumonia_cnn", root / "pneumonia_cnn")
    cnn_weights = sha256_file(root / "pneumonia_cnn" / "model.safetensors")
    printed = _train("autoencoder", root / "pneumonia_ae", data, capsys)
    ae = _check_refit(root / "pneumonia_ae", "pneumonia_ae", 64)
    assert ae["detectors"] == ["ae_reconstruction", "ae_latent", "image_stats"]
    cnn = _check_refit(root / "pneumonia_cnn", "pneumonia_cnn", 64)
    assert sorted(printed["in_distribution"]) == sorted(
        str(root / n) for n in ("pneumonia_ae", "pneumonia_cnn")
    )
    assert printed["in_distribution"][str(root / "pneumonia_cnn")]["sha256"] == cnn["sha256"]
    # the classifier's weights were not touched, only its calibration
    assert sha256_file(root / "pneumonia_cnn" / "model.safetensors") == cnn_weights
