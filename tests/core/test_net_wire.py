"""The receive fast path: byte-level file meta and header walk (medview.net.wire) against
pydicom, and the event-driven pynetdicom loops (medview.net.reactor) over loopback."""

from __future__ import annotations

import io
import random
import threading
import time

import pytest

from tests.conftest import CT_DIR, need

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def _pydicom_meta(sop_class: str, sop_uid: str, ts: str) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDVIEW"
    buf = DicomBytesIO()
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, meta, enforce_standard=True)
    return buf.getvalue()


@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.3.45", "2.25." + "9" * 59])
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT, "1.2.840.10008.1.2.4.90"])
def test_file_meta_bytes_equal_pydicoms_writer(sop_uid: str, ts: str) -> None:
    from medview.net.wire import file_meta_bytes

    assert file_meta_bytes(CT, sop_uid, ts) == _pydicom_meta(CT, sop_uid, ts)


def test_file_meta_bytes_refuse_bad_uids() -> None:
    from medview.net.wire import MalformedDataset, file_meta_bytes

    for bad in ("", "1." * 40, "1.2.\u00e9"):
        with pytest.raises(MalformedDataset):
            file_meta_bytes(CT, bad, EXPLICIT)


def _encode(ds, ts: str) -> bytes:
    """``ds`` written in ``ts`` without preamble or file meta."""
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import write_dataset

    buf = io.BytesIO()
    fp = DicomFileLike(buf)
    fp.is_little_endian = True
    fp.is_implicit_VR = ts == IMPLICIT
    write_dataset(fp, ds)
    return buf.getvalue()


def _with_sequences():
    """A dataset with nested sequences of defined and undefined length."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientName = "Test^Walker"
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "9.9.9"
    item = Dataset()
    item.CodeValue = "X"
    item.ConceptCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, Dataset()])
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = b"\x00" * 8
    return ds


@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT])
def test_header_uids_read_what_pydicom_reads(ts: str) -> None:
    from medview.net.wire import header_uids

    raw = _encode(_with_sequences(), ts)
    assert header_uids(raw, ts) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")


def test_header_uids_on_the_real_ct() -> None:
    import pydicom

    from medview.net.wire import header_uids, walkable

    files = sorted(need(CT_DIR).glob("*.dcm"))
    assert files
    for f in files:
        raw = f.read_bytes()
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
        ts = str(ds.file_meta.TransferSyntaxUID)
        assert walkable(ts)
        start = 144 + int.from_bytes(raw[140:144], "little")  # after the file meta group
        expected = tuple(str(ds.get(k, "") or "") for k in KEYS)
        assert header_uids(raw[start:], ts) == expected


def test_header_uids_refuse_malformed_datasets() -> None:
    from medview.net.wire import MalformedDataset, header_uids

    raw = _encode(_with_sequences(), EXPLICIT)
    with pytest.raises(MalformedDataset):
        header_uids(b"garbage!" * 64, EXPLICIT)
    # cut inside an element or a sequence: refused (or, at an element boundary, the
    # UIDs of the part that is there); never another exception
    refused = 0
    for cut in range(1, len(raw)):
        try:
            header_uids(raw[:cut], EXPLICIT)
        except MalformedDataset:
            refused += 1
    assert refused > len(raw) // 2
    rng = random.Random(0)
    for _ in range(500):
        b = bytearray(raw)
        for _ in range(4):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            header_uids(bytes(b), EXPLICIT)
        except MalformedDataset:
            pass
    # sequences nested deeper than 64 levels
    deep = b"".join(
        b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
        for _ in range(80)
    )
    with pytest.raises(MalformedDataset, match="too deep"):
        header_uids(deep, EXPLICIT)


def test_store_accept_walks_or_falls_back_to_pydicom(tmp_path) -> None:
    from medview.net.store import Rejected, StudyStore
    from medview.net.wire import file_meta_bytes

    store = StudyStore(tmp_path / "st", min_free_bytes=0)
    ds = _with_sequences()
    raw = _encode(ds, EXPLICIT)
    meta = file_meta_bytes(CT, "1.2.3.4.5", EXPLICIT)
    a = store.accept([meta, raw], CT, "1.2.3.4.5", "X", EXPLICIT)
    assert a.study_uid == "1.2.3" and open(a.path, "rb").read() == meta + raw
    # implicit VR bytes sent as explicit: the walk fails, pydicom reads it (as before)
    raw_implicit = _encode(ds, IMPLICIT)
    b = store.accept([meta, raw_implicit], CT, "1.2.3.4.5", "X", EXPLICIT)
    assert b.series_uid == "1.2.3.4"
    with pytest.raises(Rejected):
        store.accept([meta, b"garbage!" * 64], CT, "1.2.3.4.5", "X", EXPLICIT)
    assert not list((tmp_path / "st" / ".incoming").iterdir())


def _echo_server(fast: bool):
    from pynetdicom import AE, evt

    from medview.net.common import VERIFICATION
    from medview.net.reactor import make_event_driven

    ae = AE("SCP")
    if fast:
        make_event_driven(ae)
    ae.add_supported_context(VERIFICATION)
    seen: list[str] = []

    def on_echo(event) -> int:
        seen.append(threading.current_thread().name)
        return 0

    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)]
    )
    return server, seen


def _echo_many(port: int, n: int) -> float:
    from medview.net import dimse
    from medview.net.common import VERIFICATION
    from medview.net.nodes import Node

    ae = dimse._make_ae("SCU", 10)
    ae.add_requested_context(VERIFICATION)
    node = Node(host="127.0.0.1", port=port, aet="SCP")
    t0 = time.perf_counter()
    with dimse._association(ae, node) as assoc:
        for _ in range(n):
            assert assoc.send_c_echo().Status == 0
    return time.perf_counter() - t0


def test_event_driven_associations_serve_requests_and_release() -> None:
    """Both sides event-driven: 200 C-ECHOs on one association, answered in the DUL
    thread, released cleanly; an unmarked AE keeps pynetdicom's loops."""
    server, seen = _echo_server(fast=True)
    try:
        _echo_many(int(server.server_address[1]), 200)
        assert len(seen) == 200
        assert all("AcceptorThread" not in name for name in seen)  # served by the DUL
        deadline = time.monotonic() + 15  # generous: the shared test machine is loaded
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.active_associations
    finally:
        server.shutdown()
    server, seen = _echo_server(fast=False)
    try:
        _echo_many(int(server.server_address[1]), 5)
        assert seen and all("AcceptorThread" in name for name in seen)
    finally:
        server.shutdown()
