"""The one model-card schema (medview.modelcards): every bundled card, validation rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medview.errors import MedviewError
from medview.modelcards import (
    TASKS,
    ModelError,
    read_card,
    sha256_file,
    validate,
    with_manifest,
    write_card,
)

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
BUNDLED = sorted(p.name for p in MODELS.iterdir() if (p / "metadata.json").exists())


def _card(**over: object) -> dict:
    card = {
        "name": "m",
        "version": "1",
        "task": "classification",
        "architecture": {"name": "small_resnet", "params": {"num_outputs": 1}},
        "input": {"channels": 1, "size": [28, 28], "mean": 0.5, "std": 0.25},
        "output": {"labels": ["normal", "pneumonia"]},
        "weights": {"file": "model.safetensors", "sha256": "0" * 64},
    }
    card.update(over)
    return with_manifest(card)


def test_one_model_error_is_a_medview_error():
    import medview.ai
    from medview.ai import registry

    assert issubclass(ModelError, MedviewError)
    assert registry.ModelError is ModelError and medview.ai.ModelError is ModelError
    err = ModelError("bad card", "/x/metadata.json")
    assert str(err) == "/x/metadata.json: bad card"


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_card_follows_the_schema_and_its_sha256_matches(name):
    card = read_card(MODELS / name)
    assert card.name == name and card.task in TASKS
    if not card.weights_path.exists():
        pytest.skip(f"{card.weights_path} not in this checkout")
    assert card.verify() == sha256_file(card.weights_path) == card.weights.sha256


def test_registry_lists_every_card_but_analyses_only_images():
    from medview.ai.registry import discover, discover_cards

    cards = discover_cards()
    images = discover()
    assert set(BUNDLED) <= set(cards)
    assert cards["glucose_lstm"].task == "forecast"
    assert "glucose_lstm" not in images
    assert all(m.is_image_model for m in images.values())


def test_glucose_card_is_the_one_schema_and_loads():
    from medview.forecast.lstm import HORIZON_STEPS, WINDOW, load_model

    card = read_card(MODELS / "glucose_lstm")
    assert card.params == {"layers": 2, "hidden": 64}
    assert len(card.output["conformal_mgdl"]) == HORIZON_STEPS
    assert card.input["window"] == WINDOW
    model = load_model(MODELS / "glucose_lstm")
    q = model.predict(np.full((1, WINDOW), 120.0, np.float32))
    assert q.shape == (1, HORIZON_STEPS, 3)
    assert np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2])


def test_glucose_trainer_writes_the_committed_card_shape(tmp_path):
    """forecast/train.model_card writes the same keys as the committed (migrated) card."""
    pytest.importorskip("torch")
    from medview.forecast import train

    committed = json.loads((MODELS / "glucose_lstm" / "metadata.json").read_text())
    net = train.build_torch_model(train.HIDDEN, train.LAYERS)
    state = {k: v.detach() for k, v in net.state_dict().items()}
    from safetensors.torch import save_file

    wp = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(wp))
    run = {
        "seed": 0,
        "epochs": 1,
        "best_epoch": 1,
        "history": [],
        "train_time": 1.0,
        "t_sim": 1.0,
        "n_train": 1,
        "n_calib": 1,
    }
    valid = {k: v for k, v in committed["validation"].items() if k != "note"}
    meta = train.model_card(run, np.zeros(train.HORIZON_STEPS), valid, wp, state)
    # written after training by `medview forecast --cgm ... --calibrate` (real-CGM conformal)
    later = {"": {"validation_real"}, "output": {"conformal_real"}}
    top = [k for k in committed if k not in later[""]]
    assert list(meta) + ["manifest"] == top  # write_card adds the manifest
    for block in ("architecture", "input", "output", "weights", "training", "training_data"):
        want = [k for k in committed[block] if k not in later.get(block, set())]
        assert list(meta[block]) == want, block
    assert meta["weights"]["parameters"] == committed["weights"]["parameters"]
    assert meta["weights"]["bytes"] == committed["weights"]["bytes"]
    validate(meta, tmp_path, check=False)  # structure; write_card then adds the manifest
    write_card(tmp_path, meta)
    assert read_card(tmp_path).manifest_sha256


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"weights": {"file": "../other/model.safetensors"}}, "inside the model folder"),
        ({"weights": {"file": "/etc/passwd"}}, "inside the model folder"),
        ({"weights": {"file": "C:\\models\\m.safetensors"}}, "inside the model folder"),
        ({"output": {"labels": ["a", "b", "c"]}}, "3 labels for 1 model output"),
        (
            {
                "architecture": {"name": "x", "params": {"num_outputs": 3}},
                "output": {"labels": ["a", "b"]},
            },
            "2 labels for 3 model output",
        ),
        ({"input": {"mean": 0.5, "std": 0}}, "input.std must be positive"),
        ({"input": {"mean": 0.5, "std": [0.2, -1.0]}}, "input.std must be positive"),
        ({"input": {"channels": 1, "size": [28, 0]}}, "input.size must be"),
        ({"input": {"channels": 1, "size": [28, 100000]}}, "input.size must be"),
        ({"input": {"channels": 0, "size": [28, 28]}}, "input.channels must be"),
        ({"input": {"channels": 1, "size": "big"}}, "input.size must be"),
        ({"task": "detection"}, "unknown task"),  # segmentation is known (volume models)
        ({"output": "sigmoid"}, "output must be a JSON object"),
    ],
)
def test_validate_refuses_bad_cards(tmp_path, change, reason):
    with pytest.raises(ModelError, match=reason) as err:
        validate(_card(**change), tmp_path)
    assert str(err.value).startswith(str(tmp_path / "metadata.json"))
    assert "\n" not in str(err.value)


def test_validate_accepts_good_labels_and_softmax(tmp_path):
    assert validate(_card(), tmp_path).labels == ["normal", "pneumonia"]
    soft = _card(
        architecture={"name": "x", "params": {"num_outputs": 3}},
        output={"labels": ["a", "b", "c"]},
    )
    assert validate(soft, tmp_path).labels == ["a", "b", "c"]


def test_weights_symlink_out_of_the_folder_refused(tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"x")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.safetensors").symlink_to(outside)
    with pytest.raises(ModelError, match="outside the model folder"):
        validate(_card(weights={"file": "w.safetensors"}), folder)


def test_get_model_refuses_a_forecast_model_for_images(tmp_path):
    from medview.ai.registry import get_model

    folder = tmp_path / "g"
    shutil.copytree(MODELS / "glucose_lstm", folder)
    with pytest.raises(ModelError, match="does not analyse images"):
        get_model(str(folder))
    # by name too: the reason and the command that runs it, not "unknown model"
    with pytest.raises(ModelError, match="forecast .1D. model.*medview forecast"):
        get_model("glucose_lstm")
    with pytest.raises(ModelError, match=r"unknown model 'nope' \(available: pneumonia_ae"):
        get_model("nope")


def test_tampered_glucose_weights_are_a_one_line_medview_error(tmp_path):
    from medview.forecast.lstm import load_model

    folder = tmp_path / "g"
    shutil.copytree(MODELS / "glucose_lstm", folder)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(MedviewError, match="does not match the model card") as err:
        load_model(folder)
    assert str(err.value).startswith(str(folder / "model.safetensors"))


# -- issue 18 item 7: one manifest hash over card + weights ---------------------------


def _copy(tmp_path: Path, name: str = "pneumonia_cnn") -> Path:
    folder = tmp_path / name
    shutil.copytree(MODELS / name, folder)
    return folder


def _edit(folder: Path, fn) -> None:
    """Edit metadata.json by hand, as a tamperer would (the manifest is left as it was)."""
    meta = json.loads((folder / "metadata.json").read_text())
    fn(meta)
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2))


def _swap_labels(m: dict) -> None:
    m["output"]["labels"] = list(reversed(m["output"]["labels"]))


def _set(block: str, key: str, value: object):
    def fn(m: dict) -> None:
        m[block][key] = value

    return fn


def _replace_weights_and_their_sha(folder: Path):
    """Other weights, and weights.sha256 updated to match them: only the manifest tells."""
    other = MODELS / "pneumonia_ae" / "model.safetensors"
    shutil.copy(other, folder / "model.safetensors")

    def fn(m: dict) -> None:
        m["weights"]["sha256"] = sha256_file(other)

    return fn


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_card_carries_a_valid_manifest(name):
    card = read_card(MODELS / name)
    assert len(card.manifest_sha256) == 64
    assert card.meta["manifest"]["sha256"] == with_manifest(card.meta)["manifest"]["sha256"]


@pytest.mark.parametrize(
    "tamper",
    [
        _swap_labels,
        _set("output", "threshold", 0.01),
        _set("output", "temperature", 100.0),
        _set("input", "mean", 0.4),
        lambda m: m.pop("intended_use_scope"),
        lambda m: m.pop("manifest"),
        lambda m: m.update(manifest={"sha256": "0" * 64}),
    ],
    ids=["labels", "threshold", "temperature", "mean", "scope", "no-manifest", "zero-manifest"],
)
def test_card_edits_are_refused_loudly(tmp_path, tamper):
    folder = _copy(tmp_path)
    _edit(folder, tamper)
    with pytest.raises(ModelError, match="manifest") as err:
        read_card(folder)
    assert str(err.value).startswith(str(folder / "metadata.json"))
    assert "\n" not in str(err.value)


def test_swapped_labels_never_reach_a_result(tmp_path, capsys):
    """The issue's case: normal 0.98 must not become pneumonia 0.98; analyze exits 2."""
    pytest.importorskip("torch")
    from PIL import Image

    from medview.cli import main

    folder = _copy(tmp_path)
    _edit(folder, _swap_labels)
    png = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(png)
    rc = main(["analyze", str(png), "--model", str(folder), "--json"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "manifest" in err


def test_weights_swapped_with_their_sha_updated_are_refused(tmp_path):
    folder = _copy(tmp_path)
    _edit(folder, _replace_weights_and_their_sha(folder))
    with pytest.raises(ModelError, match="manifest"):
        read_card(folder)


def test_tampered_glucose_card_is_refused(tmp_path):
    from medview.forecast.lstm import load_model

    folder = _copy(tmp_path, "glucose_lstm")
    _edit(folder, _set("output", "conformal_mgdl", [0.0] * 12))
    with pytest.raises(MedviewError, match="manifest"):
        load_model(folder)


@pytest.fixture()
def user_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "user_models"
    root.mkdir()
    monkeypatch.setenv("MEDVIEW_MODELS", str(root))
    return root


@pytest.mark.parametrize("how", ["labels", "not-json", "weights"])
def test_broken_user_model_is_never_replaced_by_the_bundled_one(user_root, tmp_path, how, capsys):
    from medview.ai.registry import default_models, discover, get_model
    from medview.cli import main

    folder = _copy(user_root)  # the clinic's own "pneumonia_cnn"
    if how == "labels":
        _edit(folder, _swap_labels)
    elif how == "not-json":
        (folder / "metadata.json").write_text("{broken")
    else:
        (folder / "model.safetensors").write_bytes(b"not the weights")
    errors: list[str] = []
    if how != "weights":  # card problems are found at discovery
        assert "pneumonia_cnn" not in discover(errors)
        assert any(str(folder) in e for e in errors)
        assert "pneumonia_cnn" not in [m.name for m in default_models()]
        with pytest.raises(ModelError) as err:
            get_model("pneumonia_cnn")
        assert str(folder) in str(err.value)
    else:  # the weights only when loaded: still the user's folder, refused
        info = get_model("pneumonia_cnn")
        assert info.folder == folder and info.source == "user"
        with pytest.raises(ModelError, match="sha256"):
            info.load_module("cpu")
    png = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(png)
    rc = main(["analyze", str(png), "--model", "pneumonia_cnn", "--json"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and str(folder) in err
    assert len(err.strip().splitlines()) == 1


def test_default_run_names_the_refused_user_model(user_root, tmp_path, capsys):
    from PIL import Image

    from medview.cli import main

    folder = _copy(user_root)
    _edit(folder, _swap_labels)
    png = tmp_path / "img.png"
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(png)
    rc = main(["analyze", str(png), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert [json.loads(line)["model"] for line in out.splitlines()] == ["pneumonia_ae"]
    assert "manifest" in err and str(folder) in err
