"""The frozen app (issue 7): build it with PyInstaller, run it, check what it contains.

Marked ``slow`` but run in CI. The build is made once per source state and cached under
``build/frozen-test/`` (a fingerprint of medview/, packaging/, models/, resources/ and
the installed versions decides reuse), so a second pytest run in the same checkout
reuses it. ``MEDVIEW_FROZEN_APP=/path/to/medview`` tests an existing build instead.

Offline: the frozen ``--self-test`` runs inside ``unshare -rn`` (a new user and network
namespace with no usable interface) when the kernel allows it, and always with the
entry script's network audit (``MEDVIEW_NETWORK_AUDIT``: every host lookup or
non-``AF_UNIX`` connect/send/bind, in the app and in its decoder worker processes,
is logged and refused); the log must stay empty.

Fast tests at the end check the spec, the audit hook and the desktop entry from source.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from medview import selftest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "frozen-test"
LINE = re.compile(r"^  (ok  |FAIL)  (.+?)\s{2,}(.*)  \[(\d+) ms\]$")
BUILD_TIMEOUT_S = 3000
EXE_NAME = "medview.exe" if sys.platform == "win32" else "medview"
# a CPU build holds no CUDA/cuDNN/NCCL libraries, no torch C++ tests/headers and none of
# the Qt modules the spec excludes
FORBIDDEN = re.compile(
    r"((libcud|cudnn|cublas|cufft|curand|cusolver|cusparse|nccl|nvrtc|nvJit|libhip)"
    r"[^/]*\.(so|dll|dylib)(\.[0-9.]+)?$|"
    r"Qt6WebEngine|QtWebEngineProcess|Qt63D|Qt6Quick|Qt6Multimedia|Qt6Pdf|Qt6Network|"
    r"^_internal/torch/(test|include|share)/)",
    re.IGNORECASE,
)
# a guard against growth, on each file counted once (links not followed): 1602 MiB measured
# 2026-12-01 with VTK's 3-D modules (issue 16, +223 MiB stripped): torch 488, SimpleITK 259,
# VTK 223, the ffmpeg binary of imageio-ffmpeg 165, PySide6 96
BUNDLE_BUDGET_MIB = 1700


def _fingerprint() -> str:
    h = hashlib.sha256()
    roots = [REPO / "medview", REPO / "packaging", REPO / "models", REPO / "resources"]
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(p.relative_to(REPO).as_posix().encode())
                h.update(hashlib.sha256(p.read_bytes()).digest())
    for dist in ("pyinstaller", "torch", "PySide6", "pydicom", "SimpleITK", "numpy"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{dist}=none".encode())
    h.update(sys.version.encode())
    return h.hexdigest()


@pytest.fixture(scope="session")
def frozen_app() -> Path:
    """The frozen executable: MEDVIEW_FROZEN_APP, the cached build, or a fresh build."""
    given = os.environ.get("MEDVIEW_FROZEN_APP")
    if given:
        app = Path(given).resolve()
        assert app.is_file(), f"MEDVIEW_FROZEN_APP={given} does not exist"
        return app
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        pytest.skip("PyInstaller is not installed (pip install -e '.[test]' brings it)")
    dist, work = CACHE / "dist", CACHE / "work"
    app = dist / "medview" / EXE_NAME
    stamp = CACHE / "fingerprint.txt"
    fp = _fingerprint()
    if app.is_file() and stamp.exists() and stamp.read_text().strip() == fp:
        return app
    if (dist / "medview").exists():
        shutil.rmtree(dist / "medview")
    stamp.unlink(missing_ok=True)
    t0 = time.monotonic()
    p = subprocess.run(
        [
            sys.executable,
            str(REPO / "packaging" / "build.py"),
            "--no-archive",
            "--distpath",
            str(dist),
            "--workpath",
            str(work),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    took = time.monotonic() - t0
    assert p.returncode == 0 and app.is_file(), (
        f"frozen build failed after {took:.0f} s:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    )
    print(f"\nfrozen build: {took:.0f} s\n{p.stdout[-1500:]}")
    stamp.write_text(fp + "\n")
    return app


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        p = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return p.returncode == 0


def _run(cmd: list[str], tmp_path: Path, env_extra: dict | None = None, timeout: int = 600):
    env = dict(os.environ)
    env["MEDVIEW_HOME"] = str(tmp_path / "home")
    env.pop("MEDVIEW_MODELS", None)
    env.update(env_extra or {})
    return subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def _parse(stdout: str) -> dict[str, tuple[bool, str]]:
    out = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            out[m.group(2).strip()] = (m.group(1) == "ok  ", m.group(3))
    return out


def _missing_models(models_dir: Path) -> list[str]:
    """Self-test checks that must fail because ``models_dir`` lacks a model."""
    missing = [
        f"model {n}" for n in selftest.AI_MODELS if not (models_dir / n / "metadata.json").exists()
    ]
    if not (models_dir / selftest.FORECAST_MODEL / "metadata.json").exists():
        missing.append(f"forecast {selftest.FORECAST_MODEL}")
    return missing


# -- the frozen app ------------------------------------------------------------------------


@pytest.mark.slow
def test_frozen_self_test_offline(frozen_app, tmp_path):
    audit = tmp_path / "network-audit.log"
    cmd = [str(frozen_app), "--self-test"]
    isolated = _unshare_works()
    if isolated:
        cmd = ["unshare", "-rn", *cmd]
    p = _run(cmd, tmp_path, {"MEDVIEW_NETWORK_AUDIT": str(audit)})
    out = p.stdout
    checks = _parse(out)
    assert list(checks) == [name for name, _ in selftest.CHECKS], out + p.stderr[-3000:]
    assert out.startswith("medview self-test: medview ") and "(frozen)" in out.splitlines()[0]
    # models not trained yet in this checkout must be reported, by name (the bundle's
    # models equal the repository's: test_frozen_bundle_contents)
    expected_fail = _missing_models(frozen_app.parent / "_internal" / "models")
    failed = [name for name, (ok, _) in checks.items() if not ok]
    assert failed == expected_fail, out + p.stderr[-3000:]
    assert p.returncode == (1 if expected_fail else 0), out
    assert "Traceback" not in out + p.stderr
    # the real work, done by the bundled libraries
    assert checks["sample DICOM"][1].startswith("CT_small.dcm: CT 128x128, HU -896..1167")
    assert "RLE, JPEG-LS, JPEG 2000 lossless decoded equal" in checks["compressed DICOM"][1]
    assert re.match(r"\d+ (forkserver|spawn) workers decoded", checks["decoder processes"][1])
    assert checks["torch"][1].startswith("torch 2.") and "+cpu" in checks["torch"][1]
    assert checks["suggest"][1].startswith("top suggestion lisinopril")
    assert checks["GUI (offscreen)"][1].startswith("main window built and rendered")
    for name in selftest.AI_MODELS:
        if f"model {name}" not in expected_fail:
            assert "(bundled)" in checks[f"model {name}"][1], out
    # offline: nothing tried the network (the audit log holds only allowed loopback lines)
    logged = audit.read_text().splitlines() if audit.exists() else []
    attempts = [ln for ln in logged if "allowed-" not in ln]
    assert not attempts, f"network use in the frozen app (namespace={isolated}): {attempts}"


@pytest.mark.slow
def test_frozen_info_json_on_real_dicom(frozen_app, tmp_path):
    ct = selftest.sample_dir() / selftest.SAMPLE_CT
    p = _run([str(frozen_app), "info", "--json", str(ct)], tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads(p.stdout)
    assert info["errors"] == [] and len(info["series"]) == 1
    s = info["series"][0]
    assert (s["modality"], s["rows"], s["columns"], s["slices"]) == ("CT", 128, 128, 1)
    assert s["patient_id"] == "1CT1" and s["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert s["spacing"] == pytest.approx([0.661468, 0.661468, 5.0])


@pytest.mark.slow
def test_frozen_info_json_on_shared_ct_series(frozen_app, ct_dir, tmp_path):
    """A real multi-slice CT series (../shared/data; skipped when absent)."""
    src = _run([sys.executable, "-m", "medview", "info", "--json", str(ct_dir)], tmp_path)
    frz = _run([str(frozen_app), "info", "--json", str(ct_dir)], tmp_path)
    assert src.returncode == 0 and frz.returncode == 0, frz.stderr[-3000:]
    a, b = json.loads(src.stdout), json.loads(frz.stdout)
    assert b == a and len(b["series"]) >= 1 and b["series"][0]["slices"] > 10


@pytest.mark.slow
def test_frozen_gui_shows_window(frozen_app, tmp_path):
    """The frozen GUI paints its main window (offscreen) and exits cleanly."""
    t0 = time.time()
    p = _run(
        [str(frozen_app)],
        tmp_path,
        {"MEDVIEW_STARTUP_PROBE": "1", "QT_QPA_PLATFORM": "offscreen"},
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    shown = [ln for ln in p.stdout.splitlines() if ln.startswith("medview-startup-shown")]
    assert shown, p.stdout + p.stderr[-2000:]
    assert 0 < float(shown[0].split()[1]) - t0 < 60


@pytest.mark.slow
def test_frozen_bundle_contents(frozen_app):
    root = frozen_app.parent
    internal = root / "_internal"
    files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    bad = [f for f in files if FORBIDDEN.search(f)]
    assert not bad, f"a CPU build should not ship: {bad[:20]}"
    # what the app needs at run time
    assert (internal / "resources" / "icons" / "medview.png").is_file()
    for name in selftest.SAMPLE_FILES:
        assert (internal / "pydicom" / "data" / "test_files" / name).is_file(), name
    for card in (REPO / "models").glob("*/metadata.json"):
        bundled = internal / "models" / card.parent.name
        assert (bundled / "metadata.json").read_bytes() == card.read_bytes()
    assert any(f.endswith("platforms/libqoffscreen.so") for f in files) or sys.platform != "linux"
    assert any("libtorch_cpu" in f for f in files)
    assert not any(f.startswith("_internal/requests/") for f in files), "offline app ships requests"
    # PyInstaller links shared libraries into _internal/ (symlinks, kept as links by the
    # archive): following them counted those libraries twice (+150 MiB before VTK, +342 with)
    size_mib = sum((root / f).stat().st_size for f in files if not (root / f).is_symlink()) / 2**20
    assert size_mib < BUNDLE_BUDGET_MIB, f"bundle grew to {size_mib:.0f} MiB"


@pytest.mark.slow
def test_frozen_3d_view_renders_offscreen(frozen_app, ct_dir, tmp_path):
    """VTK is bundled (issue 16, item 4): the frozen app opens the real CT with
    `--layout 3d` on Qt's offscreen platform and its screenshot holds a rendered volume."""
    import json

    import numpy as np
    from PIL import Image

    internal = frozen_app.parent / "_internal"
    if not (internal / "vtkmodules").is_dir():
        pytest.skip("built without VTK (the [3d] extra is not installed here)")
    shot = tmp_path / "3d.png"
    p = _run(
        [str(frozen_app), str(ct_dir), "--layout", "3d", "--screenshot", str(shot)],
        tmp_path,
        {"QT_QPA_PLATFORM": "offscreen"},
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    v3 = json.loads(shot.with_suffix(".json").read_text())["view3d"]
    assert v3["frames"] >= 1 and not v3["message"] and v3["backend"] in ("cpu", "gpu"), v3
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # the window with a rendered volume, not a blank
    # only the VTK modules the 3-D view needs, not all of VTK
    vtk_files = {f.name.split(".")[0] for f in (internal / "vtkmodules").iterdir()}
    assert "vtkRenderingVolumeOpenGL2" in vtk_files
    assert not vtk_files & {"vtkIOIOSS", "vtkChartsCore", "vtkWebCore", "vtkIOExodus"}


# -- fast checks from source -------------------------------------------------------------


def test_network_audit_hook_logs_and_refuses(tmp_path):
    log = tmp_path / "audit.log"
    code = (
        "import runpy, socket, sys\n"
        "sys.argv = ['medview_entry']\n"
        f"runpy.run_path({str(REPO / 'packaging' / 'medview_entry.py')!r})\n"
        "for target in (('192.0.2.1', 80), ('localhost', 9)):\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=1)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc)\n"
        "a, b = socket.socketpair()\n"  # AF_UNIX stays allowed (multiprocessing uses it)
        "a.sendall(b'x'); print('unix', b.recv(1))\n"
    )
    env = dict(os.environ, MEDVIEW_NETWORK_AUDIT=str(log), PYTHONPATH=str(REPO))
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.stdout.count("refused medview network audit") == 2, p.stdout + p.stderr
    assert "unix b'x'" in p.stdout
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and all("socket.getaddrinfo" in ln for ln in lines), lines


def test_spec_and_desktop_entry():
    spec = (REPO / "packaging" / "medview.spec").read_text()
    for needed in ('"models"', '"resources"', "SAMPLE_FILES", 'collect_submodules("medview"'):
        assert needed in spec, needed
    for excluded in ('"PySide6.QtWebEngineCore"', '"PySide6.Qt3DCore"', '"torch/test/"'):
        assert excluded in spec, excluded
    desktop = (REPO / "packaging" / "medview.desktop").read_text().splitlines()
    entries = dict(ln.split("=", 1) for ln in desktop if "=" in ln and not ln.startswith("#"))
    assert entries["Type"] == "Application" and entries["Exec"].endswith("medview %F")
    assert entries["Icon"] == "medview" and "MedicalSoftware" in entries["Categories"]
    if shutil.which("desktop-file-validate"):
        p = subprocess.run(
            ["desktop-file-validate", str(REPO / "packaging" / "medview.desktop")],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stdout + p.stderr
