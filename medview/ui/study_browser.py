"""Study browser: opened files and the local database as patient / study / series.

Series rows carry a thumbnail (the middle image, rendered with the core's
``render_slice`` on a worker) and can be opened by double-click, Enter or by
dragging them onto a viewport. The search box filters by patient name or ID,
study or series description, accession, modality and date; the database part is
queried again with the same text (:func:`medview.viewer.session.query_database`).
Opened and database series are both :class:`~medview.io.SeriesInfo`; their keys
(``open:`` / ``db:``) say where they came from. "Priors on PACS" lists the hung
patient's studies on the PACS nodes (:class:`~medview.viewer.remote_priors.RemotePrior`,
keys ``pacs:``); activating one emits ``remote_prior_activated`` (retrieve, then
compare: :mod:`medview.ui.pacs_priors`), they cannot be dragged (nothing is local yet).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QMimeData, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.errors import printable
from medview.imaging.thumbnails import SIZE as THUMB
from medview.io.model import format_da
from medview.ui.workers import TaskSlot
from medview.viewer.remote_priors import REMOTE_PREFIX
from medview.viewer.session import (
    DATABASE_PREFIX,
    OPENED_PREFIX,
    browser_thumbnails,
    is_database_key,
)

log = logging.getLogger(__name__)

MIME_SERIES = "application/x-medview-series"
ROLE_KEY = Qt.ItemDataRole.UserRole + 1
ROLE_TEXT = Qt.ItemDataRole.UserRole + 2


class SeriesTree(QTreeWidget):
    """Tree with drag support (series rows drag their key)."""

    def mimeData(self, items):  # noqa: N802
        md = QMimeData()
        keys = [it.data(0, ROLE_KEY) for it in items if it.data(0, ROLE_KEY)]
        keys = [k for k in keys if not str(k).startswith(REMOTE_PREFIX)]
        md.setData(MIME_SERIES, "\n".join(keys).encode())
        return md

    def mimeTypes(self):  # noqa: N802
        return [MIME_SERIES]


class StudyBrowser(QWidget):
    """Dock panel. Emits ``series_activated(key)`` for a series row."""

    series_activated = Signal(str)
    import_requested = Signal()
    notify = Signal(str)
    send_requested = Signal(str, str)  # study UID, series UID ("" = the whole study)
    database_loaded = Signal()  # the database part was rebuilt (live arrivals re-mark theirs)
    remote_prior_activated = Signal(str)  # a "Priors on PACS" row (key ``pacs:node|study``)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, Any] = {}  # key -> SeriesInfo (opened or from the database)
        self.remote: dict[str, Any] = {}  # key -> RemotePrior (listed under "Priors on PACS")
        self._remote_note = ""
        self.items: dict[str, QTreeWidgetItem] = {}
        self.thumbs: dict[str, QIcon] = {}
        self._thumb_slot = TaskSlot(self)
        self._db_slot = TaskSlot(self)
        self._thumb_queue: list[tuple[str, Any]] = []
        self.db_available = True
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        row = QHBoxLayout()
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Search patient, ID, description, date")
        self.search.setClearButtonEnabled(True)
        row.addWidget(self.search)
        self.modality = QComboBox(self)
        self.modality.addItems(["All", "CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT"])
        self.modality.setToolTip("Modality filter")
        row.addWidget(self.modality)
        lay.addLayout(row)
        self.tree = SeriesTree(self)
        self.tree.setHeaderLabels(["Patient / study / series", "Images"])
        self.tree.setIconSize(QSize(THUMB, THUMB))
        self.tree.setColumnWidth(0, 260)
        self.tree.setDragEnabled(True)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.SingleSelection)
        self.tree.itemActivated.connect(self._activated)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        lay.addWidget(self.tree)
        self.opened_root = QTreeWidgetItem(["Opened files", ""])
        self.db_root = QTreeWidgetItem(["Local database", ""])
        self.pacs_root = QTreeWidgetItem(["Priors on PACS", ""])
        self.tree.addTopLevelItems([self.opened_root, self.pacs_root, self.db_root])
        self.pacs_root.setHidden(True)
        self.opened_root.setExpanded(True)
        self.db_root.setExpanded(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(250)
        self._search_timer.timeout.connect(self.refresh_database)
        self.search.textChanged.connect(self._filter_changed)
        self.modality.currentTextChanged.connect(self._filter_changed)

    # ---------------------------------------------------------------- opened
    def add_opened(self, series_list: list[Any], shown: int = 0) -> list[str]:
        """Add scanned SeriesInfo objects under "Opened files"; returns their keys.

        The first ``shown`` series are about to be loaded into viewports: their
        thumbnails come from the loaded volume (:meth:`set_thumbnail`), not a decode."""
        keys = []
        for s in series_list:
            key = f"{OPENED_PREFIX}{s.series_uid}"
            self.series[key] = s
            if key in self.items:
                keys.append(key)
                continue
            self._add_series(self.opened_root, key, s)
            keys.append(key)
            if len(keys) > shown and key not in self.thumbs:
                self._thumb_queue.append((key, s))
        self.opened_root.setExpanded(True)
        for i in range(self.opened_root.childCount()):
            p = self.opened_root.child(i)
            p.setExpanded(True)
            for j in range(p.childCount()):
                p.child(j).setExpanded(True)
        self._filter_changed(refresh_db=False)
        self._start_thumbnails()
        return keys

    def _add_series(self, root: QTreeWidgetItem, key: str, s: Any) -> QTreeWidgetItem:
        """The series row under its patient and study (made when missing) below ``root``."""
        opened = root is self.opened_root
        patient = self._child(
            root,
            *_patient_node(
                s.patient_id,
                s.patient_name,
                s.patient_birth_date,
                s.study_uid or s.series_uid,
                s.description if opened and s.kind != "dicom" else "",
            ),
        )
        study = self._child(
            patient,
            f"s:{s.study_uid}",
            " ".join(x for x in (format_da(s.study_date), s.study_description) if x) or "(study)",
        )
        label = " ".join(x for x in (s.modality, s.description) if x) or "(series)"
        if opened:
            n = s.slices if s.slices > 1 else s.frames
            if s.kind != "dicom" and s.instances:
                label = f"{label} {s.instances[0].path.rsplit('/', 1)[-1]}".strip()
        else:
            n = len(s.instances) or s.slices
        item = QTreeWidgetItem([printable(label, 300), str(n)])
        item.setData(0, ROLE_KEY, key)
        item.setData(0, ROLE_TEXT, _search_text(s))
        if opened:
            item.setToolTip(0, f"{s.rows}x{s.columns}, {n} image(s), {s.transfer_syntax or s.kind}")
        study.addChild(item)
        self.items[key] = item
        return item

    def _child(self, parent: QTreeWidgetItem, tag: str, label: str) -> QTreeWidgetItem:
        for i in range(parent.childCount()):
            c = parent.child(i)
            if c.data(0, ROLE_TEXT + 1) == tag:
                return c
        c = QTreeWidgetItem([printable(label, 300), ""])
        c.setData(0, ROLE_TEXT + 1, tag)
        c.setData(0, ROLE_TEXT, label.lower())
        parent.addChild(c)
        return c

    # ------------------------------------------------------------ PACS priors
    def show_remote_priors(self, priors: list[Any], note: str = "") -> None:
        """List ``priors`` (RemotePrior, newest first) under "Priors on PACS", grouped
        under their node ("on PACS: NODE"), with ``note`` as a last grey row
        (searching, nothing found, no answer)."""
        for key in self.remote:
            self.items.pop(key, None)
        self.remote = {p.key: p for p in priors}
        self._remote_note = note
        self.pacs_root.takeChildren()
        for p in priors:
            group = self._child(self.pacs_root, f"n:{p.node}", f"on PACS: {p.node}")
            group.setToolTip(0, f"Studies of the patient in view on the PACS node {p.node}")
            warn = "\N{WARNING SIGN} " if p.name_differs else ""
            n = "" if p.instances is None else str(p.instances)
            item = QTreeWidgetItem([printable(warn + p.label(node=False), 300), n])
            item.setData(0, ROLE_KEY, p.key)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsDragEnabled)
            item.setToolTip(0, _remote_tip(p))
            group.addChild(item)
            group.setExpanded(True)
            self.items[p.key] = item
        if note:
            row = QTreeWidgetItem([printable(note, 300), ""])
            row.setDisabled(True)
            row.setToolTip(0, note)
            self.pacs_root.addChild(row)
        self.pacs_root.setHidden(not priors and not note)
        self.pacs_root.setExpanded(True)

    def drop_remote_prior(self, key: str) -> None:
        """The prior ``key`` is local now: off the PACS list (it is in the database)."""
        rest = [p for k, p in self.remote.items() if k != key]
        self.show_remote_priors(rest, self._remote_note)

    # ------------------------------------------------------------- thumbnails
    def _start_thumbnails(self) -> None:
        if self._thumb_slot.busy or not self._thumb_queue:
            return
        batch, self._thumb_queue = self._thumb_queue, []
        self._thumb_slot.run(
            browser_thumbnails,
            batch,
            name="thumbnails",
            on_partial=self._thumb_arrived,
            on_finished=lambda _h: self._start_thumbnails(),
        )

    def _thumb_arrived(self, value) -> None:
        key, arr = value
        arr = np.ascontiguousarray(arr)
        h, w = arr.shape[:2]
        fmt = QImage.Format.Format_Grayscale8 if arr.ndim == 2 else QImage.Format.Format_RGB888
        img = QImage(arr.data, w, h, arr.strides[0], fmt).copy()
        icon = QIcon(QPixmap.fromImage(img))
        self.thumbs[key] = icon
        item = self.items.get(key)
        if item is not None:
            item.setIcon(0, icon)

    def set_thumbnail(self, key: str, vol: Any) -> None:
        """Thumbnail of a series from its loaded volume (no extra decode)."""
        if key in self.thumbs:
            return
        from medview.imaging.thumbnails import from_volume

        try:
            self._thumb_arrived((key, from_volume(vol)))
        except Exception as exc:
            log.info("no thumbnail for %s: %s", key, exc)

    @property
    def busy(self) -> bool:
        return self._thumb_slot.busy or self._db_slot.busy or bool(self._thumb_queue)

    # --------------------------------------------------------------- database
    def refresh_database(self) -> None:
        text = self.search.text().strip()
        mod = self.modality.currentText()
        from medview.viewer.session import query_database

        self._db_slot.run(
            query_database,
            text,
            "" if mod == "All" else mod,
            name="database",
            on_result=self._db_loaded,
            on_error=self._db_failed,
        )

    def _db_failed(self, msg: str) -> None:
        self._clear_db()
        self.db_available = False
        self.db_root.addChild(QTreeWidgetItem([f"(database unavailable: {msg})", ""]))

    def _clear_db(self) -> None:
        for key in [k for k in self.items if is_database_key(k)]:
            self.items.pop(key)
            self.series.pop(key, None)
        self.db_root.takeChildren()

    def _db_loaded(self, found: list[Any]) -> None:
        """Show the database's series (SeriesInfo, newest study first)."""
        self._clear_db()
        if not found:
            self.db_root.addChild(
                QTreeWidgetItem(["(no studies; File > Import into database)", ""])
            )
            return
        for s in found:
            key = f"{DATABASE_PREFIX}{s.series_uid}"
            self.series[key] = s
            item = self._add_series(self.db_root, key, s)
            if key in self.thumbs:
                item.setIcon(0, self.thumbs[key])
            elif s.instances:
                self._thumb_queue.append((key, s))
        self.db_root.setExpanded(True)
        self._filter_changed(refresh_db=False)
        self._start_thumbnails()
        self.database_loaded.emit()

    # ----------------------------------------------------------------- filter
    def _filter_changed(self, *_args, refresh_db: bool = True) -> None:
        text = self.search.text().strip().lower()
        mod = self.modality.currentText()
        mod = "" if mod == "All" else mod.lower()

        def visit(item: QTreeWidgetItem) -> bool:
            key = item.data(0, ROLE_KEY)
            if key:
                hay = str(item.data(0, ROLE_TEXT) or "")
                ok = (not text or text in hay) and (not mod or item.text(0).lower().startswith(mod))
                item.setHidden(not ok)
                return ok
            any_child = False
            for i in range(item.childCount()):
                if visit(item.child(i)):
                    any_child = True
            if item.parent() is not None:
                item.setHidden(not any_child and item.childCount() > 0)
            return any_child

        visit(self.opened_root)
        if refresh_db and isinstance(self.sender(), (QLineEdit, QComboBox)):
            self._search_timer.start()
        else:
            visit(self.db_root)

    # ----------------------------------------------------------------- events
    def _activated(self, item: QTreeWidgetItem, _col: int = 0) -> None:
        key = item.data(0, ROLE_KEY)
        if key and str(key).startswith(REMOTE_PREFIX):
            self.remote_prior_activated.emit(key)
        elif key:
            self.series_activated.emit(key)

    def select_key(self, key: str) -> None:
        item = self.items.get(key)
        if item is not None:
            self.tree.setCurrentItem(item)

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        menu = QMenu(self)
        key = item.data(0, ROLE_KEY) if item is not None else None
        if key and str(key).startswith(REMOTE_PREFIX):
            menu.addAction("Retrieve and compare side by side", lambda: self._activated(item))
        elif item is not None and key:
            menu.addAction("Open in active viewport", lambda: self._activated(item))
        self._send_actions(menu, item)
        menu.addAction("Refresh database", self.refresh_database)
        menu.addAction("Import into database\N{HORIZONTAL ELLIPSIS}", self.import_requested.emit)
        menu.popup(self.tree.viewport().mapToGlobal(pos))
        self._menu_ref = menu

    def _send_actions(self, menu: QMenu, item: QTreeWidgetItem | None) -> None:
        """ "Send to..." for a database series or study (Network > nodes)."""
        key = item.data(0, ROLE_KEY) if item is not None else None
        tag = str(item.data(0, ROLE_TEXT + 1) or "") if item is not None else ""
        if key and is_database_key(key) and key in self.series:
            s = self.series[key]
            dots = "\N{HORIZONTAL ELLIPSIS}"
            menu.addAction(
                f"Send series to{dots}", lambda: self.send_requested.emit(s.study_uid, s.series_uid)
            )
            menu.addAction(
                f"Send study to{dots}", lambda: self.send_requested.emit(s.study_uid, "")
            )
        elif tag.startswith("s:") and item is not None and self._under_db(item):
            menu.addAction(
                "Send study to\N{HORIZONTAL ELLIPSIS}",
                lambda: self.send_requested.emit(tag[2:], ""),
            )

    def _under_db(self, item: QTreeWidgetItem) -> bool:
        while item.parent() is not None:
            item = item.parent()
        return item is self.db_root

    def shutdown(self) -> None:
        self._thumb_queue.clear()
        self._thumb_slot.cancel()
        self._db_slot.cancel()


