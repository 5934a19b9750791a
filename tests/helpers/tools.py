"""External command-line tools some tests check their output with (dicom3tools, dcmtk,
poppler-utils): the test skips, naming the package, when the tool is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

#: the Debian/Ubuntu package of each tool (.ci/run installs them)
PACKAGES = {
    "dciodvfy": "dicom3tools",
    "dcmdump": "dcmtk",
    "dsrdump": "dcmtk",
    "pdftotext": "poppler-utils",
    "pdftoppm": "poppler-utils",
}


def tool(name: str) -> str:
    """The path of ``name``; skips the calling test when it is not installed."""
    import pytest

    path = shutil.which(name)
    if path is None:
        pytest.skip(f"needs {name} (apt-get install {PACKAGES.get(name, name)})")
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's ``Error`` lines for a DICOM file (warnings are not errors)."""
    out = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def dumps_cleanly(path: Path) -> bool:
    """dcmdump reads the whole file without an error."""
    return subprocess.run([tool("dcmdump"), str(path)], capture_output=True).returncode == 0
