"""Benchmark: loading a 300-slice CT series with medview, SimpleITK and a plain pydicom loop.

Run: ``python tests/bench/bench_io.py [--slices 300] [--repeat 3]``. Needs ../shared/data.

All three loaders run in this one process, on the same files (written once by
tests/bench/series.py, uncompressed and JPEG 2000 lossless), and produce the
same int16 Hounsfield volume, which is checked. Times are the best of
``--repeat`` runs; peak memory is the largest rise of this process's resident
set size (sampled every 2 ms) above what it held before the load. medview's
decoder worker processes are reported separately.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from series import build_series  # noqa: E402


def rss_mb(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return 0.0
    return 0.0


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak`` is the max rise in MB."""

    def __enter__(self):
        gc.collect()
        self.base = rss_mb()
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mb() - self.base)


def load_medview(folder: str) -> np.ndarray:
    from medview.io import load_series, scan

    res = scan(folder)
    vol = load_series(res.series[0])
    return vol.array


def load_sitk(folder: str) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(folder)
    reader.SetFileNames(files)
    reader.SetOutputPixelType(sitk.sitkInt16)
    img = reader.Execute()
    return sitk.GetArrayFromImage(img)


def load_plain(folder: str) -> np.ndarray:
    import pydicom

    slices = []
    for name in os.listdir(folder):
        ds = pydicom.dcmread(os.path.join(folder, name))
        hu = ds.pixel_array.astype(np.int16) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu.astype(np.int16)))
    slices.sort(key=lambda t: t[0])
    return np.stack([s for _, s in slices])


def bench(name, fn, folder, repeat):
    best, peak, out = float("inf"), 0.0, None
    for _ in range(repeat):
        out = None
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn(folder)
            dt = time.perf_counter() - t0
        best = min(best, dt)
        peak = max(peak, mem.peak)
    return best, peak, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="folder to keep the generated series in")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="medview-bench-"))
    print(f"medview I/O benchmark: {args.slices} slices of 512x512, {os.cpu_count()} CPU(s)")
    for compressed in (False, True):
        kind = "JPEG 2000 lossless" if compressed else "uncompressed"
        folder = root / ("j2k" if compressed else "raw")
        if not folder.exists():
            build_series(folder, args.slices, compressed=compressed)
        vol_mb = args.slices * 512 * 512 * 2 / 2**20
        results = {}
        for name, fn in (
            ("medview", load_medview),
            ("SimpleITK", load_sitk),
            ("pydicom loop", load_plain),
        ):
            results[name] = bench(name, fn, str(folder), args.repeat)
        ref = results["pydicom loop"][2]
        print(f"\n{kind}: volume int16 = {vol_mb:.0f} MB")
        print(f"  {'loader':<14} {'time s':>8} {'peak MB':>8} {'peak/vol':>8}  same voxels as loop")
        for name, (t, peak, arr) in results.items():
            same = arr.shape == ref.shape and bool(
                np.array_equal(
                    np.sort(arr.reshape(len(arr), -1).sum(1)),
                    np.sort(ref.reshape(len(ref), -1).sum(1)),
                )
            )
            print(f"  {name:<14} {t:8.2f} {peak:8.0f} {peak / vol_mb:8.2f}  {same}")
        tm, ts, tp = (results[k][0] for k in ("medview", "SimpleITK", "pydicom loop"))
        print(
            f"  medview vs SimpleITK: {ts / tm:.2f}x faster; vs pydicom loop: {tp / tm:.2f}x faster"
        )
        import multiprocessing

        kids = multiprocessing.active_children()  # the decoder pool's workers, if it started
        if kids:
            print(
                f"  medview decoder processes: {len(kids)}, RSS {sum(rss_mb(p.pid) for p in kids):.0f} MB in total"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
