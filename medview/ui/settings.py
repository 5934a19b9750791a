"""The one settings store of the GUI: plain JSON in the per-user data folder.

``settings.json`` in :func:`medview.paths.user_data_dir` (so ``MEDVIEW_HOME``
moves it with the database), written atomically with mode 0600. Only plain
data is kept: strings, numbers, booleans and lists/objects of them. Nothing is
ever unpickled: the ``value()`` of Qt's settings class turns ``@Variant(...)`` entries of a
settings file into Python objects by unpickling them, so a crafted file ran code
(issue 18); Qt's settings class is used nowhere in medview.

Reading ignores, with one warning line per file, every value that is not plain
data (``null``, NaN, anything holding ``@Variant(``). A ``settings.ini`` written
by earlier versions (through Qt's settings class) is read once, by this module's own
parser, when no ``settings.json`` exists yet: plain values are taken over,
``@Variant``/``@ByteArray`` entries are ignored with a warning.

Keys: ``layout``, ``last_folder``, ``recent`` (list of paths), ``presets``
(name -> [center, width]), ``ai/device``. This module is Qt-free.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from medview.paths import user_data_dir

log = logging.getLogger(__name__)

FILE_NAME = "settings.json"
#: the Qt INI settings file of earlier versions (read once, never written)
LEGACY_FILE_NAME = "settings.ini"
#: the marker of a Qt-serialised (possibly pickled) value
VARIANT_MARK = "@Variant("
#: keys of recent paths kept
RECENT_LIMIT = 10

_warned: set[tuple[str, float]] = set()


def settings_path() -> Path:
    """Where the settings live (under ``MEDVIEW_HOME`` when set)."""
    return user_data_dir() / FILE_NAME


def _plain(value: Any) -> str:
    """Why ``value`` is not plain data ("" when it is)."""
    if isinstance(value, bool) or isinstance(value, int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "not a finite number"
    if isinstance(value, str):
        return "a Qt @Variant value (possibly pickled)" if VARIANT_MARK in value else ""
    if isinstance(value, list):
        return next((r for r in map(_plain, value) if r), "")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "a key that is not a string"
        return next((r for r in map(_plain, value.values()) if r), "")
    return f"a {type(value).__name__}, not plain data"


def _warn_once(path: Path, message: str) -> None:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = 0.0
    if (str(path), stamp) not in _warned:
        _warned.add((str(path), stamp))
        log.warning("%s: %s", path, message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not plain data")


def read_plain(path: Path) -> dict[str, Any]:
    """The plain values of the JSON settings file ``path`` ({} when absent or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        _warn_once(path, f"settings not read ({exc.__class__.__name__}); defaults used")
        return {}
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        if VARIANT_MARK in text:
            _warn_once(path, "holds Qt @Variant (pickled) values; ignored, defaults used")
        else:
            _warn_once(path, "not a JSON settings file; ignored, defaults used")
        return {}
    if not isinstance(data, dict):
        _warn_once(path, "not a JSON object; ignored, defaults used")
        return {}
    return _keep_plain(path, data)


def _keep_plain(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        reason = _plain(value) if value is not None else "null"
        if reason:
            dropped.append(f"{key} ({reason})")
        else:
            kept[key] = value
    if dropped:
        _warn_once(path, f"{len(dropped)} setting(s) ignored, not plain data: {', '.join(dropped)}")
    return kept


# -- the Qt INI settings file of earlier versions (read once, by our own parser) ---------


def _ini_key(raw: str) -> str:
    """Qt's percent-encoded INI key (``%20``, ``%U00e9``) as text."""
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "%" and raw[i + 1 : i + 2] == "U" and len(raw) >= i + 6:
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        elif raw[i] == "%" and len(raw) >= i + 3:
            out.append(chr(int(raw[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _ini_value(raw: str) -> str | list[str]:
    """A Qt INI settings value: quoted/escaped strings, comma-separated lists."""
    items: list[str] = []
    cur: list[str] = []
    quoted, i = False, 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            quoted = not quoted
        elif ch == "\\" and i + 1 < len(raw):
            i += 1
            nxt = raw[i]
            if nxt == "x":
                j = i + 1
                while j < len(raw) and raw[j] in "0123456789abcdefABCDEF":
                    j += 1
                cur.append(chr(int(raw[i + 1 : j] or "0", 16)))
                i = j - 1
            else:
                cur.append(_ESCAPES.get(nxt, nxt))
        elif ch == "," and not quoted:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur).strip())
    return items[0] if len(items) == 1 else items


def read_legacy_ini(path: Path) -> dict[str, Any]:
    """Plain values of a Qt INI settings file; ``@Variant``/``@ByteArray`` values are skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    out: dict[str, Any] = {}
    skipped: list[str] = []
    section = ""
    for line in lines:
        line = line.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            name = _ini_key(line[1:-1])
            section = "" if name == "General" else name
            continue
        raw_key, sep, raw_value = line.partition("=")
        if not sep:
            continue
        key = _ini_key(raw_key.strip())
        key = f"{section}/{key}" if section else key
        raw_value = raw_value.strip()
        if raw_value.startswith("@") and not raw_value.startswith("@@"):
            skipped.append(key)  # @Variant (pickles), @ByteArray, @Invalid: not plain
            continue
        out[key] = _ini_value(raw_value[1:] if raw_value.startswith("@@") else raw_value)
    if skipped:
        _warn_once(path, f"{len(skipped)} Qt-serialised value(s) ignored: {', '.join(skipped)}")
    return _migrate(out)


def _migrate(ini: dict[str, Any]) -> dict[str, Any]:
    """Old INI keys -> the JSON layout (presets as numbers, recent as a list)."""
    out: dict[str, Any] = {}
    presets: dict[str, list[float]] = {}
    for key, value in ini.items():
        if key.startswith("presets/"):
            parts = value if isinstance(value, list) else str(value).split(",")
            try:
                center, width = (float(v) for v in parts)
            except ValueError:
                continue
            if math.isfinite(center) and math.isfinite(width) and width > 0:
                presets[key[len("presets/") :]] = [center, width]
        elif key == "recent":
            out[key] = [value] if isinstance(value, str) else list(value)
        else:
            out[key] = value
    if presets:
        out["presets"] = presets
    return out


# -- the store ----------------------------------------------------------------------


class Settings:
    """The settings file as plain data: read on creation, written on every change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else settings_path()
        self.data = read_plain(self.path)
        legacy = self.path.with_name(LEGACY_FILE_NAME)
        if not self.data and not self.path.exists() and legacy.is_file():
            self.data = read_legacy_ini(legacy)
            if self.data:
                self._write()

    def value(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key`` (plain data), or ``default``."""
        return self.data.get(key, default)

    def set_value(self, key: str, value: Any) -> None:
        """Store ``value`` (plain data only: ``TypeError`` otherwise) and save."""
        reason = _plain(value) if value is not None else "null"
        if reason:
            raise TypeError(f"setting {key!r}: {reason}")
        self.data[key] = value
        self._write()

    def remove(self, key: str) -> None:
        """Forget ``key`` and save."""
        if self.data.pop(key, None) is not None:
            self._write()

    def _write(self) -> None:
        """Atomic write, mode 0600 (the file may name patients' folders)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=self.path.parent)
        try:
            os.chmod(tmp, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.data, f, indent=1, sort_keys=True, allow_nan=False)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def settings() -> Settings:
    """The settings of the current user data folder (read now)."""
    return Settings()


def value(key: str, default: Any = None) -> Any:
    """One setting (see :class:`Settings`)."""
    return settings().value(key, default)


def set_value(key: str, value: Any) -> None:
    """Store one plain setting."""
    settings().set_value(key, value)


# -- what the GUI keeps -------------------------------------------------------------


def recent_paths() -> list[str]:
    """Recently opened paths, newest first."""
    items = value("recent", [])
    if isinstance(items, str):
        items = [items]
    return [str(v) for v in items] if isinstance(items, list) else []


def add_recent(path: str, limit: int = RECENT_LIMIT) -> list[str]:
    """Put ``path`` first in the recent list (at most ``limit``); returns the list."""
    items = [p for p in recent_paths() if p != path]
    items.insert(0, path)
    items = items[:limit]
    set_value("recent", items)
    return items


def saved_presets() -> dict[str, tuple[float, float]]:
    """Window presets the user saved: name -> (center, width)."""
    stored = value("presets", {})
    out: dict[str, tuple[float, float]] = {}
    if not isinstance(stored, dict):
        return out
    for name, cw in stored.items():
        if (
            isinstance(cw, list)
            and len(cw) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cw)
            and cw[1] > 0
        ):
            out[name] = (float(cw[0]), float(cw[1]))
    return out


def save_preset(name: str, center: float, width: float) -> None:
    """Keep a window preset under ``name``."""
    s = settings()
    stored = s.value("presets", {})
    stored = dict(stored) if isinstance(stored, dict) else {}
    stored[name] = [float(center), float(width)]
    s.set_value("presets", stored)
