"""The GUI half of clinic connectivity, against the real Orthanc and dcmtk of
tests/helpers/net_fixtures.py: the listener started from the settings with live arrivals in the
study browser, the Query/Retrieve dialog (search, series, C-GET, C-MOVE to our listener,
WADO-RS) with its transfer queue, "Send to..." from the browser and the nodes editor.
"""

from __future__ import annotations

import json
import subprocess

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")
pydicom = pytest.importorskip("pydicom")

from tests.helpers import net_fixtures as nf  # noqa: E402 - its fixtures: tests/conftest.py

TIMEOUT = 60_000


@pytest.fixture()
def window(qtbot, make_window):
    """The main window, shown, with its networking controller installed."""
    w = make_window()
    qtbot.waitUntil(lambda: getattr(w, "net", None) is not None, timeout=10_000)
    return w


def _db(home):
    from medview.paths import database_path

    return database_path()


def _add_orthanc_nodes(orthanc) -> None:
    from medview.net.nodes import Node, add_node

    add_node(Node(name="orthanc", host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet))
    add_node(Node(name="orthanc-web", url=f"{orthanc.url}/dicom-web"))


def _listen(qtbot, win, port: int) -> None:
    from medview.ui.net.listener import save_listener_settings

    values = save_listener_settings({"enabled": True, "port": port, "aet": "MEDVIEW"})
    win.net.listener.apply(values)
    qtbot.waitUntil(lambda: win.net.listener.running, timeout=TIMEOUT)


def _db_series(win) -> dict[str, object]:
    from medview.viewer.session import DATABASE_PREFIX

    return {k: s for k, s in win.browser.series.items() if k.startswith(DATABASE_PREFIX)}


def _browser_count(win, series_uid: str) -> int:
    item = win.browser.items.get(f"db:{series_uid}")
    text = item.text(1).split()[0] if item is not None else "0"
    return int(text) if text.isdigit() else 0


def _wait_jobs(qtbot, queue) -> None:
    qtbot.waitUntil(lambda: not queue.busy, timeout=TIMEOUT)


# -- settings, no peers ---------------------------------------------------------------


def test_listener_settings_loopback_until_network_enabled(medview_home):
    from medview.net.common import BadRequest
    from medview.ui.net.listener import listener_settings, receiver_config, save_listener_settings

    values = listener_settings()
    assert values["enabled"] is False and values["port"] == 11112 and values["aet"] == "MEDVIEW"
    assert receiver_config(values).host == "127.0.0.1"
    values = save_listener_settings({"network": True, "bind": "0.0.0.0", "allow": ["CT1"]})
    cfg = receiver_config(values)
    assert cfg.host == "0.0.0.0" and cfg.allow_aets == ["CT1"]
    stored = json.loads((medview_home / "settings.json").read_text())["net/listener"]
    assert stored["network"] is True and stored["allow"] == ["CT1"]
    with pytest.raises(BadRequest):
        receiver_config(values | {"aet": "A\\B"})


def test_listener_and_node_forms_refuse_bad_input(qtbot, medview_home):
    from medview.ui.net.listener import DEFAULTS
    from medview.ui.net.listener_dialog import ListenerDialog
    from medview.ui.net.nodes_editor import NodeForm

    dlg = ListenerDialog(None, dict(DEFAULTS))
    qtbot.addWidget(dlg)
    assert dlg.bind.isEnabled() is False  # loopback until network listening is ticked
    dlg.network.setChecked(True)
    assert dlg.bind.isEnabled()
    dlg.aet.setText("BAD\\AET")
    dlg._accept()
    assert "AE title" in dlg.error.text() and dlg.result() == 0
    dlg.aet.setText("READER1")
    dlg.allow.setText("CT1, MR2 ,")
    dlg._accept()
    assert dlg.result() == 1
    assert dlg.values() | {"port": 11112} == {
        "enabled": False,
        "port": 11112,
        "aet": "READER1",
        "allow": ["CT1", "MR2"],
        "network": True,
        "bind": "0.0.0.0",
        "allow_ip": [],  # TLS and address fields: tests/ui/test_net_listener_tls.py
        "tls_cert": "",
        "tls_key": "",
        "tls_ca": "",
    }
    form = NodeForm(None)
    qtbot.addWidget(form)
    form.name.setText("web")
    form.url.setText("ftp://pacs/dicom-web")
    form._accept()
    assert "http" in form.error.text() and form.result() == 0
    form.url.setText("https://pacs.example/dicom-web")
    form._accept()
    assert form.result() == 1 and form.node().is_dicomweb


