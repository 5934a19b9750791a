"""The viewer session without Qt: opening, loading, caching and measurements.

What the workstation window does that is not a widget lives here, so it can be
tested without a ``QApplication``:

* worker functions (plain ``fn(..., state: TaskState | None)``, run off the GUI
  thread by :class:`medview.ui.workers.TaskSlot`): :func:`scan_paths`,
  :func:`load_opened_series`, :func:`load_db_series`, :func:`query_database`,
  :func:`read_measurements`, :func:`import_into_db`, :func:`warm_up`;
* database series as the same :class:`~medview.io.SeriesInfo` type as scanned
  ones (:func:`series_from_database`), told apart by their browser key
  (:data:`DATABASE_PREFIX`), and their thumbnails (:func:`browser_thumbnails`);
* :func:`sample_studies` (pydicom's test files) and :func:`plan_open` (which
  scanned series go to which viewport);
* :class:`VolumeCache` - loaded volumes, least recently used first out, bounded
  in bytes;
* :class:`MeasurementStore` - measurements saved, replaced and deleted per
  SOPInstanceUID in the local study database, and :func:`measurements_to_restore`
  (stored rows back as :class:`~medview.imaging.measure.Measurement` objects).

The readers (pydicom) are imported inside the functions: importing this module
costs nothing at start-up.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medview.paths import LazyDatabase
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.imaging.measure import Measurement
    from medview.io import ScanResult, SeriesInfo, Volume
    from medview.io.database import ImportReport, StudyDatabase

log = logging.getLogger(__name__)

#: browser keys: a series opened from files, and one listed from the local database
OPENED_PREFIX = "open:"
DATABASE_PREFIX = "db:"
#: default bound of the volume cache (``MEDVIEW_CACHE_MB`` overrides it)
DEFAULT_CACHE_MB = 2048


def is_database_key(key: str) -> bool:
    """True for the browser key of a database series (its files are scanned at load)."""
    return key.startswith(DATABASE_PREFIX)


# ---------------------------------------------------------------- workers
def scan_paths(paths: list[str], state: TaskState | None = None) -> ScanResult:
    """Worker: scan several paths (headers only) into one ScanResult."""
    from medview.io import scan

    return scan(paths, state=state)


def load_opened_series(series: SeriesInfo, state: TaskState | None = None) -> Volume:
    """Worker: load a scanned series.

    Compressed files always go to the decoder processes (a decoder holds the GIL);
    they inherit the calling thread's priority.
    """
    from medview.io import load_series

    return load_series(series, state=state, processes=True)


def load_db_series(series: SeriesInfo, state: TaskState | None = None) -> Volume:
    """Worker: a database series: scan its files, then load the volume.

    ``state.partial(("series", SeriesInfo))`` hands over the scanned series before
    the pixels arrive. Raises :class:`~medview.errors.ReadError` naming a file when
    nothing loadable is left.
    """
    from medview.errors import ReadError
    from medview.io import load_series, scan

    files = [inst.path for inst in series.instances]
    res = scan(files)
    found = res.find(series.series_uid) if series.series_uid else None
    if found is None and res.series:
        found = res.series[0]
    if found is None:
        if res.errors:
            raise ReadError(res.errors[0].reason, res.errors[0].path)
        raise ReadError(
            "the files of this series are gone", files[0] if files else series.series_uid
        )
    ensure_state(state).partial(("series", found))
    return load_series(found, state=state)


def warm_up(state: TaskState | None = None) -> bool:
    """Worker, after the first paint: import the readers and start a decoder process,
    so the first study opens without those seconds. Returns True when a pool is up."""
    import pydicom  # noqa: F401 - its data dictionary alone compiles for ~0.1 s without .pyc
    import pydicom.pixels  # noqa: F401

    import medview.imaging.display  # noqa: F401
    import medview.io  # noqa: F401
    import medview.io.database  # noqa: F401
    import medview.results.jobs  # noqa: F401 - imported when a series is first shown (audit)

    ensure_state(state).check()
    from medview.io.decoders import decoder_pool

    pool = decoder_pool()
    if pool is None:
        return False
    try:
        pool.submit(int, 0).result(timeout=60)  # forks the server and one worker
    except Exception:
        return False
    return True


@contextmanager
def _database() -> Iterator[StudyDatabase]:
    """The local study database for one worker call, closed afterwards."""
    from medview.io.database import StudyDatabase

    db = StudyDatabase()
    try:
        yield db
    finally:
        db.close()


def read_measurements(
    keys: list[str], state: TaskState | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Worker: stored measurements of the given SOP instance UIDs (only those with rows)."""
    state = ensure_state(state)
    out: dict[str, list[dict[str, Any]]] = {}
    with _database() as db:
        for key in keys:
            state.check()
            rows = db.measurements(key)
            if rows:
                out[key] = rows
    return out


