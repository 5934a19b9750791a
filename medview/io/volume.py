"""Series -> :class:`~medview.io.model.Volume`, decoding in parallel.

* Native little-endian files are read straight from their pixel-data offset
  (found at scan time) with ``numpy.fromfile`` on a thread pool (file reads
  release the GIL).
* Compressed files are decoded by pydicom's plugins in a pool of worker
  *processes*: the JPEG / JPEG 2000 / JPEG-LS decoders hold the GIL, so threads
  would not run them in parallel.
* The output array is allocated once and filled slice by slice, so peak memory
  stays near the volume's own size. CT is stored as int16 Hounsfield units when
  that is exact (RescaleSlope 1, integral intercept, values within int16).
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from medview.errors import FileProblem, MedviewError, ReadError
from medview.io import cache as pixel_cache
from medview.io import decoders, gpu, limits
from medview.io.dicom import decode_file, read_native_frames
from medview.io.model import InstanceInfo, SeriesInfo, Volume
from medview.tasks import TaskState, ensure_state

T = TypeVar("T")


def _is_color(info: InstanceInfo) -> bool:
    return info.samples_per_pixel == 3 or info.photometric.upper() == "PALETTE COLOR"


def _plan_dtype(series: SeriesInfo) -> tuple[np.dtype, bool]:
    """Output dtype and whether CT stored values are converted to int16 HU at load."""
    first = series.instances[0]
    if _is_color(first):
        return np.dtype(np.uint8), False
    if first.has_modality_lut:
        # The Modality LUT Sequence maps to unsigned values of up to 16 bits (PS3.3
        # C.11.1.1.1). Signed stored values (shown as they are when the LUT cannot be
        # used) would wrap in uint16, and LUT outputs above 32767 would wrap in int16.
        return np.dtype(np.int32 if first.pixel_representation else np.uint16), False
    slopes = {h.rescale_slope for h in series.instances}
    intercepts = {h.rescale_intercept for h in series.instances}
    bits = first.bits_stored or first.bits_allocated or 16
    if first.pixel_representation:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    if (
        slopes == {1.0}
        and all(float(i).is_integer() for i in intercepts)
        and not first.has_modality_lut
    ):
        imin, imax = min(intercepts), max(intercepts)
        if (
            lo + imin >= -32768
            and hi + imax <= 32767
            and (imin != 0 or imax != 0 or first.pixel_representation)
        ):
            return np.dtype(np.int16), True
    if first.bits_allocated == 8 and not first.pixel_representation:
        return np.dtype(np.uint8), False
    if first.pixel_representation:
        return np.dtype(np.int16), False
    return np.dtype(np.uint16), False


def load_series(
    series: SeriesInfo, state: TaskState | None = None, processes: bool | None = None
) -> Volume:
    """Decode a series into a volume; ``state.partial((volume, k))`` as the first slice lands.

    While loading, ``volume.ready[k]`` turns True as slice ``k`` is decoded (slices
    arrive in order); it is None once the load finished. ``processes``: decode
    compressed files in the worker processes (True or None, the default: always, so
    that a decoder that aborts or panics costs one file, not this process; False:
    in this process, for callers that are themselves a disposable worker).

    Raises :class:`~medview.errors.ReadError` when no slice at all can be decoded;
    slices that fail are filled with the minimum value and reported in
    ``volume.warnings``.
    """
    state = ensure_state(state)
    if series.kind == "raster":
        from medview.io.raster import load_raster

        return load_raster(series)
    if series.kind == "volume":
        from medview.io.raster import load_volume_file

        state.progress(0.05, "reading volume")
        vol = load_volume_file(series)
        state.partial((vol, 0))
        return vol
    return _load_dicom_series(series, state, processes)


Job = tuple[int, InstanceInfo]  # (first slice index in the volume, instance)
_Place = Callable[[int, InstanceInfo, np.ndarray, dict[str, Any]], None]


def _new_volume(series: SeriesInfo, dtype: np.dtype, to_hu: bool, color: bool) -> Volume:
    """The volume to fill: its array allocated once (uninitialised), every slice not ready."""
    items = series.instances
    first = items[0]
    frames = first.frames
    nz = len(items) * frames if len(items) > 1 else frames
    shape = (nz, first.rows, first.columns) + ((3,) if color else ())
    array = allocate_volume(shape, dtype, f"the series ({nz} slices)", first.path, len(items) > 1)
    direction = np.array(series.direction, dtype=float).reshape(3, 3)
    vol = Volume(
        array=array,
        spacing=series.spacing,
        origin=series.origin,
        direction=direction,
        modality=series.modality,
        photometric=first.photometric,
        rescale_slope=1.0 if (to_hu or color) else first.rescale_slope,
        rescale_intercept=0.0 if (to_hu or color) else first.rescale_intercept,
        unit="HU"
        if series.modality == "CT" and (to_hu or first.rescale_type in ("", "HU"))
        else "",
        window=first.window,
        invert=first.photometric.upper() == "MONOCHROME1",
        spacing_source=first.spacing_source,
        spacing_known=series.spacing_known,
        instances=list(items),
        warnings=list(series.warnings),
        series=series,
        ready=np.zeros(nz, dtype=bool),
    )
    slopes = {h.rescale_slope for h in items}
    if not to_hu and not color and len(slopes) > 1:
        vol.warnings.append(
            "RescaleSlope varies between slices: values use the first slice's slope"
        )
    return vol


#: ``MEDVIEW_MEMMAP_MB``: series larger than this are memory-mapped (default: over the
#: RAM budget, :func:`medview.io.limits.series_budget`)
MEMMAP_ENV = "MEDVIEW_MEMMAP_MB"
#: ``MEDVIEW_VOLUME_DIR``: where memory-mapped volumes live (default: the user's cache)
VOLUME_DIR_ENV = "MEDVIEW_VOLUME_DIR"
#: disk space left free beside a memory-mapped volume
DISK_MARGIN = limits.GIB


def _memmap_threshold() -> int | None:
    """``MEDVIEW_MEMMAP_MB`` in bytes (0: map every series); None when unset or not a number."""
    text = os.environ.get(MEMMAP_ENV, "").strip()
    try:
        return max(0, int(float(text))) * limits.MIB if text else None
    except ValueError:
        return None


def volume_dir() -> Path:
    """``MEDVIEW_VOLUME_DIR``, else ``<user data folder>/cache/volumes`` (not created here)."""
    env = os.environ.get(VOLUME_DIR_ENV, "").strip()
    if env:
        return Path(env)
    from medview.paths import user_data_dir

    return user_data_dir() / "cache" / "volumes"


def allocate_volume(
    shape: tuple[int, ...], dtype: np.dtype, what: str, path: str, mappable: bool = True
) -> np.ndarray:
    """The uninitialised array of a volume: in memory when it fits the RAM budget, else
    (a series of several files, ``mappable``) a memory map on a file in :func:`volume_dir`
    that the kernel pages in and out, so a series larger than the machine's memory opens
    instead of exhausting it. ``ReadError`` saying so when neither memory nor disk can
    hold it (or it is over an explicit ``MEDVIEW_MAX_SERIES_MB``); nothing is allocated."""
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    explicit = os.environ.get("MEDVIEW_MAX_SERIES_MB", "").strip()
    threshold = _memmap_threshold()
    if explicit or not mappable:
        limits.check_budget(needed, what, path, series=True)
    in_ram = limits.series_budget() if threshold is None else min(threshold, limits.series_budget())
    if needed <= in_ram or not mappable:
        return np.empty(shape, dtype=dtype)
    folder = volume_dir()
    try:
        from medview.paths import private_dir

        private_dir(folder)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise ReadError(
            f"{what} needs {limits.human_bytes(needed)}, more than the memory "
            f"budget, and {folder} cannot hold a memory map ({exc.strerror or exc})",
            path,
        ) from None
    if needed > free - DISK_MARGIN:
        raise ReadError(
            f"{what} needs {limits.human_bytes(needed)}: more than this machine can hold "
            f"({limits.human_bytes(limits.available_memory())} of memory available, "
            f"{limits.human_bytes(max(0, free))} free in {folder})",
            path,
        )
    try:
        return _mapped(folder, shape, dtype)
    except OSError as exc:
        raise ReadError(
            f"{what} needs {limits.human_bytes(needed)}: no memory map of it in {folder} "
            f"({exc.strerror or exc})",
            path,
        ) from None


def _mapped(folder: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zero-filled file of the volume's size (its blocks reserved where the system can),
    mapped; on POSIX the file is unlinked at once (its space returns when the last view of
    the array goes)."""
    fd, name = tempfile.mkstemp(prefix="volume-", suffix=".raw", dir=folder)
    fp = os.fdopen(fd, "w+b")
    try:
        if hasattr(os, "posix_fallocate"):  # reserved now: a full disk later would be SIGBUS
            os.posix_fallocate(fd, 0, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        mm = np.memmap(fp, dtype=dtype, mode="w+", shape=shape)
    except BaseException:
        fp.close()
        os.unlink(name)
        raise
    fp.close()  # the map keeps its own handle
    array = np.asarray(mm)  # a plain ndarray view; the mapping lives as long as it does
    if os.name == "posix":
        os.unlink(name)
    else:  # Windows cannot delete a mapped file: once the array is gone
        weakref.finalize(mm, _remove_quietly, name)
    return array


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


def is_mapped(array: np.ndarray) -> bool:
    """True when ``array`` (or the array it views) is a memory map."""
    base: Any = array
    while base is not None:
        if isinstance(base, (np.memmap, mmap.mmap)):
            return True
        base = getattr(base, "base", None)
    return False


class _SeriesFill:
    """Places decoded slices into the volume's array (or blanks failed ones), counting them.

    ``state.partial((volume, k))`` is sent once, when the first slice lands.
    """

    def __init__(self, vol: Volume, to_hu: bool, state: TaskState) -> None:
        assert vol.ready is not None
        self.vol = vol
        self.out = vol.array
        self.ready: np.ndarray = vol.ready
        self.first = vol.instances[0]
        self.frames = self.first.frames
        self.to_hu = to_hu
        self.state = state
        self.done = 0
        self.failures: list[FileProblem] = []
        self._announced = False

    def place(
        self, k: int, info: InstanceInfo, frames_arr: np.ndarray, extra: dict[str, Any]
    ) -> None:
        """Store the frames of ``info`` from slice ``k`` on (CT: as int16 HU when planned)."""
        first, vol = self.first, self.vol
        if frames_arr.shape[1:3] != (first.rows, first.columns):
            raise ReadError(f"size {frames_arr.shape[1:3]} differs from the series", info.path)
        n = frames_arr.shape[0]
        if n != info.frames or k + n > self.out.shape[0]:  # the decoder found other frames
            raise ReadError(f"{n} frames decoded, NumberOfFrames says {info.frames}", info.path)
        if self.to_hu:
            block = frames_arr.astype(np.int16, copy=False)
            if info.rescale_intercept:
                block = block + np.int16(int(info.rescale_intercept))
            self.out[k : k + n] = block
        else:
            self.out[k : k + n] = frames_arr
        self.ready[k : k + n] = True
        if "voi_lut" in extra and vol.voi_lut is None:
            vol.voi_lut = extra["voi_lut"]
        for w in extra.get("warnings", ()):
            if w not in vol.warnings:  # every slice of a series tends to say the same
                vol.warnings.append(w)
        self.done += 1
        if not self._announced:
            self._announced = True
            self.state.partial((vol, k))

    def fail(self, k: int, info: InstanceInfo, reason: str) -> None:
        """Blank the slices of ``info`` (minimum value) and remember why.

        A volume of one file is not blanked: its failure fails the load, and writing
        the blank would touch every page of an array sized by a header that lied.
        """
        out, frames = self.out, self.frames
        if len(self.vol.instances) > 1:
            out[k : k + frames] = np.iinfo(out.dtype).min if out.dtype.kind in "iu" else 0
        self.failures.append(FileProblem(info.path, reason))
        self.ready[k : k + frames] = True
        self.done += 1

    def read_native(self, native: list[Job], total: int) -> None:
        """Native files: direct reads on threads, a few in flight at a time."""
        with ThreadPoolExecutor(max_workers=min(4, len(native))) as pool:
            for (k, info), fut in _windowed(pool, read_native_frames, native, 8):
                try:
                    self.place(k, info, fut.result(), {})
                except MedviewError as exc:
                    self.fail(k, info, exc.reason)
                del fut
                if self.done % 8 == 0:
                    self.state.progress(self.done / total, f"loading {self.done}/{total}")

    def decode(self, coded: list[Job], total: int, processes: bool | None) -> None:
        """Compressed (or unusual) files: pydicom + plugins, in worker processes when
        worthwhile; in this process for what the pool could not do."""
        cached = pixel_cache.load_session(coded)  # decoded-pixel cache (io/cache.py)
        if cached is None:
            self._decode(coded, total, processes, self.place)
            return
        try:
            coded = cached.read_hits(coded, self.place, self.state)
            self._decode(coded, total, processes, cached.storing(self.place))
        finally:
            cached.finish()

    def _decode(self, coded: list[Job], total: int, processes: bool | None, place: _Place) -> None:
        coded = gpu.decode_jobs(coded, place, self.state)  # no-op without a CUDA decoder
        remaining = coded
        pool = decoders.decoder_pool() if processes is not False else None
        if pool is not None:
            remaining = _decode_in_pool(
                pool, coded, place, self.fail, self.state, total, lambda: self.done
            )
        for k, info in remaining:
            self.state.check()
            try:
                arr, extra = decode_file(info.path)
                place(k, info, arr, extra)
            except MedviewError as exc:
                self.fail(k, info, exc.reason)
            self.state.progress(self.done / total, f"decoding {self.done}/{total}")


def _load_dicom_series(
    series: SeriesInfo, state: TaskState, processes: bool | None = None
) -> Volume:
    items = series.instances
    first = items[0]
    color = _is_color(first)
    dtype, to_hu = _plan_dtype(series)
    vol = _new_volume(series, dtype, to_hu, color)
    fill = _SeriesFill(vol, to_hu, state)
    frames = first.frames
    jobs = [(k * frames if len(items) > 1 else 0, info) for k, info in enumerate(items)]
    native = [(k, i) for k, i in jobs if i.pixel_offset is not None]
    coded = [(k, i) for k, i in jobs if i.pixel_offset is None]
    total = len(jobs)
    if native:
        fill.read_native(native, total)
    if coded:
        fill.decode(coded, total, processes)
    failures = fill.failures
    if failures and len(failures) == total:
        raise ReadError(failures[0].reason, failures[0].path)
    for f in failures:
        vol.warnings.append(f"slice not decoded, shown blank: {f}")
    if color and first.photometric.upper() != "RGB":
        vol.photometric = "RGB"
    vol.ready = None
    state.progress(1.0, "loaded")
    return vol


def _decode_in_pool(
    pool: Executor,
    coded: list[Job],
    place: Callable[[int, InstanceInfo, np.ndarray, dict[str, Any]], None],
    fail: Callable[[int, InstanceInfo, str], None],
    state: TaskState,
    total: int,
    count: Callable[[], int],
) -> list[Job]:
    """Decode on the process pool; returns the jobs left to decode in-process (only when
    worker processes cannot run here at all).

    When a worker dies (a decoder aborted or panicked, or hit the worker memory
    limit) the pool is replaced and the files that were in flight are decoded again
    one at a time: the one that kills its worker again is reported as a failure of
    that file, and the rest of the series continues.
    """
    from concurrent.futures.process import BrokenProcessPool

    window = 3 * max(2, decoders.decode_workers())
    todo = list(coded)
    while todo:
        handled = 0
        try:
            for (k, info), fut in _windowed(
                pool, lambda i: decode_file(i.path), todo, window, picklable=decode_file
            ):
                state.check()
                try:
                    arr, extra = fut.result()
                    place(k, info, arr, extra)
                except MedviewError as exc:
                    fail(k, info, exc.reason)
                decoders.mark_working()
                del fut
                handled += 1
                if count() % 4 == 0:
                    state.progress(count() / total, f"decoding {count()}/{total}")
            return []
        except BrokenProcessPool:
            decoders.mark_broken()
            suspects, todo = todo[handled : handled + window], todo[handled + window :]
            if decoders.decoder_pool() is None:  # processes do not work here
                return suspects + todo
            for k, info in suspects:  # one at a time: find the file that kills a worker
                state.check()
                try:
                    arr, extra = decoders.run_isolated(decode_file, info.path)
                    place(k, info, arr, extra)
                except MedviewError as exc:
                    fail(k, info, exc.reason)
            next_pool = decoders.decoder_pool()
            if next_pool is None:
                return todo
            pool = next_pool
    return []


def _windowed(
    pool: Executor,
    fn: Callable[[InstanceInfo], T],
    jobs: Iterable[Job],
    window: int,
    picklable: Callable[[str], T] | None = None,
) -> Iterator[tuple[Job, Future[T]]]:
    """Submit ``fn(info)`` for ``(k, info)`` jobs with at most ``window`` in flight,
    yielding ``((k, info), future)`` in order. Bounding the window bounds memory:
    a finished future holds its decoded slice until the caller has placed it."""
    from collections import deque

    inflight: deque[tuple[Job, Future[T]]] = deque()

    def submit(job: Job) -> Future[T]:
        if picklable is not None:  # process pools need a top-level function
            return pool.submit(picklable, job[1].path)
        return pool.submit(fn, job[1])

    try:
        for job in jobs:
            inflight.append((job, submit(job)))
            if len(inflight) >= window:
                yield inflight.popleft()
        while inflight:
            yield inflight.popleft()
    finally:
        for _, fut in inflight:
            fut.cancel()
