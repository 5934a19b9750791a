"""Benchmark the bundled AI models: latency and throughput on CPU (and CUDA if present).

Usage::

    python3 -m tests.bench.bench_ai [--repeats 200] [--threads N] [--update-cards [--only NAME]]

For each model it measures

* ``eager_fp32_b1_ms``: plain eager fp32 at batch 1 (``torch.no_grad``, contiguous
  tensors, the module as loaded): the reference the issue asks for;
* ``medview_b1_ms``: the medview inference path at batch 1 (:class:`LoadedModel`:
  ``inference_mode``, channels_last on CPU, fp16 autocast on CUDA, calibrated
  probabilities / anomaly maps back as numpy);
* ``throughput_b64_img_s``: images per second at batch 64 through the same path;
* ``gradcam_ms`` (classifier) / ``anomaly_map_ms`` (autoencoder) for one image and
  ``explain_both_ms``: Grad-CAM plus anomaly map for one image;
* ``preprocess_1024_ms``: a 1024x1024 display image to the 28x28 model input;
* ``result_b1_ms`` / ``result_b64_ms_per_image``: one whole result as ``medview analyze``
  makes it (:func:`medview.ai.inference.run_batch` on a 28x28 display image): the
  probability plus its uncertainty (an ensemble: the members' spread, one view; else
  2 shifted views in the same batch as the original) and the
  in-distribution check (which runs the autoencoder for the classifier), with
  ``result_over_plain_b1`` = result_b1_ms / medview_b1_ms (the cost of knowing how far
  to trust the figure).

Median over ``--repeats`` runs after warm-up (``*_fastest``: the fastest run, which
shows the uncontended cost on a shared machine; the 1-minute load average is
recorded with the figures). ``--update-cards`` writes the figures
into each model's ``metadata.json`` (``performance``) and re-renders its README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


_MIN: dict[int, float] = {}


def _median_ms(fn, repeats: int, warmup: int = 10) -> float:
    """Median wall time in ms (the fastest run is kept in ``_MIN[id(fn)]``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    _MIN[id(fn)] = min(times)
    return statistics.median(times)


def _bench_one(lm, rng, repeats: int, sync) -> dict[str, float]:
    """Latency and throughput figures of one loaded model."""
    import torch

    from medview.ai.preprocess import prepare

    spec = lm.spec
    img = rng.integers(0, 256, (spec.height, spec.width), dtype=np.uint8)
    x1 = prepare(img, spec)[None]
    x64 = np.repeat(x1, 64, axis=0)
    eager = lm.info.load_module(str(lm.device))  # plain module: no channels_last/amp
    t1 = torch.from_numpy(x1).to(lm.device)

    def eager_b1() -> None:
        with torch.no_grad():
            eager(t1)
        sync()

    r: dict[str, float] = {"eager_fp32_b1_ms": _median_ms(eager_b1, repeats)}
    r["eager_fp32_b1_ms_fastest"] = _MIN[id(eager_b1)]
    classify = lm.info.task == "classification"

    def ours() -> None:  # one forward pass (no test-time views)
        lm.probabilities(x1, average=False) if classify else lm.anomaly(x1)

    def ours64() -> None:
        lm.probabilities(x64, average=False) if classify else lm.anomaly(x64)

    r["medview_b1_ms"] = _median_ms(ours, repeats)
    r["medview_b1_ms_fastest"] = _MIN[id(ours)]
    tb = _median_ms(ours64, max(10, repeats // 10), warmup=3)
    r["throughput_b64_img_s"] = 64.0 * 1000.0 / tb
    if classify:

        def cam() -> None:
            lm.gradcam(x1)

        r["gradcam_ms"] = _median_ms(cam, repeats)
    else:
        r["anomaly_map_ms"] = r["medview_b1_ms"]
    r.update(_bench_result(lm, img, repeats))
    r["result_over_plain_b1"] = r["result_b1_ms"] / r["medview_b1_ms"]
    return {k: round(v, 3) for k, v in r.items()}


def _bench_result(lm, img: np.ndarray, repeats: int) -> dict[str, float]:
    """A whole result (probability, uncertainty, in-distribution verdict) per image."""
    from medview.ai.inference import run_batch
    from medview.ai.preprocess import SourceImage

    one = [SourceImage(path="bench", index=0, image=img)]
    many = one * 64

    def b1() -> None:
        run_batch(lm, one)

    def b64() -> None:
        run_batch(lm, many)

    r = {"result_b1_ms": _median_ms(b1, repeats)}
    r["result_b1_ms_fastest"] = _MIN[id(b1)]
    r["result_b64_ms_per_image"] = _median_ms(b64, max(10, repeats // 10), warmup=3) / 64.0
    return r


def bench_device(device: str, repeats: int) -> dict[str, dict[str, float]]:
    import torch

    from medview.ai.inference import LoadedModel
    from medview.ai.preprocess import prepare
    from medview.ai.registry import discover

    out: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(0)
    models = {m.name: m for m in discover().values() if m.source == "bundled"}
    loaded = {name: LoadedModel(info, device) for name, info in models.items()}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for name, lm in loaded.items():
        out[name] = _bench_one(lm, rng, repeats, sync)

    cls = [lm for lm in loaded.values() if lm.info.task == "classification"]
    ano = [lm for lm in loaded.values() if lm.info.task == "anomaly"]
    if cls and ano:
        x1 = prepare(rng.integers(0, 256, (28, 28), dtype=np.uint8), cls[0].spec)[None]

        def both() -> None:
            cls[0].gradcam(x1)
            ano[0].anomaly(x1)

        both_ms = round(_median_ms(both, repeats), 3)
        for lm in cls + ano:
            out[lm.info.name]["explain_both_ms"] = both_ms
    big = rng.integers(0, 256, (1024, 1024), dtype=np.uint8)
    if loaded:
        spec = next(iter(loaded.values())).spec
        pre = round(_median_ms(lambda: prepare(big, spec), max(20, repeats // 5)), 3)
        for name in out:
            out[name]["preprocess_1024_ms"] = pre
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: medview's)")
    ap.add_argument("--update-cards", action="store_true")
    ap.add_argument(
        "--only", nargs="+", metavar="NAME", help="with --update-cards: only these models' cards"
    )
    args = ap.parse_args()
    if args.threads:
        os.environ["MEDVIEW_AI_THREADS"] = str(args.threads)
    import torch

    from medview.ai.devices import configure_cpu_threads

    threads = configure_cpu_threads()
    result: dict[str, object] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2)
            if hasattr(os, "getloadavg")
            else None,
        },
        "cpu": bench_device("cpu", args.repeats),
    }
    if torch.cuda.is_available():
        result["machine"]["gpu"] = torch.cuda.get_device_name(0)  # type: ignore[index]
        result["cuda"] = bench_device("cuda", args.repeats)
    print(json.dumps(result, indent=2))
    if args.update_cards:
        from medview.ai.registry import discover
        from medview.ai.training import write_card_readme
        from medview.modelcards import write_card

        for info in discover().values():
            if info.source != "bundled" or (args.only and info.name not in args.only):
                continue
            perf = {
                "measured": time.strftime("%Y-%m-%d"),
                "machine": result["machine"],
                "cpu": result["cpu"].get(info.name),  # type: ignore[union-attr]
            }
            if "cuda" in result:
                perf["cuda"] = result["cuda"].get(info.name)  # type: ignore[union-attr]
            meta = json.loads((info.folder / "metadata.json").read_text(encoding="utf-8"))
            meta["performance"] = perf
            write_card(info.folder, meta)  # re-hashes the manifest
            write_card_readme(info.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
