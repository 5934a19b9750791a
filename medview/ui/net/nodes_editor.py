"""The nodes editor: add, edit, remove and echo remote nodes.

It reads and writes the same node list as ``medview pacs nodes``
(:mod:`medview.net.nodes`, ``nodes.json`` in the user data folder). Echo runs on a worker.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.net.common import NetError
from medview.net.nodes import Node, add_node, load_nodes, remove_node
from medview.ui.net.form import CheckedForm
from medview.ui.workers import TaskSlot

COLUMNS = ["Name", "AE title", "Host", "Port", "DICOMweb URL"]


class NodeForm(CheckedForm):
    """Edit one node: a DIMSE peer (host, port, AE title) or a DICOMweb URL."""

    def __init__(self, parent: QWidget | None = None, node: Node | None = None) -> None:
        super().__init__(parent, "Edit node" if node else "Add node")
        node = node or Node(port=104)
        self.name = QLineEdit(node.name, self)
        self.aet = QLineEdit(node.aet, self)
        self.aet.setMaxLength(16)
        self.host = QLineEdit(node.host, self)
        self.port = QSpinBox(self)
        self.port.setRange(0, 65535)
        self.port.setValue(int(node.port or 0))
        self.url = QLineEdit(node.url, self)
        self.url.setPlaceholderText("http(s)://host/dicom-web (instead of host/port/AE title)")
        for label, w in (
            ("Name", self.name),
            ("AE title", self.aet),
            ("Host", self.host),
            ("Port", self.port),
            ("DICOMweb URL", self.url),
        ):
            self.form.addRow(label, w)
        self.add_buttons()

    def node(self) -> Node:
        """The node as entered (DICOMweb when a URL is given)."""
        url = self.url.text().strip()
        if url:
            return Node(name=self.name.text().strip(), url=url)
        return Node(
            name=self.name.text().strip(),
            host=self.host.text().strip(),
            port=self.port.value(),
            aet=self.aet.text().strip(),
        )

    def check(self) -> None:
        node = self.node()
        if not node.name:
            raise NetError("a node needs a name")
        node.validate()


class NodesDialog(QDialog):
    """The node list with Add / Edit / Remove / Echo. ``nodes_changed`` after each edit."""

    nodes_changed = Signal()

    def __init__(self, parent: QWidget | None = None, calling_aet: str = "MEDVIEW") -> None:
        super().__init__(parent)
        self.setWindowTitle("Network nodes")
        self.resize(640, 320)
        self.calling_aet = calling_aet
        self._echo_slot = TaskSlot(self)
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda *_: self.edit_selected())
        lay.addWidget(self.table)
        row = QHBoxLayout()
        for text, slot in (
            ("Add\N{HORIZONTAL ELLIPSIS}", self.add),
            ("Edit\N{HORIZONTAL ELLIPSIS}", self.edit_selected),
            ("Remove", self.remove_selected),
            ("Echo", self.echo_selected),
        ):
            b = QPushButton(text, self)
            b.clicked.connect(lambda _=False, s=slot: s())
            row.addWidget(b)
        row.addStretch(1)
        close = QPushButton("Close", self)
        close.clicked.connect(self.accept)
        row.addWidget(close)
        lay.addLayout(row)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.nodes: list[Node] = []
        self.reload()

    def reload(self) -> None:
        """Read the node list again."""
        try:
            self.nodes = load_nodes()
        except NetError as exc:
            self.nodes = []
            self.status.setText(str(exc))
        self.table.setRowCount(len(self.nodes))
        for r, n in enumerate(self.nodes):
            values = [n.name, n.aet, n.host, str(n.port or ""), n.url]
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))

    def selected(self) -> Node | None:
        rows = self.table.selectionModel().selectedRows()
        return self.nodes[rows[0].row()] if rows else None

    def save(self, node: Node, replacing: str = "") -> bool:
        """Write ``node`` (replacing the node called ``replacing`` when renamed)."""
        try:
            add_node(node)
            if replacing and replacing.lower() != node.name.lower():
                remove_node(replacing)
        except NetError as exc:
            self.status.setText(str(exc))
            return False
        self.reload()
        self.nodes_changed.emit()
        self.status.setText(f"saved {node.describe()}")
        return True

    def add(self) -> None:
        form = NodeForm(self)
        if form.exec() == QDialog.DialogCode.Accepted:
            self.save(form.node())

    def edit_selected(self) -> None:
        node = self.selected()
        if node is None:
            return
        form = NodeForm(self, node)
        if form.exec() == QDialog.DialogCode.Accepted:
            self.save(form.node(), replacing=node.name)

    def remove_selected(self) -> None:
        node = self.selected()
        if node is None:
            return
        try:
            remove_node(node.name)
        except NetError as exc:
            self.status.setText(str(exc))
            return
        self.reload()
        self.nodes_changed.emit()
        self.status.setText(f"removed {node.name}")

    def echo_selected(self) -> None:
        node = self.selected()
        if node is None:
            self.status.setText("select a node to echo")
            return
        from medview.net.transfers import echo

        self.status.setText(f"echo {node.describe()}\N{HORIZONTAL ELLIPSIS}")
        self._echo_slot.run(
            echo,
            node,
            calling_aet=self.calling_aet,
            timeout=10.0,
            name="echo",
            on_result=lambda res: self.status.setText(f"{res['node']}: answered in {res['ms']} ms"),
            on_error=lambda msg: self.status.setText(f"echo failed: {msg}"),
        )

    def done(self, result: int) -> None:
        self._echo_slot.cancel()
        super().done(result)
