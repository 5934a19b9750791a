"""Window/level presets: the built-in table, the user's own, and name resolution.

Presets are (center, width) in modality units (HU for CT). The built-in table
follows common radiology practice; users can add their own from the viewport
("Save W/L as preset"), which are kept in the one settings store
(:mod:`medview.ui.settings`: plain JSON next to the database, ``MEDVIEW_HOME``),
so tests and portable installs stay isolated. Qt-free.
"""

from __future__ import annotations

from medview.imaging.display import CT_PRESETS, PRESET_ALIASES
from medview.ui.settings import save_preset, saved_presets

_LABELS = {"mediastinum": "Mediastinum / soft tissue"}
#: name -> (center, width, label) from the core's table; shortcuts F2..F7 follow this order
BUILTIN_PRESETS: dict[str, tuple[float, float, str]] = {
    name: (c, w, _LABELS.get(name, name.capitalize())) for name, (c, w) in CT_PRESETS.items()
}
ALIASES = PRESET_ALIASES
#: special presets that are not a fixed window
SPECIAL = ("file", "auto")


def user_presets() -> dict[str, tuple[float, float, str]]:
    """Presets the user saved, name -> (center, width, label)."""
    return {name: (c, w, name) for name, (c, w) in saved_presets().items()}


def save_user_preset(name: str, center: float, width: float) -> None:
    """Keep the window (center, width) as a preset called ``name``."""
    save_preset(name, center, width)


def all_presets() -> dict[str, tuple[float, float, str]]:
    """The built-in presets, then the user's (a user preset may replace a built-in one)."""
    out = dict(BUILTIN_PRESETS)
    out.update(user_presets())
    return out


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def resolve_preset(name: str) -> str | tuple[float, float] | None:
    """``"file"``/``"auto"``, a (center, width) or None when the name is unknown."""
    key = _norm(name)
    key = ALIASES.get(key, key)
    if key in SPECIAL or key == "from_file":
        return "auto" if key == "auto" else "file"
    presets = all_presets()
    if key in presets:
        c, w, _ = presets[key]
        return (c, w)
    for k, (c, w, _) in presets.items():  # user presets keep their case
        if _norm(k) == key:
            return (c, w)
    return None
