"""Small helpers shared by the CLI commands (kept light: no heavy imports)."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


def error(message: str) -> int:
    """Print one line to stderr and return exit status 2 (bad input)."""
    print(f"medview: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def parse_window(text: str | None) -> tuple[float, float] | None:
    """'CENTER,WIDTH' -> (center, width); raises ValueError with a clear message."""
    if not text:
        return None
    try:
        c, w = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--window must be CENTER,WIDTH (e.g. 40,400), not {text!r}") from None
    if w < 1:
        raise ValueError("--window width must be at least 1")
    return c, w
