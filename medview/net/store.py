"""The per-user study store: where received instances are written and indexed.

Files live under ``<user data>/store/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``
(``MEDVIEW_STORE`` overrides the root). UIDs are checked before they become path
parts. Each instance is written whole or not at all (:mod:`medview.net.atomic`: a file
without a name linked into place, or a temporary file in ``<root>/.incoming/`` renamed),
so a reader (or a crash) never sees half a file; the SQLite index is updated afterwards
by an :class:`Indexer` thread in batches, each batch one transaction of the study
database's public API (:meth:`~medview.io.database.StudyDatabase.add_series`); the
storage SCP's indexer runs those transactions in a child process
(:mod:`medview.net.indexchild`).
"""

from __future__ import annotations

import io
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.errors import one_line
from medview.net.atomic import AtomicWriter, Chunk, write_all
from medview.net.common import log, valid_uid
from medview.net.wire import (
    MalformedDataset,
    WalkedHeader,
    file_meta_bytes,
    header_dataset,
    walk_header,
    walkable,
)

__all__ = ["file_meta_bytes"]  # re-exported: it used to live here

# C-STORE response statuses (PS3.4 B.2.3)
STATUS_OK = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

# the most header bytes kept in memory per arrival for the indexer (a CT's are ~4 KB)
MAX_KEPT_HEADER = 1024 * 1024
DEFAULT_MIN_FREE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_INSTANCE_BYTES = 2 * 1024 * 1024 * 1024


def store_root() -> Path:
    """The study store folder (``MEDVIEW_STORE``, else ``store`` in the user data folder)."""
    override = os.environ.get("MEDVIEW_STORE")
    if override:
        return Path(override)
    from medview.paths import user_data_dir

    return user_data_dir() / "store"


@dataclass
class Arrival:
    """One stored instance. ``as_json()`` is the ``medview receive --json`` line."""

    sop_uid: str
    study_uid: str
    series_uid: str
    calling_aet: str
    path: str
    sop_class_uid: str = ""
    indexed: bool = False
    reason: str = ""  # why it was not indexed (e.g. no image data)
    # the header as received, for the indexer (dropped once indexed); None: read the file
    header: ReceivedHeader | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict[str, str]:
        return {
            "sop_uid": self.sop_uid,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "calling_aet": self.calling_aet,
            "path": self.path,
        }


