"""``medview --self-test`` from source (the frozen app is tested in test_packaging.py).

Each test runs the real command in a fresh process (the self-test builds a Qt window
and starts decoder processes, which must not leak into the pytest process).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medview import selftest

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^  (ok  |FAIL)  (.+?)\s{2,}(.*)  \[(\d+) ms\]$")
ALL_CHECKS = [name for name, _ in selftest.CHECKS]


def run_selftest(env_extra: dict[str, str], tmp_path: Path) -> tuple[int, dict, str]:
    """Run ``python -m medview --self-test``: (exit status, {check: (ok, detail)}, stdout)."""
    env = dict(os.environ)
    env["MEDVIEW_HOME"] = str(tmp_path / "home")
    env.pop("MEDVIEW_MODELS", None)
    env.update(env_extra)
    p = subprocess.run(
        [sys.executable, "-m", "medview", "--self-test"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    checks = {}
    for line in p.stdout.splitlines():
        m = LINE.match(line)
        if m:
            checks[m.group(2).strip()] = (m.group(1) == "ok  ", m.group(3))
    assert "Traceback" not in p.stdout + p.stderr, p.stdout + p.stderr
    return p.returncode, checks, p.stdout


def bundled_missing() -> list[str]:
    """Check names that must fail because this checkout lacks a bundled model."""
    missing = []
    for name in selftest.AI_MODELS:
        if not (REPO / "models" / name / "metadata.json").exists():
            missing.append(f"model {name}")
    if not (REPO / "models" / selftest.FORECAST_MODEL / "metadata.json").exists():
        missing.append(f"forecast {selftest.FORECAST_MODEL}")
    return missing


def tiny_models(folder: Path) -> Path:
    """Randomly initialised models written the way the trainers write them."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from medview.ai import nets
    from medview.ai.registry import write_model
    from medview.forecast import lstm
    from medview.modelcards import sha256_file

    torch.manual_seed(0)
    tiny = [  # name, task, architecture, its params, output
        (
            "pneumonia_cnn",
            "classification",
            "small_resnet",
            {"widths": [8, 16], "blocks": [1, 1], "num_outputs": 1},
            {"labels": ["normal", "pneumonia"], "threshold": 0.5},
        ),
        (
            "pneumonia_ae",
            "anomaly",
            "conv_autoencoder",
            {"size": 28, "widths": [8, 16], "latent_dim": 8},
            {"threshold": 1.0},
        ),
    ]
    for name, task, arch, params, output in tiny:
        write_model(
            folder / name,
            nets.build(arch, params).eval(),
            {
                "name": name,
                "version": "0.0.1-test",
                "task": task,
                "architecture": {"name": arch, "params": params},
                "input": {"channels": 1, "size": [28, 28], "mean": 0.5, "std": 0.25},
                "output": output,
                "weights": {},
            },
        )
    net = lstm.build_torch_model(hidden=8, layers=1)
    gdir = folder / selftest.FORECAST_MODEL
    gdir.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, gdir / "model.safetensors")
    meta = {  # the one card schema (medview.modelcards)
        "name": selftest.FORECAST_MODEL,
        "version": "0.0.1-test",
        "task": "forecast",
        "architecture": {"name": "glucose_lstm", "params": {"layers": 1, "hidden": 8}},
        "input": {"window": lstm.WINDOW},
        "output": {"labels": [], "conformal_mgdl": [5.0] * lstm.HORIZON_STEPS},
        "weights": {
            "file": "model.safetensors",
            "sha256": sha256_file(gdir / "model.safetensors"),
        },
    }
    from medview.modelcards import write_card

    write_card(gdir, meta)  # with the manifest hash (card + weights)
    assert np.isfinite(lstm.load_model(gdir).predict(np.full((1, lstm.WINDOW), 120.0))).all()
    return folder


