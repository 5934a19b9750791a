"""Key images: the images a reader flags (the viewer's "Key image" action, ``K``), kept per
SOPInstanceUID (and frame) in the local study database, next to the measurements.

The rows live in their own table, ``key_images``, of the same SQLite file as
:class:`~medview.io.database.StudyDatabase` (``MEDVIEW_DB`` or the per-user database); the
table is created on first use, so older databases gain it without a migration. A Key Object
Selection document of the flagged images is written by :mod:`medview.results.kos`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from medview.paths import LazyDatabase, ThreadLocalDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_images (
    sop_uid TEXT NOT NULL,
    frame INTEGER NOT NULL DEFAULT 0,
    series_uid TEXT NOT NULL DEFAULT '',
    study_uid TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (sop_uid, frame)
);
CREATE INDEX IF NOT EXISTS idx_key_images_series ON key_images(series_uid);
"""


@dataclass(frozen=True)
class KeyImage:
    """One flagged image: its SOP instance, frame (0 for single-frame images), series, study."""

    sop_uid: str
    frame: int = 0
    series_uid: str = ""
    study_uid: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "sop_uid": self.sop_uid,
            "frame": self.frame,
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
        }


class KeyImageDatabase(ThreadLocalDatabase):
    """The ``key_images`` table of the study database (one SQLite connection per thread)."""

    SCHEMA = _SCHEMA

    def flag(self, key: KeyImage) -> None:
        """Flag an image (again: nothing changes)."""
        with self._conn() as con:
            con.execute(
                "INSERT OR IGNORE INTO key_images (sop_uid, frame, series_uid, study_uid) "
                "VALUES (?,?,?,?)",
                (key.sop_uid, int(key.frame), key.series_uid, key.study_uid),
            )

    def unflag(self, sop_uid: str, frame: int = 0) -> bool:
        """Remove a flag; whether there was one."""
        with self._conn() as con:
            cur = con.execute(
                "DELETE FROM key_images WHERE sop_uid = ? AND frame = ?", (sop_uid, int(frame))
            )
        return cur.rowcount > 0

    def flagged(self, sop_uids: Iterable[str]) -> set[tuple[str, int]]:
        """(SOP instance UID, frame) of the flagged images among ``sop_uids``."""
        uids = sorted(set(sop_uids))
        out: set[tuple[str, int]] = set()
        con = self._conn()
        for i in range(0, len(uids), 500):
            part = uids[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = con.execute(
                f"SELECT sop_uid, frame FROM key_images WHERE sop_uid IN ({marks})", part
            ).fetchall()
            out.update((str(r["sop_uid"]), int(r["frame"])) for r in rows)
        return out

    def for_series(self, series_uid: str) -> list[KeyImage]:
        """The flagged images of a series, in the order they were flagged."""
        rows = (
            self._conn()
            .execute(
                "SELECT sop_uid, frame, series_uid, study_uid FROM key_images "
                "WHERE series_uid = ? ORDER BY created, rowid",
                (series_uid,),
            )
            .fetchall()
        )
        return [
            KeyImage(r["sop_uid"], int(r["frame"]), r["series_uid"], r["study_uid"]) for r in rows
        ]


class KeyImageStore(LazyDatabase[KeyImageDatabase]):
    """What the viewer uses: toggles flags and remembers the flagged images it has asked about.

    The database is opened on first use (single-row writes on the GUI thread, like the
    measurement store); one that cannot be opened is reported once through ``warn`` and
    flags are then kept for the session only. Nothing here raises.
    """

    def __init__(
        self,
        warn: Callable[[str], None] | None = None,
        open_database: Callable[[], KeyImageDatabase] = KeyImageDatabase,
    ) -> None:
        super().__init__(open_database, warn or (lambda msg: None), "key images")
        self._known: set[tuple[str, int]] = set()
        self._asked: set[str] = set()

    def load(self, sop_uids: Iterable[str]) -> None:
        """Read the flags of these images (once per image)."""
        todo = [u for u in sop_uids if u and u not in self._asked]
        if not todo:
            return
        self._asked.update(todo)
        db = self.database()
        if db is None:
            return
        try:
            self._known |= db.flagged(todo)
        except Exception as exc:
            self._warn(f"key images not read: {exc}")

    def is_key(self, sop_uid: str, frame: int = 0) -> bool:
        """Whether the image is flagged (after :meth:`load` of its UID)."""
        if sop_uid not in self._asked:
            self.load([sop_uid])
        return (sop_uid, int(frame)) in self._known

    def known(self, sop_uid: str, frame: int = 0) -> bool:
        """Whether the image is flagged, from the flags read so far: never reads the
        database (what the viewer asks while painting; :meth:`load` runs in a worker)."""
        return (sop_uid, int(frame)) in self._known

    def toggle(self, key: KeyImage) -> bool:
        """Flag or unflag an image; its new state (True: a key image)."""
        pair = (key.sop_uid, int(key.frame))
        now = not self.is_key(*pair)
        db = self.database()
        try:
            if db is not None:
                if now:
                    db.flag(key)
                else:
                    db.unflag(*pair)
        except Exception as exc:
            self._warn(f"key image not stored: {exc}")
        if now:
            self._known.add(pair)
        else:
            self._known.discard(pair)
        return now
