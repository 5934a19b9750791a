"""A deterministic generator of hostile DICOM inputs and a runner that feeds them to the CLI.

Mutants are derived from pydicom's own test files and pydicom-data's (``data_store``) files.
Every mutant is named by ``(class, number)`` and built from a ``random.Random`` seeded with that
name, so the same list is produced on every machine and run. Classes (issue 18, item 10):

* ``absurd_size``   Rows/Columns/NumberOfFrames far beyond the bytes present
* ``bits``          impossible BitsAllocated / BitsStored / SamplesPerPixel / Photometric /
                    PixelRepresentation combinations
* ``bad_length``    an element's length field overwritten in the raw bytes
* ``truncation``    the file cut short (in the header or in the pixel data)
* ``pixel_lie``     the pixel data element's length or fragments disagree with the header
* ``wrong_ts``      the file meta names another transfer syntax than the data uses
* ``nan_values``    NaN / infinite rescale, spacing, window and position values
* ``deep_sequence`` sequences nested hundreds to thousands of items deep
* ``control_text``  terminal escape sequences and control characters in descriptions and names
* ``special``       FIFOs, links to devices, folder loops, links out of the tree

``run_all`` runs ``medview info --json`` and ``medview render`` on every mutant, each in a
child process with an address-space limit and a timeout, and classifies the outcomes.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CLASSES = (
    "absurd_size",
    "bits",
    "bad_length",
    "truncation",
    "pixel_lie",
    "wrong_ts",
    "nan_values",
    "deep_sequence",
    "control_text",
    "special",
)
#: Largest source file used (bigger ones only make the runs slower).
MAX_SOURCE_BYTES = 3_000_000
#: Address-space limit of each child run (a run that needs more fails with MemoryError).
CHILD_AS_LIMIT = 6 << 30
#: Resident memory a run may reach (target of issue 18: no run over 2 GiB).
MAX_RSS = 2 << 30
TS_CHOICES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
    "1.2.3.4.5.6",
)


def source_files() -> list[Path]:
    """Readable DICOM image files from pydicom and pydicom-data, sorted by name."""
    import warnings

    import pydicom
    from pydicom.data import data_manager

    # local files only: get_testdata_files() would try to download the missing ones
    found = [str(p) for p in (Path(data_manager.DATA_ROOT) / "test_files").glob("*")]
    for source in data_manager.external_data_sources().values():  # pydicom-data
        try:
            found += [str(p) for p in source.get_paths("*", 0)]
        except Exception:
            continue
    out = []
    for f in sorted(set(found), key=lambda p: (os.path.basename(p), p)):
        p = Path(f)
        if not p.is_file() or p.stat().st_size > MAX_SOURCE_BYTES:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:
            continue
        if "Rows" in ds and getattr(ds, "file_meta", None) is not None:
            if "TransferSyntaxUID" in ds.file_meta:
                out.append(p)
    return out


@dataclass(frozen=True)
class Mutant:
    """One hostile input: ``make(folder)`` writes it and returns the path to open."""

    cls: str
    number: int
    source: Path
    make: Callable[[Path], Path] = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.cls}-{self.number:04d}"


# -- helpers over raw bytes and datasets ------------------------------------------------


def _pydicom():  # type: ignore[no-untyped-def]
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    return pydicom


def _read(src: Path):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _pydicom().dcmread(src)


def _save(ds, dst: Path) -> Path:  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(dst, enforce_file_format=False)
    return dst


def _split_meta(raw: bytes) -> tuple[bytes, bytes]:
    """(preamble + DICM + file meta, dataset bytes) of a Part 10 file."""
    from pydicom.filereader import _read_file_meta_info

    fp = io.BytesIO(raw)
    fp.seek(132)
    _read_file_meta_info(fp)
    return raw[: fp.tell()], raw[fp.tell() :]


def _with_ts(raw: bytes, ts: str) -> bytes:
    """The same dataset bytes under a file meta that names transfer syntax ``ts``."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info
    from pydicom.filewriter import write_file_meta_info

    fp = io.BytesIO(raw)
    fp.seek(132)
    meta = _read_file_meta_info(fp)
    body = raw[fp.tell() :]
    meta.TransferSyntaxUID = ts
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_file_meta_info(out, meta, enforce_standard=False)
    return raw[:132] + out.getvalue() + body


