"""Real network peers shared by the networking tests (tests/core/test_net.py, tests/ui/test_net_gui.py).

* ``orthanc``: a real Orthanc (DIMSE + DICOMweb plugin) for the session, loopback only, its
  own free ports and storage folder, with the ``ct_copy`` series uploaded and ``MEDVIEW`` at
  ``orthanc.move_port`` in its modalities (the C-MOVE destination).
* ``ct_copy``: the real CT of ../shared/data with the Study/Series/SOP Instance UIDs its
  datasets lack filled in and a test patient (pixel data untouched).
* ``dcmtk(name)``: dcmtk's binary (not pynetdicom's same-named apps); skips when absent.
* ``storescu(port, files)`` / ``echoscu(port)``: the command lines that push to (or echo)
  a storage SCP on 127.0.0.1 called ``MEDVIEW``.

Import the fixtures into a test module (``from tests.helpers.net_fixtures import orthanc, ...``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest

pydicom = pytest.importorskip("pydicom")

PATIENT_ID = "MVNET001"
PATIENT_NAME = "TEST^CT^NET"
ACCESSION = "ACC-NET-1"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


# -- helpers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dcmtk(name: str) -> str:
    """The dcmtk binary ``name`` (pynetdicom installs Python apps with the same names,
    which may come first on PATH: use the one whose --version says dcmtk)."""
    candidates = [f"/usr/bin/{name}"] + [
        os.path.join(d, name) for d in os.environ.get("PATH", "").split(os.pathsep)
    ]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            try:
                out = subprocess.run([c, "--version"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return c
    pytest.skip(f"dcmtk's {name} is not installed (apt-get install dcmtk)")


def storescu(
    port: int, files: Iterable[Path | str] = (), aet: str | None = None, verbose: bool = False
) -> list[str]:
    """dcmtk's storescu sending ``files`` (explicit VR little endian proposed first) to
    ``MEDVIEW`` at 127.0.0.1:``port``, calling as ``aet`` (dcmtk's default when None)."""
    args = [dcmtk("storescu")] + (["-v"] if verbose else [])
    args += ["-aet", aet] if aet else []
    return args + ["-aec", "MEDVIEW", "-xv", "127.0.0.1", str(port), *map(str, files)]


def receive_command(port: int, db: Path | str, *options: str) -> list[str]:
    """``medview receive`` on ``port`` filing into the database ``db``, one JSON line per
    stored instance, with more ``options``."""
    return [sys.executable, "-m", "medview", "receive", "--port", str(port), "--json"] + [
        "--db",
        str(db),
        *options,
    ]


def echoscu(port: int, aet: str | None = None) -> list[str]:
    """dcmtk's echoscu asking ``MEDVIEW`` at 127.0.0.1:``port``, calling as ``aet``."""
    args = [dcmtk("echoscu")] + (["-aet", aet] if aet else [])
    return args + ["-aec", "MEDVIEW", "127.0.0.1", str(port)]


def integrity_ok(db: Path) -> None:
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def db_instances(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT sop_uid, path FROM instances ORDER BY sop_uid").fetchall()
    finally:
        con.close()


def decompressed_copy(src: Path, dest: Path, tag: str, count: int | None = None) -> list[Path]:
    """The images of ``src`` (the first ``count``) as a new series, decompressed
    (explicit VR little endian)."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dest.mkdir(parents=True)
    series = generate_uid(entropy_srcs=[tag, "series"])
    for f in sorted(src.glob("*.dcm"))[:count]:
        ds = pydicom.dcmread(f)
        ds.decompress()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, str(ds.SOPInstanceUID)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dest / f.name, enforce_file_format=True)
    return sorted(dest.glob("*.dcm"))


def same_instance(a: Path, b: Path) -> None:
    """Headers and pixel data identical (file meta aside: the receiver writes its own)."""
    da, db_ = pydicom.dcmread(a), pydicom.dcmread(b)
    assert da.file_meta.TransferSyntaxUID == db_.file_meta.TransferSyntaxUID
    assert da.PixelData == db_.PixelData
    assert da == db_


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ct_copy(tmp_path_factory) -> Path:
    from pydicom.uid import generate_uid

    from tests.conftest import CT_DIR, need

    src = need(CT_DIR)
    out = tmp_path_factory.mktemp("ct_copy")
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", ds.FrameOfReferenceUID])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", ds.FrameOfReferenceUID])
        ds.PatientID = PATIENT_ID
        ds.PatientName = PATIENT_NAME
        ds.AccessionNumber = ACCESSION
        ds.save_as(out / f.name, enforce_file_format=True)
    return out


def _copy_as_new_series(src: Path, dest: Path, tag: str) -> Path:
    """The same images as another series (new Series and SOP Instance UIDs)."""
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[tag, "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, str(ds.SOPInstanceUID)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(dest / f.name, enforce_file_format=True)
    return dest


class OrthancServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.move_port = free_port()  # where Orthanc sends C-MOVEs for AE MEDVIEW
        self.aet = "ORTHANC"
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        if not os.path.exists(exe):
            pytest.skip("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
        if not os.path.exists(DICOMWEB_PLUGIN):
            pytest.skip("the Orthanc DICOMweb plugin is not installed (orthanc-dicomweb)")
        storage = self.root / "storage"
        config = {
            "Name": "medview-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {"medview": ["MEDVIEW", "127.0.0.1", self.move_port]},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckModalityHost": False,
            "HttpThreadsCount": 4,
            "ConcurrentJobs": 2,
            "SaveJobs": False,
        }
        cfg = self.root / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([exe, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited: {(self.root / 'orthanc.log').read_text()[-500:]}"
                )
            try:
                self.rest("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not answer within 30 s")

    def rest(self, path: str, data: bytes | None = None) -> object:
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def upload(self, files: list[Path]) -> None:
        for f in files:
            self.rest("/instances", f.read_bytes())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory, ct_copy) -> OrthancServer:
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        server.upload(sorted(ct_copy.glob("*.dcm")))
        yield server
    finally:
        server.stop()


@pytest.fixture()
def study_uid(ct_copy) -> str:
    return str(
        pydicom.dcmread(next(ct_copy.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    )


def split_part10(path: str) -> tuple[bytes, str, str, str] | None:
    """(dataset bytes, SOP class, SOP instance, transfer syntax) of a Part 10 file."""
    import struct
    import warnings

    import pydicom

    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = pydicom.filereader.read_file_meta_info(path)
        ts = str(meta.TransferSyntaxUID)
        sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
        sop = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
        group_length = struct.unpack_from("<I", raw, 140)[0]
    except Exception:
        return None
    return raw[144 + group_length :], sop_class, sop, ts
