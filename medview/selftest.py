"""``medview --self-test``: a headless check of an installed (or source) medview.

It exercises what a clinic install needs, from the bundled files only and with no
network: read a CT slice from bundled sample DICOM and render it, decode the
compressed transfer syntaxes (RLE, JPEG-LS, JPEG 2000, JPEG) through the pixel
plugins, decode in the worker-process pool (which must work in a frozen app),
run every bundled AI model once on the rendered slice, import a small generated
FHIR bundle, forecast glucose with the bundled LSTM and a lab value with the
Gaussian process, suggest treatments, check that every shared library of Qt's xcb
platform plugin resolves (what a real window on Linux needs; the offscreen check
cannot see it), and build the main window offscreen.

One line per check is printed (``ok`` or ``FAIL`` + the reason), then a summary.
Exit status 0 when every check passed, 1 naming the checks that failed. A missing
model or module is a failed check, never a crash.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

# Models a complete medview install ships under models/ (issue 3 and issue 5).
AI_MODELS = ("pneumonia_cnn", "pneumonia_ae")
FORECAST_MODEL = "glucose_lstm"

# Sample files (from pydicom's own test data, bundled by packaging/medview.spec).
SAMPLE_CT = "CT_small.dcm"
SAMPLE_MR = "MR_small.dcm"
LOSSLESS_VARIANTS = (
    ("RLE", "MR_small_RLE.dcm"),
    ("JPEG-LS", "MR_small_jpeg_ls_lossless.dcm"),
    ("JPEG 2000", "MR_small_jp2klossless.dcm"),
)
LOSSY_SAMPLE = ("JPEG baseline", "SC_rgb_jpeg.dcm")
SAMPLE_FILES = (SAMPLE_CT, SAMPLE_MR, *(f for _, f in LOSSLESS_VARIANTS), LOSSY_SAMPLE[1])

POOL_TIMEOUT_S = 120.0
GUI_TIMEOUT_S = 60.0

# Synthetic records (codes as the importers key them).
GLUCOSE = ("2339-0", "Glucose [Mass/volume] in Blood")
HBA1C = ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood")
HYPERTENSION = ("59621000", "Essential hypertension")
DIABETES = ("44054006", "Diabetes mellitus type 2")
LISINOPRIL = ("314076", "lisinopril 10 MG Oral Tablet")
AMLODIPINE = ("197361", "amlodipine 5 MG Oral Tablet")
METFORMIN = ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet")
TARGET_PATIENT = "selftest-1"


class CheckFailed(Exception):
    """A check ran but its result was wrong (the message says how)."""


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        return f"  {status}  {self.name:<26s} {self.detail}  [{self.seconds * 1000:.0f} ms]"


class _Context:
    """Values shared between checks (the loaded CT, the rendered slice, the records)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ct: Any = None
        self.image: Any = None
        self.records: Any = None
        self.torch_error: str = ""  # set when torch failed to import (never import it twice)


# -- sample data ----------------------------------------------------------------------


def sample_dir() -> Path:
    """Folder holding the sample DICOM files.

    pydicom's bundled ``data/test_files`` (found next to the installed package, so a
    frozen app finds the copy the spec bundles); ``resources/samples`` is a fallback.
    Never :func:`pydicom.data.get_testdata_file`, which may try to download.
    """
    candidates = []
    try:
        import pydicom.data

        candidates.append(Path(pydicom.data.__file__).resolve().parent / "test_files")
    except ImportError:
        pass
    from medview.paths import resources_dir

    candidates.append(resources_dir() / "samples")
    for c in candidates:
        if (c / SAMPLE_CT).is_file():
            return c
    raise CheckFailed(
        f"sample DICOM {SAMPLE_CT} not found (looked in {', '.join(str(c) for c in candidates)})"
    )


def _sample(name: str) -> Path:
    p = sample_dir() / name
    if not p.is_file():
        raise CheckFailed(f"{p}: sample file missing from the install")
    return p


# -- checks ---------------------------------------------------------------------------


