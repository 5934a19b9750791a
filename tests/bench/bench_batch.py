"""Throughput of `medview batch analyze` (Dask) against one `analyze` process.

Usage::

    python3 -m tests.bench.bench_batch [--images 400] [--workers 1 2 4]

Writes ``--images`` PneumoniaMNIST val images as PNG files into a temporary folder, then
times, over the same files and the bundled classifier, (a) the baseline: one process,
one torch thread, :func:`medview.ai.inference.analyze_path` over the folder (what
``medview analyze`` does), and (b) :func:`medview.ai.batch.run_batch` with a LocalCluster
of N single-threaded workers, each into a fresh database. It prints images/s, the ratio to
the baseline and the ratio to N x baseline (the issue's target is >= 0.8 for N workers on
N free cores), with and without the cluster's start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--chunk", type=int, default=25)
    args = ap.parse_args()
    os.environ["MEDVIEW_AI_THREADS"] = "1"
    import logging

    logging.disable(logging.WARNING)
    from PIL import Image

    from medview.ai import batch
    from medview.ai.inference import analyze_path
    from medview.ai.registry import get_model

    data = REPO.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist_train_val.npz"
    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    with np.load(data) as d:
        imgs = d["val_images"][: args.images]
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp / f"img{i:04d}.png")
    model = get_model("pneumonia_cnn")
    t0 = time.perf_counter()
    res, _ = analyze_path(tmp, [model], device="cpu")
    base_s = time.perf_counter() - t0
    base = len(res) / base_s
    out: dict[str, object] = {
        "images": len(res),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "baseline_img_s": round(base, 1),
    }
    for n in args.workers:
        started: list[float] = []

        def factory(w: int, s: str | None, _started: list[float] = started) -> object:
            c0 = time.perf_counter()
            client = batch._client(w, s)
            client.wait_for_workers(w)
            _started.append(time.perf_counter() - c0)
            return client

        t0 = time.perf_counter()
        rep = batch.run_batch(
            [tmp], [model], workers=n, db=tmp / f"w{n}.db", chunk=args.chunk,
            client_factory=factory,
        )  # fmt: skip
        total = time.perf_counter() - t0
        work = total - started[0]
        out[f"workers_{n}"] = {
            "img_s_total": round(rep.images / total, 1),
            "img_s_after_startup": round(rep.images / work, 1),
            "cluster_start_s": round(started[0], 2),
            "vs_baseline": round(rep.images / work / base, 2),
            "vs_n_x_baseline": round(rep.images / work / base / n, 2),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
