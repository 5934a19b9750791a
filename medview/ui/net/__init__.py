"""The GUI half of clinic connectivity (the core is :mod:`medview.net`).

:func:`install` gives the main window a :class:`NetController`: the storage SCP started
from the settings (:mod:`.listener`) with live arrivals in the study browser (:mod:`.live`),
the Query/Retrieve dialog with its transfer queue (:mod:`.dialog`, :mod:`.queue`), "Send
to..." from the browser's context menu and the nodes editor (:mod:`.nodes_editor`). The
Network menu (:mod:`medview.ui.actions`) calls :func:`controller`.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QInputDialog, QLabel, QWidget

from medview.ui.net.listener import Listener, listener_settings

log = logging.getLogger(__name__)


class NetController(QObject):
    """Everything networking of one main window; made by :func:`install`."""

    def __init__(self, win: Any) -> None:
        super().__init__(win)
        from medview.ui.net.live import LiveArrivals

        self.win = win
        self.listener = Listener(self)
        self.listener.failed.connect(lambda m: win.notify(m, "error"))
        self.status_label = QLabel("", win)
        win.statusBar().addPermanentWidget(self.status_label)
        self.listener.state_changed.connect(self._listener_state)
        self.live = LiveArrivals(win.browser, self.listener.bridge, win.notify)
        win.browser.send_requested.connect(self.send_dialog)
        self._dialog: Any = None
        win.installEventFilter(self)
        self.closed = False

    # ----------------------------------------------------------------- listener
    def start_listener(self) -> None:
        """Start (or restart, or stop) the listener from the settings."""
        self.listener.apply()

    def _listener_state(self, text: str) -> None:
        self.status_label.setText(text if self.listener.running else "")
        self.status_label.setToolTip(text)
        if self._dialog is not None:
            self._dialog.update_methods()

    def calling_aet(self) -> str:
        """Our AE title as a caller: the listener's (so C-MOVE destinations match)."""
        return str(listener_settings()["aet"])

    def listener_dialog(self) -> None:
        from medview.ui.net.listener_dialog import ListenerDialog

        dlg = ListenerDialog(self.win, listener_settings())
        if dlg.exec() == ListenerDialog.DialogCode.Accepted:
            from medview.ui.net.listener import save_listener_settings

            self.listener.apply(save_listener_settings(dlg.values()))

    # ----------------------------------------------------------------- dialogs
    def dialog(self) -> Any:
        """The Query/Retrieve dialog (made once, non-modal), shown."""
        from medview.ui.net.dialog import QueryRetrieveDialog

        if self._dialog is None:
            self._dialog = QueryRetrieveDialog(self, self.win)
            self._dialog.queue.job_finished.connect(self._job_finished)
        self._dialog.show()
        self._dialog.raise_()
        return self._dialog

    def edit_nodes(self) -> Any:
        """The nodes editor (modal); the Q/R dialog's picker follows its changes."""
        from medview.ui.net.nodes_editor import NodesDialog

        parent: QWidget = self._dialog if self._dialog is not None else self.win
        dlg = NodesDialog(parent, calling_aet=self.calling_aet())
        if self._dialog is not None:
            dlg.nodes_changed.connect(self._dialog.reload_nodes)
        dlg.exec()
        return dlg

    # ----------------------------------------------------------------- transfers
    def queue_retrieve(self, job: Any) -> Any:
        """Queue a :class:`~medview.net.transfers.Retrieval`."""
        from medview.net.transfers import retrieve

        queue = self.dialog().queue
        t = queue.enqueue(
            job.label(),
            retrieve,
            job,
            calling_aet=self.calling_aet(),
            on_result=lambda res, j=job: self._retrieved(j, res),
        )
        return t

    def _retrieved(self, job: Any, res: dict[str, Any]) -> None:
        n = int(res.get("stored", 0))
        level = "series" if job.series_uid else "study"
        self.win.notify(f"retrieved {n} image(s) of a {level} from {job.node.name}", "info")
        self.win.browser.refresh_database()

    def send_dialog(self, study_uid: str, series_uid: str = "") -> Any:
        """Ask for a node, then queue sending a database study or series to it."""
        from medview.net.common import NetError
        from medview.net.nodes import load_nodes

        try:
            names = [n.name for n in load_nodes()]
        except NetError as exc:
            self.win.notify(str(exc))
            return None
        if not names:
            self.win.notify("no nodes to send to: add one under Network > Nodes", "warning")
            return None
        what = "series" if series_uid else "study"
        name, ok = QInputDialog.getItem(
            self.win, "Send to", f"Send this {what} to:", names, 0, False
        )
        return self.send_to(name, study_uid, series_uid) if ok and name else None

    def send_to(self, node_name: str, study_uid: str, series_uid: str = "") -> Any:
        """Queue a C-STORE / STOW-RS of a database study or series to the node ``node_name``."""
        from medview.net.common import NetError
        from medview.net.nodes import get_node
        from medview.net.transfers import send

        try:
            node = get_node(node_name)
        except NetError as exc:
            self.win.notify(str(exc))
            return None
        what = f"series ...{series_uid[-12:]}" if series_uid else f"study ...{study_uid[-12:]}"
        proto = "STOW" if node.is_dicomweb else "C-STORE"
        return self.dialog().queue.enqueue(
            f"{proto} {what} to {node.name}",
            send,
            node,
            study_uid,
            series_uid,
            calling_aet=self.calling_aet(),
            on_result=lambda res, n=node: self.win.notify(
                f"sent {res['sent']} image(s) to {n.name}"
                + (f", {res['failed']} failed: {res['errors'][0]}" if res.get("failed") else ""),
                "warning" if res.get("failed") else "info",
            ),
        )

    def _job_finished(self, job: Any) -> None:
        if job.status == "failed":
            self.win.notify(f"{job.label}: {job.message}")

    # ----------------------------------------------------------------- closing
    def shutdown(self) -> None:
        """Stop the listener and the transfers (the window is closing)."""
        if self.closed:
            return
        self.closed = True
        if self._dialog is not None:
            self._dialog.shutdown()
        self.listener.stop()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.win and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False


def controller(win: Any) -> NetController:
    """The window's controller (made on first use)."""
    ctl = getattr(win, "net", None)
    if not isinstance(ctl, NetController):
        ctl = win.net = NetController(win)
    return ctl


def install(win: Any) -> NetController:
    """Give ``win`` its controller and start the listener when the settings enable it."""
    ctl = controller(win)
    if listener_settings()["enabled"]:
        ctl.start_listener()
    return ctl