def check_dicom(ctx: _Context) -> str:
    from medview.io import load_series, scan

    path = _sample(SAMPLE_CT)
    res = scan(path)
    if res.errors:
        raise CheckFailed(str(res.errors[0]))
    if len(res.series) != 1:
        raise CheckFailed(f"{path}: expected 1 series, found {len(res.series)}")
    vol = load_series(res.series[0])
    if vol.array.shape != (1, 128, 128) or vol.modality != "CT" or vol.unit != "HU":
        raise CheckFailed(
            f"{path}: unexpected volume {vol.array.shape} {vol.modality} unit={vol.unit!r}"
        )
    hu = vol.modality_values(0)
    ctx.ct = vol
    return (
        f"{path.name}: CT {vol.array.shape[2]}x{vol.array.shape[1]}, "
        f"HU {float(hu.min()):.0f}..{float(hu.max()):.0f}"
    )


def check_render(ctx: _Context) -> str:
    import numpy as np

    from medview.imaging.display import render_slice

    if ctx.ct is None:
        raise CheckFailed("no CT loaded (the DICOM check failed)")
    img = render_slice(ctx.ct, 0, window=(40.0, 400.0))
    if img.dtype != np.uint8 or img.shape != (128, 128):
        raise CheckFailed(f"render_slice gave {img.dtype} {img.shape}, expected uint8 (128, 128)")
    if float(img.std()) < 5.0:
        raise CheckFailed(f"rendered slice is nearly uniform (std {float(img.std()):.2f})")
    ctx.image = img
    return f"axial slice W40/L400 -> uint8 128x128, mean {float(img.mean()):.1f}"


def check_codecs(ctx: _Context) -> str:
    import numpy as np

    from medview.io import load_path

    ref = load_path(_sample(SAMPLE_MR)).array
    done = []
    for label, fname in LOSSLESS_VARIANTS:
        arr = load_path(_sample(fname)).array
        if arr.shape != ref.shape or not np.array_equal(arr, ref):
            raise CheckFailed(f"{fname}: {label} decode differs from the uncompressed original")
        done.append(label)
    label, fname = LOSSY_SAMPLE
    col = load_path(_sample(fname))
    if col.array.ndim != 4 or col.array.shape[-1] != 3 or float(col.array.std()) == 0.0:
        raise CheckFailed(f"{fname}: {label} decode gave {col.array.shape}")
    return (
        f"{', '.join(done)} lossless decoded equal to the original pixel for pixel; "
        f"{label} colour decoded"
    )


def check_decoder_pool(ctx: _Context) -> str:
    import numpy as np

    from medview.io import decoders
    from medview.io.dicom import decode_file

    workers = decoders.decode_workers()
    if workers < 2:
        return f"skipped: MEDVIEW_DECODE_WORKERS={workers} (decoding in-process)"
    path = _sample("MR_small_jp2klossless.dcm")
    ref, _ = decode_file(str(path))
    pool = decoders.decoder_pool()
    if pool is None:
        raise CheckFailed("decoder worker processes could not start (decoding in-process)")
    try:
        futs = [pool.submit(decode_file, str(path)) for _ in range(2)]
        arrs = [f.result(timeout=POOL_TIMEOUT_S)[0] for f in futs]
    except Exception as exc:  # noqa: BLE001 - a broken pool is the finding
        decoders.shutdown()
        raise CheckFailed(
            f"decoder worker processes failed ({type(exc).__name__}: {exc})"
        ) from None
    method = pool._mp_context.get_start_method() if hasattr(pool, "_mp_context") else "?"
    # stop the workers now: if a later check crashed the process, orphaned workers would
    # keep its stdout open and hang whoever reads it
    decoders.shutdown()
    if not all(np.array_equal(a, ref) for a in arrs):
        raise CheckFailed("worker-process decode differs from in-process decode")
    return f"{workers} {method} workers decoded JPEG 2000 identically"


