"""The decoded-pixel cache (medview.io.cache): re-open from the cache, stale sources,
corrupted entries, the size bound, several writers at once, the GPU hook's fallback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from medview.errors import MedviewError
from medview.io import cache, load_series, scan, volume
from medview.io.dicom import decode_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cache_home(medview_home, monkeypatch) -> Path:
    """A fresh per-user folder with the cache on (64 MB) and decoding in this process."""
    monkeypatch.setenv(cache.LIMIT_ENV, "64")
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    return medview_home


@pytest.fixture()
def ct_copy(ct_dir, tmp_path) -> Path:
    """A private copy of the real JPEG 2000 CT (20 slices) that tests may edit."""
    out = tmp_path / "ct"
    shutil.copytree(ct_dir, out)
    return out


class DecodeCounter:
    """Wraps the loader's decode_file, recording which files were decoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        monkeypatch.setattr(volume, "decode_file", self)

    def __call__(self, path: str):
        self.paths.append(path)
        return decode_file(path)


def _load(folder: Path) -> np.ndarray:
    return load_series(scan(folder).series[0], processes=False).array


def _slice_of(folder: Path, path: Path) -> int:
    series = scan(folder).series[0]
    return [i.path for i in series.instances].index(str(path))


def test_reopen_reads_the_cache_and_gives_the_same_voxels(cache_home, ct_copy, monkeypatch):
    decoded = DecodeCounter(monkeypatch)
    first = _load(ct_copy)
    assert len(decoded.paths) == 20
    entries = cache.PixelCache().entries()
    assert len(entries) == 20
    # each entry holds one 512x512 int16 slice and a small header
    assert all(512 * 512 * 2 < size < 512 * 512 * 2 + 4096 for _, size, _ in entries)
    decoded.paths.clear()
    again = _load(ct_copy)
    assert decoded.paths == []  # nothing decoded the second time
    assert again.dtype == first.dtype == np.int16
    assert np.array_equal(again, first)
    assert int(first.min()) == -1024 and int(first.max()) > 1000  # real CT in HU


def test_an_edited_source_is_decoded_again(cache_home, ct_copy, monkeypatch):
    """Same size, same mtime, one byte of the codestream changed: not served from the cache."""
    decoded = DecodeCounter(monkeypatch)
    before = _load(ct_copy)
    files = sorted(ct_copy.iterdir())
    target = files[7]
    st = target.stat()
    data = bytearray(target.read_bytes())
    at = len(data) - 3000  # inside the last pixel data fragment
    data[at] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # as `cp -p` or a restore would
    assert target.stat().st_size == st.st_size
    decoded.paths.clear()
    after = _load(ct_copy)
    assert decoded.paths == [str(target)]  # only the edited file was decoded again
    k = _slice_of(ct_copy, target)
    expected, _ = decode_file(str(target))
    fresh = expected[0].astype(np.int16) - 1024  # this CT's RescaleIntercept
    assert np.array_equal(after[k], fresh)
    assert not np.array_equal(after[k], before[k])
    others = [i for i in range(20) if i != k]
    assert np.array_equal(after[others], before[others])


def test_a_replaced_source_shows_its_new_pixels(cache_home, ct_copy, monkeypatch):
    """A file rewritten with other pixels under the same SOP Instance UID."""
    import pydicom

    before = _load(ct_copy)
    files = sorted(ct_copy.iterdir())
    target, donor = files[3], files[11]
    ds_t = pydicom.dcmread(target)
    ds_d = pydicom.dcmread(donor)
    ds_t.PixelData = ds_d.PixelData
    ds_t.save_as(target)
    k = _slice_of(ct_copy, target)
    kd = _slice_of(ct_copy, donor)
    after = _load(ct_copy)
    assert np.array_equal(after[k], before[kd])
    assert not np.array_equal(after[k], before[k])


