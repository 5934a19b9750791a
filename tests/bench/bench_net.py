"""Benchmark: DICOM networking against dcmtk and Orthanc, in one run on one machine.

Run: ``python3 -m tests.bench.bench_net [--slices 300] [--repeat 3] [--compressed]``.
Needs ../shared/data, dcmtk (storescu, storescp, getscu) and Orthanc (Debian packages).

1. Receive: dcmtk ``storescu`` pushes the N-slice CT series (built from the real CT by
   tests/helpers/series.py) into ``medview receive`` (a separate process, started and
   listening before the clock starts) and, alternately, into dcmtk's own ``storescp -od``.
   medview's time runs until the last instance is indexed in the database (its JSON line
   printed), storescp's until storescu exits (storescp writes before it answers).
2. C-GET: the same series from a real Orthanc, by ``medview.net.dimse.get`` (stores and
   indexes) and by dcmtk ``getscu -od`` (stores only). The medview CLI adds Python's
   start-up (about 1 s here), measured separately.

Times are medians of ``--repeat`` runs, alternating the two sides to share the noise.
Every run's files are kept until the benchmark ends: on a journal-less ext4 (the
development VM's) the inode allocator steps over each inode freed in the last ~30 s, so
deleting a run's 300 files made file creation in the next runs cost 1.1 to 1.4 ms
instead of 0.05 to 0.2 ms, on both sides (perf: ``recently_deleted``; docs/net.md). Wait
half a minute after deleting many files before running it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

from tests.helpers.net_fixtures import free_port, receive_command  # noqa: E402
from tests.helpers.series import build_series  # noqa: E402

# max receive PDU (medview, dcmtk); set by --pdu. dcmtk's own default is 16384.
PDU = [1024 * 1024, 16384]
# Debian's dcmtk leaves Nagle's algorithm on unless TCP_NODELAY=1 is in the environment;
# with it on, every instance waits ~40 ms for a delayed ACK on loopback. --dcmtk-nagle keeps
# that default; otherwise dcmtk runs at its best.
DCMTK_ENV = dict(os.environ, TCP_NODELAY="1")


def dcmtk(name: str) -> str:
    for c in (f"/usr/bin/{name}", shutil.which(name) or ""):
        if c and os.path.exists(c):
            out = subprocess.run([c, "--version"], capture_output=True, text=True)
            if "dcmtk" in (out.stdout + out.stderr).lower():
                return c
    raise SystemExit(f"needs dcmtk's {name} (apt-get install dcmtk)")


def make_series(root: Path, n: int, compressed: bool) -> list[Path]:
    """The bench series, with SOP Class UID filled in (the source CT has it only in the
    file meta, and storescu needs it in the dataset)."""
    import pydicom

    folder = build_series(root / "series", n, compressed=compressed)
    files = sorted(folder.glob("*.dcm"))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.save_as(f, enforce_file_format=True)
    return files


def storescu(port: int, aec: str, files: list[Path]) -> None:
    args = [dcmtk("storescu"), "-aet", "BENCH", "-aec", aec, "-xv", "127.0.0.1", str(port)]
    p = subprocess.run(
        args + [str(f) for f in files], capture_output=True, text=True, env=DCMTK_ENV
    )
    if p.returncode != 0:
        raise SystemExit(f"storescu failed: {p.stderr.strip()[-300:]}")


def bench_medview_receive(tmp: Path, files: list[Path]) -> float:
    port = free_port()
    run = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(os.environ, MEDVIEW_HOME=str(run / "home"))
    proc = subprocess.Popen(
        receive_command(
            port, run / "db.sqlite", "--store", str(run / "store"), "--min-free-mb", "64"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = proc.stderr.readline()
        if "listening" not in line:
            raise SystemExit(f"medview receive did not start: {line}")
        # read its JSON lines while storescu runs, as a consumer would: unread, 300 lines
        # fill the pipe and its indexer thread would wait for the bench, not for work
        done: list[float] = []

        def read_lines() -> None:
            for n, _line in enumerate(proc.stdout, start=1):
                if n == len(files):
                    done.append(time.perf_counter())
                    return

        reader = threading.Thread(target=read_lines, daemon=True)
        reader.start()
        t0 = time.perf_counter()
        storescu(port, "MEDVIEW", files)
        reader.join(120)
        if not done:
            raise SystemExit("medview receive ended early or did not index everything")
        elapsed = done[0] - t0
    finally:
        proc.terminate()
        proc.wait(30)
    return elapsed


def bench_pynetdicom_floor(files: list[Path], event_driven: bool = False) -> float:
    """A bare pynetdicom SCP whose handler only answers Success (stores nothing): the
    ceiling of a receiver on pynetdicom's own polling loops on this machine; with
    ``event_driven``, on medview's loops (medview.net.reactor) instead."""
    import logging

    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from medview.net.common import accepted_transfer_syntaxes

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    ae = AE("MEDVIEW")
    if event_driven:
        from medview.net.reactor import make_event_driven

        make_event_driven(ae)
    ae.maximum_pdu_size = PDU[0]
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, list(accepted_transfer_syntaxes()))
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)]
    )
    try:
        t0 = time.perf_counter()
        storescu(int(server.server_address[1]), "MEDVIEW", files)
        return time.perf_counter() - t0
    finally:
        server.shutdown()


