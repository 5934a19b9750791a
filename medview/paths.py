"""Per-user and bundled paths.

* The per-user data folder (database, user models) comes from platformdirs and can
  be overridden with the ``MEDVIEW_HOME`` environment variable (tests use it). It is
  private: mode 0700 on POSIX (see ``docs/privacy.md``); :func:`private_file` gives
  the database files mode 0600.
* Bundled folders (``models/``, ``resources/``) are found next to the package in
  a source checkout, under ``<prefix>/share/medview`` after ``pip install .``, or
  under ``sys._MEIPASS`` in a PyInstaller build.
* The study database file is shared by the features' tables: :func:`open_sqlite` opens it
  for them (folder created, mode 0600, schema run), :class:`ThreadLocalDatabase` with one
  connection per thread; :class:`LazyDatabase` is a database the viewer opens on first use.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import sqlite3

APP_NAME = "medview"


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` when group or others have any access (POSIX only);
    a folder or file we cannot tighten (owned by someone else) gets a one-line warning."""
    if os.name != "posix":
        return
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, mode)
    except OSError as exc:
        logging.getLogger("medview").warning(
            "%s: cannot make it private (mode %o): %s", path, mode, exc.strerror or exc
        )


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed; ``path`` itself ends up mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing, else tighten it (and SQLite's
    ``-wal``/``-shm``/``-journal`` files next to it) to 0600. The parent must exist."""
    if os.name == "posix":
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return path  # unwritable: the caller's open reports it
        os.close(fd)
        for p in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", "-journal"))):
            if p.exists():
                _tighten(p, 0o600)
    return path


def open_sqlite(
    db: str | os.PathLike[str] | None, schema: str, timeout: float = 10.0
) -> sqlite3.Connection:
    """A connection to the SQLite file ``db`` (default :func:`database_path`) with ``schema``
    (``CREATE ... IF NOT EXISTS`` statements) run: how the feature tables (``ai_``, ``note_``,
    ``rec_``) that share the study database open it. The folder is created and the file
    kept private (mode 0600), as for the study database itself."""
    import sqlite3

    path = database_path() if db is None else Path(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    private_file(path)  # the database names patients
    con = sqlite3.connect(str(path), timeout=timeout)
    con.executescript(schema)
    return con


def read_rows(con: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The rows of one query on ``con``, which is closed afterwards: how the feature tables'
    readers (a connection from :func:`open_sqlite` per call) run a ``SELECT``."""
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


class ThreadLocalDatabase:
    """The SQLite file ``path`` (default :func:`database_path`; folder created, mode 0600)
    with one connection per thread (rows as ``sqlite3.Row``, WAL journal), its ``SCHEMA``
    run on opening; subclasses add their tables' methods and may extend :meth:`_setup`."""

    SCHEMA = ""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        import threading

        self.path = database_path() if path is None else Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)  # mode 0600: the database names patients
        self._local = threading.local()
        with self._conn() as con:
            con.executescript(self.SCHEMA)

    def _setup(self, con: sqlite3.Connection) -> None:
        """Settings of a new connection (before WAL is switched on)."""

    def _conn(self) -> sqlite3.Connection:
        import sqlite3

        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30)
            con.row_factory = sqlite3.Row
            self._setup(con)
            con.execute("PRAGMA journal_mode = WAL")
            self._local.con = con
        return con

    def close(self) -> None:
        """Close this thread's connection."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class _Closable(Protocol):
    def close(self) -> None: ...


DB = TypeVar("DB", bound=_Closable)


class LazyDatabase(Generic[DB]):
    """A database the viewer opens on first use (on the GUI thread: single-row writes).
    One that cannot be opened is reported once through ``warn`` (``"<what> are not
    stored: ..."``) and :meth:`database` is None from then on; nothing here raises."""

    def __init__(
        self, open_database: Callable[[], DB], warn: Callable[[str], None], what: str
    ) -> None:
        self._open = open_database
        self._warn = warn
        self._what = what
        self._db: DB | None = None
        self.failed = False

    def database(self) -> DB | None:
        """The open database, or None once it could not be opened."""
        if self._db is None and not self.failed:
            try:
                self._db = self._open()
            except Exception as exc:
                self.failed = True
                self._warn(f"{self._what} are not stored: database unavailable ({exc})")
        return self._db

    def close(self) -> None:
        """Close the database (on quit); errors are logged, not raised."""
        if self._db is not None:
            try:
                self._db.close()
            except Exception as exc:
                logging.getLogger("medview").info("study database not closed cleanly: %s", exc)
            self._db = None


def user_data_dir() -> Path:
    """Folder for the study database and user data (created on demand, mode 0700 on
    POSIX; a wider existing folder is tightened, or a warning logged when it cannot be)."""
    override = os.environ.get("MEDVIEW_HOME")
    if override:
        path = Path(override)
    else:
        from platformdirs import user_data_path

        path = user_data_path(APP_NAME, appauthor=False)
    return private_dir(path)


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