def _pixel_tag_offset(raw: bytes) -> int:
    """Offset of the last (7FE0,0010) tag in little endian (-1 if none)."""
    return raw.rfind(b"\xe0\x7f\x10\x00")


# -- the mutant classes -------------------------------------------------------------------


def _absurd_size(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    rows = rng.choice([65535, 65535, 40000, 1, 0])
    cols = rng.choice([65535, 30000, 1, 0])
    frames = rng.choice([None, None, 2, 1000, 2**31 - 1, -5])

    def make(folder: Path) -> Path:
        ds = _read(src)
        ds.Rows, ds.Columns = rows, cols
        if frames is not None:
            ds.NumberOfFrames = str(frames)
        return _save(ds, folder / "absurd.dcm")

    return make


def _bits(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    if rng.random() < 0.3:  # the GDCM abort of the probe: 64 bits on a compressed file
        edits: dict[str, object] = {"BitsAllocated": 64, "BitsStored": rng.choice([8, 16, 64])}
        return _edit(src, edits, "bits.dcm")
    edits = rng.choice(
        [
            {"BitsAllocated": 64},
            {"BitsAllocated": 64, "BitsStored": 64},
            {"BitsAllocated": 32, "BitsStored": 32},
            {"BitsAllocated": 1},
            {"BitsAllocated": 7},
            {"BitsAllocated": 0},
            {"BitsStored": 40},
            {"BitsStored": 0},
            {"SamplesPerPixel": 3},
            {"SamplesPerPixel": 2},
            {"SamplesPerPixel": 0},
            {"SamplesPerPixel": 4, "PhotometricInterpretation": "CMYK"},
            {"PhotometricInterpretation": "RGB"},
            {"PhotometricInterpretation": "YBR_FULL_422"},
            {"PhotometricInterpretation": "PALETTE COLOR"},
            {"PhotometricInterpretation": "GARBAGE"},
            {"PixelRepresentation": 2},
            {"PlanarConfiguration": 7, "SamplesPerPixel": 3},
        ]
    )

    return _edit(src, edits, "bits.dcm")


def _edit(src: Path, edits: dict[str, object], name: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        ds = _read(src)
        for k, v in edits.items():
            setattr(ds, k, v)
        return _save(ds, folder / name)

    return make


def _bad_length(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    frac = rng.random()
    value = rng.choice([0xFFFFFFF0, 0x7FFFFFFF, 0x10000, 0xFFFF, 3, 0xFFFFFFFF])
    target = rng.choice([b"\x08\x00\x60\x00", b"\x10\x00\x10\x00", b"\x28\x00\x10\x00", None])

    def make(folder: Path) -> Path:
        raw = bytearray(src.read_bytes())
        meta, _ = _split_meta(bytes(raw))
        end = _pixel_tag_offset(bytes(raw))
        end = end if end > len(meta) else len(raw)
        pos = raw.find(target, len(meta)) if target else -1
        if pos < 0:
            pos = len(meta) + int(frac * max(1, end - len(meta) - 8))
        # explicit VR: tag, VR, 2-byte length; implicit: tag, 4-byte length
        vr = bytes(raw[pos + 4 : pos + 6])
        if vr.isalpha() and vr.isupper() and vr not in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            raw[pos + 6 : pos + 8] = struct.pack("<H", value & 0xFFFF)
        else:
            raw[pos + 4 : pos + 8] = struct.pack("<I", value)
        out = folder / "badlen.dcm"
        out.write_bytes(bytes(raw))
        return out

    return make


def _truncation(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    frac = rng.random()
    in_pixels = rng.random() < 0.6

    def make(folder: Path) -> Path:
        raw = src.read_bytes()
        pix = _pixel_tag_offset(raw)
        if in_pixels and pix > 0:
            cut = pix + 4 + int(frac * (len(raw) - pix - 4))
        else:
            cut = 132 + int(frac * max(1, (pix if pix > 0 else len(raw)) - 132))
        out = folder / "trunc.dcm"
        out.write_bytes(raw[:cut])
        return out

    return make


def _pixel_lie(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    how = rng.choice(["shorter", "longer", "odd", "garbage_tail", "drop_fragments", "frames"])
    frac = rng.random()

    def make(folder: Path) -> Path:
        raw = bytearray(src.read_bytes())
        pix = _pixel_tag_offset(bytes(raw))
        out = folder / "pixlie.dcm"
        if pix < 0:
            out.write_bytes(bytes(raw))
            return out
        explicit = bytes(raw[pix + 4 : pix + 6]) in (b"OB", b"OW")
        lpos = pix + 8 if explicit else pix + 4
        (length,) = struct.unpack("<I", raw[lpos : lpos + 4])
        if how == "frames":
            ds = _read(src)
            ds.NumberOfFrames = str(int(getattr(ds, "NumberOfFrames", 1) or 1) * 7)
            return _save(ds, out)
        if length == 0xFFFFFFFF:  # encapsulated
            if how in ("drop_fragments", "shorter"):
                body = raw[: lpos + 4]
                items = bytes(raw[lpos + 4 :])
                keep = max(8, int(frac * len(items)))
                out.write_bytes(bytes(body) + items[:keep] + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
                return out
            if how == "longer":
                # the first fragment claims more bytes than the file has
                pos = raw.find(b"\xfe\xff\x00\xe0", lpos + 12)
                if pos > 0:
                    raw[pos + 4 : pos + 8] = struct.pack("<I", 0x7FFFFFF0)
        elif how == "shorter":
            raw[lpos : lpos + 4] = struct.pack("<I", int(length * frac) & ~1)
        elif how == "longer":
            raw[lpos : lpos + 4] = struct.pack("<I", length * 4 + 2)
        elif how == "odd":
            raw[lpos : lpos + 4] = struct.pack("<I", length - 1)
        if how == "garbage_tail":
            raw += bytes(rng.getrandbits(8) for _ in range(333))
        out.write_bytes(bytes(raw))
        return out

    return make


def _wrong_ts(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    ts = rng.choice(TS_CHOICES)

    def make(folder: Path) -> Path:
        out = folder / "ts.dcm"
        out.write_bytes(_with_ts(src.read_bytes(), ts))
        return out

    return make


def _nan_values(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    bad = rng.choice(["NaN", "nan", "inf", "-inf", "Infinity", "1e999"])
    what = rng.choice(
        "RescaleSlope RescaleIntercept PixelSpacing WindowWidth WindowCenter SliceThickness"
        " ImagePositionPatient both_rescale".split()
    )

    def make(folder: Path) -> Path:
        ds = _read(src)
        if what == "PixelSpacing":
            ds.PixelSpacing = f"{bad}\\{bad}"
        elif what == "ImagePositionPatient":
            ds.ImagePositionPatient = f"0\\{bad}\\0"
        elif what == "both_rescale":
            ds.RescaleSlope, ds.RescaleIntercept = bad, bad
        else:
            setattr(ds, what, bad)
        return _save(ds, folder / "nan.dcm")

    return make


def _deep_sequence(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    depth = rng.choice([200, 1000, 5000, 20000])
    defined = rng.random() < 0.3

    def make(folder: Path) -> Path:
        raw = src.read_bytes()
        meta, body = _split_meta(raw)
        ds = _read(src)
        implicit = ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
        if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2":
            implicit = False  # big endian: the nesting below is little endian, garbage to it
        tag = b"\x08\x00\x40\x11"  # (0008,1140) Referenced Image Sequence
        head = tag + (b"\xff\xff\xff\xff" if implicit else b"SQ\x00\x00\xff\xff\xff\xff")
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        if defined:  # lengths that lie: every level claims the same huge size
            head = tag + (b"\x00\x00\x00\x10" if implicit else b"SQ\x00\x00\x00\x00\x00\x10")
            item = b"\xfe\xff\x00\xe0\x00\x00\x00\x10"
        open_ = (head + item) * depth
        close = (b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00") * depth
        out = folder / "deep.dcm"
        out.write_bytes(meta + open_ + close + body)
        return out

    return make


ESCAPES = (
    "\x1b]0;pwned\x07",  # retitle the terminal
    "\x1b[2J\x1b[H",  # clear the screen
    "\r\nCT 1.2.3 fake row\r\n",
    "\x1b[31mred\x1b[0m",
    "\x00\x08\x7f\x9b6n",
)


def _control_text(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    text = rng.choice(ESCAPES)
    where = rng.choice(
        "SeriesDescription StudyDescription PatientName PatientID Modality SeriesInstanceUID".split()
    )

    def make(folder: Path) -> Path:
        ds = _read(src)
        setattr(ds, where, "x" + text + "y")
        return _save(ds, folder / "ctl.dcm")

    return make


def _special(src: Path, rng: random.Random) -> Callable[[Path], Path]:
    kind = rng.choice(["fifo", "zero", "urandom", "loop", "outside", "fifo_dir", "null"])

    def make(folder: Path) -> Path:
        tree = folder / "tree"
        tree.mkdir()
        (tree / "ok.dcm").write_bytes(src.read_bytes())
        if kind in ("fifo", "fifo_dir"):
            os.mkfifo(tree / "pipe.dcm")
            return tree if kind == "fifo_dir" else tree / "pipe.dcm"
        if kind in ("zero", "urandom", "null"):
            os.symlink(f"/dev/{kind}", tree / f"{kind}.dcm")
            return tree if rng.random() < 0.5 else tree / f"{kind}.dcm"
        if kind == "loop":
            os.symlink("..", tree / "up")
            os.symlink(".", tree / "self")
            return tree
        os.symlink(src, tree / "outside.dcm")  # out of the tree
        return tree

    return make


MAKERS: dict[str, Callable[[Path, random.Random], Callable[[Path], Path]]] = {
    "absurd_size": _absurd_size,
    "bits": _bits,
    "bad_length": _bad_length,
    "truncation": _truncation,
    "pixel_lie": _pixel_lie,
    "wrong_ts": _wrong_ts,
    "nan_values": _nan_values,
    "deep_sequence": _deep_sequence,
    "control_text": _control_text,
    "special": _special,
}


NATIVE_TS = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _compressed(sources: list[Path]) -> list[Path]:
    out = []
    for p in sources:
        try:
            ts = str(_read_meta(p).TransferSyntaxUID)
        except Exception:
            continue
        if ts not in NATIVE_TS and ts != "1.2.840.10008.1.2.1.99":
            out.append(p)
    return out or sources


def _read_meta(p: Path):  # type: ignore[no-untyped-def]
    from pydicom.filereader import read_file_meta_info

    return read_file_meta_info(p)


def mutants(per_class: int, sources: list[Path] | None = None) -> Iterator[Mutant]:
    """``per_class`` mutants of every class, always the same ones for the same arguments.

    Every other size, bits and pixel-length mutant comes from a compressed file (the
    decoders that aborted or panicked in the probe); the rest from any source.
    """
    sources = sources if sources is not None else source_files()
    compressed = _compressed(sources)
    for cls in CLASSES:
        for n in range(per_class):
            rng = random.Random(f"medview-fuzz:{cls}:{n}")
            pool = sources
            if cls in ("absurd_size", "bits", "pixel_lie") and n % 2 == 0:
                pool = compressed
            src = pool[rng.randrange(len(pool))]
            yield Mutant(cls, n, src, MAKERS[cls](src, rng))


def secrets_of(src: Path) -> list[str]:
    """PatientName / PatientID of a source (4+ characters): never to appear in stderr."""
    try:
        ds = _pydicom().dcmread(src, stop_before_pixels=True)
    except Exception:
        return []
    out = []
    for kw in ("PatientName", "PatientID"):
        text = str(ds.get(kw, "") or "").strip()
        if len(text) >= 4:
            out.append(text)
    return out


# -- running --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one CLI run on one mutant did."""

    mutant: str
    command: str
    returncode: int | None  # None: killed after the timeout (a hang)
    seconds: float
    max_rss: int  # bytes, the child and the processes it waited for
    stdout: str
    stderr: str
    secrets: tuple[str, ...] = ()

    @property
    def problems(self) -> list[str]:
        """Failed targets: traceback, crash, hang, memory, json, lines, escapes."""
        out = []
        if self.returncode is None:
            out.append("hang")
        elif self.returncode < 0:
            out.append("crash")
        if "Traceback (most recent call last)" in self.stderr:
            out.append("traceback")
        if self.max_rss > MAX_RSS:
            out.append("memory")
        if self.command == "info" and self.returncode is not None and self.returncode >= 0:
            try:
                json.loads(self.stdout, parse_constant=_no_constant)
            except ValueError:
                out.append("json")
        if self.returncode not in (None, 0) and self.returncode > 0:
            if len([ln for ln in self.stderr.splitlines() if ln.strip()]) < 1:
                out.append("silent")
        if any(c in self.stderr for c in "\x1b\x07\x00\x08\x9b\r"):
            out.append("escape")
        if len(self.stderr) > 20_000:
            out.append("long")
        if any(s in self.stderr for s in self.secrets):
            out.append("phi")
        return out


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def child_env() -> dict[str, str]:
    """Environment of a child run: the repository importable, one torch/BLAS thread."""
    env = dict(os.environ)
    repo = os.environ.get("MEDVIEW_FUZZ_REPO") or str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.setdefault("MEDVIEW_DECODE_WORKERS", "1")  # one isolated worker is enough per run
    env.setdefault("MEDVIEW_HOME", tempfile.mkdtemp(prefix="fuzz-home-"))
    return env


def run_all(items: list[Mutant], root: Path, timeout: float = 30.0, jobs: int = 2) -> list[Outcome]:
    """Build every mutant under ``root`` and run ``info --json`` and ``render`` on each.

    The runs are shared among ``jobs`` runner processes (``tests/fuzz/runner.py``: medview
    imported once, one forked child per run, each with :data:`CHILD_AS_LIMIT` and
    ``timeout``).
    """

    env = child_env()
    work: list[tuple[str, str, list[str], tuple[str, ...]]] = []
    for m in items:
        folder = root / m.name
        folder.mkdir(parents=True)
        try:
            path = m.make(folder)
        except Exception:  # pydicom cannot write this edit of this source: not a mutant
            continue
        secrets = tuple(secrets_of(m.source))
        png = str(folder / "out.png")
        work.append((m.name, "info", ["info", "--json", str(path)], secrets))
        work.append((m.name, "render", ["render", str(path), "--out", png], secrets))
    runner = Path(__file__).with_name("runner.py")
    procs = []
    shares = [work[k::jobs] for k in range(jobs)]
    for k, share in enumerate(shares):
        spec = {
            "timeout": timeout,
            "as_limit": CHILD_AS_LIMIT,
            "jobs": [
                {"argv": argv, "stdout": str(root / f"o{k}-{n}"), "stderr": str(root / f"e{k}-{n}")}
                for n, (_, _, argv, _) in enumerate(share)
            ],
        }
        (root / f"jobs{k}.json").write_text(json.dumps(spec))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(runner),
                    str(root / f"jobs{k}.json"),
                    str(root / f"res{k}.json"),
                ],
                env=env,
                cwd=tempfile.gettempdir(),  # never import medview from the caller's folder
                stdin=subprocess.DEVNULL,
            )
        )
    for proc in procs:
        proc.wait()
    outcomes = []
    for k, share in enumerate(shares):
        results = json.loads((root / f"res{k}.json").read_text())
        for n, ((name, command, _, secrets), res) in enumerate(zip(share, results, strict=True)):
            outcomes.append(
                Outcome(
                    name,
                    command,
                    res["returncode"],
                    res["seconds"],
                    res["max_rss"],
                    (root / f"o{k}-{n}").read_text("utf-8", "replace"),
                    (root / f"e{k}-{n}").read_text("utf-8", "replace"),
                    secrets,
                )
            )
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """Counts of each problem per mutant class (and the runs per class)."""
    table: dict[str, dict[str, int]] = {}
    for o in outcomes:
        cls = o.mutant.rsplit("-", 1)[0]
        row = table.setdefault(cls, {"runs": 0})
        row["runs"] += 1
        for p in o.problems:
            row[p] = row.get(p, 0) + 1
    return table


if __name__ == "__main__":  # python3 tests/fuzz/mutants.py PER_CLASS: print the figures
    per = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    with tempfile.TemporaryDirectory(prefix="medview-fuzz-") as tmp:
        results = run_all(list(mutants(per)), Path(tmp))
        for cls, row in summary(results).items():
            print(cls, row)
        worst = max(results, key=lambda o: o.max_rss)
        print(f"max rss {worst.max_rss / 2**20:.0f} MiB ({worst.mutant} {worst.command})")
        print(f"slowest {max(o.seconds for o in results):.1f} s")
        for o in results:
            if o.problems:
                tail = o.stderr.strip().splitlines()[-1:] if o.stderr.strip() else [""]
                print(o.mutant, o.command, o.problems, o.returncode, repr(tail[0][:200]))
