"""Benchmark: where a receiver's time goes while dcmtk ``storescu`` pushes a series.

Run: ``python3 -m tests.bench.bench_receive_stages [--slices 300] [--repeat 3]
[--variants now,reread]``. Needs ../shared/data and dcmtk's storescu.

An in-process :class:`medview.net.receiver.Receiver` receives the N-slice CT series
(tests/helpers/series.py); ``time.perf_counter`` spans summed over the push give the
handler's ``StudyStore.accept`` (header walk + atomic write), the atomic write alone, the
indexer's ``index_files``, its header-to-InstanceInfo step and ``add_series``. Variants,
alternated in each repeat so they share the machine's load:

* ``now``: the code as it is (the receiver indexes in a child process, whose stages
  are not timed: only the handler's and the end-to-end times are);
* ``thread``: indexing in the receiver's own indexer thread (``Receiver.INDEX_IN_CHILD``
  off), with the indexer's stages timed;
* ``reread``: the indexer reads each stored file back (``read_header``), as before the
  received header was used;
* ``named``: each instance written to a named temporary file created on the spot and
  renamed (the fallback where ``O_TMPFILE`` is missing; the only way before files without
  a name were made ahead).

Each push's files are kept until the end (see tests/bench/bench_net.py for why).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.bench_net import make_series, storescu

VARIANTS = ("now", "thread", "reread", "named")


def _timed(spans: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spans[key] = spans.get(key, 0.0) + time.perf_counter() - t0

    return wrapper


def push(files: list[Path], variant: str, tmp: Path) -> dict[str, float]:
    """One push of ``files`` into a fresh receiver running ``variant``; the spans (s)."""
    import medview.io.database as database
    import medview.net.atomic as atomic
    import medview.net.store as store
    from medview.net.receiver import Receiver, ReceiverConfig

    spans: dict[str, float] = {}
    saved = {
        (store.StudyStore, "accept"): store.StudyStore.accept,
        (store.StudyStore, "write_atomic"): store.StudyStore.write_atomic,
        (store, "index_files"): store.index_files,
        (store, "_instance_info"): store._instance_info,
        (database.StudyDatabase, "add_series"): database.StudyDatabase.add_series,
        (atomic, "_O_TMPFILE"): atomic._O_TMPFILE,
    }
    if variant == "named":
        atomic._O_TMPFILE = 0
    in_child = Receiver.INDEX_IN_CHILD
    Receiver.INDEX_IN_CHILD = variant not in ("thread", "reread")

    accept = saved[(store.StudyStore, "accept")]

    def accept_variant(self: Any, *args: Any, **kwargs: Any) -> Any:
        arrival = accept(self, *args, **kwargs)
        if variant == "reread":
            arrival.header = None  # the indexer reads the stored file
        return arrival

    store.StudyStore.accept = _timed(spans, "handler accept", accept_variant)  # type: ignore[method-assign]
    store.StudyStore.write_atomic = _timed(spans, "atomic write", store.StudyStore.write_atomic)  # type: ignore[method-assign]
    store.index_files = _timed(spans, "index_files", store.index_files)
    store._instance_info = _timed(spans, "header to InstanceInfo", store._instance_info)
    database.StudyDatabase.add_series = _timed(
        spans, "add_series", database.StudyDatabase.add_series
    )  # type: ignore[method-assign]
    run = Path(tempfile.mkdtemp(dir=tmp))
    done = threading.Event()
    count = [0]

    def arrived(_arrival: Any) -> None:
        count[0] += 1
        if count[0] == len(files):
            done.set()

    try:
        cfg = ReceiverConfig(
            port=0, db_path=str(run / "db.sqlite"), store_dir=str(run / "st"), min_free_bytes=0
        )
        with Receiver(cfg, on_arrival=arrived) as receiver:
            t0 = time.perf_counter()
            storescu(receiver.port, "MEDVIEW", files)
            spans["push"] = time.perf_counter() - t0
            if not done.wait(120):
                raise SystemExit("not every instance was indexed")
            spans["until indexed"] = time.perf_counter() - t0
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)
        Receiver.INDEX_IN_CHILD = in_child

    return spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="medview-bench-stages-"))
    try:
        files = make_series(tmp, args.slices, False)
        print(f"{len(files)} uncompressed CT instances; seconds summed over each push")
        for n in range(args.repeat):
            for variant in variants:
                spans = push(files, variant, tmp)
                cells = "  ".join(f"{k} {v:.2f}" for k, v in spans.items())
                print(f"[{n + 1}] {variant:8s} load {os.getloadavg()[0]:4.1f}  {cells}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
