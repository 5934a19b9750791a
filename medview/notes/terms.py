"""The term lists of the context engine, kept as data in ``terms.json``."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


@lru_cache(maxsize=1)
def load_terms() -> dict[str, Any]:
    """The parsed ``medview/notes/terms.json`` (cached; treat as read-only)."""
    text = resources.files("medview.notes").joinpath("terms.json").read_text(encoding="utf-8")
    return json.loads(text)
