"""Build the frozen medview app: ``dist/medview/`` (one folder) and a versioned archive.

Usage::

    python packaging/build.py                      # dist/medview + dist/medview-<ver>-<os>-<arch>.tar.gz
    python packaging/build.py --no-archive         # just the folder
    python packaging/build.py --distpath build/frozen/dist --workpath build/frozen/work

Runs PyInstaller on ``packaging/medview.spec``, copies the Linux desktop entry and the
icon next to the executable, writes ``<distpath>/medview-build.json`` (build time, bundle
size, the largest top-level folders) and prints the same summary. Exit status 0 on
success, 1 when PyInstaller failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "medview.spec"
APP = "medview"


def version() -> str:
    text = (ROOT / "medview" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    return m.group(1) if m else "0"


def platform_tag() -> str:
    system = {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}.get(
        platform.system(), platform.system().lower()
    )
    return f"{system}-{platform.machine().lower()}"


def folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def size_breakdown(app_dir: Path, top: int = 15) -> list[tuple[str, int]]:
    """Sizes of the top-level entries of ``_internal/`` (or the app folder), largest first."""
    base = app_dir / "_internal" if (app_dir / "_internal").is_dir() else app_dir
    rows = []
    for p in base.iterdir():
        size = folder_size(p) if p.is_dir() else (0 if p.is_symlink() else p.stat().st_size)
        rows.append((p.relative_to(app_dir).as_posix(), size))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def run_pyinstaller(distpath: Path, workpath: Path, clean: bool) -> int:
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        "--noconfirm",
        "--log-level",
        os.environ.get("MEDVIEW_PYI_LOGLEVEL", "WARN"),
        "--distpath",
        str(distpath),
        "--workpath",
        str(workpath),
        str(SPEC),
    ]
    if clean:
        cmd.insert(3, "--clean")
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def add_desktop_files(app_dir: Path) -> None:
    """Linux: the desktop entry and icon travel next to the executable."""
    if not sys.platform.startswith("linux"):
        return
    shutil.copy2(ROOT / "packaging" / "medview.desktop", app_dir / "medview.desktop")
    icon = ROOT / "resources" / "icons" / "medview.png"
    if icon.exists():
        shutil.copy2(icon, app_dir / "medview.png")


def make_archive(app_dir: Path, distpath: Path) -> Path:
    stem = f"{APP}-{version()}-{platform_tag()}"
    if sys.platform == "win32":
        out = distpath / f"{stem}.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for p in sorted(app_dir.rglob("*")):
                if p.is_file():
                    zf.write(p, Path(stem) / p.relative_to(app_dir))
        return out
    out = distpath / f"{stem}.tar.gz"
    with tarfile.open(out, "w:gz", compresslevel=6) as tf:
        tf.add(app_dir, arcname=stem)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distpath", type=Path, default=ROOT / "dist")
    ap.add_argument("--workpath", type=Path, default=ROOT / "build" / "pyinstaller")
    ap.add_argument("--no-archive", action="store_true", help="skip the .tar.gz/.zip")
    ap.add_argument("--clean", action="store_true", help="clear PyInstaller's cache first")
    args = ap.parse_args(argv)
    distpath, workpath = args.distpath.resolve(), args.workpath.resolve()

    t0 = time.monotonic()
    rc = run_pyinstaller(distpath, workpath, args.clean)
    build_s = time.monotonic() - t0
    app_dir = distpath / APP
    if rc != 0 or not app_dir.is_dir():
        print(f"build.py: PyInstaller failed (exit {rc})", file=sys.stderr)
        return 1
    add_desktop_files(app_dir)
    info: dict = {
        "version": version(),
        "platform": platform_tag(),
        "python": platform.python_version(),
        "pyinstaller_seconds": round(build_s, 1),
        "bundle_bytes": folder_size(app_dir),
        "files": sum(len(f) for _, _, f in os.walk(app_dir)),
        "largest": [{"path": p, "bytes": s} for p, s in size_breakdown(app_dir)],
    }
    if not args.no_archive:
        t1 = time.monotonic()
        archive = make_archive(app_dir, distpath)
        info["archive"] = archive.name
        info["archive_bytes"] = archive.stat().st_size
        info["archive_seconds"] = round(time.monotonic() - t1, 1)
    (distpath / "medview-build.json").write_text(json.dumps(info, indent=2) + "\n")

    mib = 1024 * 1024
    print(
        f"built {app_dir} in {build_s:.0f} s: {info['bundle_bytes'] / mib:.0f} MiB, "
        f"{info['files']} files"
    )
    for row in info["largest"]:
        print(f"  {row['bytes'] / mib:8.1f} MiB  {row['path']}")
    if "archive" in info:
        print(f"archive {distpath / info['archive']}: {info['archive_bytes'] / mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
