"""Benchmark: loading a 300-slice CT series with medview, SimpleITK and a plain pydicom loop.

Run: ``python3 -m tests.bench.bench_io [--slices 300] [--repeat 3] [--big 2000]``. Needs
../shared/data.

All loaders run in this one process, on the same files (written once by
tests/helpers/series.py, uncompressed and JPEG 2000 lossless), and produce the
same int16 Hounsfield volume, which is checked. Times are the best of
``--repeat`` runs; peak memory is the largest rise of this process's resident
set size (sampled every 2 ms) above what it held before the load. medview's
decoder worker processes are reported separately.

medview runs twice per series: "first open" with the decoded-pixel cache emptied
before every run (what a series never opened before costs), and "re-open" with
the cache filled by the first open (what every later open costs). The cache
lives in a temporary ``MEDVIEW_HOME``; its size on disk is printed. The HTJ2K
section times one slice as a cache entry would be read back (raw + CRC check)
against the same slice decoded from HTJ2K (OpenJPEG, OpenJPH) and from JPEG 2000,
to decide whether HTJ2K is worth it as the cache format. ``--big N`` adds a
first open / re-open of an N-slice J2K series (medview only, one run).
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
from unittest import mock

import numpy as np

from tests.helpers.series import build_series  # noqa: E402


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


def load_medview_first(folder: str) -> np.ndarray:
    """medview with an empty pixel cache (emptied outside the timed part by ``bench``)."""
    return load_medview(folder)


def load_medview_no_cache(folder: str) -> np.ndarray:
    """medview with the pixel cache turned off (what a first open costs without writing it)."""
    with mock.patch.dict(os.environ, {"MEDVIEW_PIXEL_CACHE_MB": "0"}):
        return load_medview(folder)


def empty_cache() -> None:
    from medview.io.cache import PixelCache

    PixelCache().clear()


def cache_mb() -> tuple[float, int]:
    from medview.io.cache import PixelCache

    entries = PixelCache().entries()
    return sum(size for _, size, _ in entries) / 2**20, len(entries)


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


def bench(name, fn, folder, repeat, before=None):
    best, peak, out = float("inf"), 0.0, None
    for _ in range(repeat):
        out = None
        if before is not None:
            before()
        gc.collect()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn(folder)
            dt = time.perf_counter() - t0
        best = min(best, dt)
        peak = max(peak, mem.peak)
    return best, peak, out


def same_voxels(arr: np.ndarray, ref: np.ndarray) -> bool:
    return arr.shape == ref.shape and bool(
        np.array_equal(
            np.sort(arr.reshape(len(arr), -1).sum(1)), np.sort(ref.reshape(len(ref), -1).sum(1))
        )
    )


def bench_series(folder: Path, compressed: bool, repeat: int) -> dict[str, tuple]:
    """Every loader on one series; prints the table and returns the results."""
    loaders = [("medview", load_medview, None)]
    if compressed:
        loaders = [
            ("medview, cache off", load_medview_no_cache, None),
            ("medview first open", load_medview_first, empty_cache),
            ("medview re-open", load_medview, None),
        ]
    loaders += [("SimpleITK", load_sitk, None), ("pydicom loop", load_plain, None)]
    if compressed:
        empty_cache()
    results = {name: bench(name, fn, str(folder), repeat, pre) for name, fn, pre in loaders}
    ref = results["pydicom loop"][2]
    n = len(ref)
    print(
        f"\n{'JPEG 2000 lossless' if compressed else 'uncompressed'}: "
        f"volume int16 = {n * 512 * 512 * 2 / 2**20:.0f} MB"
    )
    print(f"  {'loader':<20} {'time s':>8} {'peak MB':>8} {'peak/vol':>8}  same voxels as loop")
    vol_mb = n * 512 * 512 * 2 / 2**20
    for name, (t, peak, arr) in results.items():
        print(f"  {name:<20} {t:8.2f} {peak:8.0f} {peak / vol_mb:8.2f}  {same_voxels(arr, ref)}")
    return results


def bench_htj2k(folder: Path, repeat: int) -> None:
    """One slice: read back from the raw cache vs decoded from HTJ2K / JPEG 2000."""
    import pydicom
    from pydicom.encaps import generate_frames

    try:
        import imagecodecs
        import openjpeg
    except ImportError as exc:
        print(f"\nHTJ2K as the cache format: not measured ({exc})")
        return
    from medview.io.cache import PixelCache, read_entry

    path = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(path)
    j2k = next(generate_frames(ds.PixelData, number_of_frames=1))
    arr = ds.pixel_array
    ht = imagecodecs.htj2k_encode(arr)
    assert np.array_equal(openjpeg.decode(ht), arr)
    entry = next(p for _, _, p in PixelCache().entries())
    header = entry.read_bytes()[16 : 16 + int.from_bytes(entry.read_bytes()[12:16], "little")]
    import json

    ident = json.loads(header)

    def best(fn) -> float:
        times = []
        for _ in range(max(5, repeat * 5)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1000

    rows = [
        (
            "raw cache entry (read + CRC)",
            best(lambda: read_entry(entry, ident["sop"], ident["fp"])),
            entry.stat().st_size,
        ),
        ("HTJ2K, OpenJPEG 2.5 (pydicom)", best(lambda: openjpeg.decode(ht)), len(ht)),
        ("HTJ2K, OpenJPH (imagecodecs)", best(lambda: imagecodecs.htj2k_decode(ht)), len(ht)),
        ("JPEG 2000, OpenJPEG (source)", best(lambda: openjpeg.decode(j2k)), len(j2k)),
    ]
    print("\nHTJ2K as the cache format (one 512x512 slice, one thread, best of runs)")
    print(f"  {'form':<32} {'ms/slice':>9} {'kB':>7}")
    for name, ms, size in rows:
        print(f"  {name:<32} {ms:9.2f} {size / 1024:7.0f}")
    raw_ms = rows[0][1]
    print(
        f"  HTJ2K is {rows[1][1] / raw_ms:.0f}x (OpenJPEG) / {rows[2][1] / raw_ms:.0f}x (OpenJPH) "
        f"slower to read back than the raw entry, {rows[0][2] / len(ht):.1f}x smaller"
    )


def bench_big(root: Path, slices: int) -> None:
    folder = root / f"j2k{slices}"
    if not folder.exists():
        build_series(folder, slices, compressed=True)
    empty_cache()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        arr = load_medview(str(folder))
        first = time.perf_counter() - t0
    del arr
    gc.collect()
    with PeakRSS() as mem2:
        t0 = time.perf_counter()
        arr = load_medview(str(folder))
        again = time.perf_counter() - t0
    assert arr.shape[0] == slices
    mb, count = cache_mb()
    print(
        f"\n{slices}-slice JPEG 2000 series (medview only, one run): first open {first:.1f} s "
        f"(peak {mem.peak:.0f} MB), re-open {again:.2f} s (peak {mem2.peak:.0f} MB), "
        f"{first / again:.0f}x; cache {mb:.0f} MB in {count} entries"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="folder to keep the generated series in")
    ap.add_argument("--big", type=int, default=0, help="also an N-slice J2K series (e.g. 2000)")
    args = ap.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="medview-bench-"))
    os.environ["MEDVIEW_HOME"] = tempfile.mkdtemp(prefix="medview-bench-home-")
    os.environ.setdefault("MEDVIEW_PIXEL_CACHE_MB", "8192")
    print(
        f"medview I/O benchmark: {args.slices} slices of 512x512, {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results = {}
    for compressed in (False, True):
        folder = root / ("j2k" if compressed else "raw")
        if not folder.exists():
            build_series(folder, args.slices, compressed=compressed)
        results[compressed] = bench_series(folder, compressed, args.repeat)
    raw, j2k = results[False], results[True]
    first, again, plain = (
        j2k[k][0] for k in ("medview first open", "medview re-open", "pydicom loop")
    )
    uncompressed = raw["medview"][0]
    mb, count = cache_mb()
    print(f"\n  J2K re-open vs first open: {first / again:.1f}x faster (target >= 10x)")
    print(
        f"  J2K re-open vs uncompressed load: {again / uncompressed:.2f}x its time (target <= 1.5x)"
    )
    print(
        f"  J2K first open vs pydicom loop: {plain / first:.2f}x faster; "
        f"vs SimpleITK: {j2k['SimpleITK'][0] / first:.2f}x faster"
    )
    print(f"  pixel cache on disk: {mb:.0f} MB in {count} entries")
    import multiprocessing

    kids = multiprocessing.active_children()  # the decoder pool's workers, if it started
    if kids:
        print(
            f"  medview decoder processes: {len(kids)}, "
            f"RSS {sum(rss_mb(p.pid) for p in kids):.0f} MB in total"
        )
    bench_htj2k(root / "j2k", args.repeat)
    if args.big:
        bench_big(root, args.big)
    return 0


if __name__ == "__main__":
    sys.exit(main())