def test_self_test_from_source(tmp_path):
    """Every check runs; the only failures are models this checkout does not have."""
    rc, checks, out = run_selftest({}, tmp_path)
    assert list(checks) == ALL_CHECKS, out
    expected_fail = bundled_missing()
    failed = [name for name, (ok, _) in checks.items() if not ok]
    assert failed == expected_fail, out
    assert rc == (1 if expected_fail else 0), out
    for name in expected_fail:
        assert "not installed" in checks[name][1] or "not found" in checks[name][1], out
    # real values from the bundled CT and the generated records
    assert checks["sample DICOM"][1].startswith("CT_small.dcm: CT 128x128, HU -"), out
    assert "equal to the original pixel for pixel" in checks["compressed DICOM"][1]
    assert "workers decoded JPEG 2000 identically" in checks["decoder processes"][1]
    assert "8 patients, 101 observations, 12 conditions, 14 medications" in out
    assert checks["suggest"][1].startswith("top suggestion lisinopril"), out
    summary = out.strip().splitlines()[-1]
    if expected_fail:
        assert summary.startswith(f"self-test FAILED: {len(expected_fail)} of {len(ALL_CHECKS)}")
        assert all(name in summary for name in expected_fail)
    else:
        assert summary.startswith(f"self-test passed: {len(ALL_CHECKS)} checks")


def test_self_test_runs_installed_models(tmp_path):
    """With every model installed (tiny user models here) all checks pass and exit 0."""
    pytest.importorskip("torch")
    models = tiny_models(tmp_path / "models")
    rc, checks, out = run_selftest({"MEDVIEW_MODELS": str(models)}, tmp_path)
    assert rc == 0, out
    assert all(ok for ok, _ in checks.values()) and list(checks) == ALL_CHECKS, out
    assert re.search(
        r"classification v0\.0\.1-test on cpu: normal 0\.\d+, pneumonia 0\.\d+ \(user\)",
        checks["model pneumonia_cnn"][1],
    ), out
    assert "anomaly v0.0.1-test on cpu: anomaly score" in checks["model pneumonia_ae"][1], out
    # the method shown is the patient's backtest winner; the installed LSTM must have run in it
    assert checks[f"forecast {selftest.FORECAST_MODEL}"][1].endswith("LSTM ran in the backtest"), (
        out
    )
    assert out.strip().splitlines()[-1].startswith(f"self-test passed: {len(ALL_CHECKS)} checks")


def test_self_test_names_broken_model_and_missing_module(tmp_path):
    """A tampered model and an absent library are failure lines, not a crash."""
    pytest.importorskip("torch")
    models = tiny_models(tmp_path / "models")
    weights = models / "pneumonia_cnn" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    blocker = tmp_path / "block" / "sklearn"  # a stand-in package whose import fails
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'sklearn'\", name='sklearn')\n"
    )
    blocker = blocker.parent
    rc, checks, out = run_selftest(
        {"MEDVIEW_MODELS": str(models), "PYTHONPATH": str(blocker)}, tmp_path
    )
    assert rc == 1, out
    failed = {name for name, (ok, _) in checks.items() if not ok}
    assert failed == {"model pneumonia_cnn", "forecast lab (GP)", "suggest"}, out
    assert "does not match the model card" in checks["model pneumonia_cnn"][1]
    assert "module sklearn is missing" in checks["suggest"][1], out
    assert checks["model pneumonia_ae"][0] and checks["sample DICOM"][0]
    last = out.strip().splitlines()[-1]
    assert last.startswith("self-test FAILED: 3 of") and "model pneumonia_cnn" in last


def test_sample_files_exist_for_the_spec():
    """The spec bundles exactly these pydicom test files; they must exist here."""
    folder = selftest.sample_dir()
    for name in selftest.SAMPLE_FILES:
        assert (folder / name).stat().st_size > 1000, name


# -- the Qt xcb platform check (issue 10: a real window needs more libraries than offscreen) --

LDD_MISSING = """\
\tlinux-vdso.so.1 (0x00007ffd3b5f1000)
\tlibQt6XcbQpa.so.6 => /opt/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f0f30a00000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f0f30b8d000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibfoo-unknown.so.7 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f2ee1e000)
"""


