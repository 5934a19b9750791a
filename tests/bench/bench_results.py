"""Benchmark: anonymised export (``medview.results.export``) of an N-slice CT series vs a
plain copy of the same files (target: under 2x).

    python3 tests/bench/bench_results.py [N]

Builds the series with ``tests/bench/series.py`` (needs ../shared/data), then times a
``shutil.copytree`` and ``export_paths(..., anonymize=True)`` three times each after one
warm-up of both (page cache and the decoder worker processes started), and prints the best
times and their ratio.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    from series import build_series

    from medview.results.export import export_paths

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        src = build_series(Path(tmp) / "series", n)
        runs = Path(tmp) / "runs"

        def copy(k: int) -> float:
            t = time.perf_counter()
            shutil.copytree(src, runs / f"copy{k}")
            return time.perf_counter() - t

        def export(k: int) -> float:
            t = time.perf_counter()
            rep = export_paths([str(src)], str(runs / f"export{k}"), anonymize=True)
            assert len(rep.written) == n, rep.skipped[:3]
            return time.perf_counter() - t

        copy(99), export(99)
        c = [copy(k) for k in range(3)]
        e = [export(k) for k in range(3)]
        print(
            f"{n} slices: copy best {min(c):.3f} s, anonymised export best {min(e):.3f} s, "
            f"ratio {min(e) / min(c):.2f}x (copies {[round(x, 3) for x in c]}, "
            f"exports {[round(x, 3) for x in e]})"
        )


if __name__ == "__main__":
    main()