def import_into_db(path: str, state: TaskState | None = None, cache: bool = False) -> ImportReport:
    """Worker: index ``path`` (headers only) into the local study database; with
    ``cache``, then decode its compressed images into the pixel cache (io/cache.py)."""
    with _database() as db:
        report = db.import_path(path, state=state)
    if cache:
        from medview.viewer.prefetch import cache_paths

        cache_paths([path], state)
    return report


def query_database(
    text: str = "", modality: str = "", state: TaskState | None = None
) -> list[SeriesInfo]:
    """Worker: the series of the studies matching ``text`` / ``modality``, newest study first."""
    state = ensure_state(state)
    out: list[SeriesInfo] = []
    with _database() as db:
        for study in db.studies(text=text or None, modality=modality or None):
            state.check()
            out.extend(series_from_database(study, row) for row in db.series(study["study_uid"]))
    return out


def series_from_database(study: dict[str, Any], row: dict[str, Any]) -> SeriesInfo:
    """A database series (``StudyDatabase.studies`` + ``.series`` rows) as a SeriesInfo.

    Its instances carry only what the database knows (paths in instance order, the
    patient and study); :func:`load_db_series` scans them before loading.
    """
    from medview.io import InstanceInfo, SeriesInfo

    files = [str(f) for f in row.get("files") or []]
    series = SeriesInfo(
        series_uid=str(row.get("series_uid") or ""),
        study_uid=str(row.get("study_uid") or study.get("study_uid") or ""),
        patient_id=str(study.get("patient_id") or ""),
        patient_name=str(study.get("patient_name") or ""),
        patient_birth_date=str(study.get("birth_date") or ""),
        patient_sex=str(study.get("sex") or ""),
        study_date=str(study.get("study_date") or ""),
        study_description=str(study.get("study_description") or study.get("description") or ""),
        modality=str(row.get("modality") or ""),
        description=str(row.get("description") or row.get("series_description") or ""),
        series_number=row.get("series_number"),
        rows=int(row.get("rows") or 0),
        columns=int(row.get("columns") or 0),
        slices=len(files) or int(row.get("slices") or 0),
        warnings=list(row.get("warnings") or []),
    )
    accession = str(study.get("accession") or study.get("accession_number") or "")
    series.instances = [
        InstanceInfo(
            path=f,
            series_uid=series.series_uid,
            accession_number=accession,
            series_description=series.description,
        ).take_study_facts(series)
        for f in files
    ]
    return series