@dataclass
class ReceivedHeader:
    """The header of a stored instance as the handler walked it: the dataset's bytes up
    to the pixel data (``data``), the walk, and the File Meta Information written before
    it (``meta_length`` bytes: the pixel data element starts at ``meta_length +
    walk.end`` in the file)."""

    data: bytes
    walk: WalkedHeader | None  # None: walked again when needed (not pickled, see below)
    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    meta_length: int

    def __getstate__(self) -> dict[str, Any]:
        # sent to the indexing process without the walk: pickling its ~150 element
        # tuples cost the receiver more than walking the bytes again costs the child
        return {**self.__dict__, "walk": None}

    def instance_info(self, path: str) -> Any:
        """The :class:`~medview.io.model.InstanceInfo` that
        :func:`medview.io.read_header` returns for the stored file at ``path``, built
        from this header (the file is opened only for the checks of its pixel data);
        :class:`~medview.errors.ReadError` with the same reason when it cannot be."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import UID

        from medview.io.dicom import read_header

        walk = self.walk or walk_header(self.data, self.transfer_syntax)
        ds = header_dataset(self.data, walk)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(self.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(self.sop_uid)
        meta.TransferSyntaxUID = UID(self.transfer_syntax)
        ds.file_meta = meta
        return read_header(path, parsed=(ds, self.meta_length + walk.end))


class Rejected(Exception):
    """An instance refused with a C-STORE ``status`` and a one-line ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StudyStore:
    """Atomic, UID-named writes into the store folder."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        max_instance_bytes: int = DEFAULT_MAX_INSTANCE_BYTES,
    ) -> None:
        self.root = Path(root) if root is not None else store_root()
        self.incoming = self.root / ".incoming"
        self.files = AtomicWriter(self.root, self.incoming)
        self.min_free_bytes = int(min_free_bytes)
        self.max_instance_bytes = int(max_instance_bytes)

    def clean_incoming(self) -> int:
        """Delete temporary files left by a crash (never renamed, so never indexed)."""
        return self.files.clean()

    def make_ahead(self, count: int = 8) -> bool:
        """Have files made ahead for the next writes (:meth:`AtomicWriter.make_ahead`)
        until :meth:`close`."""
        return self.files.make_ahead(count)

    def close(self) -> None:
        """Stop making files ahead (the store can still write)."""
        self.files.close()

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_uid):
            if not valid_uid(uid):
                raise Rejected(STATUS_CANNOT_UNDERSTAND, f"invalid UID {str(uid)[:70]!r}")
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def accept(
        self,
        meta_and_dataset: Sequence[Chunk],
        sop_class: str,
        sop_uid: str,
        calling_aet: str = "",
        transfer_syntax: str = "",
        written: int | None = None,
    ) -> Arrival:
        """Check, then atomically write one instance given as encoded file parts
        (preamble + file meta, then the dataset in one or more fragments). Raises
        :class:`Rejected` with the reason.

        With ``transfer_syntax`` (little endian, implicit or explicit VR) the first part
        must be the file meta alone and the others the dataset: its elements are walked
        without pydicom (:func:`header_uids`), which is what lets a C-STORE be answered
        quickly; the fragments are written as they are, not joined. ``written``: a file
        from :meth:`begin` that holds exactly these parts already: it is named, not
        written again, if the instance passes (and closed either way)."""
        try:
            dest, walked, header = self._checked(
                meta_and_dataset, sop_class, sop_uid, transfer_syntax
            )
        except BaseException:
            if written is not None:
                os.close(written)
            raise
        self.write_atomic(dest, meta_and_dataset, written)
        study, series = dest.parent.parent.name, dest.parent.name
        arrival = Arrival(sop_uid, study, series, calling_aet, str(dest), sop_class_uid=sop_class)
        if walked is not None and walked.end <= MAX_KEPT_HEADER:  # not the pixel data
            # (a header over the cap, e.g. a large non-image object, is read from the file)
            arrival.header = ReceivedHeader(
                bytes(header[: walked.end]),
                walked,
                sop_class,
                sop_uid,
                transfer_syntax,
                len(meta_and_dataset[0]),
            )
        return arrival

    def begin(self, meta: bytes) -> int | None:
        """A file without a name holding ``meta`` (preamble and file meta), for an
        instance whose dataset is written into it as it arrives (:func:`write_all`) and
        which :meth:`accept` then checks and names (``written=``); None where that cannot
        be (no such files here, or free disk already below the threshold)."""
        if self.min_free_bytes and self.free_bytes() < self.min_free_bytes:
            return None
        fd = self.files.take_unnamed()
        if fd is not None:
            try:
                write_all(fd, [meta])
            except OSError:
                os.close(fd)
                return None
        return fd

    def _checked(
        self,
        meta_and_dataset: Sequence[Chunk],
        sop_class: str,
        sop_uid: str,
        transfer_syntax: str,
    ) -> tuple[Path, WalkedHeader | None, Chunk]:
        """Where the instance goes, its walk and the bytes walked; :class:`Rejected`
        when it may not be stored."""
        size = sum(len(b) for b in meta_and_dataset)
        if size > self.max_instance_bytes:
            raise Rejected(
                STATUS_OUT_OF_RESOURCES,
                f"instance of {size} bytes is over the {self.max_instance_bytes}-byte cap",
            )
        if self.min_free_bytes and self.free_bytes() - size < self.min_free_bytes:
            raise Rejected(
                STATUS_OUT_OF_RESOURCES,
                f"free disk below the {self.min_free_bytes // (1024 * 1024)} MiB threshold",
            )
        walked, header = _walk(meta_and_dataset, transfer_syntax)
        if walked is not None:
            study, series, sop = walked.uids
        else:
            study, series, sop = read_uids(meta_and_dataset)
        if sop != sop_uid:
            raise Rejected(
                STATUS_DATASET_MISMATCH,
                "SOP Instance UID in the dataset differs from the C-STORE request",
            )
        for uid, name in ((study, "StudyInstanceUID"), (series, "SeriesInstanceUID")):
            if not uid:
                raise Rejected(STATUS_CANNOT_UNDERSTAND, f"missing {name} (a required attribute)")
        return self.path_for(study, series, sop), walked, header

    def write_atomic(self, dest: Path, parts: Sequence[Chunk], written: int | None = None) -> None:
        """Write ``parts`` as ``dest``, whole or not at all (:class:`AtomicWriter`)."""
        self.files.write(dest, parts, written)


class Retrieval:
    """The receiving end of a retrieve (C-GET, WADO-RS): the ``store`` instances are
    written to, an :class:`Indexer` started for the ``with`` block (stopped, everything
    indexed, when it ends) and the ``arrivals`` it reported; :meth:`summary` is what the
    retrieve returns."""

    def __init__(self, store_dir: str | None = None, db_path: str | None = None) -> None:
        self.store = StudyStore(store_dir)
        self.arrivals: list[Arrival] = []
        self.rejected = 0
        self._indexer = Indexer(db_path, on_indexed=self.arrivals.append)

    def __enter__(self) -> Retrieval:
        self.store.make_ahead()
        self._indexer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()
        self._indexer.stop()

    def submit(self, arrival: Arrival, *_: Any) -> None:
        """Index a stored instance (extra arguments, e.g. the association, are ignored)."""
        self._indexer.submit(arrival)

    def summary(self, completed: int, failed: int, warning: int) -> dict[str, Any]:
        """``stored`` counts the arrivals written and indexed here, ``paths`` their files,
        ``not_indexed`` "path: reason" for the others; ``failed`` adds the instances
        refused here (:attr:`rejected`)."""
        stored = [a for a in self.arrivals if a.indexed]
        return {
            "stored": len(stored),
            "completed": completed,
            "failed": failed + self.rejected,
            "warning": warning,
            "not_indexed": [f"{a.path}: {a.reason}" for a in self.arrivals if not a.indexed],
            "paths": [a.path for a in stored],
        }


def _walk(parts: Sequence[Chunk], transfer_syntax: str) -> tuple[WalkedHeader | None, Chunk]:
    """The walk of the dataset (the parts after the first) when ``transfer_syntax``
    allows and it is well-formed, and the bytes walked (the first fragment when the
    header ends in it, else the fragments joined); (None, b"") otherwise."""
    if not (transfer_syntax and walkable(transfer_syntax) and len(parts) > 1):
        return None, b""
    data = parts[1]
    if len(parts) > 2:
        try:
            walked = walk_header(data, transfer_syntax)
            if walked.end < len(data):  # stopped at the pixel data: the whole header
                return walked, data
        except MalformedDataset:
            pass  # perhaps only cut at the fragment's end
        data = b"".join(parts[1:])
    try:
        return walk_header(data, transfer_syntax), data
    except MalformedDataset:
        return None, b""  # pydicom reads some oddities (e.g. implicit VR sent as explicit)


def read_uids(parts: Sequence[Chunk], transfer_syntax: str = "") -> tuple[str, str, str]:
    """(Study, Series, SOP Instance UID) of an encoded instance: walked in its bytes when
    ``transfer_syntax`` allows (the parts after the first are then the dataset), else, or when
    the walk finds it malformed, parsed by pydicom (:class:`Rejected` if that fails too)."""
    walked, _ = _walk(parts, transfer_syntax)
    if walked is not None:
        return walked.uids
    ds = parse_header(parts)
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    study, series, sop = (str(ds.get(k, "") or "") for k in keys)
    return study, series, sop


def parse_header(parts: Sequence[Chunk]) -> Any:
    """Parse the header (no pixel data) of an encoded file; :class:`Rejected` when it
    is not a readable dataset."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(io.BytesIO(b"".join(parts)), stop_before_pixels=True)
    except Exception as exc:
        # the exception type only: a parser message could quote patient data
        raise Rejected(
            STATUS_CANNOT_UNDERSTAND, f"malformed dataset ({type(exc).__name__})"
        ) from None


