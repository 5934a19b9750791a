"""Clinic connectivity against real peers: a real Orthanc server (DIMSE + DICOMweb plugin)
and dcmtk's echoscu/storescu/storescp, all on 127.0.0.1 with free ports.

The real CT series from ../shared/data has empty Study/Series/SOP Instance UIDs in its
datasets (the SOP UIDs survive only in the file meta), which no storage SCP accepts and
dcmtk's storescu cannot even send. ``ct_copy`` therefore writes a copy into tmp with the
SOP UIDs taken from the file meta, Study/Series UIDs derived from the Frame of Reference UID,
and a test patient; pixel data and every other attribute are untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")
pydicom = pytest.importorskip("pydicom")

from medview.cli import main  # noqa: E402
from tests.helpers.net_fixtures import (  # noqa: E402
    ACCESSION,
    PATIENT_ID,
    OrthancServer,
    _copy_as_new_series,
    db_instances,
    dcmtk,
    echoscu,
    free_port,
    integrity_ok,
    receive_command,
    same_instance,
    storescu,
)

# the shared fixtures (orthanc, ct_copy, study_uid; tests/conftest.py): one Orthanc per session

# -- helpers -------------------------------------------------------------------------


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture()
def home(medview_home, tmp_path) -> Path:
    """Per-test user folder; database and store inside it."""
    return medview_home


def _move(orthanc: OrthancServer, study_uid: str, dest: str) -> list[str]:
    """``pacs move`` of ``study_uid`` from ``orthanc`` to the AE title ``dest``."""
    return ["pacs", "move", *_remote(orthanc), "--study", study_uid, "--dest", dest]


def _dimse(port: int, aet: str) -> list[str]:
    """The options naming a DIMSE peer on 127.0.0.1."""
    return ["--host", "127.0.0.1", "--port", str(port), "--aet", aet]


def _remote(o: OrthancServer) -> list[str]:
    return _dimse(o.dicom_port, o.aet)


@pytest.fixture()
def receiver(home):
    """An in-process storage SCP on a free port; yields (Receiver, arrivals list)."""
    from medview.net.receiver import Receiver, ReceiverConfig

    got: list = []
    r = Receiver(ReceiverConfig(port=0, aet="MEDVIEW"), on_arrival=got.append).start()
    try:
        yield r, got
    finally:
        r.stop()


# -- unit checks of the request validation ----------------------------------------------


def test_bad_input_is_exit_2_with_one_line(capsys, home):
    code, out, err = cli(
        capsys,
        "pacs",
        "find",
        *_dimse(104, "X"),
        "--study-date",
        "2024-01-01",
    )
    assert code == 2 and err.count("\n") == 1 and "YYYYMMDD" in err
    code, _, err = cli(capsys, "pacs", "get", "--dicomweb", "ftp://x", "--study", "1.2.3")
    assert code == 2 and "http" in err
    code, _, err = cli(capsys, "pacs", "get", *_dimse(104, "X"), "--study", "1.2.../etc")
    assert code == 2 and "not a valid DICOM UID" in err
    # nobody listens on this port: unreachable is exit 2, one line, no traceback
    nobody = _dimse(free_port(), "NOBODY")
    code, _, err = cli(capsys, "pacs", "echo", *nobody, "--timeout", "3")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_nodes_json_file(capsys, home, orthanc):
    code, out, _ = cli(
        capsys,
        "pacs",
        "nodes",
        "add",
        "orthanc",
        *_dimse(orthanc.dicom_port, orthanc.aet),
    )
    assert code == 0
    cli(capsys, "pacs", "nodes", "add", "web", "--dicomweb", orthanc.url + "/dicom-web")
    code, out, _ = cli(capsys, "pacs", "nodes", "--json")
    listed = json.loads(out)
    assert [n["name"] for n in listed["nodes"]] == ["orthanc", "web"]
    assert json.loads((home / "nodes.json").read_text())["nodes"][0]["port"] == orthanc.dicom_port
    code, out, _ = cli(capsys, "pacs", "echo", "--node", "orthanc", "--json")
    assert code == 0 and json.loads(out)["status"] == 0
    code, out, _ = cli(capsys, "pacs", "echo", "--node", "web")
    assert code == 0
    assert cli(capsys, "pacs", "nodes", "remove", "web")[0] == 0
    code, _, err = cli(capsys, "pacs", "echo", "--node", "web")
    assert code == 2 and "no node named 'web'" in err


# -- echo both ways -------------------------------------------------------------------


def test_echo_both_ways(capsys, orthanc, receiver):
    code, out, _ = cli(capsys, "pacs", "echo", *_remote(orthanc), "--json")
    assert code == 0 and json.loads(out)["status"] == 0
    r, _ = receiver
    p = subprocess.run(
        echoscu(r.port, "DCMTK"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr


# -- storescu into `medview receive` ----------------------------------------------------


def test_storescu_into_medview_receive(capsys, tmp_path, ct_copy, home):
    port = free_port()
    db = tmp_path / "recv.sqlite"
    env = dict(os.environ, MEDVIEW_HOME=str(home))
    proc = subprocess.Popen(
        receive_command(port, db, "--aet", "MEDVIEW"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()  # "medview receive: listening on ..."
        assert "listening on 127.0.0.1" in line, line
        files = sorted(ct_copy.glob("*.dcm"))
        p = subprocess.run(
            storescu(port, files, "CTSCANNER"),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        deadline = time.monotonic() + 30
        while len(db_instances(db)) < len(files) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == len(files) == 20
    assert set(lines[0]) == {"sop_uid", "study_uid", "series_uid", "calling_aet", "path"}
    assert {x["calling_aet"] for x in lines} == {"CTSCANNER"}
    by_sop = {x["sop_uid"]: Path(x["path"]) for x in lines}
    for f in files:
        sent = pydicom.dcmread(f, stop_before_pixels=True)
        same_instance(f, by_sop[str(sent.SOPInstanceUID)])
    assert sorted(s for s, _ in db_instances(db)) == sorted(by_sop)
    integrity_ok(db)
    code, out, _ = cli(capsys, "studies", "--json", "--db", str(db))
    (study,) = json.loads(out)["studies"]
    assert code == 0 and study["instance_count"] == 20 and study["patient_id"] == PATIENT_ID
    assert study["study_uid"] == lines[0]["study_uid"]


# -- query/retrieve against Orthanc ---------------------------------------------------------


def test_find_against_orthanc(capsys, orthanc, study_uid, home):
    base = ["pacs", "find", *_remote(orthanc), "--json"]
    for extra in (
        ["--patient-id", "MVNET*"],
        ["--patient-name", "TEST^CT*"],
        ["--study-date", "20221201-20221231", "--modality", "CT"],
        ["--accession", ACCESSION],
        ["--study", study_uid],
    ):
        code, out, err = cli(capsys, *base, *extra)
        assert code == 0, (extra, err)
        matches = [json.loads(x) for x in out.splitlines()]
        assert [m["study_uid"] for m in matches] == [study_uid], extra
        assert matches[0]["instances"] == 20 and matches[0]["patient_id"] == PATIENT_ID
    code, out, err = cli(capsys, *base, "--study-date", "19900101-19901231")
    assert code == 1 and out == "" and "nothing found" in err
    code, out, _ = cli(capsys, *base, "--level", "series", "--study", study_uid)
    series = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(series) == 1 and series[0]["modality"] == "CT"
    assert series[0]["instances"] == 20
    code, out, _ = cli(capsys, *base, "--level", "patient", "--patient-name", "TEST*")
    assert code == 0 and [json.loads(x)["patient_id"] for x in out.splitlines()] == [PATIENT_ID]


def test_get_from_orthanc(capsys, orthanc, study_uid, ct_copy, home, tmp_path):
    db = tmp_path / "get.sqlite"
    code, out, err = cli(
        capsys, "pacs", "get", *_remote(orthanc), "--study", study_uid, "--db", str(db), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["stored"] == 20
    rows = db_instances(db)
    assert len(rows) == 20
    by_sop = dict(rows)
    for f in sorted(ct_copy.glob("*.dcm"))[:5]:
        sop = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        assert pydicom.dcmread(by_sop[sop]).PixelData == pydicom.dcmread(f).PixelData
    integrity_ok(db)
    # a study Orthanc does not have: nothing retrieved, exit 1
    code, _, err = cli(
        capsys, "pacs", "get", *_remote(orthanc), "--study", "1.2.3.4.5", "--db", str(db)
    )
    assert code == 1 and err.count("\n") == 1


def test_get_cancel_keeps_whole_instances_only(orthanc, study_uid, home, tmp_path):
    """Cancelling a C-GET part way (TaskState.cancel from the progress callback) aborts
    the association; what was stored is whole and indexed, nothing else is left."""
    from medview.errors import Cancelled
    from medview.net import dimse
    from medview.net.nodes import Node
    from medview.tasks import TaskState

    db = tmp_path / "cancel.sqlite"
    store = tmp_path / "st"
    seen: list[float] = []
    state = TaskState(on_progress=lambda f, m: (seen.append(f), state.cancel()))
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet)
    with pytest.raises(Cancelled):
        dimse.get(node, study_uid, db_path=str(db), store_dir=str(store), state=state)
    assert len(seen) == 1  # the first progress report cancelled it
    rows = db_instances(db)
    assert len(rows) < 20
    assert sorted(Path(p).name for _, p in rows) == sorted(p.name for p in store.rglob("*.dcm"))
    assert not list((store / ".incoming").iterdir())
    integrity_ok(db)


def test_move_from_orthanc_to_our_scp(capsys, orthanc, study_uid, home, tmp_path):
    db = tmp_path / "move.sqlite"
    code, out, err = cli(
        capsys,
        *_move(orthanc, study_uid, "MEDVIEW"),
        "--listen-port",
        str(orthanc.move_port),
        "--db",
        str(db),
        "--json",
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["stored"] == 20 and res["completed"] == 20 and res["failed"] == 0
    assert len(db_instances(db)) == 20
    integrity_ok(db)
    # a destination Orthanc does not know: refused, exit 1
    code, _, err = cli(
        capsys,
        *_move(orthanc, study_uid, "NOSUCHAE"),
        "--listen-port",
        str(free_port()),
        "--db",
        str(db),
    )
    assert code == 1 and err.count("\n") == 1


def test_move_to_a_running_receiver(capsys, orthanc, study_uid, home, tmp_path):
    """'medview receive' already runs where the PACS sends MEDVIEW's moves: the move
    command reports what the PACS stored there."""
    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "running.sqlite"
    cfg = ReceiverConfig(port=orthanc.move_port, db_path=str(db), store_dir=str(tmp_path / "st"))
    with Receiver(cfg) as r:
        code, out, err = cli(
            capsys,
            *_move(orthanc, study_uid, "MEDVIEW"),
            "--json",
        )
        assert code == 0, err
        assert r.flush(30)
    res = json.loads(out)
    assert res["stored"] == 20 and res["received_here"] is False
    assert len(db_instances(db)) == 20
    integrity_ok(db)


# -- sending ----------------------------------------------------------------------------


def test_send_into_orthanc(capsys, orthanc, home):
    from pydicom.data import get_testdata_file

    files = [get_testdata_file("MR_small.dcm"), get_testdata_file("CT_small.dcm")]
    code, out, err = cli(capsys, "pacs", "send", *_remote(orthanc), *files, "--json")
    assert code == 0, err
    assert json.loads(out) == {"sent": 2, "failed": 0, "warning": 0, "errors": []}
    for f in files:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        found = orthanc.rest(
            "/tools/find",
            json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": uid}}).encode(),
        )
        assert len(found) == 1, f


def test_send_into_dcmtk_storescp(capsys, ct_copy, home, tmp_path):
    out_dir = tmp_path / "storescp"
    out_dir.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "STORESCP", "-od", str(out_dir), "+xa", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        code = 2
        for _ in range(50):  # wait until it listens
            code, out, err = cli(
                capsys,
                "pacs",
                "echo",
                *_dimse(port, "STORESCP"),
                "--timeout",
                "2",
            )
            if code == 0:
                break
            time.sleep(0.1)
        assert code == 0
        code, out, err = cli(
            capsys,
            "pacs",
            "send",
            *_dimse(port, "STORESCP"),
            str(ct_copy),
        )
        assert code == 0, err
        assert "sent 20 instance(s)" in out
    finally:
        proc.terminate()
        proc.wait(10)
    got = sorted(out_dir.iterdir())
    assert len(got) == 20
    by_sop = {str(pydicom.dcmread(g, stop_before_pixels=True).SOPInstanceUID): g for g in got}
    for f in sorted(ct_copy.glob("*.dcm"))[:5]:
        sop = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        same_instance(f, by_sop[sop])


def test_send_study_from_database(capsys, orthanc, ct_copy, home, tmp_path):
    db = tmp_path / "send.sqlite"
    assert main(["import", str(ct_copy), "--db", str(db)]) == 0
    uid = str(
        pydicom.dcmread(next(ct_copy.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    )
    capsys.readouterr()
    code, out, err = cli(
        capsys, "pacs", "send", *_remote(orthanc), "--study", uid, "--db", str(db), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["sent"] == 20
    code, _, err = cli(
        capsys, "pacs", "send", *_remote(orthanc), "--study", "1.2.3", "--db", str(db)
    )
    assert code == 2 and "not in the local database" in err


# -- DICOMweb ------------------------------------------------------------------------------


def test_dicomweb_qido_wado_stow(capsys, orthanc, study_uid, home, tmp_path):
    from pydicom.data import get_testdata_file

    web = ["--dicomweb", orthanc.url + "/dicom-web"]
    assert cli(capsys, "pacs", "echo", *web)[0] == 0
    code, out, _ = cli(capsys, "pacs", "find", *web, "--patient-id", PATIENT_ID, "--json")
    matches = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [m["study_uid"] for m in matches] == [study_uid]
    assert matches[0]["instances"] == 20
    code, out, _ = cli(
        capsys, "pacs", "find", *web, "--level", "series", "--study", study_uid, "--json"
    )
    assert code == 0 and json.loads(out)["instances"] == 20
    db = tmp_path / "web.sqlite"
    code, out, err = cli(
        capsys, "pacs", "get", *web, "--study", study_uid, "--db", str(db), "--json"
    )
    assert code == 0, err
    assert json.loads(out)["stored"] == 20
    assert len(db_instances(db)) == 20
    integrity_ok(db)
    f = get_testdata_file("US1_J2KR.dcm") or get_testdata_file("MR_small.dcm")
    code, out, err = cli(capsys, "pacs", "send", *web, f, "--json")
    assert code == 0, err
    assert json.loads(out)["sent"] == 1
    uid = str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
    code, out, _ = cli(capsys, "pacs", "find", *web, "--study", uid, "--json")
    assert code == 0 and json.loads(out.splitlines()[0])["study_uid"] == uid
    code, _, err = cli(capsys, "pacs", "find", *web, "--study-date", "19000101-19000102")
    assert code == 1 and "nothing found" in err
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    code, _, err = cli(capsys, "pacs", "echo", "--dicomweb", dead, "--timeout", "3")
    assert code == 2 and err.count("\n") == 1


# -- faults -----------------------------------------------------------------------------------

_SLOW_SENDER = r"""
import sys, numpy as np, pydicom
from pynetdicom import AE
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
port, small = int(sys.argv[1]), sys.argv[2:]
ae = AE(ae_title="KILLME")
ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ExplicitVRLittleEndian)
assoc = ae.associate("127.0.0.1", port, ae_title="MEDVIEW")
for f in small:
    ds = pydicom.dcmread(f)
    ds.decompress(generate_instance_uid=False)
    assert assoc.send_c_store(ds).Status == 0
