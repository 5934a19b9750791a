"""Out-of-distribution refusal (issue 17.1) and TTA uncertainty (17.2) of the bundled models.

The check is calibrated on the PneumoniaMNIST train split only (medview.ai.training.ood);
here it is measured on the val split (accept rate) and on images nobody trained on:
adult chest radiographs (CR DICOM, NIH / TBX11K PNGs, pydicom-data's RG1), CT slices
(DICOM series and NIfTI), and other modalities.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PNEUMONIAMNIST, REPO, SHARED_DATA, need

MODELS = REPO / "models"
NAMES = ("pneumonia_cnn", "pneumonia_ae")


@pytest.fixture(scope="module")
def loaded():
    pytest.importorskip("torch")
    from medview.ai.inference import load_model

    for n in NAMES:
        if not (MODELS / n / "ood.safetensors").exists():
            pytest.skip(f"models/{n} has no in-distribution calibration in this checkout")
    return {n: load_model(n, "cpu") for n in NAMES}


def _results(lm, images):
    from medview.ai.inference import run_batch
    from medview.ai.preprocess import SourceImage

    out = []
    for i in range(0, len(images), 64):
        batch = [
            SourceImage(path=f"#{k}", index=0, image=im) for k, im in enumerate(images[i : i + 64])
        ]
        out.extend(run_batch(lm, batch))
    return out


def test_val_split_is_accepted(loaded):
    """>= 95 % of the val split (never used for calibration) is in distribution."""
    with np.load(need(PNEUMONIAMNIST)) as d:
        val = d["val_images"]
    for name, lm in loaded.items():
        res = _results(lm, val)
        rate = np.mean([r.in_distribution for r in res])
        assert rate >= 0.95, (name, rate)
        card = json.loads((MODELS / name / "metadata.json").read_text())
        assert rate == pytest.approx(card["in_distribution"]["val_accept_rate"], abs=0.01)
        assert all(r.in_distribution is not None and r.distribution_reason for r in res)


def _ood_sources():
    from pydicom.data import get_testdata_file

    xray = SHARED_DATA / "xray"
    groups = {
        "adult chest X-ray": [
            xray / "cr_chest_pa_jpeg_baseline.dcm",
            xray / "nih_00000001_000.png",
            xray / "tbx11k_health_h0001.png",
            xray / "tbx11k_tb_tb0005.png",
            get_testdata_file("RG1_UNCR.dcm"),
        ],
        "CT slice": [
            SHARED_DATA / "ct" / "totalseg_example_dicom",
            SHARED_DATA / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz",
            get_testdata_file("CT_small.dcm"),
        ],
        "other": [
            get_testdata_file("MR_small.dcm"),
            get_testdata_file("RG3_UNCR.dcm"),
            get_testdata_file("US1_UNCR.dcm"),
        ],
    }
    return {g: [p for p in paths if p is not None] for g, paths in groups.items()}


@pytest.fixture(scope="module")
def ood_images():
    from medview.ai.preprocess import iter_path_images

    need(SHARED_DATA / "xray")
    need(SHARED_DATA / "ct")
    out = {}
    for group, paths in _ood_sources().items():
        imgs = []
        for p in paths:
            imgs += [
                s.image for s in iter_path_images(need(Path(p))) if not isinstance(s, Exception)
            ]
        out[group] = imgs
    return out


def test_out_of_distribution_images_are_refused(loaded, ood_images):
    """>= 9 in 10 refused overall and in every group; the raw figure is still given."""
    for name, lm in loaded.items():
        total, refused = 0, 0
        for group, imgs in ood_images.items():
            assert imgs, group
            res = _results(lm, imgs)
            flags = [r.in_distribution is False for r in res]
            assert np.mean(flags) >= 0.8, (name, group, flags)
            total += len(flags)
            refused += sum(flags)
            for r in res:  # the figure is kept for research use, with the reason
                assert r.probabilities is not None or r.anomaly_score is not None
                if not r.in_distribution:
                    assert r.distribution_reason.startswith("outside the training data")
        assert refused / total >= 0.9, (name, refused, total)


def test_uncertainty_is_the_spread_over_shifted_views(loaded):
    """Every output carries a TTA spread; the probability is the card's: the original
    view's, or that of the mean logit over the views (``output.tta.average``)."""
    from medview.ai.reliability import views

    with np.load(need(PNEUMONIAMNIST)) as d:
        imgs = d["val_images"][:16]
    lm = loaded["pneumonia_cnn"]
    res = _results(lm, imgs)
    from medview.ai.preprocess import prepare_batch

    x = prepare_batch(imgs, lm.spec)
    direct = lm.probabilities(x)[:, 1]
    got = np.array([r.probabilities["pneumonia"] for r in res])
    assert np.allclose(got, direct, atol=1e-5)
    allp = lm.probabilities(views(x, lm.shifts), average=False)[:, 1].reshape(-1, len(x))
    if lm.tta_average:  # the mean calibrated logit over the views
        logit = np.log(allp / (1 - allp)).mean(axis=0)
        assert np.allclose(got, 1 / (1 + np.exp(-logit)), atol=1e-5)
    else:
        assert np.allclose(got, allp[0], atol=1e-5)
    unc = np.array([r.uncertainty["pneumonia"] for r in res])
    assert np.allclose(unc, allp.std(axis=0), atol=1e-5)
    assert unc.max() > 0 and all(
        r.uncertainty["normal"] == pytest.approx(r.uncertainty["pneumonia"], abs=1e-6) for r in res
    )
    ae = _results(loaded["pneumonia_ae"], imgs)
    assert all(r.uncertainty["anomaly_score"] >= 0 for r in ae)


