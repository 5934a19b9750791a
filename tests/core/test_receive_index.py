"""The receiver indexes an arrival from the header it received, not by reading the file
again, and the database ends up exactly as indexing the stored files would leave it.

* every top-level header medview's walk accepts (pydicom's test files, the real CT):
  the InstanceInfo built from the received bytes equals ``read_header`` of the stored file;
* a real series pushed by dcmtk ``storescu``, and one retrieved by C-GET from Orthanc (JPEG 2000 as the CT comes, and the same
  images decompressed, sent as implicit and explicit VR little endian): every column of
  every row equals what ``index_files`` writes for the same files into a new database,
  and the stored files were not read back to index them.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")
pydicom = pytest.importorskip("pydicom")

from tests.helpers import net_fixtures  # noqa: E402
from tests.helpers.net_fixtures import integrity_ok, split_part10, storescu  # noqa: E402

# ct_copy (the real CT with its UIDs filled in) is a shared fixture (tests/conftest.py)

TABLES = {
    "patients": "patient_key",
    "studies": "study_uid",
    "series": "series_uid",
    "instances": "sop_uid, path",
}


def _test_files() -> list[str]:
    """pydicom's bundled test files (all of them: no download) and the real CT."""
    import pydicom.data

    from tests.conftest import CT_DIR

    bundled = Path(pydicom.data.__file__).parent / "test_files"
    files = [p for p in bundled.rglob("*") if p.is_file()]
    return sorted(map(str, files)) + sorted(str(p) for p in CT_DIR.glob("*.dcm"))


def test_header_from_received_bytes_equals_read_header(tmp_path: Path) -> None:
    from medview.errors import MedviewError
    from medview.io.dicom import read_header
    from medview.net.store import StudyStore
    from medview.net.wire import file_meta_bytes

    store = StudyStore(tmp_path / "store", min_free_bytes=0)
    compared = errors = 0
    for f in _test_files():
        parts = split_part10(f)
        if parts is None:
            continue
        data, sop_class, sop, ts = parts
        try:
            meta = file_meta_bytes(sop_class, sop, ts)
            arrival = store.accept([meta, data], sop_class, sop, "TEST", ts)
        except Exception:
            continue  # refused (no UIDs, big endian, ...): nothing stored, nothing to index
        if arrival.header is None:
            continue  # the walk left it to pydicom: the indexer reads the file
        try:
            expected = read_header(arrival.path)
        except MedviewError:
            errors += 1  # the indexer then falls back to read_header, with its reason
            continue
        got = arrival.header.instance_info(arrival.path)
        assert got == expected, f
        compared += 1
    assert compared >= 60 and errors < compared, (compared, errors)


def _rows(db: Path) -> dict[str, list[tuple]]:
    con = sqlite3.connect(db)
    try:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY {key}").fetchall()
            for t, key in TABLES.items()
        }
    finally:
        con.close()


