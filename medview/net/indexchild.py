"""An indexer whose transactions run in a child process (the storage SCP's).

Building an arrival's index row (pydicom converting its header's values, grouping, the
SQLite transaction) is about 1 ms of Python per instance. In the receiver's own process
it holds the GIL that the network thread needs to answer the next C-STORE: in-process
pushes of 300 instances took 1.36 s with the indexer thread and 1.02 s without it, while
another process burning a third of a core beside the receiver slowed it not at all
(docs/net.md). :class:`ChildIndexer` keeps :class:`~medview.net.store.Indexer`'s thread,
batches and callbacks, and sends each batch to one child process that indexes it and
answers with each arrival's outcome; the parent only pickles the batch (the headers as
received, a few KB an instance) and reads the answer.

The database path is resolved by the parent (a ``forkserver`` child inherits the
environment the server started with, not the parent's current one). The child is started
by the indexer thread (not by whoever starts the receiver, e.g. the GUI thread), in the
decoder pool's process context (:func:`medview.io.decoders.process_context`:
``forkserver`` on Linux, with the DICOM reader preloaded, else ``spawn``). If it cannot
start, or dies, the indexer logs one line and indexes in its own thread from then on:
nothing is lost, the files are on disk either way.
"""

from __future__ import annotations

import os
from typing import Any

from medview.errors import one_line
from medview.net.common import log
from medview.net.store import Arrival, Indexer, index_files


class ChildIndexer(Indexer):
    """:class:`~medview.net.store.Indexer` indexing in a child process (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._child: _Child | None = None

    def _starting(self) -> None:
        from medview.paths import database_path

        # resolved here: a forkserver child has the environment of the server's start
        self._child = _Child.start(self.db_path or database_path())

    def _index_batch(self, db: Any, batch: list[Arrival]) -> None:
        child = self._child
        if child is not None:
            try:
                outcomes = child.index(batch)
            except (OSError, EOFError, ValueError) as exc:  # it died: index here from now on
                log.warning("the indexing process ended (%s): indexing in-process", one_line(exc))
                child.close()
                self._child = None
            else:
                for a, (indexed, reason) in zip(batch, outcomes, strict=True):
                    a.indexed, a.reason = indexed, reason
                return
        super()._index_batch(db, batch)

    def _stopped(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.close()

    @property
    def child_pid(self) -> int | None:
        """The child's process id while it runs (for tests and diagnostics)."""
        return self._child.pid if self._child is not None else None


class _Child:
    """The child process and the parent's end of its pipe."""

    def __init__(self, process: Any, conn: Any) -> None:
        self.process = process
        self.conn = conn

    @property
    def pid(self) -> int | None:
        pid: int | None = self.process.pid
        return pid

    @staticmethod
    def start(db_path: str | os.PathLike[str] | None) -> _Child | None:
        """A running child indexing into ``db_path``, or None (logged) when none starts."""
        from medview.io.decoders import process_context

        try:
            ctx = process_context()
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=serve,
                args=(child, None if db_path is None else os.fspath(db_path), os.getpid()),
                name="medview-net-indexer",
                daemon=True,
            )
            process.start()
            child.close()
            if not (parent.poll(60) and parent.recv() == "ready"):
                process.kill()
                raise OSError("it did not start within 60 s")
        except Exception as exc:  # e.g. no semaphores in a sandbox, or no __main__
            log.warning("cannot start an indexing process (%s): indexing in-process", one_line(exc))
            return None
        return _Child(process, parent)

    def index(self, batch: list[Arrival]) -> list[tuple[bool, str]]:
        """Each arrival's (indexed, reason), indexed by the child in one transaction;
        ``RuntimeError`` with its one-line reason when indexing failed there."""
        self.conn.send(batch)
        answer = self.conn.recv()
        if isinstance(answer, str):
            raise RuntimeError(answer)
        outcomes: list[tuple[bool, str]] = answer
        if len(outcomes) != len(batch):
            raise ValueError("the indexing process answered for other instances")
        return outcomes

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


def serve(conn: Any, db_path: str | None, parent_pid: int) -> None:
    """The child: index each batch received on ``conn`` and answer with the outcomes
    (or the one-line reason of a failure), until ``None`` or the pipe closes."""
    import signal

    from medview.io.database import StudyDatabase
    from medview.io.decoders import init_worker

    init_worker(parent_pid)  # a decoder worker's set-up: lower priority, end with the parent
    # Ctrl+C in a terminal (or a service manager's SIGTERM) reaches the whole process
    # group: the parent decides when the child ends, after its last batch
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    db = StudyDatabase(db_path)
    known: dict[str, set[str]] = {}
    conn.send("ready")
    try:
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return
            if batch is None:
                return
            try:
                index_files(db, batch, known)
            except Exception as exc:
                conn.send(one_line(exc))
                continue
            conn.send([(a.indexed, a.reason) for a in batch])
    finally:
        db.close()
