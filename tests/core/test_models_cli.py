"""Bring your own model (issue 17.4): `medview models import|list|show|remove`.

The tests build the models they import: a ResNet-18 and a DenseNet-121 (1 channel,
224 px, 18 labels) with random weights saved as PyTorch checkpoints, and an ONNX
export; after import medview's outputs must equal the source framework's within 1e-5.
A pickle carrying code must be refused without running it.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

XRV_LABELS = [
    "Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema",
    "Fibrosis", "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule",
    "Mass", "Hernia", "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum",
]  # fmt: skip


@pytest.fixture()
def user_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "user_models"
    monkeypatch.setenv("MEDVIEW_MODELS", str(root))
    monkeypatch.setenv("MEDVIEW_AI_THREADS", "1")
    return root


def _card(tmp_path: Path, name: str, arch: dict, size: int, labels: list[str], **out) -> Path:
    card = {
        "name": name,
        "version": "2.1.0",
        "task": "classification",
        "description": "test model built by the test",
        "architecture": arch,
        "input": {"channels": 1, "size": [size, size], "mean": 0.5, "std": 0.25},
        "output": {"labels": labels, **out},
    }
    path = tmp_path / f"{name}.card.json"
    path.write_text(json.dumps(card))
    return path


def _randomise(module) -> None:
    """Random weights and batch-norm statistics, so the outputs are not trivial."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                if "running_var" in name:
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
    module.eval()


def _images(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, size, size), dtype=np.uint8)


def _medview_probs(name: str, images: np.ndarray) -> np.ndarray:
    from medview.ai.inference import LoadedModel
    from medview.ai.registry import get_model

    lm = LoadedModel(get_model(name), "cpu")
    from medview.ai.preprocess import prepare_batch

    return lm.probabilities(prepare_batch(images, lm.spec))


def _source_probs(module, images: np.ndarray, multilabel: bool) -> np.ndarray:
    from medview.ai.preprocess import InputSpec, prepare_batch

    x = torch.from_numpy(
        prepare_batch(images, InputSpec(height=images.shape[1], width=images.shape[2]))
    )
    with torch.no_grad():
        z = module(x)
    if z.shape[1] == 1:
        p = torch.sigmoid(z[:, 0])
        return torch.stack([1 - p, p], 1).numpy()
    return (torch.sigmoid(z) if multilabel else torch.softmax(z, 1)).numpy()


def _main(*argv: str) -> int:
    from medview.cli import main

    return main(list(argv))


def test_resnet18_checkpoint_imports_and_matches_torch(tmp_path, user_root, capsys):
    from medview.ai import zoo

    net = zoo.ResNet18(in_channels=1, num_outputs=1)
    _randomise(net)
    ckpt = tmp_path / "resnet.pth"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, ckpt
    )
    arch = {"name": "resnet18", "params": {"in_channels": 1, "num_outputs": 1}}
    card = _card(tmp_path, "clinic_resnet", arch, 64, ["normal", "abnormal"], threshold=0.5)
    assert _main("models", "import", str(ckpt), "--card", str(card)) == 0
    assert "imported clinic_resnet 2.1.0 (safetensors)" in capsys.readouterr().out
    folder = user_root / "clinic_resnet"
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["weights"]["format"] == "safetensors" and meta["imported"]["format"] == "torch"
    assert sorted(p.name for p in folder.iterdir()) == ["metadata.json", "model.safetensors"]
    imgs = _images(3, 64)
    assert (
        np.abs(_medview_probs("clinic_resnet", imgs) - _source_probs(net, imgs, False)).max() < 1e-5
    )


def test_densenet121_xrv_style_checkpoint_matches_torch(tmp_path, user_root, capsys):
    """DenseNet-121, 1 channel at 224 px, 18 independent sigmoid labels."""
    from medview.ai import zoo

    net = zoo.DenseNet121(in_channels=1, num_outputs=18)
    _randomise(net)
    ckpt = tmp_path / "densenet.pt"
    torch.save(net.state_dict(), ckpt)
    arch = {"name": "densenet121", "params": {"in_channels": 1, "num_outputs": 18}}
    card = _card(tmp_path, "xrv_like", arch, 224, XRV_LABELS, type="sigmoid")
    assert _main("models", "import", str(ckpt), "--card", str(card), "--json") == 0
    row = json.loads(capsys.readouterr().out)
    assert row["architecture"] == "densenet121" and row["labels"] == XRV_LABELS
    imgs = _images(2, 224)
    ours = _medview_probs("xrv_like", imgs)
    assert ours.shape == (2, 18)
    assert np.abs(ours - _source_probs(net, imgs, True)).max() < 1e-5


