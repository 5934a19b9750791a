"""Batch throughput set-up (issue 17 target): a Dask worker runs the same batches as
one `medview analyze` process, and the benchmark's headline figures are computed right."""

from __future__ import annotations

import argparse
import math

from medview.ai import batch
from tests.bench.bench_batch import after_first, images_for_ratio, steady_rate


def _default(module: object, action: str | None, flag: str) -> object:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    argv = [action, "x"] if action else []
    return getattr(parser.parse_args(argv), flag)


def test_worker_batches_equal_the_analyze_default():
    from medview.commands import analyze
    from medview.commands import batch as batch_cmd

    assert _default(analyze, None, "batch_size") == batch.BATCH_SIZE == 32
    # a chunk of single-image files fills whole batches (16 used to run batches of 16)
    assert _default(batch_cmd, "analyze", "chunk") == batch.CHUNK
    assert batch.CHUNK % batch.BATCH_SIZE == 0


def test_worker_batches_reach_analyze_images(monkeypatch, tmp_path):
    seen = []

    def fake(images, infos, device, batch_size):
        seen.append((list(images), device, batch_size))
        return []

    monkeypatch.setattr("medview.ai.inference.analyze_images", fake)
    monkeypatch.setattr(batch, "_worker_models", lambda m, v=None: ["model"])
    out = batch.analyse_files([], ["pneumonia_cnn"])
    assert seen == [([], "cpu", batch.BATCH_SIZE)] and out["results"] == []


def test_steady_rate_takes_the_middle_of_the_run():
    # 1 s of start-up, then 100 img/s, then a slow tail
    stamps = [(1.0 + k / 100, k) for k in range(1, 901)] + [(20.0, 1000)]
    assert math.isclose(steady_rate(stamps, 1000), 100.0)
    assert after_first(stamps) < 100.0  # the tail counts there
    assert math.isnan(steady_rate([(1.0, 1000)], 1000))


def test_images_for_ratio_pays_off_the_start_up():
    # batch: 2 s fixed, 800 img/s; baseline: 1 s fixed, 450 img/s; target 1.6 (0.8 x 2)
    m = images_for_ratio(1.6, 2.0, 800.0, 1.0, 450.0)
    assert m is not None

    def ratio(k: int) -> float:
        return (k / (2.0 + k / 800.0)) / (k / (1.0 + k / 450.0))

    assert ratio(m) >= 1.6 - 1e-9 and ratio(m - 10) < 1.6
    assert images_for_ratio(1.6, 2.0, 700.0, 1.0, 450.0) is None  # 700 < 1.6 x 450