def test_listener_on_a_busy_port_is_one_line_error(qtbot, window):
    import socket

    from medview.ui.net.listener import save_listener_settings

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        window.net.listener.apply(save_listener_settings({"enabled": True, "port": port}))
        qtbot.waitUntil(
            lambda: any("listener not started" in e for e in window.errors), timeout=TIMEOUT
        )
    (msg,) = [e for e in window.errors if "listener not started" in e]
    assert f"cannot listen on 127.0.0.1:{port}" in msg and "\n" not in msg
    assert not window.net.listener.running and window.net.status_label.text() == ""


# -- nodes editor -----------------------------------------------------------------------


def test_nodes_editor_round_trip_and_echo(qtbot, window, orthanc, capsys):
    from medview.cli import main
    from medview.net.nodes import Node
    from medview.ui.net.nodes_editor import NodesDialog

    dlg = NodesDialog(window)
    qtbot.addWidget(dlg)
    assert dlg.save(Node(name="pacs", host="127.0.0.1", port=orthanc.dicom_port, aet="ORTHANC"))
    assert main(["pacs", "nodes", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["nodes"]
    assert [(n["name"], n["port"], n["aet"]) for n in listed] == [
        ("pacs", orthanc.dicom_port, "ORTHANC")
    ]
    # rename through an edit: the old name goes, the CLI sees the new one
    dlg.table.selectRow(0)
    assert dlg.save(
        Node(name="orthanc", host="127.0.0.1", port=orthanc.dicom_port, aet="ORTHANC"),
        replacing="pacs",
    )
    assert [n.name for n in dlg.nodes] == ["orthanc"]
    dlg.table.selectRow(0)
    dlg.echo_selected()
    qtbot.waitUntil(lambda: "answered in" in dlg.status.text(), timeout=TIMEOUT)
    assert f"ORTHANC@127.0.0.1:{orthanc.dicom_port}" in dlg.status.text()
    dlg.table.selectRow(0)
    dlg.remove_selected()
    assert main(["pacs", "nodes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"] == []


def test_echo_of_an_unreachable_node_is_one_line(qtbot, window):
    from medview.net.nodes import Node, add_node

    add_node(Node(name="nobody", host="127.0.0.1", port=nf.free_port(), aet="NOBODY"))
    dlg = window.net.dialog()
    dlg.echo()
    qtbot.waitUntil(lambda: "echo failed" in dlg.status.text(), timeout=TIMEOUT)
    assert "\n" not in dlg.status.text() and "could not be reached" in dlg.status.text()


# -- query / retrieve -------------------------------------------------------------------


def test_search_series_and_cget_into_database(qtbot, window, orthanc, study_uid, medview_home):
    _add_orthanc_nodes(orthanc)
    dlg = window.net.dialog()
    dlg.select_node("orthanc")
    assert [dlg.method.itemData(i) for i in range(dlg.method.count())] == ["get"]
    dlg.patient_name.setText("TEST^CT*")
    dlg.modality.setCurrentText("CT")
    dlg.search()
    qtbot.waitUntil(lambda: dlg.results.topLevelItemCount() == 1, timeout=TIMEOUT)
    study = dlg.results.topLevelItem(0)
    assert study.text(1) == nf.PATIENT_ID and study.text(6) == "20"
    study.setExpanded(True)
    qtbot.waitUntil(lambda: study.childCount() == 1, timeout=TIMEOUT)
    assert study.child(0).text(4) == "CT" and study.child(0).text(6) == "20"
    # nothing matches: an empty table and a status line, not an error
    dlg.patient_id.setText("NOSUCHPATIENT")
    dlg.search()
    qtbot.waitUntil(lambda: "0 studies" in dlg.status.text(), timeout=TIMEOUT)
    dlg.patient_id.setText("")
    dlg.search()
    qtbot.waitUntil(lambda: dlg.results.topLevelItemCount() == 1, timeout=TIMEOUT)
    dlg.results.topLevelItem(0).setSelected(True)
    assert dlg.retrieve_selected() == 1
    _wait_jobs(qtbot, dlg.queue)
    job = dlg.queue.jobs[-1]
    assert job.status == "done", job.message
    assert job.result["stored"] == 20
    db = _db(medview_home)
    assert len(nf.db_instances(db)) == 20
    nf.integrity_ok(db)
    # the retrieved study lands in the browser
    qtbot.waitUntil(
        lambda: any(s.study_uid == study_uid for s in _db_series(window).values()),
        timeout=TIMEOUT,
    )
    (series,) = [s for s in _db_series(window).values() if s.study_uid == study_uid]
    assert _browser_count(window, series.series_uid) == 20


def test_wado_retrieve_of_one_series(qtbot, window, orthanc, study_uid, medview_home):
    _add_orthanc_nodes(orthanc)
    dlg = window.net.dialog()
    dlg.select_node("orthanc-web")
    assert [dlg.method.itemData(i) for i in range(dlg.method.count())] == ["wado"]
    dlg.patient_id.setText(nf.PATIENT_ID)
    dlg.search()
    qtbot.waitUntil(lambda: dlg.results.topLevelItemCount() >= 1, timeout=TIMEOUT)
    study = next(
        dlg.results.topLevelItem(i)
        for i in range(dlg.results.topLevelItemCount())
        if dlg.results.topLevelItem(i).data(0, 257)["study_uid"] == study_uid
    )
    study.setExpanded(True)
    qtbot.waitUntil(lambda: study.childCount() >= 1, timeout=TIMEOUT)
    study.child(0).setSelected(True)
    assert dlg.retrieve_selected() == 1
    _wait_jobs(qtbot, dlg.queue)
    job = dlg.queue.jobs[-1]
    assert job.status == "done", job.message
    assert job.result["stored"] == 20 and len(nf.db_instances(_db(medview_home))) == 20


def test_cmove_to_the_gui_listener_arrives_live(qtbot, window, orthanc, study_uid, medview_home):
    """Orthanc sends MEDVIEW's C-MOVEs to orthanc.move_port: the GUI's listener there
    receives them, the browser shows them, the queue counts them."""
    _add_orthanc_nodes(orthanc)
    _listen(qtbot, window, orthanc.move_port)
    assert "MEDVIEW" in window.net.status_label.text()
    dlg = window.net.dialog()
    dlg.select_node("orthanc")
    assert dlg.method.findData("move") >= 0
    dlg.method.setCurrentIndex(dlg.method.findData("move"))
    dlg.patient_id.setText(nf.PATIENT_ID)
    dlg.search()
    qtbot.waitUntil(lambda: dlg.results.topLevelItemCount() == 1, timeout=TIMEOUT)
    dlg.results.topLevelItem(0).setSelected(True)
    dlg.retrieve_selected()
    _wait_jobs(qtbot, dlg.queue)
    job = dlg.queue.jobs[-1]
    assert job.status == "done", job.message
    assert job.result["completed"] == 20 and job.result["failed"] == 0
    bridge = window.net.listener.bridge
    qtbot.waitUntil(lambda: window.net.live.received_total == 20, timeout=TIMEOUT)
    assert 1 <= bridge.batches < 20  # batched, not one GUI update per instance
    qtbot.waitUntil(
        lambda: any(
            s.study_uid == study_uid and _browser_count(window, s.series_uid) == 20
            for s in _db_series(window).values()
        ),
        timeout=TIMEOUT,
    )
    assert len(nf.db_instances(_db(medview_home))) == 20


# -- receive while the GUI is open ------------------------------------------------------


def test_storescu_push_into_the_open_window(qtbot, window, ct_copy, tmp_path, medview_home):
    port = nf.free_port()
    _listen(qtbot, window, port)
    pushed = nf._copy_as_new_series(ct_copy, tmp_path / "push", "gui-push")
    series_uid = str(pydicom.dcmread(next(pushed.glob("*.dcm"))).SeriesInstanceUID)
    proc = subprocess.Popen(
        nf.storescu(port, sorted(pushed.glob("*.dcm")), "CTSCANNER"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # the series shows up in the browser (its count grows while it arrives)
        qtbot.waitUntil(
            lambda: f"db:{series_uid}" in window.browser.items or proc.poll() not in (None, 0),
            timeout=TIMEOUT,
        )
        assert proc.wait(60) == 0, proc.stderr.read().decode()[-300:]
        assert f"db:{series_uid}" in window.browser.items
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    qtbot.waitUntil(lambda: _browser_count(window, series_uid) == 20, timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: any(
            "received 20 image(s) from CTSCANNER" in t for _, _, t in window.notifier.history
        ),
        timeout=TIMEOUT,
    )
    texts = [t for _, _, t in window.notifier.history if "received" in t]
    assert "TEST CT NET" in texts[-1]
    # the "receiving" marks (bold, arrow) go once the arrivals have settled
    key = f"db:{series_uid}"
    qtbot.waitUntil(
        lambda: (
            not window.browser.items[key].font(0).bold()
            and window.browser.items[key].text(1) == "20"
        ),
        timeout=TIMEOUT,
    )
    assert len(nf.db_instances(_db(medview_home))) == 20
    nf.integrity_ok(_db(medview_home))
    window.close()  # stops the listener: nothing answers on the port any more
    assert not window.net.listener.running
    res = subprocess.run(nf.echoscu(port), capture_output=True)
    assert res.returncode != 0


# -- send to ----------------------------------------------------------------------------


def test_send_to_from_the_browser_menu(qtbot, window, orthanc, ct_copy, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog, QMenu

    from medview.cli import main

    _add_orthanc_nodes(orthanc)
    copy = nf._copy_as_new_series(ct_copy, tmp_path / "send", "gui-send")
    new_study = pydicom.uid.generate_uid(entropy_srcs=["gui-send", "study"])
    for f in copy.glob("*.dcm"):  # a study of its own: Orthanc's first one keeps 20 images
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = new_study
        ds.save_as(f, enforce_file_format=True)
    series_uid = str(pydicom.dcmread(next(copy.glob("*.dcm"))).SeriesInstanceUID)
    assert main(["import", str(copy)]) == 0
    window.browser.refresh_database()
    qtbot.waitUntil(lambda: f"db:{series_uid}" in window.browser.items, timeout=TIMEOUT)
    item = window.browser.items[f"db:{series_uid}"]
    menu = QMenu(window)
    window.browser._send_actions(menu, item)
    labels = [a.text() for a in menu.actions()]
    assert labels == [
        "Send series to\N{HORIZONTAL ELLIPSIS}",
        "Send study to\N{HORIZONTAL ELLIPSIS}",
    ]
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: ("orthanc", True)))
    menu.actions()[0].trigger()
    queue = window.net.dialog().queue
    _wait_jobs(qtbot, queue)
    job = queue.jobs[-1]
    assert job.status == "done", job.message
    assert job.result == {"sent": 20, "failed": 0, "warning": 0, "errors": []}
    found = orthanc.rest(
        "/tools/find",
        json.dumps({"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}).encode(),
    )
    assert len(found) == 1
    instances = orthanc.rest(f"/series/{found[0]}")["Instances"]
    assert len(instances) == 20


def test_cancel_running_and_queued_transfers(qtbot, window, orthanc, study_uid, medview_home):
    """Three retrieves queued: the running one cancelled (whole instances only, if any),
    the waiting one dropped unrun, the last one runs to the end."""
    from medview.net.nodes import get_node
    from medview.net.transfers import Retrieval

    _add_orthanc_nodes(orthanc)
    node = get_node("orthanc")
    first = window.net.queue_retrieve(Retrieval(node, study_uid))
    second = window.net.queue_retrieve(Retrieval(node, study_uid))
    third = window.net.queue_retrieve(Retrieval(node, study_uid, title="TEST CT NET"))
    assert first.status == "running" and second.status == "queued"
    queue = window.net.dialog().queue
    queue.cancel(first)
    queue.cancel(second)
    _wait_jobs(qtbot, queue)
    assert first.status == "cancelled" and first.result is None
    assert second.status == "cancelled" and second.handle is None
    assert third.status == "done" and third.result["stored"] == 20
    assert "TEST CT NET" in queue.table.item(2, 0).text()
    assert len(nf.db_instances(_db(medview_home))) == 20
    nf.integrity_ok(_db(medview_home))