def test_onnx_export_imports_and_matches_torch(tmp_path, user_root, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from medview.ai import nets

    net = nets.build("small_resnet", {"widths": [8, 16], "blocks": [1, 1], "num_outputs": 3})
    _randomise(net)
    onnx_path = tmp_path / "clinic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False,
            input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )  # fmt: skip
    card = _card(tmp_path, "clinic_onnx", {"name": "anything"}, 28, ["a", "b", "c"])
    assert _main("models", "import", str(onnx_path), "--card", str(card)) == 0
    capsys.readouterr()
    meta = json.loads((user_root / "clinic_onnx" / "metadata.json").read_text())
    assert meta["weights"]["format"] == "onnx" and meta["architecture"]["name"] == "onnx"
    imgs = _images(4, 28)
    assert (
        np.abs(_medview_probs("clinic_onnx", imgs) - _source_probs(net, imgs, False)).max() < 1e-5
    )
    # analyze runs it (no Grad-CAM for a graph: no heat map, no failure)
    from PIL import Image

    png = tmp_path / "img.png"
    Image.fromarray(imgs[0]).save(png)
    assert _main("analyze", str(png), "--model", "clinic_onnx", "--json") == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert set(row["probabilities"]) == {"a", "b", "c"} and row["in_distribution"] is None
    # tampering with the imported graph is refused like any weights (a new process: no
    # model verified before is cached)
    from medview.ai import inference

    inference._loaded.clear()
    data = bytearray((user_root / "clinic_onnx" / "model.onnx").read_bytes())
    data[-1] ^= 1
    (user_root / "clinic_onnx" / "model.onnx").write_bytes(bytes(data))
    assert _main("analyze", str(png), "--model", "clinic_onnx", "--json") == 2
    assert "sha256" in capsys.readouterr().err


class _Evil:
    """Unpickling this runs ``open(marker, 'w')`` under the full unpickler."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["plain pickle", "torch.save zip"])
def test_pickle_with_code_is_refused_without_running(tmp_path, user_root, capsys, container):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    payload = {"conv1.weight": _Evil(str(marker))}
    if container == "plain pickle":
        with open(evil, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, evil)
    with open(tmp_path / "check.pkl", "wb") as fh:  # the payload is real: plain pickle runs it
        pickle.dump(_Evil(str(tmp_path / "control")), fh)
    with open(tmp_path / "check.pkl", "rb") as fh:
        pickle.load(fh).close()
    assert (tmp_path / "control").exists()
    arch = {"name": "resnet18", "params": {"in_channels": 1, "num_outputs": 1}}
    card = _card(tmp_path, "evil", arch, 64, ["n", "p"])
    assert _main("models", "import", str(evil), "--card", str(card)) == 2
    err = capsys.readouterr().err
    assert "weights_only=True" in err and "nothing in it was run" in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (user_root / "evil").exists()


@pytest.mark.parametrize(
    ("arch", "suffix", "reason"),
    [
        ({"name": "vit_giant"}, ".pt", "not a known one"),
        ({"name": "resnet18", "params": {"in_channels": 1, "num_outputs": 5}}, ".pt", "do not fit"),
        ({"name": "resnet18"}, ".exe", "unknown model file type"),
    ],
)
def test_bad_imports_are_one_line_refusals(tmp_path, user_root, capsys, arch, suffix, reason):
    from medview.ai import zoo

    net = zoo.ResNet18(in_channels=1, num_outputs=1)
    f = tmp_path / f"m{suffix}"
    torch.save(net.state_dict(), f)
    card = _card(tmp_path, "bad", arch, 64, ["n", "p"])
    assert _main("models", "import", str(f), "--card", str(card)) == 2
    err = capsys.readouterr().err
    assert reason in err and len(err.strip().splitlines()) == 1
    assert not (user_root / "bad").exists() and not list(user_root.glob(".import-*"))


def test_list_show_remove(tmp_path, user_root, capsys):
    from medview.ai import zoo

    net = zoo.ResNet18(in_channels=1, num_outputs=1)
    f = tmp_path / "m.pt"
    torch.save(net.state_dict(), f)
    arch = {"name": "resnet18", "params": {"in_channels": 1, "num_outputs": 1}}
    card = _card(tmp_path, "mine", arch, 64, ["n", "p"])
    assert _main("models", "import", str(f), "--card", str(card)) == 0
    assert _main("models", "import", str(f), "--card", str(card)) == 2  # exists: --force
    assert "--force" in capsys.readouterr().err
    assert _main("models", "list", "--json") == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["mine"]["source"] == "user" and rows["pneumonia_cnn"]["source"] == "bundled"
    assert rows["glucose_lstm"]["task"] == "forecast" and len(rows["mine"]["manifest_sha256"]) == 64
    assert _main("models", "show", "mine") == 0
    out = capsys.readouterr().out
    assert "architecture: resnet18" in out and "manifest sha256:" in out
    assert _main("models", "remove", "pneumonia_cnn") == 2
    assert "bundled model" in capsys.readouterr().err
    assert _main("models", "remove", "mine") == 0
    assert not (user_root / "mine").exists()
    assert _main("models", "show", "mine") == 2
    # a broken user model is listed loudly (exit 1), never hidden
    (user_root / "pneumonia_cnn").mkdir(parents=True)
    (user_root / "pneumonia_cnn" / "metadata.json").write_text("{")
    capsys.readouterr()
    assert _main("models", "list") == 1
    out, err = capsys.readouterr()
    assert "pneumonia_cnn" not in out and "cannot read model card" in err
