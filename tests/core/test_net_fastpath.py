"""The storage SCP's C-STORE fast path (medview.net.fastpath) against pynetdicom's own
encoder and decoder, dcmtk's storescu and pynetdicom as the sending side."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
import warnings
from io import BytesIO
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")
pydicom = pytest.importorskip("pydicom")

from medview.net import fastpath  # noqa: E402
from tests.helpers import net_fixtures as nf  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"


def _encoded_command(primitive, message_class) -> bytes:
    from pynetdicom.dsutils import encode

    msg = message_class()
    msg.primitive_to_message(primitive)
    return bytes(encode(msg.command_set, True, True))


def _store_rq(**fields):
    from pynetdicom.dimse_primitives import C_STORE

    rq = C_STORE()
    rq.MessageID = 3
    rq.AffectedSOPClassUID = CT
    rq.AffectedSOPInstanceUID = "1.2.3.45"
    rq.Priority = 2
    rq.DataSet = BytesIO(b"\0\0")
    for k, v in fields.items():
        setattr(rq, k, v)
    return rq


def test_command_parsed_as_pynetdicom_encodes_it() -> None:
    from pynetdicom.dimse_messages import C_STORE_RQ

    plain = fastpath.parse_command(_encoded_command(_store_rq(), C_STORE_RQ))
    assert plain is not None
    assert (plain[0x0002], plain[0x0110], plain[0x1000], plain[0x0700]) == (
        CT,
        3,
        "1.2.3.45",
        2,
    )
    moved = _store_rq(MoveOriginatorApplicationEntityTitle="ORTHANC", MoveOriginatorMessageID=9)
    fields = fastpath.parse_command(_encoded_command(moved, C_STORE_RQ))
    assert fields is not None and (fields[0x1030], fields[0x1031]) == ("ORTHANC", 9)


def test_other_commands_and_malformed_ones_are_left_to_pynetdicom() -> None:
    from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
    from pynetdicom.dimse_primitives import C_ECHO

    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    assert fastpath.parse_command(_encoded_command(echo, C_ECHO_RQ)) is None
    good = _encoded_command(_store_rq(), C_STORE_RQ)
    assert fastpath.parse_command(good) is not None
    assert fastpath.parse_command(good[:-3]) is None  # cut short
    wrong_length = good[:8] + struct.pack("<L", 5) + good[12:]
    assert fastpath.parse_command(wrong_length) is None  # group length does not add up
    extra = good + struct.pack("<HHL", 0, 0x0902, 4) + b"TEXT"  # Error Comment: not in an RQ
    assert fastpath.parse_command(extra) is None
    other_group = good + struct.pack("<HHL", 8, 0x0018, 2) + b"1\0"
    assert fastpath.parse_command(other_group) is None


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xC000])
def test_response_is_byte_identical_to_pynetdicom(status: int) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    for sop in ("1.2.3.4", "1.2.3.45"):  # odd and even length: padded as pynetdicom pads
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 7
        rsp.AffectedSOPClassUID = CT
        rsp.AffectedSOPInstanceUID = sop
        rsp.Status = status
        assert fastpath.store_response(7, CT, sop, status) == _encoded_command(rsp, C_STORE_RSP)


def test_p_data_tf_fragments_decode_with_pynetdicom() -> None:
    from pynetdicom.pdu import P_DATA_TF

    command = bytes(range(256)) * 3
    for max_length, pdus in ((0, 1), (106, 8), (6 + 767, 2)):
        raw = fastpath.p_data_tf(5, command, max_length)
        got, controls, i, count = b"", [], 0, 0
        while i < len(raw):
            length = struct.unpack_from(">L", raw, i + 2)[0]
            # the peer's maximum bounds the PDU's variable field (PS3.8 D.1)
            assert not max_length or length <= max_length
            pdu = P_DATA_TF()
            pdu.decode(raw[i : i + 6 + length])
            (item,) = pdu.presentation_data_value_items
            assert item.presentation_context_id == 5
            data = item.presentation_data_value
            controls.append(data[0])
            got += data[1:]
            i += 6 + length
            count += 1
        assert got == command and count == pdus
        assert controls == [0x01] * (pdus - 1) + [0x03]  # command fragments, last flagged


def _receiver(tmp_path: Path, **config):
    from medview.net.receiver import Receiver, ReceiverConfig

    cfg = ReceiverConfig(
        port=0,
        db_path=str(tmp_path / "db.sqlite"),
        store_dir=str(tmp_path / "store"),
        min_free_bytes=0,
        **config,
    )
    return Receiver(cfg)


def _count_fast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    served: list[str] = []
    complete = fastpath.Reader._complete

    def counting(self):
        served.append(self.request.sop_uid)
        return complete(self)

    monkeypatch.setattr(fastpath.Reader, "_complete", counting)
    return served


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "pynetdicom"])
def test_small_pdus_store_the_same_files_either_way(
    tmp_path: Path, ct_copy: Path, monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """storescu sending 16 KiB PDUs (each dataset in 30+ fragments, command and data in
    separate PDUs): every instance is stored whole, identical to what was sent, and
    indexed; the fast path served them all, or none when it is off."""
    from medview.net.receiver import Receiver

    monkeypatch.setattr(Receiver, "FAST_PATH", fast)
    served = _count_fast(monkeypatch)
    files = nf.decompressed_copy(ct_copy, tmp_path / "sent", "small-pdus", 6)  # 512 KiB each
    with _receiver(tmp_path, max_pdu=16384) as r:
        p = subprocess.run(
            nf.storescu(r.port, files, "CTSCANNER"), capture_output=True, timeout=120
        )
        assert p.returncode == 0, p.stderr
        assert r.flush(30)
    rows = nf.db_instances(tmp_path / "db.sqlite")
    assert len(rows) == len(files)
    assert len(served) == (len(files) if fast else 0)
    by_sop = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    for sop, path in rows:
        nf.same_instance(Path(path), by_sop[sop])
    nf.integrity_ok(tmp_path / "db.sqlite")


def test_echo_and_store_interleaved_on_one_association(
    tmp_path: Path, ct_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-ECHO (pynetdicom serves it) between C-STOREs (the fast path serves them), and a
    refused dataset, all on one association: each answered, in order."""
    from pynetdicom import AE

    served = _count_fast(monkeypatch)
    files = sorted(ct_copy.glob("*.dcm"))[:2]
    hostile = pydicom.dcmread(files[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of the invalid UID
        hostile.StudyInstanceUID = "../../etc"  # not a UID: refused (C000)
    with _receiver(tmp_path) as r:
        ae = AE(ae_title="MIXED")
        ae.add_requested_context("1.2.840.10008.1.1")
        ae.add_requested_context(CT, "1.2.840.10008.1.2.4.90")
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.is_established
        statuses = [assoc.send_c_echo().Status]
        statuses.append(assoc.send_c_store(pydicom.dcmread(files[0])).Status)
        statuses.append(assoc.send_c_echo().Status)
        statuses.append(assoc.send_c_store(hostile).Status)
        statuses.append(assoc.send_c_echo().Status)
        assoc.release()
        assert r.flush(30)
    assert statuses == [0, 0, 0, 0xC000, 0]
    assert len(served) == 2  # the two C-STOREs
    rows = nf.db_instances(tmp_path / "db.sqlite")
    assert len(rows) == 1
    nf.same_instance(Path(rows[0][1]), files[0])


def test_c_store_on_another_sop_class_context_is_left_to_pynetdicom(
    tmp_path: Path, ct_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A C-STORE-RQ whose SOP class is not its context's: pynetdicom answers it as it
    always has (not stored), the fast path does not serve it."""
    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    served = _count_fast(monkeypatch)
    ds = pydicom.dcmread(sorted(ct_copy.glob("*.dcm"))[0])
    with _receiver(tmp_path) as r:
        ae = AE(ae_title="ODD")
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2.4.90")  # MR
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.is_established
        cx = assoc.accepted_contexts[0]
        rq = C_STORE()
        rq.MessageID = 1
        rq.AffectedSOPClassUID = CT  # on the MR context
        rq.AffectedSOPInstanceUID = ds.SOPInstanceUID
        rq.Priority = 2
        rq.DataSet = BytesIO(encode(ds, False, True))  # explicit VR little endian
        # as pynetdicom's send_c_*() do: pause the association's reactor, or it may take
        # the response off the queue first
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.001)
        assoc.dimse.send_msg(rq, cx.context_id)
        _cx, rsp = assoc.dimse.get_msg(block=True)
        assoc._reactor_checkpoint.set()
        assoc.release()
        assert r.flush(30)
    assert served == []
    assert rsp is not None and rsp.Status is not None  # pynetdicom answered it


def _established_socket(port: int) -> tuple[socket.socket, int]:
    """A raw socket with an association accepted by the receiver (CT, explicit VR LE),
    and the accepted presentation context's ID."""
    from pynetdicom import AE

    ae = AE(ae_title="RAW")
    ae.add_requested_context(CT, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDVIEW")
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    # take the socket away from pynetdicom's reactor: it is stopped without a goodbye
    sock = assoc.dul.socket.socket
    assoc.dul.socket.socket = None
    assoc.dul._kill_thread = True
    assoc._kill = True
    return sock, context_id


def test_a_huge_pdu_length_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A P-DATA-TF announcing 2 GiB: the association is aborted at once (no 2 GiB buffer),
    the listener keeps serving."""
    with _receiver(tmp_path, max_pdu=65536) as r:
        sock, _ = _established_socket(r.port)
        sock.settimeout(10)
        sock.sendall(struct.pack(">BBL", 4, 0, 2**31) + b"\0" * 64)
        answer = sock.recv(64)
        assert answer[:1] == b"\x07"  # A-ABORT
        sock.close()
        # the listener is still there
        from pynetdicom import AE

        ae = AE(ae_title="AFTER")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.is_established and assoc.send_c_echo().Status == 0
        assoc.release()


def test_interleaved_messages_and_a_cut_pdu_abort_cleanly(tmp_path: Path, ct_copy: Path) -> None:
    """A command fragment in the middle of a dataset, and a PDU whose item runs past its
    end: each aborts its association; nothing partial is stored or indexed."""
    from pynetdicom.dimse_messages import C_STORE_RQ

    raw = sorted(ct_copy.glob("*.dcm"))[0].read_bytes()
    command = _encoded_command(_store_rq(), C_STORE_RQ)
    with _receiver(tmp_path) as r:
        for bad in ("interleaved", "cut"):
            sock, cx = _established_socket(r.port)
            sock.settimeout(10)
            pdus = fastpath.p_data_tf(cx, command)
            data = raw[1000:5000]
            pdv = struct.pack(">LBB", len(data) + 2, cx, 0x00) + data
            pdus += struct.pack(">BBL", 4, 0, len(pdv)) + pdv
            if bad == "interleaved":
                pdus += fastpath.p_data_tf(cx, command)
            else:
                cut = struct.pack(">LBB", 9999, cx, 0x02) + b"\0" * 10
                pdus += struct.pack(">BBL", 4, 0, len(cut)) + cut
            sock.sendall(pdus)
            answer = sock.recv(64)
            assert answer[:1] == b"\x07", bad  # A-ABORT
            sock.close()
        deadline = time.monotonic() + 10
        while r.receiving_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.flush(10)
    assert nf.db_instances(tmp_path / "db.sqlite") == []
    assert not list((tmp_path / "store").rglob("*.dcm"))


def test_c_get_sub_operations_take_the_fast_path(
    tmp_path: Path, orthanc, study_uid: str, ct_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-GET from a real Orthanc: the C-STOREs it sends on our association are served by
    the fast path, its C-GET responses by pynetdicom; the files are whole and indexed."""
    from medview.net import dimse
    from medview.net.nodes import Node

    served = _count_fast(monkeypatch)
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet)
    db = tmp_path / "get.sqlite"
    got = dimse.get(node, study_uid, db_path=str(db), store_dir=str(tmp_path / "st"))
    assert got["stored"] == got["completed"] == 20 and got["failed"] == 0
    assert len(served) == 20
    by_sop = dict(nf.db_instances(db))
    for f in sorted(ct_copy.glob("*.dcm"))[:3]:
        nf.same_instance(
            Path(by_sop[str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)]), f
        )
    nf.integrity_ok(db)


def test_c_get_wait_counts_fast_path_stores_as_activity() -> None:
    """pynetdicom waits at most the DIMSE timeout for a C-GET's next response; C-STOREs the
    fast path serves meanwhile count as activity (a PACS need not send pending responses),
    and the wait still ends a timeout after the last one."""
    import queue
    import threading
    from types import SimpleNamespace

    q: queue.Queue = queue.Queue()
    assoc = SimpleNamespace(dimse=SimpleNamespace(msg_queue=q), is_established=True)
    reader = SimpleNamespace(last_served=time.monotonic())
    fastpath._keep_waiting(assoc, reader)  # type: ignore[arg-type]

    def serving(n: int) -> None:
        for _ in range(n):
            time.sleep(0.1)
            reader.last_served = time.monotonic()
        q.put((1, "final response"))

    t = threading.Thread(target=serving, args=(8,))
    t.start()
    assert q.get(True, 0.3) == (1, "final response")  # 0.8 s, well past 0.3 s
    t.join()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(True, 0.3)  # nothing served: the timeout holds
    assert 0.25 < time.monotonic() - t0 < 2


def test_dataset_in_fragments_split_anywhere_stores_the_same(tmp_path: Path, ct_copy: Path) -> None:
    """The store takes a dataset in fragments as they arrived (not joined): split at every
    element boundary of the header, and elsewhere, it writes the same bytes and keeps the
    same header for the indexer as for the dataset in one piece."""
    from medview.net.store import StudyStore
    from medview.net.wire import file_meta_bytes, walk_header

    parts = nf.split_part10(str(sorted(ct_copy.glob("*.dcm"))[0]))
    assert parts is not None
    data, sop_class, sop, ts = parts
    meta = file_meta_bytes(sop_class, sop, ts)
    whole = StudyStore(tmp_path / "whole", min_free_bytes=0).accept(
        [meta, data], sop_class, sop, "X", ts
    )
    expected = Path(whole.path).read_bytes()
    assert whole.header is not None
    walk = walk_header(data, ts)
    cuts = sorted(
        {e[3] for e in walk.elements}
        | {e[3] - 3 for e in walk.elements}
        | {walk.end, walk.end + 1, 7}
    )
    for n, cut in enumerate(c for c in cuts if 0 < c < len(data)):
        view = memoryview(data)
        fragments = [view[:cut], view[cut : cut + 5000], view[cut + 5000 :]]
        store = StudyStore(tmp_path / f"cut{n}", min_free_bytes=0)
        got = store.accept([meta, *fragments], sop_class, sop, "X", ts)
        assert Path(got.path).read_bytes() == expected, cut
        assert got.header is not None and got.header.data == whole.header.data, cut
        assert got.header.meta_length == whole.header.meta_length == len(meta)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_files_written_as_they_arrive_leave_no_descriptor_or_file(
    tmp_path: Path, ct_copy: Path
) -> None:
    """Instances are written to files without a name while their PDUs arrive: one sender
    dropped mid-instance and one refused instance leave neither a file nor an open
    descriptor once the receiver stops; the complete ones are stored whole."""
    from pynetdicom.dimse_messages import C_STORE_RQ

    from medview.net.wire import file_meta_bytes

    def open_fds() -> list[str]:
        return sorted(os.readlink(f) for f in Path("/proc/self/fd").iterdir() if f.exists())

    files = sorted(ct_copy.glob("*.dcm"))[:3]
    with _receiver(tmp_path / "warm-up") as r:  # opens the process-wide ones (forkserver, /)
        subprocess.run(nf.storescu(r.port, files[:1]), capture_output=True, timeout=60)
    before = open_fds()
    with _receiver(tmp_path) as r:
        sock, cx = _established_socket(r.port)  # dropped after half a dataset
        data, sop_class, sop, ts = nf.split_part10(str(files[0]))
        assert file_meta_bytes(sop_class, sop, ts)  # a valid request: its file was begun
        command = _encoded_command(_store_rq(AffectedSOPInstanceUID=sop), C_STORE_RQ)
        half = data[: len(data) // 2]
        pdv = struct.pack(">LBB", len(half) + 2, cx, 0x00) + half
        sock.sendall(fastpath.p_data_tf(cx, command) + struct.pack(">BBL", 4, 0, len(pdv)) + pdv)
        deadline = time.monotonic() + 10
        while r.receiving_bytes() < len(half) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.receiving_bytes() >= len(half)
        sock.close()
        p = subprocess.run(nf.storescu(r.port, files, "CTSCANNER"), capture_output=True, timeout=60)
        assert p.returncode == 0
        from pynetdicom import AE

        hostile = pydicom.dcmread(files[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hostile.SeriesInstanceUID = "1.2.3/../../x"
        ae = AE(ae_title="HOSTILE")
        ae.add_requested_context(CT, "1.2.840.10008.1.2.4.90")
        assoc = ae.associate("127.0.0.1", r.port, ae_title="MEDVIEW")
        assert assoc.send_c_store(hostile).Status == 0xC000
        assoc.release()
        assert r.flush(30)
    assert len(nf.db_instances(tmp_path / "db.sqlite")) == 3
    assert len(list((tmp_path / "store").rglob("*.dcm"))) == 3
    assert open_fds() == before
