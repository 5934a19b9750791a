"""Network > Listener settings: turn the storage SCP on or off, its port, AE title, the
calling AE titles and source addresses allowed, whether it listens on the network (off:
loopback only), and DICOM TLS (certificate, key, and the CA senders' certificates must
be signed by)."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from medview.ui.net.form import CheckedForm

_PEM_FILTER = "PEM files (*.pem *.crt *.cer *.key);;All files (*)"


def _split(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


class _PathField(QWidget):
    """A path line edit with a Browse... button (``line`` holds the text)."""

    def __init__(self, parent: QWidget, text: str, title: str, placeholder: str) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.line = QLineEdit(text, self)
        self.line.setPlaceholderText(placeholder)
        self.line.setMinimumWidth(260)
        self.browse = QPushButton("Browse...", self)
        self.browse.clicked.connect(lambda: self._pick(title))
        row.addWidget(self.line, 1)
        row.addWidget(self.browse)

    def _pick(self, title: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, self.line.text(), _PEM_FILTER)
        if path:
            self.line.setText(path)

    def text(self) -> str:
        return self.line.text().strip()


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
        self.allow_ip = QLineEdit(", ".join(values.get("allow_ip") or []), self)
        self.allow_ip.setPlaceholderText("empty: any address (e.g. 10.0.0.5, 10.0.0.6)")
        self.allow_ip.setToolTip("connections from other source IP addresses are closed unread")
        self.network = QCheckBox("Listen on the network (off: this computer only)", self)
        self.network.setChecked(bool(values["network"]))
        self.bind = QLineEdit(str(values["bind"]), self)
        self.bind.setToolTip("the interface address to listen on (0.0.0.0: all interfaces)")
        self.bind.setEnabled(self.network.isChecked())
        self.network.toggled.connect(self.bind.setEnabled)
        self.tls_cert = _PathField(
            self, str(values.get("tls_cert") or ""), "TLS certificate", "empty: plain DICOM"
        )
        self.tls_key = _PathField(
            self, str(values.get("tls_key") or ""), "TLS private key", "with the certificate"
        )
        self.tls_ca = _PathField(
            self, str(values.get("tls_ca") or ""), "CA of the senders", "empty: any sender"
        )
        self.tls_ca.setToolTip("senders must present a certificate signed by this CA")
        form.addRow(self.enabled)
        form.addRow("Port", self.port)
        form.addRow("AE title", self.aet)
        form.addRow("Allowed callers", self.allow)
        form.addRow("Allowed addresses", self.allow_ip)
        form.addRow(self.network)
        form.addRow("Interface", self.bind)
        form.addRow(QLabel("<b>DICOM TLS</b> (PEM files)", self))
        form.addRow("Certificate", self.tls_cert)
        form.addRow("Private key", self.tls_key)
        form.addRow("Client CA", self.tls_ca)
        self.add_buttons()

    def values(self) -> dict[str, Any]:
        """The settings as entered."""
        return {
            "enabled": self.enabled.isChecked(),
            "port": self.port.value(),
            "aet": self.aet.text().strip(),
            "allow": _split(self.allow.text()),
            "network": self.network.isChecked(),
            "bind": self.bind.text().strip() or "0.0.0.0",
            "allow_ip": _split(self.allow_ip.text()),
            "tls_cert": self.tls_cert.text(),
            "tls_key": self.tls_key.text(),
            "tls_ca": self.tls_ca.text(),
        }

    def check(self) -> None:
        """The values make a valid receiver configuration, and the TLS files load."""
        from medview.net.receiver import server_ssl_context
        from medview.ui.net.listener import receiver_config

        server_ssl_context(receiver_config(self.values()))
