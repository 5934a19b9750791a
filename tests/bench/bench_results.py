"""Benchmark: anonymised export (``medview.results.export``) of an N-slice CT series vs a
plain copy of the same files (target: under 2x), with the header fast path
(``medview.results.fastdeid``) and without it (pydicom for every header) side by side.

    python3 -m tests.bench.bench_results [N] [ROUNDS]

Builds the series with ``tests/helpers/series.py`` (needs ../shared/data). After one warm-up
of each (page cache, decoder worker processes), ROUNDS rounds (default 5) each time a
``shutil.copytree``, the export with the fast path and the export without it, interleaved so
that load on a shared machine hits all three alike; prints the best and median times and the
ratios to the copy. ``MEDVIEW_DECODE_WORKERS=0`` keeps the export in-process (else 32 files
or more go to the niced decoder worker processes).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from medview.results import export
    from medview.results.export import export_paths
    from tests.helpers.series import build_series

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        src = build_series(Path(tmp) / "series", n)
        runs = Path(tmp) / "runs"

        def copy(k: int) -> float:
            t = time.perf_counter()
            shutil.copytree(src, runs / f"copy{k}")
            return time.perf_counter() - t

        def exported(k: int, fast: bool) -> float:
            export.FAST_PATH = fast
            t = time.perf_counter()
            rep = export_paths([str(src)], str(runs / f"export{k}{fast}"), anonymize=True)
            assert len(rep.written) == n, rep.skipped[:3]
            return time.perf_counter() - t

        copy(99), exported(99, True), exported(99, False)
        times: dict[str, list[float]] = {"copy": [], "fast": [], "pydicom": []}
        for k in range(rounds):
            times["copy"].append(copy(k))
            times["fast"].append(exported(k, True))
            times["pydicom"].append(exported(k, False))
            shutil.rmtree(runs)
        export.FAST_PATH = True
        best = {k: min(v) for k, v in times.items()}
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{n} slices, {rounds} interleaved rounds (seconds: best / median)")
        for k in ("copy", "fast", "pydicom"):
            ratio = (
                ""
                if k == "copy"
                else (
                    f"  ratio to copy: best {best[k] / best['copy']:.2f}x, "
                    f"median {med[k] / med['copy']:.2f}x"
                )
            )
            print(f"  {k:8s} {best[k]:.3f} / {med[k]:.3f}{ratio}")
        print(
            f"  fast path vs pydicom headers: {med['pydicom'] / med['fast']:.2f}x faster (median)"
        )


if __name__ == "__main__":
    main()