@pytest.mark.parametrize("in_child", [False, True], ids=["indexer-thread", "indexer-process"])
def test_received_series_rows_equal_index_files(
    tmp_path: Path,
    ct_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
    in_child: bool,
) -> None:
    from medview.net.receiver import Receiver, ReceiverConfig
    from medview.net.store import Arrival

    pushes = [
        (sorted(ct_copy.glob("*.dcm")), "-xv"),  # JPEG 2000 lossless, as the CT comes
        (net_fixtures.decompressed_copy(ct_copy, tmp_path / "implicit", "implicit"), "-xi"),
        (net_fixtures.decompressed_copy(ct_copy, tmp_path / "explicit", "explicit"), "-xe"),
    ]
    reads = _count_file_reads(monkeypatch)
    # the receiver indexes in a child process by default; file reads are counted in this
    # process, so that check is made with the indexer thread
    monkeypatch.setattr(Receiver, "INDEX_IN_CHILD", in_child)
    db = tmp_path / "received.sqlite"
    arrivals: list[Arrival] = []
    cfg = ReceiverConfig(port=0, db_path=str(db), store_dir=str(tmp_path / "store"))
    with Receiver(cfg, on_arrival=arrivals.append) as receiver:
        for files, syntax in pushes:
            args = storescu(receiver.port, files, "CTSCANNER")
            args[args.index("-xv")] = syntax
            p = subprocess.run(args, capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
        assert receiver.flush(60)
    monkeypatch.undo()
    total = sum(len(files) for files, _ in pushes)
    assert len(arrivals) == total == 60 and all(a.indexed for a in arrivals)
    if not in_child:
        assert reads == []  # indexed from the received headers: no file read back
    syntaxes = {
        pydicom.dcmread(a.path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        for a in arrivals
    }
    assert syntaxes == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

    got, expected = _rows(db), _reference_rows(tmp_path, [a.path for a in arrivals])
    assert [len(got[t]) for t in TABLES] == [1, 1, 3, 60]
    for table in TABLES:
        assert got[table] == expected[table], table
    integrity_ok(db)


def test_c_get_rows_equal_index_files(
    tmp_path: Path, orthanc, study_uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C-GET (and C-MOVE, whose instances arrive at the same handler) index the same way."""
    from medview.net import dimse
    from medview.net.nodes import Node

    reads = _count_file_reads(monkeypatch)
    db = tmp_path / "get.sqlite"
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet)
    res = dimse.get(node, study_uid, db_path=str(db), store_dir=str(tmp_path / "st"))
    monkeypatch.undo()
    assert res["stored"] == 20 and reads == []
    got, expected = _rows(db), _reference_rows(tmp_path, res["paths"])
    assert [len(got[t]) for t in TABLES] == [1, 1, 1, 20]
    for table in TABLES:
        assert got[table] == expected[table], table
    integrity_ok(db)


def _count_file_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths whose header ``read_header`` parses from the file (not from a received
    header) from now on."""
    import medview.io.dicom

    reads: list[str] = []
    original = medview.io.dicom.read_header

    def counting_read_header(path: str, parsed: tuple | None = None) -> object:
        if parsed is None:
            reads.append(str(path))
        return original(path, parsed)

    monkeypatch.setattr(medview.io.dicom, "read_header", counting_read_header)
    return reads


def _reference_rows(tmp_path: Path, paths: list[str]) -> dict[str, list[tuple]]:
    """The rows ``index_files`` writes for the stored files at ``paths``, read from disk
    (no received header), into a new database."""
    from medview.io.database import StudyDatabase
    from medview.net.store import Arrival, index_files

    ref = StudyDatabase(tmp_path / "reference.sqlite")
    index_files(ref, [Arrival("", "", "", "", p) for p in paths])
    ref.close()
    return _rows(tmp_path / "reference.sqlite")


def test_header_over_the_cap_is_read_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A header larger than MAX_KEPT_HEADER is not kept in memory; the indexer reads the
    stored file instead, with the same result."""
    import pydicom.data

    import medview.net.store as store_module
    from medview.io.database import StudyDatabase
    from medview.net.store import StudyStore, index_files
    from medview.net.wire import file_meta_bytes

    ct = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    parts = split_part10(str(ct))
    assert parts is not None
    data, sop_class, sop, ts = parts
    meta = file_meta_bytes(sop_class, sop, ts)
    store = StudyStore(tmp_path / "st", min_free_bytes=0)
    kept = store.accept([meta, data], sop_class, sop, "X", ts)
    monkeypatch.setattr(store_module, "MAX_KEPT_HEADER", 64)
    over = store.accept([meta, data], sop_class, sop, "X", ts)
    assert kept.header is not None and over.header is None
    reads = _count_file_reads(monkeypatch)
    db = StudyDatabase(tmp_path / "db.sqlite")
    index_files(db, [over])
    db.close()
    assert over.indexed and reads == [os.path.abspath(over.path)]
    assert _rows(tmp_path / "db.sqlite") == _reference_rows(tmp_path, [kept.path])