def middle_image_series(series: SeriesInfo) -> SeriesInfo | None:
    """A database series' middle file, scanned (what its thumbnail needs); None if unreadable."""
    from medview.io import scan

    files = [inst.path for inst in series.instances]
    if not files:
        return None
    found = scan([files[len(files) // 2]]).series
    return found[0] if found else None


def browser_thumbnails(batch: list[tuple[str, SeriesInfo]], state: TaskState | None = None) -> int:
    """Worker: thumbnails of ``(browser key, series)`` pairs; ``state.partial((key, image))`` each.

    A database series is scanned first (its middle file only); the rendering is
    :func:`medview.imaging.thumbnails.make_thumbnails` (decoder processes for
    compressed files). A series without a thumbnail is skipped. Returns how many
    thumbnails were made.
    """
    from medview.imaging.thumbnails import make_thumbnails

    state = ensure_state(state)
    done = 0
    for key, series in batch:
        state.check()
        found: SeriesInfo | None = series
        if is_database_key(key):
            try:
                found = middle_image_series(series)
            except Exception as exc:  # a thumbnail is optional
                log.info("no thumbnail for %s: %s", key, exc)
                continue
        if found is not None:
            done += make_thumbnails([(key, found)], state=state)
    return done


def sample_studies() -> list[tuple[str, str]]:
    """(label, path) of sample images shipped with pydicom / pydicom-data."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return []
    wanted = [
        ("CT head, 512x512 (pydicom-data 693_UNCR)", "693_UNCR.dcm"),
        ("CT small, 128x128 (pydicom CT_small)", "CT_small.dcm"),
        ("MR small (pydicom MR_small)", "MR_small.dcm"),
        ("MR multi-frame, 10 frames (emri_small)", "emri_small.dcm"),
        ("CR chest X-ray (pydicom-data RG1_UNCR)", "RG1_UNCR.dcm"),
        ("Ultrasound, colour (pydicom-data US1_UNCR)", "US1_UNCR.dcm"),
    ]
    out = []
    for label, name in wanted:
        try:
            path = get_testdata_file(name, download=False)
        except Exception:
            path = None
        if path and os.path.exists(str(path)):
            out.append((label, str(path)))
    return out


# ---------------------------------------------------------------- opening
@dataclass(frozen=True)
class OpenPlan:
    """Where the series of one scan go.

    ``best``: the series selected in the browser; ``shown``: how many of the first
    series get their thumbnail from the loaded volume; ``loads``: (viewport number
    among the visible ones, series number) to load now.
    """

    best: int
    shown: int
    loads: list[tuple[int, int]] = field(default_factory=list)


def plan_open(slices: Sequence[int], visible: int, mpr: bool, start: int = 0) -> OpenPlan:
    """Which scanned series to show where.

    ``slices``: the slice count of each scanned series, in scan order; ``visible``:
    how many viewports the layout shows; ``start``: the visible viewport the user
    opened into. In MPR the series with the most slices goes to the first viewport
    (the MPR trio follows it); otherwise the series fill the visible viewports in
    file order, from ``start`` on.
    """
    if not slices:
        return OpenPlan(0, 0)
    if mpr:
        best = max(range(len(slices)), key=lambda n: slices[n])
        return OpenPlan(best, 1 if best == 0 else 0, [(0, best)])
    loads = [((start + n) % visible, n) for n in range(min(len(slices), visible))]
    return OpenPlan(0, visible, loads)


# ---------------------------------------------------------------- what is shown
def hu_preset_verdict(volume: Volume | None, name: object) -> tuple[bool, str]:
    """Whether window preset ``name`` is refused on ``volume``, and the warning to show.

    A built-in CT preset is in Hounsfield units: on an image that is not CT in HU it
    would show noise or a blank, so it is refused (``(True, warning)``); where it
    applies with a caveat the caveat is the warning (``(False, warning)``). Other
    presets ("file", "auto", the user's own) apply to any image: ``(False, "")``.
    """
    if not isinstance(name, str) or volume is None:
        return False, ""
    from medview.imaging.display import ct_preset, hu_preset_problem

    if ct_preset(name.replace("_", " ")) is None and ct_preset(name) is None:
        return False, ""
    applies, note = hu_preset_problem(volume)
    if applies and not note:
        return False, ""
    what = getattr(volume.series, "description", "") or "this image"
    verdict = "not applied" if not applies else "applied"
    return not applies, f"{what}: {name} is a CT window in Hounsfield units; {note} ({verdict})"


def shown_file(volume: Volume | None, plane: str, index: int, pending: Any = None) -> str:
    """The file whose tags describe what a viewport shows ("" when none).

    An axial view shows its slice's file; a reformatted plane the middle slice's;
    while a series is still loading, its first file (``pending``: its SeriesInfo).
    """
    if volume is not None and volume.instances:
        k = index if plane == "axial" else volume.shape[0] // 2
        inst = volume.instance_at(min(k, volume.shape[0] - 1))
        return inst.path if inst is not None else ""
    if pending is not None and getattr(pending, "instances", None):
        return str(pending.instances[0].path)
    return ""


def window_title(info: Any) -> str:
    """The main window's title for a series: "medview - patient, modality description"."""
    name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
    what = (getattr(info, "modality", ""), getattr(info, "description", ""))
    desc = " ".join(str(x) for x in what if x)
    parts = [p for p in (name, desc) if p]
    return "medview" + (" \N{EM DASH} " + ", ".join(parts) if parts else "")


# ---------------------------------------------------------------- cache
def cache_limit_from_env() -> int:
    """The volume cache bound in bytes (``MEDVIEW_CACHE_MB``, default 2048 MB)."""
    return int(os.environ.get("MEDVIEW_CACHE_MB", str(DEFAULT_CACHE_MB))) * 1024 * 1024


class VolumeCache:
    """Loaded volumes by series key, least recently used first out, bounded in bytes.

    A volume shown in a viewport (``in_use``) is never evicted, and the newest
    volume always stays, even when it alone is larger than ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, Volume] = OrderedDict()

    def get(self, key: str) -> Volume | None:
        """The cached volume of ``key`` (now the most recently used), or None."""
        vol = self._items.get(key)
        if vol is not None:
            self._items.move_to_end(key)
        return vol

    def put(self, key: str, vol: Volume, in_use: set[str] | frozenset[str] = frozenset()) -> None:
        """Cache ``vol`` under ``key``, then evict the least recently used volumes
        not in ``in_use`` until the total is within the bound."""
        self._items[key] = vol
        self._items.move_to_end(key)
        total = self.total_bytes
        for k in list(self._items):
            if total <= self.max_bytes or len(self._items) <= 1:
                break
            if k in in_use or k == key:
                continue
            total -= self._items.pop(k).array.nbytes

    @property
    def total_bytes(self) -> int:
        """Bytes of pixel data held."""
        return sum(int(v.array.nbytes) for v in self._items.values())

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        return list(self._items)

    def clear(self) -> None:
        """Drop every volume."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


# ---------------------------------------------------------------- measurements
class StorableMeasurement(Protocol):
    """What the store needs of a measurement (:class:`medview.imaging.measure.Measurement`)."""

    kind: str
    image_key: str
    db_id: int | None

    def data(self) -> dict[str, Any]:
        """The JSON-able record stored in the database."""
        ...


class MeasurementDatabase(Protocol):
    """The part of :class:`~medview.io.database.StudyDatabase` the store uses."""

    def save_measurement(self, sop_uid: str, kind: str, data: dict[str, Any]) -> int: ...

    def delete_measurement(self, measurement_id: int) -> bool: ...

    def close(self) -> None: ...


def _open_study_database() -> MeasurementDatabase:
    from medview.io.database import StudyDatabase

    return StudyDatabase()


class MeasurementStore(LazyDatabase[MeasurementDatabase]):
    """Measurements kept per SOPInstanceUID in the local study database (those drawn on
    coronal/sagittal reformats per :func:`reformat_key`, their slice as the frame).

    The database is opened on first use (on the GUI thread: single-row writes). A
    database that cannot be opened is reported once through ``warn`` and the
    viewer goes on without storage; a failed write or delete is reported through
    ``warn`` too and never raises.
    """

    def __init__(
        self,
        warn: Callable[[str], None] | None = None,
        open_database: Callable[[], MeasurementDatabase] = _open_study_database,
    ) -> None:
        super().__init__(
            open_database, warn or (lambda msg: log.warning("%s", msg)), "measurements"
        )

    def add(self, m: StorableMeasurement) -> None:
        """Store a new measurement; sets ``m.db_id``. One without an image key is not stored."""
        if not m.image_key:
            return
        db = self.database()
        if db is None:
            return
        try:
            m.db_id = int(db.save_measurement(m.image_key, m.kind, m.data()))
        except Exception as exc:
            self._warn(f"measurement not stored: {exc}")

    def change(self, m: StorableMeasurement) -> None:
        """Store an edited measurement in place of its old row (a new ``db_id``)."""
        db = self.database()
        if db is None or not m.image_key:
            return
        try:
            if m.db_id is not None:
                db.delete_measurement(m.db_id)
            m.db_id = int(db.save_measurement(m.image_key, m.kind, m.data()))
        except Exception as exc:
            self._warn(f"measurement not stored: {exc}")

    def delete(self, m: StorableMeasurement) -> None:
        """Delete a stored measurement's row."""
        db = self.database()
        if db is None or m.db_id is None:
            return
        try:
            db.delete_measurement(m.db_id)
        except Exception as exc:
            self._warn(f"measurement not deleted from the database: {exc}")

    def keys_to_restore(self, vol: Volume) -> list[str]:
        """The keys whose stored measurements ``vol`` may show ([] without storage): its SOP
        instance UIDs, and the coronal and sagittal :func:`reformat_key` of a volume."""
        if not vol.instances or self.failed:
            return []
        keys = {i.sop_uid for i in vol.instances if i.sop_uid}
        if vol.shape[0] > 1:
            keys.update(k for p in ("coronal", "sagittal") if (k := reformat_key(vol, p)))
        return sorted(keys)


def reformat_key(vol: Volume, plane: str) -> str:
    """The storage key of measurements on ``plane`` reformats of ``vol``:
    ``SERIES_UID/plane`` (the reformatted slice's index is the measurement's frame);
    "" when the series has no UID. Axial slices are stored by SOPInstanceUID."""
    uid = str(getattr(getattr(vol, "series", None), "series_uid", "") or "")
    return f"{uid}/{plane}" if uid and plane != "axial" else ""


def measurements_to_restore(
    vol: Volume, rows: dict[str, list[dict[str, Any]]], known_ids: set[int | None]
) -> list[Measurement]:
    """Stored rows (from :func:`read_measurements`) that belong on ``vol``'s slices.

    A single-file multi-frame volume places a row by its frame; a reformat's row
    (:func:`reformat_key`) by its frame in that plane; otherwise by the slice of its
    SOP instance. Rows already shown (``known_ids``) and rows outside
    the volume are left out.
    """
    from medview.imaging.geometry import plane_count
    from medview.imaging.measure import Measurement

    multi = len(vol.instances) != vol.shape[0]
    index_of = {inst.sop_uid: n for n, inst in enumerate(vol.instances)}
    reformats = {reformat_key(vol, p): p for p in ("coronal", "sagittal")}
    out = []
    for key, items in rows.items():
        plane = reformats.get(key, "axial") if key else "axial"
        for row in items:
            if row.get("id") in known_ids:
                continue
            data = row.get("data") or {}
            frame = int(data.get("frame", 0) or 0)
            k = frame if multi or plane != "axial" else index_of.get(key)
            if k is None or not 0 <= k < plane_count(vol, plane):
                continue
            out.append(
                Measurement(
                    kind=str(row.get("kind", "ruler")),
                    points=[(float(x), float(y)) for x, y in data.get("points", [])],
                    index=k,
                    plane=plane,
                    image_key=key,
                    frame=frame,
                    db_id=row.get("id"),
                )
            )
    return out