def check_torch(ctx: _Context) -> str:
    """torch imports and runs: a convolution forward, backward and one optimiser step."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - e.g. a broken bundle
        # a half-imported torch can abort the process when imported again: remember it
        ctx.torch_error = f"{type(exc).__name__}: {_one_line(exc)}"
        raise CheckFailed(f"torch does not import ({ctx.torch_error})") from None

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 16 * 16, 2),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(8, 1, 16, 16)
    y = torch.randint(0, 2, (8,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    if not losses[-1] < losses[0]:
        raise CheckFailed(f"training loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    with torch.inference_mode():
        out = net(x.to(memory_format=torch.channels_last))
    if out.shape != (8, 2) or not bool(torch.isfinite(out).all()):
        raise CheckFailed(f"inference gave {tuple(out.shape)}")
    extra = ""
    if torch.cuda.is_available():  # a CUDA build on a GPU machine: check the device too
        a = torch.randn(256, 256, device="cuda")
        err = float((a @ a).cpu().sub(a.cpu() @ a.cpu()).abs().max())
        if not err < 1e-2:
            raise CheckFailed(f"CUDA matmul differs from CPU by {err:.3g}")
        extra = f", CUDA {torch.cuda.get_device_name(0)}"
    return (
        f"torch {torch.__version__}: 5 SGD steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
        f"{torch.get_num_threads()} threads{extra}"
    )


def _ai_check(name: str) -> Callable[[_Context], str]:
    def check(ctx: _Context) -> str:
        from medview.ai.inference import analyze_images
        from medview.ai.preprocess import SourceImage
        from medview.ai.registry import ModelError, discover

        errors: list[str] = []
        models = discover(errors)
        info = models.get(name)
        if info is None:
            bad = [e for e in errors if name in e]
            if bad:
                raise CheckFailed(f"model {name} is broken: {bad[0]}")
            raise CheckFailed(f"model {name} is not installed (no models/{name}/metadata.json)")
        if ctx.image is None:
            raise CheckFailed("no rendered slice to run the model on (the render check failed)")
        if ctx.torch_error:
            raise CheckFailed(f"not run: torch does not import ({ctx.torch_error})")
        try:
            results = analyze_images(
                [SourceImage(path=SAMPLE_CT, index=0, image=ctx.image)], [info], device="auto"
            )
        except ModelError as exc:
            raise CheckFailed(str(exc)) from None
        if len(results) != 1:
            raise CheckFailed(f"model {name} returned {len(results)} results for 1 image")
        r = results[0]
        if r.probabilities is not None:
            vals = list(r.probabilities.values())
            if not all(0.0 <= v <= 1.0 for v in vals):
                raise CheckFailed(f"model {name} gave probabilities outside [0, 1]: {vals}")
            out = ", ".join(f"{k} {v:.3f}" for k, v in r.probabilities.items())
        elif r.anomaly_score is not None:
            import math

            if not math.isfinite(r.anomaly_score):
                raise CheckFailed(f"model {name} gave a non-finite anomaly score")
            out = f"anomaly score {r.anomaly_score:.4f}"
        else:
            raise CheckFailed(f"model {name} gave neither probabilities nor an anomaly score")
        return f"{info.task} v{info.version} on {r.device}: {out} ({info.source})"

    return check


def _fhir_bundle() -> dict:
    """A tiny FHIR R4 collection: 8 patients, conditions, medications, labs, CGM."""
    entries: list[dict] = []

    def add(res: dict) -> None:
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})

    def concept(system: str, code: str, display: str) -> dict:
        return {"coding": [{"system": system, "code": code, "display": display}], "text": display}

    snomed, rxnorm, loinc = (
        "http://snomed.info/sct",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://loinc.org",
    )
    # patients 1..8 have hypertension; 2..8 take lisinopril, 1 takes only amlodipine;
    # the even ones also have diabetes and take metformin.
    for i in range(1, 9):
        pid = f"selftest-{i}"
        add(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"given": ["Test"], "family": f"Patient{i}"}],
                "gender": "female" if i % 2 else "male",
                "birthDate": f"{1950 + 3 * i}-0{1 + i % 9}-15",
            }
        )
        conds = [HYPERTENSION] + ([DIABETES] if i % 2 == 0 else [])
        for k, (code, disp) in enumerate(conds):
            add(
                {
                    "resourceType": "Condition",
                    "id": f"{pid}-cond-{k}",
                    "subject": {"reference": f"urn:uuid:{pid}"},
                    "code": concept(snomed, code, disp),
                    "onsetDateTime": "2018-03-01T09:00:00Z",
                }
            )
        meds = [AMLODIPINE] if i == 1 else [LISINOPRIL] + ([AMLODIPINE] if i % 3 == 0 else [])
        if i % 2 == 0:
            meds.append(METFORMIN)
        for k, (code, disp) in enumerate(meds):
            add(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{pid}-med-{k}",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": f"urn:uuid:{pid}"},
                    "medicationCodeableConcept": concept(rxnorm, code, disp),
                    "authoredOn": "2018-03-02T09:00:00Z",
                }
            )
    pid = TARGET_PATIENT
    # five yearly HbA1c values (%), slowly rising
    for k, v in enumerate((6.1, 6.3, 6.4, 6.7, 6.9)):
        add(
            {
                "resourceType": "Observation",
                "id": f"{pid}-a1c-{k}",
                "status": "final",
                "subject": {"reference": f"urn:uuid:{pid}"},
                "code": concept(loinc, *HBA1C),
                "effectiveDateTime": f"{2019 + k}-06-01T08:00:00Z",
                "valueQuantity": {
                    "value": v,
                    "unit": "%",
                    "system": "http://unitsofmeasure.org",
                    "code": "%",
                },
            }
        )
    # 8 h of CGM every 5 min: a smooth meal curve (deterministic, no noise)
    import math

    t0 = datetime(2024, 5, 1, 6, 0, 0)
    for k in range(96):
        v = 110.0 + 45.0 * math.exp(-(((k - 40) / 9.0) ** 2)) + 8.0 * math.sin(k / 7.0)
        add(
            {
                "resourceType": "Observation",
                "id": f"{pid}-cgm-{k}",
                "status": "final",
                "subject": {"reference": f"urn:uuid:{pid}"},
                "code": concept(loinc, *GLUCOSE),
                "effectiveDateTime": (t0 + timedelta(minutes=5 * k)).isoformat() + "Z",
                "valueQuantity": {
                    "value": round(v, 1),
                    "unit": "mg/dL",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg/dL",
                },
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def check_records(ctx: _Context) -> str:
    from medview.records import load_records

    path = ctx.workdir / "selftest-bundle.json"
    path.write_text(json.dumps(_fhir_bundle()), encoding="utf-8")
    rs = load_records(path)
    if rs.problems:
        raise CheckFailed(f"FHIR import reported problems: {rs.problems[0]}")
    c = rs.counts()
    if c["patients"] != 8 or c["observations"] != 101 or c["medications"] != 14:
        raise CheckFailed(f"FHIR import counts are wrong: {c}")
    ctx.records = rs
    return (
        f"generated FHIR bundle: {c['patients']} patients, {c['observations']} observations, "
        f"{c['conditions']} conditions, {c['medications']} medications"
    )


def _need_records(ctx: _Context) -> Any:
    if ctx.records is None:
        raise CheckFailed("no records (the records check failed)")
    return ctx.records


def _check_forecast_values(res: Any, what: str) -> None:
    import numpy as np

    vals, lo, hi = (np.asarray(a, float) for a in (res.values, res.lower, res.upper))
    if not len(vals) or not np.isfinite(vals).all():
        raise CheckFailed(f"{what}: forecast values missing or not finite")
    if not (np.all(lo <= vals + 1e-6) and np.all(vals <= hi + 1e-6)):
        raise CheckFailed(f"{what}: forecast outside its own interval")


def check_forecast_glucose(ctx: _Context) -> str:
    from medview.forecast.api import forecast_records

    rs = _need_records(ctx)
    res = forecast_records(rs, TARGET_PATIENT, GLUCOSE[0], 30)
    if res.method != "lstm":
        raise CheckFailed(f"glucose forecast used {res.method!r}, expected the bundled LSTM")
    _check_forecast_values(res, "glucose LSTM")
    if not all(40.0 <= float(v) <= 400.0 for v in res.values):
        raise CheckFailed(f"glucose LSTM forecast implausible: {list(res.values)}")
    return (
        f"LSTM 30 min: {float(res.values[-1]):.0f} mg/dL "
        f"(80% {float(res.lower[-1]):.0f}-{float(res.upper[-1]):.0f})"
    )


def check_forecast_lab(ctx: _Context) -> str:
    from medview.forecast.api import forecast_records

    rs = _need_records(ctx)
    res = forecast_records(rs, TARGET_PATIENT, HBA1C[0], 365 * 24 * 60)
    _check_forecast_values(res, "HbA1c")
    if not 4.0 <= float(res.values[-1]) <= 12.0:
        raise CheckFailed(f"HbA1c forecast implausible: {float(res.values[-1]):.2f}")
    return f"{res.method} 1 year: HbA1c {float(res.values[-1]):.2f} {res.unit}"


def check_suggest(ctx: _Context) -> str:
    from medview.treatments import Recommender

    rs = _need_records(ctx)
    result = Recommender.from_records(rs).suggest(TARGET_PATIENT, k=3)
    if result.status != "ok" or not result.suggestions:
        raise CheckFailed(f"no suggestion ({result.status}): {result.message.strip()}")
    top = result.suggestions[0]
    if top.code != LISINOPRIL[0]:
        got = ", ".join(f"{s.display} ({s.code})" for s in result.suggestions)
        raise CheckFailed(f"expected lisinopril first (7 of 7 similar patients take it), got {got}")
    return f"top suggestion {top.display} (score {top.score:.2f})"


# -- the real window's platform ---------------------------------------------------------

# Shared libraries of Qt's xcb platform plugin (libqxcb.so, libQt6XcbQpa.so.6) and of Qt
# itself, by Debian/Ubuntu package. Found with ``readelf -d`` on the PySide6 wheel.
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
}
# Packages every Debian/Ubuntu system has (not in the README's apt line).
BASE_PACKAGES = frozenset({"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"})
XCB_PLUGIN = "libqxcb.so"


def xcb_plugin_path() -> Path | None:
    """Qt's xcb platform plugin as Qt will load it, or None when PySide6 lacks it.

    ``QT_QPA_PLATFORM_PLUGIN_PATH`` (Qt's own override) first, then the PySide6 package,
    located without importing Qt (the core stays Qt-free).
    """
    override = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH")
    folders = [Path(p) for p in override.split(os.pathsep) if p] if override else []
    import importlib.util

    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        spec = None
    roots = [Path(loc) for loc in (spec.submodule_search_locations or [])] if spec else []
    bundle = getattr(sys, "_MEIPASS", None)  # the frozen app (PyInstaller) keeps it here
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    for root in roots:
        folders.append(root / "Qt" / "plugins" / "platforms")
    for folder in folders:
        if (folder / XCB_PLUGIN).is_file():
            return folder / XCB_PLUGIN
    return None


def needed_libraries(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared library, in order."""
    import struct

    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CheckFailed(f"{path}: not a 64-bit little-endian ELF library")
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:  # PT_LOAD: to map addresses back to file offsets
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []

    def offset(vaddr: int) -> int:
        for start, off, size in loads:
            if start <= vaddr < start + size:
                return vaddr - start + off
        raise CheckFailed(f"{path}: malformed ELF dynamic section")

    strtab, needed = 0, []
    for k in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, k)
        if tag == 0:
            break
        if tag == 5:  # DT_STRTAB
            strtab = offset(val)
        elif tag == 1:  # DT_NEEDED
            needed.append(val)
    return [data[strtab + n : data.index(b"\0", strtab + n)].decode() for n in needed]


