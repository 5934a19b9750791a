"""Network > Listener settings: turn the storage SCP on or off, its port, AE title, the
calling AE titles allowed, and whether it listens on the network (off: loopback only)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QCheckBox, QLineEdit, QSpinBox, QWidget

from medview.ui.net.form import CheckedForm


class ListenerDialog(CheckedForm):
    """Edits the ``net/listener`` settings (:mod:`medview.ui.net.listener`)."""

    def __init__(self, parent: QWidget | None, values: dict[str, Any]) -> None:
        super().__init__(parent, "Listener settings")
        form = self.form
        self.enabled = QCheckBox("Receive images (storage SCP)", self)
        self.enabled.setChecked(bool(values["enabled"]))
        self.port = QSpinBox(self)
        self.port.setRange(1, 65535)
        self.port.setValue(int(values["port"]))
        self.aet = QLineEdit(str(values["aet"]), self)
        self.aet.setMaxLength(16)
        self.allow = QLineEdit(", ".join(values["allow"]), self)
        self.allow.setPlaceholderText("empty: any calling AE title")
        self.network = QCheckBox("Listen on the network (off: this computer only)", self)
        self.network.setChecked(bool(values["network"]))
        self.bind = QLineEdit(str(values["bind"]), self)
        self.bind.setToolTip("the interface address to listen on (0.0.0.0: all interfaces)")
        self.bind.setEnabled(self.network.isChecked())
        self.network.toggled.connect(self.bind.setEnabled)
        form.addRow(self.enabled)
        form.addRow("Port", self.port)
        form.addRow("AE title", self.aet)
        form.addRow("Allowed callers", self.allow)
        form.addRow(self.network)
        form.addRow("Interface", self.bind)
        self.add_buttons()

    def values(self) -> dict[str, Any]:
        """The settings as entered."""
        return {
            "enabled": self.enabled.isChecked(),
            "port": self.port.value(),
            "aet": self.aet.text().strip(),
            "allow": [a.strip() for a in self.allow.text().split(",") if a.strip()],
            "network": self.network.isChecked(),
            "bind": self.bind.text().strip() or "0.0.0.0",
        }

    def check(self) -> None:
        from medview.ui.net.listener import receiver_config

        receiver_config(self.values())