def _patient_label(name: str, pid: str) -> str:
    name = str(name or "").replace("^", " ").strip()
    return f"{name or '(no name)'}  [{pid or '-'}]"


def _patient_node(
    pid: str, name: str, birth_date: str, study_uid: str, what: str = ""
) -> tuple[str, str]:
    """(tag, label) of the patient node a study goes under.

    Studies are grouped by patient ID, else by name and birth date. A study with
    neither (anonymised DICOM, a PNG, a NIfTI) is a patient of its own, keyed by its
    study UID: nothing says two such studies belong to one person, so they are never
    merged into one "(no name)" patient.
    """
    pid, name = str(pid or ""), str(name or "")
    if pid:
        return f"p:{pid}", _patient_label(name, pid)
    if name:
        return f"p:|{name}|{birth_date or ''}", _patient_label(name, pid)
    hint = what or (f"study ...{study_uid[-8:]}" if study_uid else "")
    label = f"(no name)  [-]  {hint}".rstrip()
    return f"p:study:{study_uid}", label


def _remote_tip(p: Any) -> str:
    """A PACS prior's tooltip: where it is, what it holds, what opening it does."""
    name = str(p.patient_name or "").replace("^", " ").strip()
    lines = [
        f"On PACS node {p.node}",
        f"Patient {name or '(no name)'} [{p.patient_id}]",
        f"{p.series if p.series is not None else '?'} series, "
        f"{p.instances if p.instances is not None else '?'} image(s)",
    ]
    if p.accession:
        lines.append(f"Accession {p.accession}")
    if p.name_differs:
        lines.append("The patient name differs from the study in view (same Patient ID)")
    lines.append("Double-click: retrieve into the local database and compare side by side")
    return "\n".join(lines)


def _search_text(s: Any) -> str:
    inst = s.instances[0] if s.instances else None
    parts = [
        s.patient_name,
        s.patient_id,
        s.study_description,
        s.study_date,
        format_da(s.study_date),
        s.modality,
        s.description,
        getattr(inst, "accession_number", "") if inst else "",
        getattr(inst, "path", "") if inst else "",
    ]
    return " ".join(str(p) for p in parts if p).lower()
