"""Live arrivals in the study browser's "Local database" part.

Batches of arrivals (on the GUI thread, from :class:`~medview.ui.net.listener.ArrivalBridge`)
bump the image count of series already shown; a series not shown yet makes the browser
query the database again (on its worker, at most every :data:`REFRESH_MS`), so a series
appears while it is arriving. Series receiving are marked and their study expanded; when a
sender releases its association a last refresh runs and a non-modal notification says
which study arrived.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QFont

from medview.viewer.session import DATABASE_PREFIX

#: the least time between two database refreshes caused by arrivals (ms)
REFRESH_MS = 700
#: a series counts as receiving until this long after its last arrival (ms); then a last
#: refresh shows the database's own counts and drops the marks
SETTLE_MS = 2000
RECEIVING = "\N{DOWNWARDS ARROW}"


class LiveArrivals(QObject):
    """Keeps ``browser`` up to date with what the listener receives."""

    def __init__(self, browser: Any, bridge: Any, notify: Callable[[str, str], None]) -> None:
        super().__init__(browser)
        self.browser = browser
        self.notify = notify
        self.receiving: dict[str, float] = {}  # series UID -> time of its last arrival
        self.received_total = 0
        self._notes: list[tuple[str, list[str], int]] = []  # finished pushes to announce
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setInterval(REFRESH_MS)
        self._refresh.timeout.connect(browser.refresh_database)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS + 100)
        self._settle.timeout.connect(browser.refresh_database)
        bridge.arrived.connect(self.on_batch)
        bridge.study_done.connect(self.on_study_done)
        browser.database_loaded.connect(self._mark)

    def on_batch(self, batch: list[Any]) -> None:
        """New arrivals (GUI thread): update counts, refresh for unknown series."""
        counts = Counter(a.series_uid for a in batch if getattr(a, "indexed", True))
        self.received_total += len(batch)
        unknown = False
        now = time.monotonic()
        for series_uid, n in counts.items():
            self.receiving[series_uid] = now
            item = self.browser.items.get(f"{DATABASE_PREFIX}{series_uid}")
            if item is None:
                unknown = True
                continue
            shown = item.text(1).rstrip(f" {RECEIVING}")
            total = (int(shown) if shown.isdigit() else 0) + n
            item.setText(1, f"{total} {RECEIVING}")
        if unknown and not self._refresh.isActive():
            self._refresh.start()
        self._settle.start()

    def on_study_done(self, calling_aet: str, study_uids: list[str], count: int) -> None:
        """A sender finished: refresh once more (its last instances may still be being
        indexed), then clear the marks and notify naming the patient(s)."""
        self._notes.append((calling_aet, list(study_uids), int(count)))
        self._refresh.start()

    def _flush_notes(self) -> None:
        notes, self._notes = self._notes, []
        for calling_aet, study_uids, count in notes:
            for key, s in list(self.browser.series.items()):
                if key.startswith(DATABASE_PREFIX) and s.study_uid in study_uids:
                    self.receiving.pop(s.series_uid, None)
            names = sorted(
                {
                    " ".join(str(s.patient_name or "").replace("^", " ").split())
                    or f"study ...{s.study_uid[-8:]}"
                    for s in self.browser.series.values()
                    if s.study_uid in study_uids
                }
            )
            n = len(study_uids)
            what = ", ".join(names) or f"{n} stud{'y' if n == 1 else 'ies'}"
            sender = calling_aet or "a sender"
            self.notify(f"received {count} image(s) from {sender}: {what}", "info")

    def _mark(self) -> None:
        """After a database refresh: notify finished pushes, mark and reveal the series
        still receiving."""
        self._flush_notes()
        now = time.monotonic()
        for series_uid, when in list(self.receiving.items()):
            if now - when > SETTLE_MS / 1000:
                del self.receiving[series_uid]
                continue
            item = self.browser.items.get(f"{DATABASE_PREFIX}{series_uid}")
            if item is None:
                continue
            item.setText(1, f"{item.text(1)} {RECEIVING}")
            font = QFont(item.font(0))
            font.setBold(True)
            item.setFont(0, font)
            parent = item.parent()
            while parent is not None:
                parent.setExpanded(True)
                parent = parent.parent()