big = pydicom.dcmread(small[0])
big.decompress(generate_instance_uid=False)
big.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
big.PixelData = np.zeros((200, 512, 512), np.uint16).tobytes()  # 100 MB, one instance
big.NumberOfFrames = 200
print("big", flush=True)
assoc.send_c_store(big)
"""


def test_killed_sender_leaves_no_partial_instance(tmp_path, ct_copy, home):
    from medview.io.database import StudyDatabase
    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "kill.sqlite"
    store = tmp_path / "store"
    small = [str(f) for f in sorted(ct_copy.glob("*.dcm"))[:3]]
    # a small PDU makes the 100 MB instance take many PDUs, so the kill lands mid-instance
    cfg = ReceiverConfig(port=0, db_path=str(db), store_dir=str(store), max_pdu=16384)
    with Receiver(cfg) as r:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SLOW_SENDER, str(r.port), *small],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "big"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until part of the big one arrived
            if r.receiving_bytes() > 1_000_000:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert r.flush(30)
        # the listener survived: a new association still works
        p = subprocess.run(
            echoscu(r.port),
            capture_output=True,
            timeout=30,
        )
        assert p.returncode == 0
    rows = db_instances(db)
    sent = sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in small)
    assert sorted(s for s, _ in rows) == sent  # the 3 complete ones, once each; not the big one
    on_disk = sorted(p.name for p in store.rglob("*.dcm"))
    assert on_disk == sorted(f"{s}.dcm" for s in sent)
    assert not list((store / ".incoming").iterdir())
    assert StudyDatabase(db).counts()["instances"] == 3
    integrity_ok(db)


def test_two_senders_at_once(tmp_path, ct_copy, home):
    from medview.io.database import StudyDatabase
    from medview.net.receiver import Receiver, ReceiverConfig

    second = _copy_as_new_series(ct_copy, tmp_path / "second", "second")
    db = tmp_path / "two.sqlite"
    done: list[tuple[str, set[str], int]] = []
    cfg = ReceiverConfig(port=0, db_path=str(db), store_dir=str(tmp_path / "st"))
    with Receiver(cfg, on_association_done=lambda *a: done.append(a)) as r:
        procs = [
            subprocess.Popen(
                storescu(r.port, sorted(d.glob("*.dcm")), aet),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for aet, d in (("SENDER1", ct_copy), ("SENDER2", second))
        ]
        for p in procs:
            assert p.wait(120) == 0, p.stderr.read()
        assert r.flush(30)
    rows = db_instances(db)
    assert len(rows) == 40 and len({s for s, _ in rows}) == 40
    dbh = StudyDatabase(db)
    (study,) = dbh.studies()
    assert study["instance_count"] == 40 and study["series_count"] == 2
    assert sorted(s["slices"] for s in dbh.series(study["study_uid"])) == [20, 20]
    # each push reported as finished once, with its study and count ("study complete")
    assert sorted((aet, n) for aet, _, n in done) == [("SENDER1", 20), ("SENDER2", 20)]
    assert all(studies == {study["study_uid"]} for _, studies, _ in done)
    integrity_ok(db)


def test_whitelist_refusal(tmp_path, ct_copy, home):
    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "wl.sqlite"
    cfg = ReceiverConfig(
        port=0, db_path=str(db), store_dir=str(tmp_path / "st"), allow_aets=["GOODAE"]
    )
    f = str(sorted(ct_copy.glob("*.dcm"))[0])
    with Receiver(cfg) as r:
        bad = subprocess.run(
            storescu(r.port, [f], "BADAE"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode != 0 and "reject" in bad.stderr.lower()
        good = subprocess.run(
            storescu(r.port, [f], "GOODAE"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert good.returncode == 0, good.stderr
        assert r.flush(30)
    assert r.counters.get("stored") == 1
    assert len(db_instances(db)) == 1
    integrity_ok(db)
    # an address allow list without 127.0.0.1: the connection is dropped, exit 2
    cfg = ReceiverConfig(
        port=0, db_path=str(db), store_dir=str(tmp_path / "st"), allow_ips=["192.0.2.1"]
    )
    with Receiver(cfg) as r:
        p = subprocess.run(
            echoscu(r.port),
            capture_output=True,
            timeout=30,
        )
        assert p.returncode != 0


def test_instance_size_cap(tmp_path, ct_copy, home):
    """An instance over --max-instance-mb is refused (A700) or its association aborted;
    nothing is stored either way, and a small one still goes through."""
    from pynetdicom import AE

    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "cap.sqlite"
    store = tmp_path / "st"
    big = pydicom.dcmread(sorted(ct_copy.glob("*.dcm"))[0])
    big.decompress(generate_instance_uid=False)  # 512 KiB of pixels
    cfg = ReceiverConfig(port=0, db_path=str(db), store_dir=str(store), max_instance_bytes=200_000)
    with Receiver(cfg) as r:
        ae = AE(ae_title="BIG")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        status = assoc.send_c_store(big)
        if "Status" in status:
            assert status.Status == 0xA700
        else:  # no answer: the receiver aborted (seen here a moment after the call returns)
            deadline = time.monotonic() + 10
            while not assoc.is_aborted and time.monotonic() < deadline:
                time.sleep(0.01)
            assert assoc.is_aborted
        if assoc.is_established:
            assoc.release()
        # the JPEG 2000 original is under the cap
        small = sorted(ct_copy.glob("*.dcm"))[1]
        assert small.stat().st_size < 200_000
        p = subprocess.run(
            storescu(r.port, [small]),
            capture_output=True,
            timeout=60,
        )
        assert p.returncode == 0
        assert r.flush(10)
    assert len(db_instances(db)) == 1
    assert len(list(store.rglob("*.dcm"))) == 1
    integrity_ok(db)


def test_hostile_datasets_are_refused(tmp_path, ct_copy, home):
    """Invalid UIDs (a path-traversal attempt), a missing Study UID, a mismatched SOP UID
    and a full disk are refused with the right status; the store stays clean."""
    from pynetdicom import AE

    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "hostile.sqlite"
    store = tmp_path / "st"
    base = pydicom.dcmread(sorted(ct_copy.glob("*.dcm"))[0])
    base.decompress(generate_instance_uid=False)
    cases = []
    ds = base.copy()
    with warnings.catch_warnings():  # pydicom warns about the invalid UI value itself
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = "../../../../tmp/evil"
    cases.append((ds, 0xC000))
    ds = base.copy()
    del ds.StudyInstanceUID
    cases.append((ds, 0xC000))
    with Receiver(ReceiverConfig(port=0, db_path=str(db), store_dir=str(store))) as r:
        ae = AE(ae_title="HOSTILE")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")
        ae.add_requested_context("1.2.840.10008.1.1")  # Verification
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.is_established
        for ds, status in cases:
            assert assoc.send_c_store(ds).Status == status
        # a file whose dataset after the meta is garbage: pynetdicom sends it raw
        junk = tmp_path / "junk.dcm"
        from medview.net.store import file_meta_bytes

        junk.write_bytes(
            file_meta_bytes("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1")
            + b"\x08\x00\x16\x00UI\x1a\x001.2.840.10008.5.1.4.1.1.2\x00"
            + b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00"
            + b"\x10\x00\x10\x00PN\x00\xff"
            + os.urandom(64)  # a patient name 65280 bytes long that stops after 64
        )
        assert assoc.send_c_store(junk).Status == 0xC000
        assert assoc.send_c_echo().Status == 0  # the association (and listener) lives on
        assoc.release()
        assert r.flush(10)
    full = ReceiverConfig(port=0, db_path=str(db), store_dir=str(store), min_free_bytes=1 << 62)
    with Receiver(full) as r:
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.send_c_store(base).Status == 0xA700
        assoc.release()
    assert not list(store.rglob("*.dcm")) and not os.path.exists("/tmp/evil")
    assert db_instances(db) == []
    integrity_ok(db)


def test_receiver_stop_in_flight_is_clean(tmp_path, ct_copy, home):
    """stop() while a sender is mid-series: every instance the sender was told was
    stored is in the database exactly once; nothing partial anywhere."""
    from medview.net.receiver import Receiver, ReceiverConfig

    db = tmp_path / "stop.sqlite"
    store = tmp_path / "st"
    r = Receiver(ReceiverConfig(port=0, db_path=str(db), store_dir=str(store))).start()
    files = sorted(ct_copy.glob("*.dcm"))
    p = subprocess.Popen(
        storescu(r.port, files * 3, verbose=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while r.counters.get("stored", 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopper = threading.Thread(target=r.stop)
    stopper.start()
    stopper.join(30)
    p.wait(60)
    rows = db_instances(db)
    assert 5 <= len(rows) <= 20 and len({s for s, _ in rows}) == len(rows)
    assert len(list(store.rglob("*.dcm"))) == len(rows)
    assert not list((store / ".incoming").iterdir())
    integrity_ok(db)


def _make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ext = d / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=medview test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


def test_dicom_tls_echo_and_store(capsys, tmp_path, ct_copy, home):
    from medview.net.receiver import Receiver, ReceiverConfig

    ca, cert, key = _make_certs(tmp_path)
    db = tmp_path / "tls.sqlite"
    cfg = ReceiverConfig(
        port=0,
        db_path=str(db),
        store_dir=str(tmp_path / "st"),
        tls_cert=str(cert),
        tls_key=str(key),
    )
    with Receiver(cfg) as r:
        target = _dimse(r.port, "MEDVIEW")
        code, _, err = cli(capsys, "pacs", "echo", *target, "--tls-ca", str(ca))
        assert code == 0, err
        code, _, err = cli(
            capsys,
            "pacs",
            "send",
            *target,
            "--tls-ca",
            str(ca),
            str(sorted(ct_copy.glob("*.dcm"))[0]),
        )
        assert code == 0, err
        # plain DICOM against the TLS port: no association, exit 2
        code, _, err = cli(capsys, "pacs", "echo", *target, "--timeout", "5")
        assert code == 2 and err.count("\n") == 1
        # a CA that did not sign the server certificate: refused, exit 2
        (tmp_path / "other").mkdir()
        other, _, _ = _make_certs(tmp_path / "other")
        code, _, err = cli(
            capsys, "pacs", "echo", *target, "--tls-ca", str(other), "--timeout", "5"
        )
        assert code == 2
        assert r.flush(10)
    assert len(db_instances(db)) == 1
    integrity_ok(db)


def test_service_sop_class_uids_match_pynetdicom():
    """The SOP class UIDs medview names itself are the ones pynetdicom registers."""
    from pynetdicom import sop_class

    from medview.net import common

    assert common.VERIFICATION == sop_class.Verification
    assert common.PATIENT_ROOT_FIND == sop_class.PatientRootQueryRetrieveInformationModelFind
    assert common.STUDY_ROOT_FIND == sop_class.StudyRootQueryRetrieveInformationModelFind
    assert common.STUDY_ROOT_GET == sop_class.StudyRootQueryRetrieveInformationModelGet
    assert common.STUDY_ROOT_MOVE == sop_class.StudyRootQueryRetrieveInformationModelMove
