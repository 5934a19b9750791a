"""3D (volume) inference: sliding windows, bounded memory, cancel, label statistics, the
bundled CT model ``ct_seg`` (card, sha256, Dice on the volume it never saw) and the CLI.

Tests that need ``../shared/data`` skip with a reason when it is absent.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medview.errors import Cancelled, MedviewError
from medview.io.model import Volume
from medview.modelcards import ModelError
from medview.tasks import TaskState

torch = pytest.importorskip("torch")

from medview.ai import volume_analysis, volume_inference  # noqa: E402
from medview.ai.nets3d import Pointwise3D  # noqa: E402
from medview.ai.volume_inference import SlidingWindow, VolumeSpec, window_starts  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
CT_MODEL = MODELS / "ct_seg"


def _softmax_predictor(net: torch.nn.Module):
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(net(torch.from_numpy(x)), 1).numpy()

    return predict


def _spec(patch=(8, 16, 16), overlap=0.5, blend="gaussian") -> VolumeSpec:
    return VolumeSpec(
        spacing=(1.0, 1.0, 1.0), patch=patch, overlap=overlap, clip=(-1000.0, 1000.0),
        mean=0.0, std=300.0, blend=blend,
    )  # fmt: skip


def _stitched(sw: SlidingWindow, arr: np.ndarray, state: TaskState | None = None) -> np.ndarray:
    parts = []
    covered = 0
    for z0, z1, sc in sw.scores(arr, state):
        assert z0 == covered, "slabs arrive in order, without gaps"
        covered = z1
        parts.append(sc)
    assert covered == arr.shape[0]
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize(
    ("shape", "patch", "overlap", "blend"),
    [
        ((23, 37, 41), (8, 16, 16), 0.5, "gaussian"),
        ((23, 37, 41), (8, 16, 16), 0.25, "constant"),
        ((5, 9, 40), (8, 16, 16), 0.25, "gaussian"),  # smaller than the patch: padded
    ],
)
def test_sliding_window_equals_whole_volume_inference(shape, patch, overlap, blend):
    """With a model whose output at a voxel depends on that voxel only, the blended
    windows must reproduce one pass over the whole volume (stitching, weights, padding)."""
    torch.manual_seed(0)
    net = Pointwise3D(1, 4).eval()
    rng = np.random.default_rng(1)
    arr = rng.integers(-1100, 1500, size=shape).astype(np.int16)
    spec = _spec(patch, overlap, blend)
    predict = _softmax_predictor(net)
    sw = SlidingWindow(spec, predict, classes=4, batch_size=3)
    stitched = _stitched(sw, arr)
    whole = predict(spec.normalise(arr)[None, None])[0]
    assert stitched.shape == whole.shape
    assert np.max(np.abs(stitched - whole)) < 1e-5
    assert sw.windows > 1 or min(shape) < min(patch)
    assert np.array_equal(sw.labels(arr), np.argmax(whole, 0).astype(np.uint8))


def test_window_plan_covers_the_volume_and_ends_flush():
    assert window_starts(10, 16, 0.25) == [0]
    assert window_starts(64, 32, 0.25) == [0, 24, 32]
    assert window_starts(64, 32, 0.5) == [0, 16, 32]
    for n, p, o in [(100, 16, 0.25), (17, 16, 0.9), (512, 64, 0.0)]:
        starts = window_starts(n, p, o)
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s : s + p] = True
        assert covered.all() and starts[-1] == n - p


def test_memory_is_bounded_by_one_patch_deep_slab():
    """The float accumulators hold at most (C + 1) slabs one patch deep, not the volume;
    the number of model calls is the planned window count divided into batches."""
    calls: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape[0])
        assert x.shape[1:] == (1, 8, 32, 32)
        return np.full((x.shape[0], 4, 8, 32, 32), 0.25, np.float32)

    arr = np.zeros((96, 80, 80), np.int16)
    sw = SlidingWindow(_spec((8, 32, 32), 0.25), predict, classes=4, batch_size=4)
    sw.labels(arr)
    per_axis = [len(window_starts(n, p, 0.25)) for n, p in zip(arr.shape, (8, 32, 32), strict=True)]
    assert sw.windows == math.prod(per_axis) == sum(calls)
    assert max(calls) <= 4
    slab = (4 + 1) * 8 * 80 * 80 * 4  # (classes + weights) x patch depth x Y x X float32
    assert sw.peak_buffer_bytes <= slab
    assert sw.peak_buffer_bytes < (4 + 1) * arr.size * 4 / 8  # far below the whole volume


def test_cancel_stops_between_batches():
    seen: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append(1)
        return np.zeros((x.shape[0], 2, 8, 16, 16), np.float32)

    state = TaskState()

    def on_progress(fraction: float, message: str) -> None:
        if len(seen) >= 2:
            state.cancel()

    state._on_progress = on_progress  # noqa: SLF001 - a callback that cancels mid-run
    sw = SlidingWindow(_spec((8, 16, 16), 0.5), predict, classes=2, batch_size=1)
    with pytest.raises(Cancelled):
        sw.labels(np.zeros((40, 40, 40), np.int16), state)
    assert 2 <= len(seen) <= 3 < sw.windows


def test_label_statistics_volume_and_hu():
    arr = np.zeros((6, 10, 12), np.int16)
    labels = np.zeros(arr.shape, np.uint8)
    arr[1:3, 2:5, 2:6] = 40  # label 1: 2*3*4 = 24 voxels, stored 40 -> HU 2*40-1000 = -920
    labels[1:3, 2:5, 2:6] = 1
    arr[4, :, :] = np.arange(12, dtype=np.int16)[None, :] * 100  # label 2: one slice, a ramp
    labels[4] = 2
    vol = Volume(
        arr, spacing=(0.5, 0.5, 2.0), rescale_slope=2.0, rescale_intercept=-1000.0, unit="HU"
    )
    stats = volume_analysis.label_statistics(labels, vol, ["bg", "a", "b", "empty"])
    a, b, empty = stats
    assert (a.name, a.voxels) == ("a", 24) and a.ml == pytest.approx(24 * 0.5 / 1000)
    assert (a.mean, a.sd, a.min, a.max) == pytest.approx((-920, 0, -920, -920))
    hu_b = arr[4].astype(float) * 2 - 1000
    assert b.voxels == 120 and b.ml == pytest.approx(120 * 0.5 / 1000)
    assert (b.mean, b.sd) == pytest.approx((hu_b.mean(), hu_b.std()))
    assert (b.min, b.max) == (hu_b.min(), hu_b.max()) and b.unit == "HU"
    assert empty.voxels == 0 and empty.mean is None and empty.as_dict()["ml"] == 0


def _write_pointwise_model(folder: Path, patch=(8, 16, 16), spacing=(2.0, 2.0, 2.0)) -> Path:
    from medview.ai.registry import write_model

    torch.manual_seed(3)
    net = Pointwise3D(1, 3)
    meta = {
        "name": folder.name,
        "version": "0.1",
        "task": "segmentation",
        "architecture": {"name": "pointwise3d", "params": {"in_channels": 1, "num_outputs": 3}},
        "input": {"dims": 3, "channels": 1, "spacing_mm": list(spacing), "patch_zyx": list(patch),
                  "overlap": 0.25, "clip": [-1000, 1000], "mean": 0, "std": 500},
        "output": {"labels": ["background", "low", "high"], "colors": ["#000", "#f00", "#0f0"]},
        "intended_use_scope": {"modalities": ["CT"]},
    }  # fmt: skip
    write_model(folder, net, meta)
    return folder


def test_segment_volume_resamples_and_returns_the_volume_geometry(tmp_path):
    folder = _write_pointwise_model(tmp_path / "pw")
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(9, 30, 26)).astype(np.int16)
    vol = Volume(arr, spacing=(0.8, 0.8, 3.0), modality="CT", unit="HU")
    res = volume_analysis.segment_volume(vol, str(folder), device="cpu")
    assert res.labels.shape == arr.shape and res.labels.dtype == np.uint8
    assert res.grid_shape == (14, 12, 11)  # 9*3/2, 30*0.8/2, 26*0.8/2 rounded up
    assert res.device == "cpu" and res.in_scope and res.windows >= 1
    assert [s.name for s in res.stats] == ["low", "high"]
    assert sum(s.voxels for s in res.stats) + int((res.labels == 0).sum()) == arr.size
    js = res.as_json("x")
    assert js["labels"][0]["name"] == "low" and "mean" in js["labels"][0]
    with pytest.raises(MedviewError, match="single image"):
        volume_analysis.segment_volume(Volume(arr[:1]), str(folder), device="cpu")
    mr = Volume(arr, spacing=(2.0, 2.0, 2.0), modality="MR")
    assert not volume_analysis.segment_volume(mr, str(folder), device="cpu").in_scope


def test_volume_model_refuses_tampered_weights(tmp_path):
    folder = _write_pointwise_model(tmp_path / "pw2")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        volume_inference.load_volume_model(str(folder), "cpu")


def test_an_image_model_is_not_a_volume_model():
    if not (MODELS / "pneumonia_cnn" / "metadata.json").exists():
        pytest.skip("models/pneumonia_cnn not in this checkout")
    with pytest.raises(ModelError, match="not a volume model"):
        volume_inference.get_volume_model("pneumonia_cnn")


# -- the bundled CT model --------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_card():
    if not (CT_MODEL / "metadata.json").exists():
        pytest.skip("models/ct_seg not in this checkout")
    return volume_inference.get_volume_model("ct_seg")


def test_ct_seg_card_loads_with_its_sha256(ct_card, tmp_path):
    from medview.modelcards import sha256_file

    assert ct_card.task == "segmentation" and ct_card.labels == [
        "background",
        "body",
        "lungs",
        "bone",
    ]
    assert ct_card.verify() == sha256_file(ct_card.weights_path) == ct_card.weights.sha256
    assert "Wasserthal" in " ".join(ct_card.meta["citations"])
    assert ct_card.meta["validation"]["per_label"]["bone"]["dice"] is not None
    lm = volume_inference.load_volume_model(ct_card, "cpu")
    assert lm.spec.patch == tuple(ct_card.input["patch_zyx"])
    copy = tmp_path / "ct_seg"
    shutil.copytree(CT_MODEL, copy)
    card = json.loads((copy / "metadata.json").read_text())
    card["output"]["labels"] = ["background", "bone", "lungs", "body"]  # swapped labels
    (copy / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="manifest"):
        volume_inference.get_volume_model(str(copy))


def test_ct_seg_dice_on_the_volume_it_never_saw(ct_card, shared_data, in_process_decoding):
    """Recompute the card's held-out Dice (TotalSegmentator DICOM example) from scratch."""
    from medview.ai.training import ct_seg

    vol, ref = ct_seg.load_pair(shared_data / "ct", ct_seg.TEST_CT)
    res = volume_analysis.segment_volume(vol, ct_card, device="cpu")
    card = ct_card.meta["validation"]["per_label"]
    for k, name in enumerate(ct_seg.LABELS[1:], start=1):
        d = volume_analysis.dice(res.labels, ref, k) if (ref == k).any() else None
        stated = card[name]["dice"]
        if stated is None:
            assert d is None
        else:
            assert d == pytest.approx(stated, abs=2e-3), name
        assert card[name]["predicted_ml"] == pytest.approx(
            int((res.labels == k).sum()) * np.prod(vol.spacing) / 1000, abs=0.1
        )
    assert card["body"]["dice"] > 0.9 and card["bone"]["dice"] > 0.45
    assert card["lungs"]["dice"] is None and card["lungs"]["reference_ml"] == 0  # no lung there
    body = next(s for s in res.stats if s.name == "body")
    assert -200 < body.mean < 150, "soft tissue HU inside the body"


