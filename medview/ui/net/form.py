"""The form dialog of the network settings (listener, remote node): OK first checks what
was entered; a :class:`~medview.net.common.NetError` is shown in red under the form and
the dialog stays open."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QWidget

from medview.net.common import NetError


class CheckedForm(QDialog):
    """A dialog over a :class:`QFormLayout` (``self.form``): add the rows, then
    :meth:`add_buttons`; subclasses say what OK checks in :meth:`check`."""

    def __init__(self, parent: QWidget | None, title: str) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.form = QFormLayout(self)
        self.error = QLabel("", self)
        self.error.setStyleSheet("color: #c33")

    def add_buttons(self) -> None:
        """The error line and OK / Cancel, below the rows added so far."""
        self.form.addRow(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.form.addRow(buttons)

    def check(self) -> None:
        """Raise :class:`NetError` when the entries cannot be used."""
        raise NotImplementedError

    def _accept(self) -> None:
        try:
            self.check()
        except NetError as exc:
            self.error.setText(str(exc))
            return
        self.error.setText("")
        self.accept()