@pytest.mark.parametrize("where", ["payload", "header", "truncate"])
def test_a_corrupted_entry_is_dropped_and_decoded_again(cache_home, ct_copy, monkeypatch, where):
    decoded = DecodeCounter(monkeypatch)
    first = _load(ct_copy)
    entries = [p for _, _, p in cache.PixelCache().entries()]
    victim = entries[5]
    data = bytearray(victim.read_bytes())
    if where == "payload":
        data[len(data) // 2] ^= 0x40
    elif where == "header":  # still valid JSON: unsigned stored values read as signed
        text = bytes(data)
        assert b'"<u2"' in text
        data = bytearray(text.replace(b'"<u2"', b'"<i2"'))
    else:
        data = data[: len(data) - 100]
    victim.write_bytes(bytes(data))
    decoded.paths.clear()
    again = _load(ct_copy)
    assert len(decoded.paths) == 1  # the corrupted one, and only it
    assert np.array_equal(again, first)  # never shown: decoded again instead
    # the entry was replaced by a good one
    decoded.paths.clear()
    assert np.array_equal(_load(ct_copy), first) and decoded.paths == []


def test_size_stays_under_the_limit_least_recently_used_first(medview_home, ct_copy, monkeypatch):
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    monkeypatch.setenv(cache.LIMIT_ENV, "3")  # room for 5 of the 20 slices
    limit = 3 * 1024 * 1024
    pc = cache.PixelCache()
    assert pc.limit == limit
    _load(ct_copy)
    assert 0 < pc.size_bytes() <= limit
    kept = len(pc.entries())
    assert 3 <= kept <= 5
    # a second series: still under the limit, its entries are the ones kept
    _load(ct_copy)
    assert pc.size_bytes() <= limit


def test_lru_order_and_refresh_on_hit(tmp_path):
    pc = cache.PixelCache(tmp_path / "c", limit=3 * 70_000)
    arrays = {f"1.2.{n}": np.full((1, 100, 300), n, dtype=np.int16) for n in range(3)}
    for n, (uid, arr) in enumerate(arrays.items()):
        assert pc.put(uid, "fp", arr, {})
        os.utime(pc.path_for(uid, "fp"), (1000 + n, 1000 + n))
    got = pc.get("1.2.0", "fp")  # the oldest becomes the newest
    assert got is not None and np.array_equal(got[0], arrays["1.2.0"])
    assert pc.put("1.2.9", "fp", np.zeros((1, 100, 300), np.int16), {})
    left = {p.name for _, _, p in pc.entries()}
    assert pc.path_for("1.2.1", "fp").name not in left  # least recently used went first
    assert pc.path_for("1.2.0", "fp").name in left
    assert pc.size_bytes() <= pc.limit


def test_extras_round_trip_and_memory_map(tmp_path):
    pc = cache.PixelCache(tmp_path / "c", limit=10**8)
    arr = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    table = np.linspace(0, 255, 7, dtype=np.float32)
    assert pc.put("1.2.3", "10:abcd", arr, {"voi_lut": (5, table), "warnings": ["w1"]})
    out, extra = pc.get("1.2.3", "10:abcd") or (None, {})
    assert out is not None and out.dtype == np.uint16 and np.array_equal(out, arr)
    assert extra["voi_lut"][0] == 5 and np.array_equal(extra["voi_lut"][1], table)
    assert extra["warnings"] == ["w1"]
    mapped = cache.map_entry(pc.path_for("1.2.3", "10:abcd"))
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, arr)
    assert pc.get("1.2.3", "10:other") is None  # another source fingerprint


def test_limit_zero_turns_the_cache_off(medview_home, ct_copy, monkeypatch):
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    monkeypatch.setenv(cache.LIMIT_ENV, "0")
    assert cache.default_cache() is None
    _load(ct_copy)
    assert not cache.cache_dir().exists() or not any(cache.cache_dir().iterdir())


