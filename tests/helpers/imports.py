"""Which modules a fresh interpreter loads (start-up weight checks)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    """Run ``code`` in a fresh ``python -c`` from the repository root and return those of
    ``modules`` that it left in ``sys.modules`` (fails when the code itself fails)."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {modules!r} if m in sys.modules))\n"
    p = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return [m for m in p.stdout.strip().split(",") if m]
