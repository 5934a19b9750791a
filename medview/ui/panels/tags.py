"""DICOM tag browser: every element of the current image, sequences included.

Filter by tag (``0010,0020``, ``(0010,0020)`` or ``00100020``), keyword, name or
value; copy the selected rows (Ctrl+C) as tab-separated text. The header is read
with :func:`medview.io.read_dataset` on a worker, never on the GUI thread.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.errors import printable
from medview.ui.workers import TaskSlot

MAX_VALUE_CHARS = 200
MAX_ITEMS = 20000  # rows created at once; deeper sequence items on expand
NOT_DICOM = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".nii",
    ".nii.gz",
    ".mha",
    ".mhd",
    ".nrrd",
)
TAG_RE = re.compile(r"^\(?\s*[0-9A-Fa-f]{4}\s*,?\s*[0-9A-Fa-f]{0,4}\s*\)?$")


def _read(path: str, state: Any = None) -> Any:
    """Worker (at low priority, like every task): the data set and its formatted rows."""
    from medview.io import read_dataset

    ds = read_dataset(path)
    meta = getattr(ds, "file_meta", None)
    rows = element_rows(meta) if meta is not None and len(meta) else []
    return ds, rows + element_rows(ds)  # formatted here, not on the GUI thread


def element_rows(ds: Any) -> list[tuple[str, str, str, str, list]]:
    """(tag, keyword/name, VR, value, children) for every element of a Dataset."""
    rows = []
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        name = elem.keyword or elem.name
        vr = str(elem.VR)
        if vr == "SQ":
            children = []
            for n, item in enumerate(elem.value or []):
                children.append((f"Item {n + 1}", "", "", "", element_rows(item)))
            rows.append((tag, name, vr, f"{len(elem.value or [])} item(s)", children))
            continue
        rows.append((tag, name, vr, format_value(elem), []))
    return rows


def format_value(elem: Any) -> str:
    vr = str(elem.VR)
    if (
        elem.tag == 0x7FE00010
        or vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN")
        and isinstance(elem.value, (bytes, bytearray))
    ):
        n = len(elem.value) if elem.value is not None else 0
        return f"<{n} bytes>"
    try:
        text = str(elem.value) if elem.value is not None else ""
    except Exception:  # a malformed value must not break the browser
        text = repr(elem.value)
    text = printable(" ".join(text.split()))  # control characters from the file written out
    return (
        text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "\N{HORIZONTAL ELLIPSIS}"
    )


def _norm_tag(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch in "0123456789ABCDEF")


class TagBrowser(QWidget):
    """Dock panel showing the tags of the current image."""

    notify = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path = ""
        self.dataset: Any | None = None
        self._slot = TaskSlot(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText(
            "Filter: tag, keyword or value (e.g. 0010,0020 or PatientID)"
        )
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._schedule_filter)
        top.addWidget(self.filter)
        copy = QPushButton("Copy", self)
        copy.setToolTip("Copy the selected rows (Ctrl+C); all visible rows when none is selected")
        copy.clicked.connect(self.copy_selection)
        top.addWidget(copy)
        lay.addLayout(top)
        self.source = QLabel("No image", self)
        self.source.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # a long path must not widen the dock
        self.source.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        lay.addWidget(self.source)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Tag", "Keyword", "VR", "Value"])
        self.tree.setColumnWidth(0, 104)
        self.tree.setColumnWidth(1, 170)
        self.tree.setColumnWidth(2, 34)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        lay.addWidget(self.tree)
        self._lazy: dict[int, tuple[QTreeWidgetItem, list]] = {}
        self._budget = 0
        self.tree.itemExpanded.connect(self._expanded)
        QShortcut(QKeySequence.StandardKey.Copy, self.tree, self.copy_selection)
        self._filter_timer = QTimer(self)
        self._filter_timer.setSingleShot(True)
        self._filter_timer.setInterval(120)
        self._filter_timer.timeout.connect(self.apply_filter)

    # ------------------------------------------------------------ loading
    def show_file(self, path: str) -> None:
        """Read ``path``'s header on a worker and show it (no-op if already shown)."""
        if not path or path == self.path:
            return
        self.path = path
        if path.lower().endswith(NOT_DICOM):
            self.set_dataset(None, f"{path}: not a DICOM file (no tags)")
            return
        self._slot.run(
            _read,
            path,
            on_result=lambda value, p=path: self._loaded(p, *value),
            on_error=lambda msg, p=path: self._failed(p, msg),
            name="tags",
        )

    def _loaded(self, path: str, ds: Any, rows: list) -> None:
        if path == self.path:
            self.set_dataset(ds, path, rows)

    def _failed(self, path: str, msg: str) -> None:
        if path == self.path:
            self.set_dataset(None, f"{path}: {msg}")

    def set_dataset(self, ds: Any | None, label: str = "", rows: list | None = None) -> None:
        """Show a pydicom Dataset (file meta first, then the data set).

        At most :data:`MAX_ITEMS` rows are created at once (an enhanced multi-frame
        file can hold 100k elements in its per-frame sequences); deeper sequence
        items beyond that are created when their row is expanded.
        """
        self.dataset = ds
        self.source.setText(label or "No image")
        self.source.setToolTip(label)
        self.tree.clear()
        self._lazy.clear()
        if ds is None:
            return
        if rows is None:
            meta = getattr(ds, "file_meta", None)
            rows = (element_rows(meta) if meta is not None and len(meta) else []) + element_rows(ds)
        self._budget = MAX_ITEMS
        self.tree.addTopLevelItems([self._item(r) for r in rows])
        self.apply_filter()

    def _item(self, row) -> QTreeWidgetItem:
        tag, name, vr, value, children = row
        item = QTreeWidgetItem([tag, name, vr, value])
        item.setToolTip(3, value)
        self._budget -= 1
        if children and self._budget <= 0:
            item.addChild(QTreeWidgetItem(["\N{HORIZONTAL ELLIPSIS}", "(expand to read)", "", ""]))
            self._lazy[id(item)] = (item, children)
            return item
        for child in children:
            item.addChild(self._item(child))
        return item

    def _expanded(self, item: QTreeWidgetItem) -> None:
        entry = self._lazy.pop(id(item), None)
        if entry is None or entry[0] is not item:
            return
        item.takeChildren()
        self._budget = MAX_ITEMS
        for child in entry[1]:
            item.addChild(self._item(child))

    def shutdown(self) -> None:
        self._slot.cancel()

    # ------------------------------------------------------------ filter
    def _schedule_filter(self) -> None:
        self._filter_timer.start()

    def apply_filter(self) -> int:
        """Hide rows that do not match; returns the number of matching rows."""
        text = self.filter.text().strip()
        low = text.lower()
        tagq = _norm_tag(text) if TAG_RE.match(text) else ""
        count = 0

        def visit(item: QTreeWidgetItem, parent_match: bool) -> bool:
            nonlocal count
            own = not text or (
                (tagq and tagq in _norm_tag(item.text(0)))
                or low in item.text(1).lower()
                or low in item.text(3).lower()
            )
            own = bool(own)
            child_match = False
            for i in range(item.childCount()):
                if visit(item.child(i), parent_match or own):
                    child_match = True
            visible = own or child_match or parent_match
            item.setHidden(not visible)
            if text and child_match:
                item.setExpanded(True)
            if own and text:
                count += 1
            return own or child_match

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i), False)
        return count if text else self.tree.topLevelItemCount()

    def matching_keywords(self) -> list[str]:
        """Keywords of the visible top-level rows (used by tests and scripts)."""
        out = []
        for i in range(self.tree.topLevelItemCount()):
            it = self.tree.topLevelItem(i)
            if not it.isHidden():
                out.append(it.text(1))
        return out

    # -------------------------------------------------------------- copy
    def selected_text(self) -> str:
        items = self.tree.selectedItems()
        if not items:
            items = []
            it = self.tree.invisibleRootItem()
            stack = [it.child(i) for i in range(it.childCount())]
            while stack:
                x = stack.pop(0)
                if not x.isHidden():
                    items.append(x)
        return "\n".join("\t".join(it.text(c) for c in range(4)) for it in items)

    def copy_selection(self) -> None:
        QGuiApplication.clipboard().setText(self.selected_text())

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        menu = QMenu(self)
        if item is not None:
            menu.addAction("Copy value", lambda: QGuiApplication.clipboard().setText(item.text(3)))
            menu.addAction("Copy tag", lambda: QGuiApplication.clipboard().setText(item.text(0)))
            menu.addAction("Filter by this tag", lambda: self.filter.setText(item.text(0)))
        menu.addAction("Copy selected rows", self.copy_selection)
        menu.addAction("Expand all", self.tree.expandAll)
        menu.addAction("Collapse all", self.tree.collapseAll)
        menu.popup(self.tree.viewport().mapToGlobal(pos))
        self._menu_ref = menu