def test_setting_sets_the_limit_and_the_variable_wins(monkeypatch):
    monkeypatch.delenv(cache.LIMIT_ENV, raising=False)
    monkeypatch.setattr(cache, "_configured_mb", None)
    assert cache.limit_bytes() == cache.DEFAULT_LIMIT_MB * 2**20
    cache.set_limit_mb(100)
    assert cache.limit_bytes() == 100 * 2**20
    monkeypatch.setenv(cache.LIMIT_ENV, "7")
    assert cache.limit_bytes() == 7 * 2**20


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from medview.io.cache import PixelCache
    pc = PixelCache(Path(sys.argv[1]), limit=int(sys.argv[2]))
    bad = 0
    for round in range(15):
        for n in range(12):
            arr = np.full((1, 128, 128), n * 7 + 1, dtype=np.int16)
            pc.put(f"1.2.{n}", "fp", arr, {})
            got = pc.get(f"1.2.{(n * 5) % 12}", "fp")
            if got is not None and not (got[0] == ((n * 5) % 12) * 7 + 1).all():
                bad += 1
    print(bad)
    """
)


def test_concurrent_writers_never_show_a_partial_entry(tmp_path):
    """Four processes writing, reading and evicting the same entries at once."""
    root = tmp_path / "c"
    limit = 8 * (128 * 128 * 2 + 4096)  # smaller than the 12 entries: eviction races too
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(limit)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "0"  # no process ever read wrong pixels
    pc = cache.PixelCache(root, limit=limit)
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    for _, _, path in pc.entries():
        cache.read_entry(path, *_identity(path))  # every entry left is whole
    assert pc.size_bytes() <= limit + 3 * (128 * 128 * 2 + 4096)


def _identity(path: Path) -> tuple[str, str]:
    import json

    raw = path.read_bytes()
    hlen = int.from_bytes(raw[12:16], "little")
    header = json.loads(raw[16 : 16 + hlen])
    return header["sop"], header["fp"]


def test_gpu_hook_is_a_no_op_without_a_gpu(ct_dir):
    from medview.io import gpu
    from medview.tasks import TaskState

    series = scan(ct_dir).series[0]
    jobs = list(enumerate(series.instances))
    placed: list[int] = []
    if gpu.available():
        pytest.skip("a GPU decoder is present here")
    left = gpu.decode_jobs(jobs, lambda k, *a: placed.append(k), TaskState())
    assert left == jobs and placed == []
    assert all(gpu.suitable(i) for i in series.instances)  # lossless J2K, grayscale
    # codestreams whose sign or precision pydicom corrects for stay on the CPU
    mismatch = [f for f in _lossless_j2k_files() if f.endswith("J2K_pixelrep_mismatch.dcm")]
    from medview.io.dicom import read_header

    for path in mismatch + [series.instances[0].path]:
        info = read_header(path)
        frame = gpu._frames(info)[0]
        assert gpu.plain_codestream(frame, info) is ("totalseg" in path)
    # what the GPU parity test below checks where a GPU is present
    files = _lossless_j2k_files()
    assert sum("totalseg" in f for f in files) == 20 and len(files) > 20


# ---------------------------------------------------------------- priors prefetch
def _as_new_study(src: Path, out: Path, date: str) -> Path:
    """The CT as another study of one patient (new study/series/SOP UIDs, J2K kept)."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for f in sorted(src.iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyDate = date
        ds.PatientID, ds.PatientName = "PRIORS-001", "Prior^Test"  # the CT is anonymous
        ds.save_as(out / f.name)
    return out


def test_prefetch_caches_the_priors_of_the_opened_patient(cache_home, ct_dir, tmp_path):
    from medview.io.database import StudyDatabase
    from medview.tasks import Cancelled, TaskState
    from medview.viewer.prefetch import prefetch_priors

    current = _as_new_study(ct_dir, tmp_path / "now", "20240301")
    prior = _as_new_study(ct_dir, tmp_path / "prior", "20230301")
    db = StudyDatabase(tmp_path / "db.sqlite")
    try:
        db.import_path([str(current), str(prior)])
        opened = scan(current).series[0]
        cancelled = TaskState()
        cancelled.cancel()
        with pytest.raises(Cancelled):
            prefetch_priors(opened, cancelled, db=db)
        assert cache.PixelCache().entries() == []
        report = prefetch_priors(opened, db=db)
        assert (report.studies, report.series, report.cached, report.written) == (1, 1, 0, 20)
        again = prefetch_priors(opened, db=db)  # nothing left to do
        assert (again.cached, again.written) == (20, 0)
    finally:
        db.close()
    pc = cache.PixelCache()
    prior_series = scan(prior).series[0]
    for info in prior_series.instances:  # the prior's pixels, exactly as decoded
        got = pc.get(info.sop_uid, cache.source_fingerprint(info.path))
        assert got is not None
        assert np.array_equal(got[0], decode_file(info.path)[0])
    for info in opened.instances:  # the open study itself is not prefetched
        assert pc.get(info.sop_uid, cache.source_fingerprint(info.path)) is None