def bench_storescp(tmp: Path, files: list[Path]) -> float:
    port = free_port()
    out = Path(tempfile.mkdtemp(dir=tmp))
    proc = subprocess.Popen(
        [
            dcmtk("storescp"),
            "-aet",
            "STORESCP",
            "-od",
            str(out),
            "+xa",
            "--max-pdu",
            str(PDU[1]),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    try:
        for _ in range(100):  # until it listens
            if (
                subprocess.run(
                    [dcmtk("echoscu"), "-aec", "STORESCP", "127.0.0.1", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            ):
                break
            time.sleep(0.05)
        t0 = time.perf_counter()
        storescu(port, "STORESCP", files)
        elapsed = time.perf_counter() - t0
        assert len(list(out.iterdir())) == len(files)
    finally:
        proc.terminate()
        proc.wait(30)
    return elapsed


def bench_medview_get(tmp: Path, orthanc, study_uid: str, n: int) -> float:
    from medview.net import dimse
    from medview.net.nodes import Node

    run = Path(tempfile.mkdtemp(dir=tmp))
    node = Node(host="127.0.0.1", port=orthanc.dicom_port, aet=orthanc.aet)
    t0 = time.perf_counter()
    res = dimse.get(
        node, study_uid, db_path=str(run / "db.sqlite"), store_dir=str(run / "st"), max_pdu=PDU[0]
    )
    elapsed = time.perf_counter() - t0
    assert res["stored"] == n, res
    return elapsed


def bench_medview_get_cli(tmp: Path, orthanc, study_uid: str, n: int) -> float:
    run = Path(tempfile.mkdtemp(dir=tmp))
    env = dict(os.environ, MEDVIEW_HOME=str(run / "home"))
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "medview",
            "pacs",
            "get",
            "--host",
            "127.0.0.1",
            "--port",
            str(orthanc.dicom_port),
            "--aet",
            orthanc.aet,
            "--study",
            study_uid,
            "--json",
            "--db",
            str(run / "db.sqlite"),
            "--store",
            str(run / "st"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - t0
    assert p.returncode == 0 and json.loads(p.stdout)["stored"] == n, p.stderr
    return elapsed


def bench_getscu(tmp: Path, orthanc, study_uid: str, n: int) -> float:
    out = Path(tempfile.mkdtemp(dir=tmp))
    t0 = time.perf_counter()
    p = subprocess.run(
        [
            dcmtk("getscu"),
            "-aet",
            "MEDVIEW",
            "-aec",
            orthanc.aet,
            "-S",
            "-od",
            str(out),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study_uid}",
            "127.0.0.1",
            str(orthanc.dicom_port),
        ],
        capture_output=True,
        text=True,
        env=DCMTK_ENV,
    )
    elapsed = time.perf_counter() - t0
    got = len(list(out.iterdir()))
    assert got == n, (got, p.stderr[-300:])
    return elapsed


TARGET = 0.8  # issue 12: medview at least 0.8x dcmtk's throughput, same machine, same run


def _ratios(theirs: list[float], ours: list[float]) -> str:
    """dcmtk time / medview time of each repeat (they alternate, so each pair shares
    the machine's load)."""
    return "  ".join(f"{d / m:.2f}x" for d, m in zip(theirs, ours, strict=False))


def _verdict(what: str, ratio: float) -> str:
    met = "MET" if ratio >= TARGET else "NOT met"
    return (
        f"         => {what} ratio of the medians {ratio:.2f}x vs target >= {TARGET:.2f}x: {met} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--compressed", action="store_true", help="JPEG 2000 lossless series")
    ap.add_argument(
        "--pdu",
        type=int,
        help="max receive PDU for both sides (dcmtk allows up to 131072); default: each "
        "side's own default (medview 1 MiB, dcmtk 16384)",
    )
    ap.add_argument("--dcmtk-nagle", action="store_true", help="dcmtk without TCP_NODELAY=1")
    args = ap.parse_args()
    if args.dcmtk_nagle:
        DCMTK_ENV.pop("TCP_NODELAY", None)
    if args.pdu:
        PDU[:] = [args.pdu, args.pdu]
    nagle = "off (TCP_NODELAY=1)" if "TCP_NODELAY" in DCMTK_ENV else "on (Debian default)"
    print(f"max receive PDU: medview {PDU[0]}, dcmtk {PDU[1]}; dcmtk Nagle {nagle}")
    tmp = Path(tempfile.mkdtemp(prefix="medview-bench-net-"))
    try:
        files = make_series(tmp, args.slices, args.compressed)
        mb = sum(f.stat().st_size for f in files) / 1e6
        kind = "JPEG 2000 lossless" if args.compressed else "uncompressed"
        print(f"series: {len(files)} {kind} CT instances, {mb:.0f} MB")
        ours, theirs, floor, fast = [], [], [], []
        for _ in range(args.repeat):
            theirs.append(bench_storescp(tmp, files))
            ours.append(bench_medview_receive(tmp, files))
            floor.append(bench_pynetdicom_floor(files))
            fast.append(bench_pynetdicom_floor(files, event_driven=True))
        m, d, f, e = (statistics.median(x) for x in (ours, theirs, floor, fast))
        print(
            f"receive  medview {m:6.2f} s ({mb / m:6.1f} MB/s, stored+indexed)   "
            f"dcmtk storescp {d:6.2f} s ({mb / d:6.1f} MB/s)   ratio {d / m:.2f}x"
        )
        print(f"         each repeat: {_ratios(theirs, ours)}")
        print(_verdict("receive", d / m))
        print(
            f"         bare pynetdicom SCP storing nothing {f:6.2f} s ({mb / f:6.1f} MB/s): "
            f"ratio {d / f:.2f}x"
        )
        print(
            f"         same on medview's event-driven loops  {e:6.2f} s ({mb / e:6.1f} MB/s): "
            f"ratio {d / e:.2f}x"
        )
        print(f"         load average at the end: {os.getloadavg()[0]:.1f}")

        from tests.core.test_net import OrthancServer

        orthanc = OrthancServer(Path(tempfile.mkdtemp(dir=tmp)))
        orthanc.start()
        try:
            storescu(orthanc.dicom_port, orthanc.aet, files)
            import pydicom

            study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
            ours, theirs, cli = [], [], []
            for _ in range(args.repeat):
                if not args.compressed:
                    theirs.append(bench_getscu(tmp, orthanc, study, len(files)))
                ours.append(bench_medview_get(tmp, orthanc, study, len(files)))
            cli.append(bench_medview_get_cli(tmp, orthanc, study, len(files)))
        finally:
            orthanc.stop()
        m = statistics.median(ours)
        if not theirs:
            # getscu puts all syntaxes of a SOP class in one context, the Orthanc package
            # then picks a native one and cannot transcode JPEG 2000 to it: C-GET fails
            print(
                f"C-GET    medview {m:6.2f} s ({mb / m:6.1f} MB/s, stored+indexed)   "
                f"dcmtk getscu: not comparable (Orthanc cannot transcode JPEG 2000 for it)"
            )
            return
        d = statistics.median(theirs)
        print(
            f"C-GET    medview {m:6.2f} s ({mb / m:6.1f} MB/s, stored+indexed)   "
            f"dcmtk getscu   {d:6.2f} s ({mb / d:6.1f} MB/s)   ratio {d / m:.2f}x   "
            f"(medview pacs get CLI incl. start-up {cli[0]:.2f} s)"
        )
        print(f"         each repeat: {_ratios(theirs, ours)}")
        print(_verdict("C-GET", d / m))
        print(f"         load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
