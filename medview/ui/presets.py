"""Window/level presets and the persisted GUI settings (QSettings in an INI file).

Presets are (center, width) in modality units (HU for CT). The built-in table
follows common radiology practice; users can add their own from the viewport
("Save W/L as preset"), which are kept in the settings file next to the
database (``MEDVIEW_HOME``), so tests and portable installs stay isolated.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from medview.imaging.display import CT_PRESETS, PRESET_ALIASES
from medview.paths import user_data_dir

_LABELS = {"mediastinum": "Mediastinum / soft tissue"}
#: name -> (center, width, label) from the core's table; shortcuts F2..F7 follow this order
BUILTIN_PRESETS: dict[str, tuple[float, float, str]] = {
    name: (c, w, _LABELS.get(name, name.capitalize())) for name, (c, w) in CT_PRESETS.items()
}
ALIASES = PRESET_ALIASES
#: special presets that are not a fixed window
SPECIAL = ("file", "auto")


def settings() -> QSettings:
    """The application settings (INI file under the per-user data folder)."""
    return QSettings(str(user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def user_presets() -> dict[str, tuple[float, float, str]]:
    """Presets the user saved, name -> (center, width, label)."""
    s = settings()
    out: dict[str, tuple[float, float, str]] = {}
    s.beginGroup("presets")
    for name in s.childKeys():
        try:
            c, w = (float(v) for v in str(s.value(name)).split(","))
        except ValueError:
            continue
        if w > 0:
            out[name] = (c, w, name)
    s.endGroup()
    return out


def save_user_preset(name: str, center: float, width: float) -> None:
    s = settings()
    s.setValue(f"presets/{name}", f"{center:g},{width:g}")
    s.sync()


def all_presets() -> dict[str, tuple[float, float, str]]:
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


def recent_paths() -> list[str]:
    value = settings().value("recent", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or [])]


def add_recent(path: str, limit: int = 10) -> list[str]:
    items = [p for p in recent_paths() if p != path]
    items.insert(0, path)
    items = items[:limit]
    s = settings()
    s.setValue("recent", items)
    s.sync()
    return items