def test_prefetch_skips_other_patients(cache_home, ct_dir, tmp_path):
    import pydicom

    from medview.io.database import StudyDatabase
    from medview.viewer.prefetch import prefetch_priors, prior_studies

    current = _as_new_study(ct_dir, tmp_path / "now", "20240301")
    other = _as_new_study(ct_dir, tmp_path / "other", "20230301")
    for f in other.iterdir():
        ds = pydicom.dcmread(f)
        ds.PatientID = "SOMEONE-ELSE"
        ds.save_as(f)
    db = StudyDatabase(tmp_path / "db.sqlite")
    try:
        db.import_path([str(current), str(other)])
        opened = scan(current).series[0]
        assert prior_studies(db, opened) == []
        assert prefetch_priors(opened, db=db).written == 0
        anonymous = scan(current).series[0]  # no identity: nothing is known to be a prior
        anonymous.patient_id = anonymous.patient_name = ""
        assert prior_studies(db, anonymous) == []
    finally:
        db.close()


class _FakeImage:
    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def cpu(self) -> _FakeImage:
        return self

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.arr


def _fake_nvimgcodec(monkeypatch, offset: int = 0) -> list[int]:
    """Stand-in for nvidia.nvimgcodec that decodes with OpenJPEG (+ ``offset``), as
    (H, W, 1) images the way nvImageCodec returns them; records each batch size."""
    import types

    import openjpeg

    from medview.io import gpu

    batches: list[int] = []

    class Decoder:
        def decode(self, streams, params=None):
            batches.append(len(streams))
            return [_FakeImage((openjpeg.decode(bytes(s)) + offset)[..., None]) for s in streams]

    mod = types.SimpleNamespace(
        Decoder=Decoder,
        DecodeParams=lambda **kw: kw,
        ColorSpec=types.SimpleNamespace(UNCHANGED="unchanged"),
    )
    pkg = types.ModuleType("nvidia")
    pkg.nvimgcodec = mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nvidia", pkg)
    monkeypatch.setitem(sys.modules, "nvidia.nvimgcodec", mod)
    monkeypatch.setattr(gpu, "_cuda_devices", lambda: 1)
    monkeypatch.setattr(gpu, "_state", {"available": None, "verified": False, "decoder": None})
    monkeypatch.setattr(gpu, "BATCH", 8)
    monkeypatch.delenv("MEDVIEW_GPU_DECODE", raising=False)
    return batches


def test_gpu_path_batches_and_matches_the_cpu(medview_home, ct_dir, monkeypatch):
    monkeypatch.setenv(cache.LIMIT_ENV, "0")
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    cpu = _load(ct_dir)
    batches = _fake_nvimgcodec(monkeypatch)
    decoded = DecodeCounter(monkeypatch)
    gpu_vol = _load(ct_dir)
    assert batches == [8, 8, 4]  # 20 files in batches of 8
    assert decoded.paths == []  # the loader's CPU path decoded nothing
    assert np.array_equal(gpu_vol, cpu)


def test_gpu_path_switches_off_when_it_differs_from_the_cpu(medview_home, ct_dir, monkeypatch):
    from medview.io import gpu

    monkeypatch.setenv(cache.LIMIT_ENV, "0")
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    cpu = _load(ct_dir)
    batches = _fake_nvimgcodec(monkeypatch, offset=1)  # a decoder one grey level off
    gpu_vol = _load(ct_dir)
    assert batches == [8]  # the first batch failed the check: no more GPU
    assert np.array_equal(gpu_vol, cpu)  # what is shown is the CPU decode
    assert gpu.available() is False


