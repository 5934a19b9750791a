"""The listener settings' TLS and source-address fields (issue 12 item 6 in the GUI):
validated in the form with one-line errors, stored in the settings, and enforced by the
listener the window runs (a real TLS C-ECHO over loopback, plain DICOM refused)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")
if shutil.which("openssl") is None:
    pytest.skip("needs the openssl program to make test certificates", allow_module_level=True)

from tests.core.test_net import _make_certs  # noqa: E402
from tests.helpers.net_fixtures import free_port  # noqa: E402


def _dialog(qtbot, **values):
    from medview.ui.net.listener import listener_settings
    from medview.ui.net.listener_dialog import ListenerDialog

    dlg = ListenerDialog(None, listener_settings() | values)
    qtbot.addWidget(dlg)
    return dlg


def _refused(dlg) -> str:
    dlg._accept()
    assert dlg.result() == 0
    text = dlg.error.text()
    assert text and "\n" not in text
    return text


def test_listener_form_tls_and_address_fields(qtbot, medview_home, tmp_path):
    from medview.ui.net.listener import listener_settings, receiver_config, save_listener_settings

    ca, cert, key = _make_certs(tmp_path)
    dlg = _dialog(qtbot)
    assert dlg.allow_ip.text() == "" and dlg.tls_cert.text() == "" and dlg.tls_ca.text() == ""
    dlg.allow_ip.setText("127.0.0.1, not-an-ip")
    assert "'not-an-ip' is not an IP address" in _refused(dlg)
    dlg.allow_ip.setText("127.0.0.1, ::1")
    dlg.tls_cert.line.setText(str(cert))
    assert "both a certificate and a key" in _refused(dlg)
    dlg.tls_key.line.setText(str(tmp_path / "missing.key"))
    assert "TLS key file not found" in _refused(dlg)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    dlg.tls_key.line.setText(str(garbage))
    assert "cannot load the TLS certificate/key" in _refused(dlg)
    dlg.tls_key.line.setText(str(key))
    dlg.tls_ca.line.setText(str(tmp_path / "nope.pem"))
    assert "TLS CA file not found" in _refused(dlg)
    dlg.tls_ca.line.setText(str(ca))
    dlg._accept()
    assert dlg.result() == 1 and dlg.error.text() == ""
    saved = save_listener_settings(dlg.values())
    stored = json.loads((medview_home / "settings.json").read_text())["net/listener"]
    assert stored["allow_ip"] == ["127.0.0.1", "::1"]
    assert (stored["tls_cert"], stored["tls_key"], stored["tls_ca"]) == (
        str(cert),
        str(key),
        str(ca),
    )
    cfg = receiver_config(saved)
    assert cfg.allow_ips == ["127.0.0.1", "::1"] and cfg.tls_ca == str(ca)
    # the stored values fill the dialog next time
    again = _dialog(qtbot)
    assert again.tls_key.text() == str(key) and again.allow_ip.text() == "127.0.0.1, ::1"
    # a CA alone is refused too; emptied fields mean plain DICOM
    assert listener_settings()["tls_cert"] == str(cert)
    again.tls_cert.line.setText("")
    again.tls_key.line.setText("")
    assert "needs the listener's own certificate" in _refused(again)
    again.tls_ca.line.setText("")
    again._accept()
    assert again.result() == 1 and receiver_config(again.values()).tls_cert is None


def _echo(port: int, ca=None) -> dict:
    from medview.net import dimse
    from medview.net.nodes import Node

    node = Node(name="me", host="127.0.0.1", port=port, aet="MEDVIEW", tls_ca=ca and str(ca))
    return dimse.echo(node, timeout=5)


def test_gui_listener_runs_tls_and_the_address_allow_list(qtbot, medview_home, tmp_path):
    from medview.net.common import Unreachable
    from medview.ui.net.listener import Listener, save_listener_settings

    ca, cert, key = _make_certs(tmp_path)
    port = free_port()
    listener = Listener(db_path=str(tmp_path / "db.sqlite"))
    states: list[str] = []
    listener.state_changed.connect(states.append)
    try:
        listener.apply(
            save_listener_settings(
                {
                    "enabled": True,
                    "port": port,
                    "tls_cert": str(cert),
                    "tls_key": str(key),
                    "allow_ip": ["127.0.0.1"],
                }
            )
        )
        qtbot.waitUntil(lambda: listener.running, timeout=30_000)
        assert "TLS" in listener.describe()
        assert _echo(port, ca)["status"] == 0
        with pytest.raises(Unreachable):  # plain DICOM on the TLS port
            _echo(port)
        # an allow list without this address: the connection is closed unread
        listener.apply(save_listener_settings({"allow_ip": ["10.255.255.1"]}))
        qtbot.waitUntil(
            lambda: listener.running and listener.receiver.config.allow_ips == ["10.255.255.1"],
            timeout=30_000,
        )
        with pytest.raises(Unreachable):
            _echo(port, ca)
    finally:
        listener.stop()
    assert any("TLS" in s for s in states)
