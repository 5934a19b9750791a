"""The receiver's indexer process (medview.net.indexchild): what arrives is indexed in a
child process, and when that process dies the rest is indexed in-process, nothing lost."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pydicom", reason="pydicom is not installed")

from tests.helpers.net_fixtures import (  # noqa: E402
    db_instances,
    free_port,
    integrity_ok,
    receive_command,
    split_part10,
    storescu,
)


def _arrivals(store_dir: Path, files: list[Path]) -> list:
    """Each file accepted by a study store as the C-STORE handler does (header walked)."""
    from medview.net.store import StudyStore
    from medview.net.wire import file_meta_bytes

    store = StudyStore(store_dir, min_free_bytes=0)
    out = []
    for f in files:
        parts = split_part10(str(f))
        assert parts is not None, f
        data, sop_class, sop, ts = parts
        meta = file_meta_bytes(sop_class, sop, ts)
        out.append(store.accept([meta, data], sop_class, sop, "TEST", ts))
    assert all(a.header is not None for a in out)
    return out


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_child_indexes_and_a_killed_child_loses_nothing(tmp_path: Path, ct_copy: Path) -> None:
    from medview.net.common import log
    from medview.net.indexchild import ChildIndexer

    files = sorted(ct_copy.glob("*.dcm"))
    arrivals = _arrivals(tmp_path / "store", files)
    db = tmp_path / "db.sqlite"
    done: list = []
    lines = _Lines()
    log.addHandler(lines)
    indexer = ChildIndexer(str(db), on_indexed=done.append).start()
    try:
        for a in arrivals[:10]:
            indexer.submit(a)
        assert indexer.flush(60)
        pid = indexer.child_pid
        assert pid is not None and pid != os.getpid()  # indexed in another process
        assert len(db_instances(db)) == 10
        os.kill(pid, signal.SIGKILL)
        for a in arrivals[10:]:
            indexer.submit(a)
        assert indexer.flush(60)
        assert indexer.child_pid is None  # in-process from then on
    finally:
        indexer.stop()
        log.removeHandler(lines)
    assert [a.sop_uid for a in done] == [a.sop_uid for a in arrivals]
    assert all(a.indexed for a in done), [a.reason for a in done if not a.indexed]
    assert len(db_instances(db)) == len(files) == 20
    assert any("indexing process ended" in line for line in lines.lines), lines.lines
    integrity_ok(db)


def test_no_child_process_means_indexing_in_process(
    tmp_path: Path, ct_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where processes cannot start (a sandbox without semaphores, a script without the
    ``__main__`` guard) the indexer says so in one line and indexes in its own thread."""
    import multiprocessing

    from medview.net.common import log
    from medview.net.indexchild import ChildIndexer

    def no_context(method: str | None = None) -> object:
        raise OSError("no semaphores here")

    monkeypatch.setattr(multiprocessing, "get_context", no_context)
    arrivals = _arrivals(tmp_path / "store", sorted(ct_copy.glob("*.dcm"))[:5])
    lines = _Lines()
    log.addHandler(lines)
    indexer = ChildIndexer(str(tmp_path / "db.sqlite"), on_indexed=lambda a: None).start()
    try:
        for a in arrivals:
            indexer.submit(a)
        assert indexer.flush(60)
        assert indexer.child_pid is None
    finally:
        indexer.stop()
        log.removeHandler(lines)
    assert all(a.indexed for a in arrivals)
    assert len(db_instances(tmp_path / "db.sqlite")) == 5
    assert any("cannot start an indexing process" in line for line in lines.lines)


@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
def test_ctrl_c_in_a_terminal_ends_receiver_and_child_quietly(
    tmp_path: Path, ct_copy: Path
) -> None:
    """Ctrl+C reaches the whole process group, the indexing child too: the receiver still
    indexes what it stored, exits 0 with no traceback, and leaves no process behind."""
    port = free_port()
    db = tmp_path / "db.sqlite"
    env = dict(os.environ, MEDVIEW_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        receive_command(port, db, "--store", str(tmp_path / "store")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    try:
        assert "listening" in proc.stderr.readline()
        files = sorted(ct_copy.glob("*.dcm"))
        p = subprocess.run(storescu(port, files, "CTSCANNER"), capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr
        deadline = time.monotonic() + 30
        while len(db_instances(db)) < len(files) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "indexing process ended" not in err, err
    assert len(out.splitlines()) == len(db_instances(db)) == 20
    integrity_ok(db)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.1)
    assert not _group_alive(proc.pid)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count)."""
    ps = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    return any(not s.startswith("Z") for s in ps.stdout.split())