def test_import_with_cache_fills_the_cache(cache_home, ct_copy, tmp_path, capsys, monkeypatch):
    import json

    from medview import cli

    rc = cli.main(
        ["import", "--cache", "--json", "--db", str(tmp_path / "db.sqlite"), str(ct_copy)]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["instances"] == 20
    assert out["cache"]["written"] == 20 and out["cache"]["already"] == 0
    assert len(cache.PixelCache().entries()) == 20
    decoded = DecodeCounter(monkeypatch)
    _load(ct_copy)  # opening it after the import decodes nothing
    assert decoded.paths == []
    rc = cli.main(["import", "--cache", "--db", str(tmp_path / "db.sqlite"), str(ct_copy)])
    text = capsys.readouterr().out
    assert rc == 0 and "pixel cache: 0 image(s) decoded, 20 already there" in text


def test_database_import_caches_only_when_asked(cache_home, ct_copy, monkeypatch):
    from medview.viewer import session

    monkeypatch.setenv("MEDVIEW_DB", str(cache_home / "db.sqlite"))
    report = session.import_into_db(str(ct_copy))
    assert report.instances == 20 and cache.PixelCache().entries() == []
    session.import_into_db(str(ct_copy), cache=True)
    assert len(cache.PixelCache().entries()) == 20


def _lossless_j2k_files() -> list[str]:
    """Every lossless JPEG 2000 file in pydicom's test data, pydicom-data and the real CT
    (globbed from the installed packages: pydicom's lookup may try to download)."""
    import importlib.util

    import pydicom
    import pydicom.data

    shared = Path(os.environ.get("MEDVIEW_SHARED_DATA", REPO.parent / "shared" / "data"))
    candidates = sorted((shared / "ct" / "totalseg_example_dicom").glob("*.dcm"))
    candidates += sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm"))
    spec = importlib.util.find_spec("data_store")  # the pydicom-data package
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates += sorted(Path(root).rglob("*.dcm"))
    lossless = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202")
    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in candidates:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                ts = str(ds.file_meta.TransferSyntaxUID)
            except Exception:
                continue
            if ts in lossless:
                paths.append(str(path))
    return paths


def test_gpu_decode_is_bit_identical_to_the_cpu_on_every_lossless_j2k_file():
    """Runs where nvImageCodec and a CUDA device are present (skips elsewhere)."""
    from medview.io import gpu
    from medview.io.dicom import read_header

    if not gpu.available():
        pytest.skip("no GPU decoder here (nvidia.nvimgcodec and a CUDA device)")
    checked = 0
    for path in _lossless_j2k_files():
        info = read_header(path)
        if not gpu.suitable(info):
            continue
        try:
            cpu, _ = decode_file(path)
        except MedviewError:  # e.g. the deliberately truncated file: the CPU path reports it
            continue
        (got,) = gpu.decode_files([info])
        assert got.dtype == cpu.dtype and np.array_equal(got, cpu), path
        checked += 1
    assert checked >= 3


def test_warm_stops_when_the_decoder_pool_breaks(cache_home, ct_copy, monkeypatch):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from medview.io import decoders

    class Broken:
        def submit(self, fn, *args):
            fut: Future = Future()
            fut.set_exception(BrokenProcessPool("a worker process died"))
            return fut

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            pass

    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "2")
    monkeypatch.setattr(decoders, "_pool", Broken())
    monkeypatch.setattr(decoders, "_broken", False)
    series = scan(ct_copy).series[0]
    broken: list[int] = []
    monkeypatch.setattr(decoders, "mark_broken", lambda: broken.append(1))
    assert cache.warm(series.instances) == (0, 0)
    assert broken == [1]  # reported once; nothing decoded in this process instead
    assert cache.PixelCache().entries() == []
