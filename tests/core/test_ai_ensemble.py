"""The classifier as an ensemble of trained members (``medview train ensemble``, issue 17).

The ensemble averages its members' logits; its uncertainty is the spread of their
calibrated probabilities; Grad-CAM, the pooled features (similar search) and the
in-distribution check work through the same code as for one net. Tiny real runs
(1 epoch on a PneumoniaMNIST slice) build one end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.data_helpers import tiny_pneumoniamnist


def test_ensemble_averages_its_members_logits():
    torch = pytest.importorskip("torch")
    from medview.ai import nets
    from medview.ai.training.classifier import CLASSIFIER_ARCH

    torch.manual_seed(0)
    ens = nets.build("ensemble", {"members": 3, "member": CLASSIFIER_ARCH}).eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        each = torch.stack([m(x) for m in ens.members])
        f = ens.forward_features(x)
        assert f.shape == (4, 3 * 128, 7, 7)
        assert torch.allclose(ens.member_logits(f), each, atol=1e-6)
        assert torch.allclose(ens(x), each.mean(dim=0), atol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        nets.build("ensemble", {"members": 0, "member": CLASSIFIER_ARCH})


def _tiny_npz(tmp_path: Path) -> Path:
    """64 train, 32 val images of PneumoniaMNIST, both classes."""
    return tiny_pneumoniamnist(tmp_path / "tiny.npz", 32, 16)


def test_train_ensemble_end_to_end(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from medview.ai.inference import LoadedModel, run_batch
    from medview.ai.preprocess import SourceImage, prepare
    from medview.ai.registry import read_model_folder
    from medview.ai.reliability import member_probabilities
    from medview.cli import main
    from medview.modelcards import read_card, sha256_file

    monkeypatch.setenv("MEDVIEW_TRAIN_THREADS", "1")
    data = _tiny_npz(tmp_path)
    members = []
    for seed in (0, 1):
        m = tmp_path / f"m{seed}"
        argv = ["train", "classifier", "--seed", str(seed), "--epochs", "1"]
        assert main([*argv, "--out", str(m), "--data", str(data)]) == 0
        members.append(m)
    capsys.readouterr()
    out = tmp_path / "ens"
    argv = ["train", "ensemble", "--members", *map(str, members)]
    assert main([*argv, "--out", str(out), "--data", str(data)]) == 0
    printed = json.loads(capsys.readouterr().out)
    card = read_card(out)
    card.verify()
    meta = card.meta
    assert meta["architecture"]["name"] == "ensemble"
    assert meta["version"].startswith("2.0.0-retrained-")  # a new model line
    assert meta["architecture"]["params"]["members"] == 2
    assert [s["weights_sha256"] for s in meta["training"]["members"]] == [
        sha256_file(m / "model.safetensors") for m in members
    ]
    assert meta["output"]["tta"] == {"shifts": []}
    assert meta["in_distribution"]["sha256"] == sha256_file(out / "ood.safetensors")
    assert printed["in_distribution"][str(out)]["sha256"] == meta["in_distribution"]["sha256"]

    lm = LoadedModel(read_model_folder(out), "cpu")
    parts = [LoadedModel(read_model_folder(m), "cpu") for m in members]
    with np.load(data) as d:
        imgs = d["val_images"][:4]
    x = np.stack([prepare(im, lm.spec) for im in imgs])
    p, feats, per = member_probabilities(lm, x)
    assert per.shape == (2, 4, 2) and feats.shape == (4, 256)
    # each member's calibrated probability is that member's logit at the ensemble's temperature
    for k, part in enumerate(parts):
        z = part.probabilities(x, average=False)  # its own temperature: compare logits
        zk = np.log(z[:, 1] / z[:, 0]) * part.temperature / lm.temperature
        assert np.allclose(per[k][:, 1], 1 / (1 + np.exp(-zk)), atol=1e-5)
    res = run_batch(lm, [SourceImage(path="x", index=i, image=im) for i, im in enumerate(imgs)])
    for i, r in enumerate(res):
        assert r.probabilities["pneumonia"] == pytest.approx(p[i, 1])
        assert r.uncertainty["pneumonia"] == pytest.approx(per[:, i, 1].std(), abs=1e-9)
        assert r.in_distribution is not None
        assert r.latent is not None and r.latent.shape == (256,)
    cam = lm.gradcam(x[:1])
    assert cam.shape == (28, 28) and float(cam.max()) == pytest.approx(1.0)


def test_train_ensemble_refuses_other_models(tmp_path, capsys):
    from medview.cli import main
    from tests.conftest import REPO

    ae = REPO / "models" / "pneumonia_ae"
    rc = main(["train", "ensemble", "--members", str(ae), str(ae), "--out", str(tmp_path / "e")])
    assert rc == 2
    assert "not a pneumonia_cnn" in capsys.readouterr().err