def test_cli_json_prints_the_raw_figure_and_the_verdict(loaded, capsys, xray_dir):
    from medview.cli import main

    rc = main(["analyze", str(xray_dir / "nih_00000001_000.png"), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and len(rows) == 2
    for row in rows:
        assert row["in_distribution"] is False
        assert "outside the training data" in row["in_distribution_reason"]
        assert row["probabilities"] or row["anomaly_score"] is not None
        assert set(row["uncertainty"]) <= {"normal", "pneumonia", "anomaly_score"}


def test_tampered_calibration_is_refused(tmp_path):
    pytest.importorskip("torch")
    from medview.ai.inference import LoadedModel
    from medview.ai.registry import read_model_folder
    from medview.modelcards import ModelError

    folder = tmp_path / "pneumonia_cnn"
    shutil.copytree(MODELS / "pneumonia_cnn", folder)
    f = folder / "ood.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="calibration sha256"):
        LoadedModel(read_model_folder(folder), "cpu")


def test_card_without_a_check_says_so(tmp_path):
    pytest.importorskip("torch")
    from medview.ai.inference import LoadedModel, run_batch
    from medview.ai.preprocess import SourceImage
    from medview.ai.registry import read_model_folder
    from medview.modelcards import write_card

    folder = tmp_path / "m"
    shutil.copytree(MODELS / "pneumonia_cnn", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    del meta["in_distribution"]
    meta["output"]["tta"] = {"shifts": []}
    write_card(folder, meta)
    lm = LoadedModel(read_model_folder(folder), "cpu")
    (r,) = run_batch(lm, [SourceImage(path="x", index=0, image=np.zeros((28, 28), np.uint8))])
    assert (
        r.in_distribution is None and "declares no in-distribution check" in r.distribution_reason
    )
    assert r.uncertainty is None
    assert r.as_json()["in_distribution"] is None


def test_calibration_uses_the_train_split_and_is_reproducible(tmp_path):
    """medview.ai.training.ood on a 160-image train slice, twice: same bytes, valid cards."""
    pytest.importorskip("torch")
    from medview.ai.registry import read_model_folder
    from medview.ai.training import ood
    from medview.modelcards import read_card, sha256_file

    with np.load(need(PNEUMONIAMNIST)) as d:
        npz = tmp_path / "slice.npz"
        np.savez(
            npz,
            train_images=d["train_images"][:160],
            train_labels=d["train_labels"][:160],
            val_images=d["val_images"][:40],
            val_labels=d["val_labels"][:40],
        )
    shas = []
    for run in ("a", "b"):
        root = tmp_path / run
        for n in NAMES:
            shutil.copytree(MODELS / n, root / n)
        blocks = ood.calibrate(npz, root, quantile=0.9)
        shas.append([sha256_file(root / n / "ood.safetensors") for n in NAMES])
        for n in NAMES:
            card = read_card(root / n)  # the manifest was re-hashed
            assert card.verify() == card.weights.sha256  # weights untouched
            assert card.weights.sha256 == read_card(MODELS / n).weights.sha256
            block = card.meta["in_distribution"]
            assert block == blocks[n] and block["train_quantile"] == 0.9
            assert block["train_accept_rate"] == pytest.approx(0.9, abs=0.02)
            assert (
                read_model_folder(root / n).meta["in_distribution"]["sha256"]
                == shas[-1][NAMES.index(n)]
            )
    assert shas[0] == shas[1]
