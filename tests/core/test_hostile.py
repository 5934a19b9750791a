"""Hostile input (issue 18 items 2-5 and 9): crash isolation, resource limits, regular files
only, clean messages, no orphan workers. Each test reproduces one class of failure found by
the reliability probe (a traceback, an abort, a hang, gigabytes allocated from a header, raw
bytes or escape sequences in a message)."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medview.errors import FileProblem, MedviewError, ReadError, one_line
from medview.io import decoders, load_path, load_series, scan
from medview.io import volume as volume_mod
from medview.io.dicom import decode_file

REPO = Path(__file__).resolve().parents[2]


def tf(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return str(path)


def edited(src: str, dst: Path, **attrs: object) -> Path:
    ds = pydicom.dcmread(src)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(dst, enforce_file_format=False)
    return dst


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "medview", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tempfile.gettempdir(),
    )


# -- crash isolation ----------------------------------------------------------------------


def abort_worker(path: str) -> None:
    """Stands in for a native decoder that aborts (SIGABRT), as GDCM did (runs in a worker)."""
    os.abort()


def decode_or_abort(path: str):  # type: ignore[no-untyped-def]
    """decode_file, except that a file named ``abort*`` kills the worker process."""
    if os.path.basename(path).startswith("abort"):
        os.abort()
    return decode_file(path)


def test_a_worker_that_aborts_is_one_files_error_and_the_pool_is_replaced(fresh_pool):
    with pytest.raises(ReadError) as err:
        decoders.run_isolated(abort_worker, "/data/evil.dcm")
    assert str(err.value).startswith("/data/evil.dcm: the decoder process died")
    assert "\n" not in str(err.value)
    # the next file decodes on a new pool
    arr, _ = decoders.run_isolated(decode_file, tf("MR_small_RLE.dcm"))
    assert arr.shape == (1, 64, 64)


def test_a_series_survives_a_worker_abort(fresh_pool, tmp_path):
    src = pydicom.dcmread(tf("MR_small_RLE.dcm"))
    names = ["a0.dcm", "a1.dcm", "abort.dcm", "a3.dcm", "a4.dcm"]
    for n, name in enumerate(names):
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.18{n + 1}"
        src.ImagePositionPatient = [0.0, 0.0, 3.0 * n]
        src.save_as(tmp_path / name)
    series = scan(tmp_path).series[0]
    fresh_pool.setattr(volume_mod, "decode_file", decode_or_abort)
    vol = load_series(series, processes=True)
    ref, _ = decode_file(str(tmp_path / "a0.dcm"))
    order = [os.path.basename(i.path) for i in vol.instances]
    bad = order.index("abort.dcm")
    for k in range(len(names)):
        if k != bad:
            assert np.array_equal(vol.array[k], ref[0].astype(vol.array.dtype))
    lost = [w for w in vol.warnings if "not decoded" in w]
    assert len(lost) == 1 and "abort.dcm" in lost[0] and "decoder process died" in lost[0]


def test_a_single_compressed_file_is_decoded_in_a_worker(fresh_pool):
    load_path(tf("MR_small_RLE.dcm"))
    assert decoders._pool is not None  # the one file went to the pool, not this process


def test_gdcm_and_the_rust_rle_decoder_are_last_resorts():
    from pydicom.pixels import get_decoder

    from medview.io.pixelcheck import prefer_raising_plugins

    prefer_raising_plugins()
    for ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90"):
        order = list(get_decoder(ts)._available)
        if "gdcm" in order and len(order) > 1:
            assert order[-1] == "gdcm", (ts, order)
    rle = list(get_decoder("1.2.840.10008.1.2.5")._available)
    assert rle[0] == "pydicom", rle


# -- pixel attributes and declared sizes --------------------------------------------------


@pytest.mark.parametrize(
    "name,attrs,words",
    [
        ("SC_rgb_jpeg_dcmtk.dcm", {"BitsAllocated": 64}, "BitsAllocated 64"),
        ("SC_rgb_jpeg_dcmtk.dcm", {"BitsAllocated": 16, "BitsStored": 16}, "PS3.5 8.2"),
        ("JPEG-LL.dcm", {"BitsStored": 40}, "BitsStored 40"),
        ("CT_small.dcm", {"SamplesPerPixel": 2}, "SamplesPerPixel 2"),
        ("CT_small.dcm", {"PhotometricInterpretation": "RGB"}, "needs SamplesPerPixel 3"),
        ("CT_small.dcm", {"PixelRepresentation": 2}, "PixelRepresentation 2"),
        ("MR_small_RLE.dcm", {"BitsAllocated": 7}, "BitsAllocated 7"),
    ],
)
def test_impossible_pixel_attributes_are_refused_before_decoding(tmp_path, name, attrs, words):
    path = edited(tf(name), tmp_path / "x.dcm", **attrs)
    res = scan(path)
    assert not res.series
    (problem,) = res.errors
    assert words in problem.reason and "\n" not in problem.reason


def test_native_rows_columns_beyond_the_bytes_present(tmp_path):
    path = edited(tf("CT_small.dcm"), tmp_path / "big.dcm", Rows=65535, Columns=65535)
    (problem,) = scan(path).errors
    assert "memory budget" in problem.reason or "needs" in problem.reason


def test_native_length_must_cover_the_declared_pixels(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEW_MAX_IMAGE_MB", "4096")
    path = edited(tf("CT_small.dcm"), tmp_path / "tall.dcm", Rows=4096)
    (problem,) = scan(path).errors
    assert problem.reason == (
        "pixel data holds 32768 bytes but Rows x Columns x frames x bits needs 1048576"
    )


def test_frames_without_fragments_are_refused(tmp_path):
    path = edited(tf("MR_small_RLE.dcm"), tmp_path / "frames.dcm", NumberOfFrames="10")
    (problem,) = scan(path).errors
    assert problem.reason.startswith("NumberOfFrames is 10 but the pixel data holds 1 fragment")


def test_a_compressed_header_over_the_image_budget_allocates_nothing(tmp_path):
    path = edited(tf("SC_rgb_jpeg_dcmtk.dcm"), tmp_path / "bomb.dcm", Rows=65535, Columns=65535)
    out = cli("render", str(path), "--out", str(tmp_path / "x.png"))
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    assert "memory budget" in line and "MEDVIEW_MAX_IMAGE_MB" in line


def test_series_budget(tmp_path, monkeypatch):
    src = pydicom.dcmread(tf("CT_small.dcm"))
    for n in range(40):  # 40 x 128 x 128 x 2 bytes = 1.25 MB
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.19{n + 1}"
        src.ImagePositionPatient = [0.0, 0.0, 2.0 * n]
        src.save_as(tmp_path / f"{n:02d}.dcm")
    series = scan(tmp_path).series[0]
    monkeypatch.setenv("MEDVIEW_MAX_SERIES_MB", "1")
    with pytest.raises(ReadError) as err:
        load_series(series)
    assert "declares 1 MB, above the memory budget of 1 MB per series" in str(err.value)
    monkeypatch.setenv("MEDVIEW_MAX_SERIES_MB", "2")
    assert load_series(series).shape == (40, 128, 128)


# -- NIfTI / MHA headers and PNG bombs ------------------------------------------------------


def _nifti(path: Path, shape: tuple[int, int, int]) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, dtype=np.int16)), str(path))
    return path


def _lie_about_dims(path: Path, dims: tuple[int, int, int]) -> None:
    raw = bytearray(path.read_bytes())
    raw[40:56] = struct.pack("<8h", 3, *dims, 1, 1, 1, 1)  # nifti-1 dim[0..7]
    path.write_bytes(bytes(raw))


def test_nifti_header_larger_than_its_file(tmp_path):
    path = _nifti(tmp_path / "v.nii", (4, 5, 6))
    _lie_about_dims(path, (30000, 30000, 30000))
    (problem,) = scan(path).errors
    assert "declares" in problem.reason and "the file holds" in problem.reason


def test_nifti_gz_header_larger_than_deflate_can_hold(tmp_path):
    import gzip

    plain = _nifti(tmp_path / "v.nii", (4, 5, 6))
    _lie_about_dims(plain, (2000, 2000, 1000))
    gz = tmp_path / "v.nii.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    (problem,) = scan(gz).errors
    assert "more than" in problem.reason and "compressed data can hold" in problem.reason


def test_honest_nifti_still_loads(tmp_path):
    vol = load_path(_nifti(tmp_path / "ok.nii.gz", (3, 4, 5)))
    assert vol.shape == (3, 4, 5)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_png_bomb_is_a_one_line_refusal(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 100000, 100000)
    (problem,) = scan(path).errors
    assert problem.reason.startswith("image too large") and "MEDVIEW_MAX_IMAGE_MB" in problem.reason


# -- regular files only ---------------------------------------------------------------------


def test_special_files_in_a_folder_are_skipped_with_a_note(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "ok.dcm").write_bytes(Path(tf("CT_small.dcm")).read_bytes())
    os.mkfifo(tree / "pipe.dcm")
    os.symlink("/dev/zero", tree / "zero.dcm")
    os.symlink(tf("MR_small.dcm"), tree / "outside.dcm")
    os.symlink(".", tree / "self")
    os.symlink("missing.dcm", tree / "broken.dcm")
    start = time.monotonic()
    res = scan(tree)
    assert time.monotonic() - start < 20
    assert [len(s.instances) for s in res.series] == [1]
    notes = {os.path.basename(e.path): e.reason for e in res.errors}
    assert "FIFO" in notes["pipe.dcm"]
    assert "leads out of the folder" in notes["zero.dcm"]
    (given,) = scan(tree / "zero.dcm").errors  # named on the command line: still not read
    assert "character device (through a link)" in given.reason
    assert "leads out of the folder" in notes["outside.dcm"]
    assert "folder loop" in notes["self"]
    assert notes["broken.dcm"] == "broken link"


def test_cli_on_a_fifo_returns_at_once(tmp_path):
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    for args in (["info", str(fifo)], ["render", str(fifo), "--out", str(tmp_path / "x.png")]):
        out = cli(*args, timeout=60)
        assert out.returncode == 2
        (line,) = out.stderr.splitlines()
        assert "FIFO" in line and str(fifo) in line


def test_open_regular_refuses_a_fifo_without_blocking(tmp_path):
    from medview.io.limits import open_regular

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    with pytest.raises(ReadError, match="FIFO"):
        open_regular(str(fifo))


# -- clean messages ---------------------------------------------------------------------------


def test_corrupt_length_error_quotes_no_header_bytes(tmp_path):
    ds = pydicom.dcmread(tf("CT_small.dcm"))
    ds.PatientName = "SECRETNAME^JANE"
    ds.PatientID = "PID998877"
    ds.save_as(tmp_path / "src.dcm")
    raw = bytearray((tmp_path / "src.dcm").read_bytes())
    pos = raw.index(b"\x08\x00\x60\x00")  # (0008,0060) Modality: its 2-byte length
    raw[pos + 6 : pos + 8] = struct.pack("<H", 0xFFF0)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(raw))
    for args in (
        ["info", "--json", str(bad)],
        ["render", str(bad), "--out", str(tmp_path / "o.png")],
    ):
        out = cli(*args)
        text = out.stdout + out.stderr
        assert "Traceback" not in text
        assert len(out.stderr) < 1000, out.stderr
        if out.returncode:
            assert "SECRETNAME" not in out.stderr and "PID998877" not in out.stderr


def test_escape_sequences_never_reach_the_terminal(tmp_path):
    path = edited(
        tf("CT_small.dcm"),
        tmp_path / "esc.dcm",
        SeriesDescription="x\x1b]0;pwned\x07\x1b[2Jy",
        PatientID="\r\nCT 1.2.3 fake row",
    )
    out = cli("info", str(path))
    assert out.returncode == 0
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\r" not in out.stdout
    assert "x\\x1b]0;pwned\\x07\\x1b[2Jy" in out.stdout
    assert len(out.stdout.splitlines()) == 3  # no fake row


def test_printable_and_messages():
    from medview.errors import printable

    assert printable("a\x1b[2Jb\u202ec") == "a\\x1b[2Jb\\u202ec"
    assert printable("x" * 50, 10) == "xxxxxxx..."
    err = MedviewError("bad\x1b[31m thing " + "y" * 5000, "/p/\x1bq.dcm")
    assert "\x1b" not in str(err) and len(str(err)) < 400
    assert "\x1b" not in one_line(ValueError("a\x1bb"))
    assert "\x1b" not in str(FileProblem("/a\x1b", "r\x07"))


def test_info_json_has_null_not_nan(tmp_path):
    from medview.errors import json_safe

    assert json_safe({"a": [float("nan"), float("inf"), 1.5]}) == {"a": [None, None, 1.5]}
    path = edited(tf("CT_small.dcm"), tmp_path / "inf.dcm", PixelSpacing="inf\\inf")
    out = cli("info", "--json", str(path))

    def refuse(name: str) -> float:
        raise ValueError(name)

    data = json.loads(out.stdout, parse_constant=refuse)
    assert all(v is None or np.isfinite(v) for v in data["series"][0]["spacing"])


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity"])
def test_non_finite_rescale_is_an_error_not_a_black_image(tmp_path, value):
    path = edited(tf("CT_small.dcm"), tmp_path / "nan.dcm", RescaleSlope=value)
    (problem,) = scan(path).errors
    assert problem.reason.startswith("RescaleSlope is") and "not a finite number" in problem.reason


def test_display_never_turns_nan_into_a_silent_image():
    from medview.imaging.display import apply_window

    arr = np.array([[np.nan, 0.0, 100.0, np.inf]], dtype=np.float32)
    out = apply_window(arr, 50.0, 100.0)
    assert out.tolist() == [[0, 0, 255, 255]]
    assert apply_window(np.array([[0.0, 100.0]]), float("nan"), 100.0).tolist() != [[0, 0]]


# -- no orphans ---------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_decoder_workers_exit_when_the_parent_is_killed():
    code = textwrap.dedent(
        """
        import os, sys, time
        os.environ["MEDVIEW_DECODE_WORKERS"] = "2"
        from medview.io import decoders
        pool = decoders.decoder_pool()
        print(sorted(pool.submit(os.getpid).result() for _ in range(4)), flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        helpers = _descendants(proc.pid)
        assert len(helpers) >= 2  # the workers (and the forkserver, the resource tracker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in helpers):
            time.sleep(0.2)
        left = [p for p in helpers if _alive(p)]
        assert not left, f"still running after kill -9 of the parent: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_explicit_syntax_written_implicit_still_opens() -> None:
    """pydicom's SC_rgb_jpeg.dcm declares JPEG (explicit VR) but is written implicit VR:
    pydicom reads it with a warning, so the size checks must not refuse it."""
    from pydicom.data import get_testdata_file

    from medview.io import load_path

    vol = load_path(get_testdata_file("SC_rgb_jpeg.dcm"))
    assert vol.array.shape[-1] == 3 and vol.array.ndim == 4


def test_a_decoder_finding_more_frames_than_declared_is_one_files_error(tmp_path):
    """Found by the full fuzz run: pydicom decodes 1x1 big-endian RGB with its excess pixel
    data as 20000 frames; placing them into a 2-frame volume raised ValueError."""
    path = edited(tf("SC_rgb_expb_16bit_2frame.dcm"), tmp_path / "tiny.dcm", Rows=1, Columns=1)
    with pytest.raises(ReadError) as err:
        load_path(path)
    assert str(err.value).endswith("frames decoded, NumberOfFrames says 2")
