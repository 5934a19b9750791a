"""The Query/Retrieve dialog: pick a node, search (patient ID/name with ``*``/``?``
wildcards, study date or range, modality, accession), browse the matching studies and
their series, retrieve the selected ones into the local database, and watch the transfer
queue. Searches, echo and transfers run on workers (:mod:`medview.net.transfers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.io.model import format_da
from medview.net.common import NetError
from medview.net.nodes import Node, load_nodes
from medview.ui.net.queue import TransferQueue
from medview.ui.workers import TaskSlot

if TYPE_CHECKING:
    from medview.ui.net import NetController

COLUMNS = ["Patient", "Patient ID", "Date", "Description", "Modality", "Accession", "Images"]
ROLE_MATCH = Qt.ItemDataRole.UserRole + 1
MODALITIES = ["", "CT", "MR", "CR", "DX", "US", "NM", "PT", "XA", "MG", "OT"]


class QueryRetrieveDialog(QDialog):
    """Non-modal; kept by the :class:`~medview.ui.net.NetController` between uses."""

    def __init__(self, controller: NetController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Query / Retrieve")
        self.setModal(False)
        self.resize(1000, 640)
        self._search_slot = TaskSlot(self)
        self._series_slot = TaskSlot(self)
        self._echo_slot = TaskSlot(self)
        self._series_waiting: list[QTreeWidgetItem] = []
        self.nodes: list[Node] = []
        lay = QVBoxLayout(self)
        lay.addLayout(self._node_row())
        lay.addLayout(self._search_fields())
        split = QSplitter(Qt.Orientation.Vertical, self)
        self.results = QTreeWidget(split)
        self.results.setHeaderLabels(COLUMNS)
        self.results.setColumnWidth(0, 200)
        self.results.setColumnWidth(3, 220)
        self.results.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.results.itemExpanded.connect(self._expanded)
        self.results.itemDoubleClicked.connect(lambda *_: self.retrieve_selected())
        self.queue = TransferQueue(split)
        split.addWidget(self.results)
        split.addWidget(self.queue)
        split.setSizes([420, 180])
        lay.addWidget(split, 1)
        lay.addLayout(self._retrieve_row())
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.reload_nodes()

    # ----------------------------------------------------------------- building
    def _node_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Node", self))
        self.node_combo = QComboBox(self)
        self.node_combo.setMinimumWidth(260)
        row.addWidget(self.node_combo, 1)
        self.echo_button = QPushButton("Echo", self)
        self.echo_button.clicked.connect(self.echo)
        row.addWidget(self.echo_button)
        nodes = QPushButton("Nodes\N{HORIZONTAL ELLIPSIS}", self)
        nodes.clicked.connect(self.controller.edit_nodes)
        row.addWidget(nodes)
        return row

    def _search_fields(self) -> QGridLayout:
        grid = QGridLayout()
        self.patient_id = QLineEdit(self)
        self.patient_name = QLineEdit(self)
        self.patient_name.setPlaceholderText("DOE^* (wildcards * ?)")
        self.study_date = QLineEdit(self)
        self.study_date.setPlaceholderText("YYYYMMDD, YYYYMMDD-YYYYMMDD, 20240101-")
        self.modality = QComboBox(self)
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.accession = QLineEdit(self)
        fields = (
            ("Patient ID", self.patient_id),
            ("Patient name", self.patient_name),
            ("Study date", self.study_date),
            ("Modality", self.modality),
            ("Accession", self.accession),
        )
        for n, (label, w) in enumerate(fields):
            grid.addWidget(QLabel(label, self), n // 3, 2 * (n % 3))
            grid.addWidget(w, n // 3, 2 * (n % 3) + 1)
            if isinstance(w, QLineEdit):
                w.returnPressed.connect(self.search)
        self.search_button = QPushButton("Search", self)
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        grid.addWidget(self.search_button, 1, 5)
        return grid

    def _retrieve_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(QLabel("Retrieve with", self))
        self.method = QComboBox(self)
        row.addWidget(self.method)
        self.retrieve_button = QPushButton("Retrieve selected", self)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        row.addWidget(self.retrieve_button)
        row.addStretch(1)
        return row

    # ----------------------------------------------------------------- nodes
    def reload_nodes(self) -> None:
        """Fill the node picker from the node list (keeping the current choice)."""
        current = self.node_combo.currentText()
        try:
            self.nodes = load_nodes()
        except NetError as exc:
            self.nodes = []
            self.status.setText(str(exc))
        self.node_combo.clear()
        for n in self.nodes:
            self.node_combo.addItem(n.describe(), n.name)
        if current:
            i = self.node_combo.findText(current)
            self.node_combo.setCurrentIndex(max(0, i))
        if not self.nodes:
            self.status.setText("no nodes configured: add one with Nodes\N{HORIZONTAL ELLIPSIS}")
        self.update_methods()

    def update_methods(self) -> None:
        """C-GET always; C-MOVE to our listener when it runs; WADO-RS for DICOMweb nodes."""
        self.method.clear()
        node = self.node()
        if node is not None and node.is_dicomweb:
            self.method.addItem("WADO-RS", "wado")
            return
        self.method.addItem("C-GET", "get")
        aet = self.controller.listener.aet
        if aet:
            self.method.addItem(f"C-MOVE to {aet} (our listener)", "move")

    def node(self) -> Node | None:
        i = self.node_combo.currentIndex()
        return self.nodes[i] if 0 <= i < len(self.nodes) else None

    def select_node(self, name: str) -> None:
        i = self.node_combo.findData(name)
        if i >= 0:
            self.node_combo.setCurrentIndex(i)
        self.update_methods()

    # ----------------------------------------------------------------- actions
    def echo(self) -> None:
        node = self.node()
        if node is None:
            return
        from medview.net.transfers import echo

        self.status.setText(f"echo {node.describe()}\N{HORIZONTAL ELLIPSIS}")
        self._echo_slot.run(
            echo,
            node,
            calling_aet=self.controller.calling_aet(),
            timeout=10.0,
            name="echo",
            on_result=lambda r: self.status.setText(f"{r['node']}: answered in {r['ms']} ms"),
            on_error=lambda m: self.status.setText(f"echo failed: {m}"),
        )

    def search_keys(self) -> dict[str, str]:
        return {
            "patient_id": self.patient_id.text(),
            "patient_name": self.patient_name.text(),
            "study_date": self.study_date.text(),
            "modality": self.modality.currentText(),
            "accession": self.accession.text(),
        }

    def search(self) -> None:
        """Search the node at study level (series appear when a study is expanded)."""
        node = self.node()
        if node is None:
            self.status.setText("choose a node first (Nodes\N{HORIZONTAL ELLIPSIS})")
            return
        from medview.net.transfers import search

        self.results.clear()
        self._series_slot.cancel()
        self._series_waiting.clear()
        self.status.setText(f"searching {node.describe()}\N{HORIZONTAL ELLIPSIS}")
        self.search_button.setEnabled(False)
        self._search_slot.run(
            search,
            node,
            "study",
            self.search_keys(),
            calling_aet=self.controller.calling_aet(),
            name="search",
            on_result=self._studies_found,
            on_error=lambda m: self.status.setText(f"search failed: {m}"),
            on_finished=lambda _h: self.search_button.setEnabled(True),
        )

    def _studies_found(self, matches: list[dict[str, Any]]) -> None:
        self.results.clear()
        for m in matches:
            item = QTreeWidgetItem(self._study_columns(m))
            item.setData(0, ROLE_MATCH, m)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.results.addTopLevelItem(item)
        node = self.node()
        where = node.describe() if node else ""
        self.status.setText(f"{len(matches)} stud{'y' if len(matches) == 1 else 'ies'} on {where}")

    @staticmethod
    def _study_columns(m: dict[str, Any]) -> list[str]:
        mods = m.get("modalities") or ""
        if isinstance(mods, list):
            mods = "/".join(str(x) for x in mods)
        return [
            str(m.get("patient_name") or "").replace("^", " "),
            str(m.get("patient_id") or ""),
            format_da(m.get("study_date") or ""),
            str(m.get("description") or ""),
            str(mods),
            str(m.get("accession") or ""),
            str(m.get("instances") or ""),
        ]

    def _expanded(self, item: QTreeWidgetItem) -> None:
        if item.parent() is not None or item.childCount() or item in self._series_waiting:
            return
        self._series_waiting.append(item)
        if not self._series_slot.busy:
            self._next_series()

    def _next_series(self) -> None:
        node = self.node()
        if not self._series_waiting or node is None:
            return
        from medview.net.transfers import search

        item = self._series_waiting[0]
        study = item.data(0, ROLE_MATCH) or {}
        self._series_slot.run(
            search,
            node,
            "series",
            {"study_uid": str(study.get("study_uid") or "")},
            calling_aet=self.controller.calling_aet(),
            name="series search",
            on_result=lambda ms, it=item: self._series_found(it, ms),
            on_error=lambda m: self.status.setText(f"series search failed: {m}"),
            on_finished=lambda _h, it=item: self._series_ended(it),
        )

    def _series_ended(self, item: QTreeWidgetItem) -> None:
        if item in self._series_waiting:
            self._series_waiting.remove(item)
        self._next_series()

    def _series_found(self, item: QTreeWidgetItem, matches: list[dict[str, Any]]) -> None:
        study = item.data(0, ROLE_MATCH) or {}
        for m in sorted(matches, key=lambda x: int(x.get("series_number") or 0)):
            m.setdefault("study_uid", study.get("study_uid"))
            number = f"#{m['series_number']}  " if m.get("series_number") not in (None, "") else ""
            label = f"{number}{m.get('description') or ''}".strip() or "(series)"
            child = QTreeWidgetItem(
                ["", "", "", label, str(m.get("modality") or ""), "", str(m.get("instances") or "")]
            )
            child.setData(0, ROLE_MATCH, m)
            item.addChild(child)
        if not matches:
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)

    def retrieve_selected(self) -> int:
        """Queue a retrieve per selected study or series; returns how many were queued."""
        from medview.net.transfers import Retrieval

        node = self.node()
        if node is None:
            return 0
        method = str(self.method.currentData() or "get")
        queued = 0
        for item in self.results.selectedItems():
            m = item.data(0, ROLE_MATCH) or {}
            study_uid = str(m.get("study_uid") or "")
            if not study_uid:
                continue
            series_uid = str(m.get("series_uid") or "") if item.parent() is not None else ""
            job = Retrieval(node, study_uid, series_uid, method, self.controller.listener.aet)
            job.title = self._title(item)
            self.controller.queue_retrieve(job)
            queued += 1
        if not queued:
            self.status.setText("select a study or series to retrieve")
        return queued

    @staticmethod
    def _title(item: QTreeWidgetItem) -> str:
        """Patient, date and description of a result row, for the transfer queue."""
        study = item.parent() or item
        parts = [study.text(0), study.text(2), study.text(3)]
        if item.parent() is not None:
            parts.append(item.text(3))
        return " ".join(" ".join(p for p in parts if p).split())

    def shutdown(self) -> None:
        for slot in (self._search_slot, self._series_slot, self._echo_slot):
            slot.close()
        self.queue.shutdown()