def test_xcb_missing_libraries_are_named_with_the_apt_line():
    """ldd's "not found" lines become one FAIL line naming the files and the packages."""
    missing = selftest.missing_libraries(LDD_MISSING)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libfoo-unknown.so.7"]
    message = selftest.xcb_fix_message(missing)
    assert "\n" not in message
    assert message.startswith(
        "Qt xcb platform: libxcb-icccm.so.4, libxcb-keysyms.so.1, libfoo-unknown.so.7 missing"
    )
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in message
    assert "libfoo-unknown.so.7" in message.split("apt-get install", 1)[1]  # no package known


def test_xcb_package_table_covers_the_plugin_dependencies():
    """Every library the real xcb plugin needs maps to a Debian package in the README line."""
    from medview import selftest as st

    plugin = st.xcb_plugin_path()
    if plugin is None:
        pytest.skip("PySide6's xcb platform plugin is not installed")
    needed = st.needed_libraries(plugin)
    assert "libxcb-icccm.so.4" in needed and "libxcb-keysyms.so.1" in needed
    system = [n for n in needed if not n.startswith("libQt6")]
    unmapped = [n for n in system if n not in st.DEBIAN_PACKAGES]
    assert not unmapped, unmapped
    readme_line = " ".join(
        line
        for page in (REPO / "README.md", REPO / "docs" / "install.md")
        if page.exists()
        for line in page.read_text().splitlines()
        if "apt-get install" in line
    )
    for name in system:
        if st.DEBIAN_PACKAGES[name] not in st.BASE_PACKAGES:
            assert st.DEBIAN_PACKAGES[name] in readme_line.split(), name


def fake_plugin_dir(tmp_path: Path) -> Path:
    """A copy of Qt's platforms folder whose libqxcb.so needs a library nobody has.

    The copied plugin's NEEDED entry ``libxcb-icccm.so.4`` is renamed (same length) to
    ``libxcb-iccXX.so.4``; Qt's own libraries are reached through the same
    ``$ORIGIN/../../lib`` run path as in the wheel; the other plugins are links.
    """
    from medview import selftest as st

    plugin = st.xcb_plugin_path()
    if plugin is None:
        pytest.skip("PySide6's xcb platform plugin is not installed")
    platforms = tmp_path / "Qt" / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    (tmp_path / "Qt" / "lib").symlink_to(plugin.parent.parent.parent / "lib")
    for other in plugin.parent.iterdir():
        if other.name != plugin.name:
            (platforms / other.name).symlink_to(other)
    data = plugin.read_bytes()
    assert data.count(b"libxcb-icccm.so.4\0") == 1
    (platforms / plugin.name).write_bytes(
        data.replace(b"libxcb-icccm.so.4\0", b"libxcb-iccXX.so.4\0")
    )
    return platforms


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check runs on Linux")
def test_self_test_fails_when_an_xcb_library_is_missing(tmp_path):
    """The real command: a plugin with an unresolvable library FAILS with the fix, exit 1."""
    platforms = fake_plugin_dir(tmp_path)
    rc, checks, out = run_selftest({"QT_QPA_PLATFORM_PLUGIN_PATH": str(platforms)}, tmp_path)
    assert rc == 1, out
    ok, detail = checks["Qt xcb platform"]
    assert not ok, out
    assert detail.startswith("Qt xcb platform: libxcb-iccXX.so.4"), out
    assert "missing" in detail and "<package providing libxcb-iccXX.so.4>" in detail, out
    assert "sudo apt-get install" in detail, out
    assert "Qt xcb platform" in out.strip().splitlines()[-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb check runs on Linux")
def test_xcb_check_passes_on_this_machine():
    """With the README's apt line installed every library of the real plugin resolves."""
    from medview import selftest as st

    if st.xcb_plugin_path() is None:
        pytest.skip("PySide6's xcb platform plugin is not installed")
    detail = st.check_xcb_platform(None)
    m = re.match(r"libqxcb\.so: all (\d+) shared libraries resolve", detail)
    assert m and int(m.group(1)) > 20, detail
