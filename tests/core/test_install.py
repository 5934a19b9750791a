"""A regular `pip install .` must carry the bundled models and icons."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_every_bundled_model(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = next(tmp_path.glob("medview-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in sorted(d for d in (ROOT / "models").iterdir() if d.is_dir()):
        for f in model.iterdir():
            assert any(n.endswith(f"share/medview/models/{model.name}/{f.name}") for n in names), (
                f"models/{model.name}/{f.name} is not installed by the wheel: add it to "
                "[tool.setuptools.data-files] in pyproject.toml"
            )
    assert any(n.endswith("share/medview/resources/icons/medview.png") for n in names)


def test_bundle_root_falls_back_to_the_installed_share_folder(tmp_path, monkeypatch):
    import medview.paths as paths

    fake_pkg = tmp_path / "site-packages" / "medview"
    fake_pkg.mkdir(parents=True)
    prefix = tmp_path / "prefix"
    (prefix / "share" / "medview" / "models").mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(fake_pkg / "paths.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert paths.bundle_root() == prefix / "share" / "medview"
    assert paths.bundled_models_dir() == prefix / "share" / "medview" / "models"