def index_files(db: Any, arrivals: list[Arrival], known: dict[str, set[str]] | None = None) -> None:
    """Index stored files into ``db`` (a StudyDatabase) in one transaction; sets
    ``indexed``/``reason`` on each arrival. A series' slice count includes its files
    indexed earlier; ``known`` (series UID -> indexed paths) caches them between calls."""
    from medview.io.model import ScanResult
    from medview.io.scanning import add_headers

    if not arrivals:
        return
    known = known if known is not None else {}
    by_path = {os.path.abspath(a.path): a for a in arrivals}
    result = ScanResult()
    add_headers(result, (_instance_info(path, a.header) for path, a in by_path.items()))
    for problem in result.errors:
        a = by_path.get(os.path.abspath(problem.path))
        if a is not None:
            a.reason = problem.reason
    series = [s for s in result.series if s.kind == "dicom"]
    for s in series:
        if s.series_uid not in known:
            for row in db.series(s.study_uid):
                known.setdefault(row["series_uid"], set()).update(row["files"])
            known.setdefault(s.series_uid, set())
        if s.frames <= 1:
            s.slices = len(known[s.series_uid] | {os.path.abspath(i.path) for i in s.instances})
    db.add_series(result.series)
    for s in series:
        for inst in s.instances:
            path = os.path.abspath(inst.path)
            known[s.series_uid].add(path)
            a = by_path.get(path)
            if a is not None:
                a.indexed = True