def missing_libraries(ldd_output: str) -> list[str]:
    """Library names ``ldd`` printed as ``NAME => not found`` (each once, in order)."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, sep, where = line.strip().partition(" => ")
        if sep and where.strip() == "not found" and name not in missing:
            missing.append(name)
    return missing


def xcb_fix_message(missing: list[str]) -> str:
    """One line: what is missing and the apt command that installs it."""
    packages: list[str] = []
    for name in missing:
        pkg = DEBIAN_PACKAGES.get(name, f"<package providing {name}>")
        if pkg not in packages:
            packages.append(pkg)
    return (
        f"Qt xcb platform: {', '.join(missing)} missing, a window cannot open on X11: "
        f"sudo apt-get install {' '.join(packages)} (see README, Set-up on a fresh machine)"
    )


def check_xcb_platform(ctx: _Context | None) -> str:
    """Every shared library of Qt's xcb plugin resolves (what ``medview`` needs on Linux).

    The offscreen GUI check cannot see this: without e.g. ``libxcb-icccm.so.4`` Qt
    aborts the process (SIGABRT) when it opens a real window.
    """
    if not sys.platform.startswith("linux"):
        return f"skipped: {sys.platform} does not use the xcb platform"
    plugin = xcb_plugin_path()
    if plugin is None:
        raise CheckFailed(f"Qt xcb platform: {XCB_PLUGIN} not found in the PySide6 install")
    import shutil
    import subprocess

    ldd = shutil.which("ldd")
    if ldd is None:  # no ldd: ask the dynamic loader itself (names only the first missing)
        import ctypes

        try:
            ctypes.CDLL(str(plugin))
        except OSError as exc:
            name = str(exc).split(":")[0].strip()
            raise CheckFailed(xcb_fix_message([name or str(exc)])) from None
        return f"{plugin.name} loads (ldd not available to list its libraries)"
    p = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "=>" not in p.stdout:
        raise CheckFailed(f"{plugin}: ldd failed ({(p.stderr or p.stdout).strip()[:200]})")
    missing = missing_libraries(p.stdout)
    if missing:
        raise CheckFailed(xcb_fix_message(missing))
    count = sum(1 for line in p.stdout.splitlines() if " => /" in line)
    return f"{plugin.name}: all {count} shared libraries resolve"


def check_gui(ctx: _Context) -> str:
    try:
        from medview.ui.selftest_gui import GuiCheckFailed, gui_smoke_check
    except ImportError as exc:
        raise CheckFailed(f"PySide6 missing ({exc})") from None
    try:
        return gui_smoke_check(ctx.workdir, GUI_TIMEOUT_S)
    except GuiCheckFailed as exc:
        raise CheckFailed(str(exc)) from None


CHECKS: list[tuple[str, Callable[[_Context], str]]] = [
    ("sample DICOM", check_dicom),
    ("render slice", check_render),
    ("compressed DICOM", check_codecs),
    ("decoder processes", check_decoder_pool),
    ("torch", check_torch),
    *[(f"model {name}", _ai_check(name)) for name in AI_MODELS],
    ("records import", check_records),
    (f"forecast {FORECAST_MODEL}", check_forecast_glucose),
    ("forecast lab (GP)", check_forecast_lab),
    ("suggest", check_suggest),
    ("Qt xcb platform", check_xcb_platform),
    ("GUI (offscreen)", check_gui),
]


def iter_checks(include_gui: bool = True) -> Iterator[CheckResult]:
    """Run every check in order, yielding results as they finish."""
    with tempfile.TemporaryDirectory(prefix="medview-selftest-") as tmp:
        ctx = _Context(Path(tmp))
        for name, fn in CHECKS:
            if fn is check_gui and not include_gui:
                continue
            t0 = time.perf_counter()
            try:
                detail, ok = fn(ctx), True
            except CheckFailed as exc:
                detail, ok = str(exc), False
            except ModuleNotFoundError as exc:
                detail, ok = f"module {exc.name or exc} is missing from the install", False
            except Exception as exc:  # noqa: BLE001 - every problem becomes one line
                detail, ok = f"{type(exc).__name__}: {_one_line(exc)}", False
                if os.environ.get("MEDVIEW_SELFTEST_TRACEBACK"):
                    traceback.print_exc()
            yield CheckResult(name, ok, detail, time.perf_counter() - t0)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def describe_runtime() -> str:
    """Version, frozen or source, Python, and the torch build if installed."""
    from medview import __version__

    kind = "frozen" if getattr(sys, "frozen", False) else "source"
    bits = [f"medview {__version__} ({kind})", f"Python {sys.version.split()[0]}"]
    try:
        from importlib.metadata import version

        bits.append(f"torch {version('torch')}")
    except Exception:  # noqa: BLE001 - metadata may be absent in a frozen app
        pass
    return ", ".join(bits)


def run_self_test(out: TextIO | None = None, include_gui: bool = True) -> int:
    """Run the checks, print one line each and a summary; 0 if all passed, else 1."""
    out = out or sys.stdout
    t0 = time.perf_counter()
    print(f"medview self-test: {describe_runtime()}", file=out, flush=True)
    results = []
    for r in iter_checks(include_gui=include_gui):
        results.append(r)
        print(r.line(), file=out, flush=True)
    failed = [r.name for r in results if not r.ok]
    took = time.perf_counter() - t0
    if failed:
        print(
            f"self-test FAILED: {len(failed)} of {len(results)} checks failed: "
            f"{', '.join(failed)} ({took:.1f} s)",
            file=out,
            flush=True,
        )
        return 1
    print(f"self-test passed: {len(results)} checks ({took:.1f} s)", file=out, flush=True)
    return 0