def test_ct_seg_windows_agree_with_one_pass(ct_card, ct_dir, in_process_decoding):
    """The trained U-Net sees context, so windows may differ from one whole-volume pass
    only near patch borders (zero padding): the labels must agree almost everywhere."""
    from medview.ai.volume_grid import to_model_grid
    from medview.io import load_path

    lm = volume_inference.load_volume_model(ct_card, "cpu")
    grid = to_model_grid(load_path(ct_dir), lm.spec.spacing)
    sw = lm.sliding_window()
    windows = sw.labels(grid)
    pads = [(0, max(-n % 4, p - n)) for n, p in zip(grid.shape, lm.spec.patch, strict=True)]
    whole_in = lm.spec.normalise(np.pad(grid, pads, mode="edge"))[None, None]
    z, y, x = grid.shape
    whole = np.argmax(lm.predict(whole_in)[0], 0)[:z, :y, :x]
    assert sw.windows > 1
    assert (whole == windows).mean() > 0.98


def test_cli_analyze_ct_seg_json_and_labels_out(ct_card, shared_data, tmp_path):
    import SimpleITK as sitk

    nii = shared_data / "ct" / "totalseg_volumes" / "example_ct_sm.nii.gz"
    out = tmp_path / "labels.nii.gz"
    p = subprocess.run(
        [sys.executable, "-m", "medview", "analyze", str(nii), "--model", "ct_seg", "--json",
         "--device", "cpu", "--labels-out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout.strip().splitlines()[-1])
    assert [d["name"] for d in obj["labels"]] == ["body", "lungs", "bone"]
    bone = obj["labels"][2]
    assert bone["ml"] > 0 and bone["mean"] > 100, "bone is dense"
    assert obj["labels_out"] == str(out) and obj["device"] == "cpu"
    img = sitk.ReadImage(str(out))
    src = sitk.ReadImage(str(nii))
    assert img.GetSize() == src.GetSize()
    assert np.allclose(img.GetSpacing(), src.GetSpacing())
    assert int(sitk.GetArrayFromImage(img).max()) == 3


def test_slice_scores_one_per_slice():
    if not (MODELS / "pneumonia_cnn" / "metadata.json").exists():
        pytest.skip("models/pneumonia_cnn not in this checkout")
    arr = np.random.default_rng(0).integers(0, 255, size=(3, 64, 64)).astype(np.uint8)
    vol = Volume(arr, modality="CT")
    scores = volume_analysis.slice_scores(vol, "pneumonia_cnn", device="cpu")
    assert [s["slice"] for s in scores] == [1, 2, 3]
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert all(s["in_scope"] is False for s in scores)  # CT is outside the card's use


def test_cli_refuses_a_single_image_for_a_volume_model(ct_card, tmp_path, capsys):
    from PIL import Image

    from medview.cli import main

    png = tmp_path / "one.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    assert main(["analyze", str(png), "--model", "ct_seg", "--json"]) == 2
    err = capsys.readouterr().err
    assert f"{png}: a volume model needs a 3D series" in err and "Traceback" not in err