def _instance_info(path: str, header: ReceivedHeader | None) -> tuple[str, Any]:
    """``(path, InstanceInfo or MedviewError)`` of a stored instance: from the header the
    handler received when it has it (the same InstanceInfo as reading the file), else
    read from the file as :func:`medview.io.scan` does."""
    from medview.errors import MedviewError
    from medview.io.dicom import read_header

    if header is not None:
        try:
            return path, header.instance_info(path)
        except Exception:  # noqa: S110 - the file reader decides, with its reason
            pass
    try:
        return path, read_header(path)
    except MedviewError as exc:
        return path, exc


_NOW = "now"  # on an indexer's queue: index what is gathered now


class Indexer:
    """A thread that indexes stored instances in batches and then reports them.

    ``on_indexed(arrival)`` is called from the indexer thread once per instance, after
    the transaction that indexed it (or after indexing was found impossible: then
    ``arrival.indexed`` is False and ``arrival.reason`` says why)."""

    BATCH = 48  # instances per transaction at most
    LINGER_S = 0.05  # gather arrivals this long into one transaction (fewer commits)

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        on_indexed: Callable[[Arrival], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.on_indexed = on_indexed
        # arrivals; None: stop; _NOW: index what is gathered without lingering
        self._queue: queue.Queue[Arrival | None | str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._cond = threading.Condition()
        self.indexed = 0
        self.failed = 0
        self._known: dict[str, set[str]] = {}
        self.ready = threading.Event()  # set once the thread can index (see _starting)

    def start(self) -> Indexer:
        self._thread = threading.Thread(target=self._run, name="medview-net-indexer", daemon=True)
        self._thread.start()
        return self

    def submit(self, arrival: Arrival) -> None:
        with self._cond:
            self._pending += 1
        self._queue.put(arrival)

    def now(self) -> None:
        """Index what has been gathered without waiting out :attr:`LINGER_S` (a sender
        has finished: no more arrivals are expected soon)."""
        self._queue.put(_NOW)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is indexed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Index what is queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _index_batch(self, db: Any, batch: list[Arrival]) -> None:
        """Index ``batch`` (sets ``indexed``/``reason`` on each arrival)."""
        index_files(db, batch, self._known)

    def _starting(self) -> None:
        """Called by the indexer thread before it waits for the first arrival."""

    def _stopped(self) -> None:
        """Called by the indexer thread as it ends."""

    def _run(self) -> None:
        from medview.io.database import StudyDatabase

        db = StudyDatabase(self.db_path)
        try:
            try:
                self._starting()
            finally:
                self.ready.set()
            done = False
            while not done:
                item = self._queue.get()
                if item == _NOW:
                    continue
                batch: list[Arrival] = []
                if item is None:
                    done = True
                elif isinstance(item, Arrival):
                    batch.append(item)
                linger = time.monotonic() + self.LINGER_S
                while len(batch) < self.BATCH and not done:
                    try:
                        nxt = self._queue.get(timeout=max(0.0, linger - time.monotonic()))
                    except queue.Empty:
                        break
                    if nxt is None:
                        done = True
                    if not isinstance(nxt, Arrival):  # None or _NOW: index now
                        break
                    batch.append(nxt)
                self._index(db, batch)
        finally:
            db.close()
            self._stopped()

    def _index(self, db: Any, batch: list[Arrival]) -> None:
        if not batch:
            return
        try:
            self._index_batch(db, batch)
        except Exception as exc:  # the files are stored; a rescan/import can index them later
            log.error("indexing %d instance(s) failed: %s", len(batch), one_line(exc))
            for a in batch:
                a.reason = a.reason or one_line(exc)
        for a in batch:
            a.header = None  # indexed (or not): the bytes are no longer needed
            if a.indexed:
                self.indexed += 1
            else:
                self.failed += 1
            if self.on_indexed is not None:
                try:
                    self.on_indexed(a)
                except Exception as exc:
                    log.error("arrival callback failed: %s", one_line(exc))
        with self._cond:
            self._pending -= len(batch)
            self._cond.notify_all()
