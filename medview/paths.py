"""Per-user and bundled paths.

* The per-user data folder (database, user models) comes from platformdirs and can
  be overridden with the ``MEDVIEW_HOME`` environment variable (tests use it).
* Bundled folders (``models/``, ``resources/``) are found next to the package in
  a source checkout, under ``<prefix>/share/medview`` after ``pip install .``, or
  under ``sys._MEIPASS`` in a PyInstaller build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "medview"


def user_data_dir() -> Path:
    """Folder for the study database and user data (created on demand)."""
    override = os.environ.get("MEDVIEW_HOME")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_data_path

        path = user_data_path(APP_NAME, appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_path() -> Path:
    """SQLite database; ``MEDVIEW_DB`` overrides the location."""
    override = os.environ.get("MEDVIEW_DB")
    return Path(override) if override else user_data_dir() / "medview.sqlite"


def bundle_root() -> Path:
    """Root holding ``models/`` and ``resources/``: the repo or the frozen bundle."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "models").is_dir():  # source checkout or editable install
        return checkout
    installed = Path(sys.prefix) / "share" / APP_NAME  # pip install . (data-files)
    if (installed / "models").is_dir():
        return installed
    return checkout


def resources_dir() -> Path:
    return bundle_root() / "resources"


def bundled_models_dir() -> Path:
    return bundle_root() / "models"


def user_models_dir() -> Path:
    """Where a clinic drops its own models; ``MEDVIEW_MODELS`` overrides it."""
    override = os.environ.get("MEDVIEW_MODELS")
    return Path(override) if override else user_data_dir() / "models"
