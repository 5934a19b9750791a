"""The decoded-pixel cache: a compressed instance is decoded once, then read back raw.

Decoding JPEG 2000 costs ~25 ms a 512x512 slice on one core; reading the same
slice back raw costs well under 1 ms. The first decode of a compressed instance
therefore writes its frames here, and later loads (the same study opened again,
a prior, the next reader) read them instead of decoding again.

Entries
    One file per decoded instance under :func:`cache_dir` (``<user data>/cache/pixels``),
    named by a hash of the SOP Instance UID and the source fingerprint. The file
    is a 16-byte prefix (magic, CRC-32, header length), a JSON header (dtype,
    shape, the UID and fingerprint again, the decoder's extras: VOI LUT and
    warnings) and the raw little-endian frames at a 64-byte aligned offset, so an
    entry can be memory-mapped (:func:`map_entry`). Entries are written to a
    temporary file and renamed into place (atomic on POSIX and Windows), so a
    reader in another process sees a whole entry or none.

Integrity
    The CRC-32 covers the header and every pixel byte and is checked on every
    read. A mismatch (a flipped bit, a truncated file, a header edited to another
    dtype) drops the entry and the instance is decoded again: corrupted pixels
    are never returned. CRC-32 is for accidental corruption, not an attacker who
    can already write the user's data folder.

Stale sources: the fingerprint
    ``size:crc32`` of the **whole** source file. An edited source gets a new
    fingerprint, so a new entry name: the old pixels cannot be served. Hashing
    every byte costs ~0.1 ms per 250 kB J2K slice (CRC-32 runs at >2 GB/s here),
    about 1/200 of decoding it, and catches what cheaper keys miss: mtime is kept
    by ``cp -p``, ``rsync -t`` and restores from backup, and an in-place edit of
    the middle of the pixel data keeps the size and the first/last 64 kB. mtime
    is deliberately not part of the key: ``touch`` or a copy of the same bytes
    does not change a pixel and keeps its entry.

Size bound
    :func:`limit_bytes`: ``MEDVIEW_PIXEL_CACHE_MB``, else the viewer's setting
    (:func:`set_limit_mb`), else :data:`DEFAULT_LIMIT_MB`; 0 turns the cache off.
    Least recently used entries go first (a hit refreshes the entry's mtime). A
    writer evicts before a write would pass the limit, so the folder stays under it;
    several processes writing at once may each briefly hold back one entry's worth.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medview.io.model import InstanceInfo
from medview.tasks import TaskState, ensure_state

#: environment variable: cache bound in MB (0 turns the cache off)
LIMIT_ENV = "MEDVIEW_PIXEL_CACHE_MB"
#: default bound when neither the variable nor the setting says otherwise
DEFAULT_LIMIT_MB = 8192
#: the viewer setting holding the bound in MB
SETTING_KEY = "pixel_cache_mb"
MAGIC = b"MVPXC01\n"
SUFFIX = ".mvpx"
_PREFIX = struct.Struct("<8sII")  # magic, crc32(header + payload), header length
_ALIGN = 64
_CHUNK = 1 << 20
#: cache reads in flight during a load (bounds the memory held by read-ahead)
_READ_WINDOW = 8
#: eviction leaves this fraction of the limit free, so every write does not rescan
_HEADROOM = 0.1
#: temporary files older than this are leftovers of a crashed writer
_STALE_TMP_S = 3600.0

_configured_mb: int | None = None


class CacheEntryError(Exception):
    """A cache entry that cannot be trusted (corrupted, truncated, another instance)."""


def set_limit_mb(mb: int | None) -> None:
    """The viewer's setting for the bound (None: the default); the variable still wins."""
    global _configured_mb
    _configured_mb = None if mb is None else max(0, int(mb))


def limit_bytes() -> int:
    """The cache bound in bytes (0: cache off)."""
    env = os.environ.get(LIMIT_ENV)
    if env is not None and env.strip():
        try:
            return max(0, int(float(env))) * 1024 * 1024
        except ValueError:
            pass
    mb = DEFAULT_LIMIT_MB if _configured_mb is None else _configured_mb
    return mb * 1024 * 1024


def cache_dir() -> Path:
    """``<user data folder>/cache/pixels`` (not created here)."""
    from medview.paths import user_data_dir

    return user_data_dir() / "cache" / "pixels"


def source_fingerprint(path: str | os.PathLike[str]) -> str:
    """``size:crc32`` of the whole file (see the module docstring for why)."""
    crc = 0
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            crc = zlib.crc32(view[:n], crc)
            size += n
    return f"{size}:{crc:08x}"


def entry_name(sop_uid: str, fingerprint: str) -> str:
    """File name of the entry for this instance and source fingerprint."""
    digest = hashlib.sha256(f"{sop_uid}\0{fingerprint}".encode()).hexdigest()[:40]
    return digest + SUFFIX


def _extra_to_json(extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if extra.get("warnings"):
        out["warnings"] = [str(w) for w in extra["warnings"]]
    if "voi_lut" in extra:
        first, table = extra["voi_lut"]
        out["voi_lut"] = [int(first), np.asarray(table, dtype=np.float32).tolist()]
    return out


def _extra_from_json(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if data.get("warnings"):
        out["warnings"] = list(data["warnings"])
    if "voi_lut" in data:
        first, table = data["voi_lut"]
        out["voi_lut"] = (int(first), np.asarray(table, dtype=np.float32))
    return out


def _encode_header(sop_uid: str, fingerprint: str, arr: np.ndarray, extra: dict[str, Any]) -> bytes:
    header = {
        "sop": sop_uid,
        "fp": fingerprint,
        "dtype": arr.dtype.newbyteorder("<").str,
        "shape": list(arr.shape),
        "extra": _extra_to_json(extra),
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    pad = (-(_PREFIX.size + len(raw))) % _ALIGN
    return raw + b" " * pad  # JSON allows trailing spaces


def _parse_header(raw: bytes) -> tuple[dict[str, Any], np.dtype, tuple[int, ...]]:
    try:
        header = json.loads(raw)
        dtype = np.dtype(str(header["dtype"]))
        shape = tuple(int(n) for n in header["shape"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheEntryError(f"unreadable header ({type(exc).__name__})") from exc
    if dtype.kind not in "iuf" or dtype.byteorder == ">" or any(n < 0 for n in shape):
        raise CacheEntryError("unexpected dtype or shape")
    return header, dtype, shape


def write_entry(
    path: Path, sop_uid: str, fingerprint: str, arr: np.ndarray, extra: dict[str, Any]
) -> int:
    """Write one entry atomically (temporary file + rename); returns its size in bytes."""
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    header = _encode_header(sop_uid, fingerprint, arr, extra)
    payload = arr.data.cast("B") if arr.size else memoryview(b"")
    crc = zlib.crc32(payload, zlib.crc32(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, crc, len(header)))
            f.write(header)
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return _PREFIX.size + len(header) + len(payload)


def _read_prefix(f: Any) -> tuple[int, bytes]:
    prefix = f.read(_PREFIX.size)
    if len(prefix) != _PREFIX.size:
        raise CacheEntryError("truncated prefix")
    magic, crc, hlen = _PREFIX.unpack(prefix)
    if magic != MAGIC or hlen > 1 << 24:
        raise CacheEntryError("not a pixel cache entry")
    header = f.read(hlen)
    if len(header) != hlen:
        raise CacheEntryError("truncated header")
    return crc, header


def read_entry(path: Path, sop_uid: str, fingerprint: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The frames and extras of an entry, after checking its CRC and its identity.

    Raises :class:`CacheEntryError` for anything not exactly as written, and
    ``FileNotFoundError`` when there is no entry.
    """
    with open(path, "rb", buffering=0) as f:
        crc, raw = _read_prefix(f)
        header, dtype, shape = _parse_header(raw)
        if header.get("sop") != sop_uid or header.get("fp") != fingerprint:
            raise CacheEntryError("entry of another instance or source")
        arr = np.empty(shape, dtype=dtype)
        view = arr.data.cast("B") if arr.size else memoryview(bytearray())
        got = f.readinto(view) if arr.size else 0
        if got != arr.nbytes or f.read(1):
            raise CacheEntryError("size differs from the header")
    if zlib.crc32(view, zlib.crc32(raw)) != crc:
        raise CacheEntryError("checksum mismatch")
    return arr, _extra_from_json(header.get("extra") or {})


def map_entry(path: Path) -> np.ndarray:
    """The entry's frames memory-mapped read-only, after its CRC check (a full read)."""
    with open(path, "rb") as f:
        crc, raw = _read_prefix(f)
        _, dtype, shape = _parse_header(raw)
        offset = _PREFIX.size + len(raw)
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    payload = arr.data.cast("B") if arr.size else memoryview(b"")
    if zlib.crc32(payload, zlib.crc32(raw)) != crc:
        raise CacheEntryError("checksum mismatch")
    return arr


class PixelCache:
    """One cache folder with its bound (see the module docstring)."""

    def __init__(self, root: Path | None = None, limit: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()
        self.limit = limit_bytes() if limit is None else int(limit)
        self._lock = threading.Lock()
        self._total: int | None = None  # estimate, refreshed by evict()

    def path_for(self, sop_uid: str, fingerprint: str) -> Path:
        return self.root / entry_name(sop_uid, fingerprint)

    def get(self, sop_uid: str, fingerprint: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The cached frames, or None (no entry; a bad entry is deleted first)."""
        path = self.path_for(sop_uid, fingerprint)
        try:
            out = read_entry(path, sop_uid, fingerprint)
        except FileNotFoundError:
            return None
        except (CacheEntryError, OSError, ValueError):
            self._drop(path)
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        return out

    def has(self, sop_uid: str, fingerprint: str) -> bool:
        """Whether an entry exists (its CRC is checked when it is read)."""
        return self.path_for(sop_uid, fingerprint).is_file()

    def put(self, sop_uid: str, fingerprint: str, arr: np.ndarray, extra: dict[str, Any]) -> bool:
        """Store decoded frames; False when they cannot fit or the write failed."""
        size = arr.nbytes + 4096
        if self.limit <= 0 or size > self.limit:
            return False
        with self._lock:
            if self._total is None or self._total + size > self.limit:
                self.evict(self.limit - size)
            try:
                written = write_entry(
                    self.path_for(sop_uid, fingerprint), sop_uid, fingerprint, arr, extra
                )
            except OSError:
                return False
            self._total = (self._total or 0) + written
        return True

    def _drop(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    def entries(self) -> list[tuple[float, int, Path]]:
        """``(mtime, size, path)`` of every entry, oldest first."""
        out: list[tuple[float, int, Path]] = []
        try:
            it = os.scandir(self.root)
        except FileNotFoundError:
            return out
        now = time.time()
        with it:
            for e in it:
                try:
                    st = e.stat()
                except OSError:
                    continue
                if e.name.startswith(".tmp-"):
                    if now - st.st_mtime > _STALE_TMP_S:
                        self._drop(Path(e.path))
                    continue
                if e.name.endswith(SUFFIX):
                    out.append((st.st_mtime, st.st_size, Path(e.path)))
        out.sort()
        return out

    def size_bytes(self) -> int:
        """Bytes held by entries now."""
        return sum(size for _, size, _ in self.entries())

    def evict(self, target: int | None = None) -> int:
        """Delete least recently used entries until at most ``target`` bytes (default:
        the limit less some headroom) remain; returns the bytes now held."""
        goal = int(self.limit * (1 - _HEADROOM)) if target is None else target
        goal = min(goal, int(self.limit * (1 - _HEADROOM)))
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= goal:
                break
            self._drop(path)
            total -= size
        self._total = total
        return total

    def clear(self) -> None:
        """Delete every entry."""
        for _, _, path in self.entries():
            self._drop(path)
        self._total = 0


def default_cache() -> PixelCache | None:
    """The per-user cache, or None when the bound is 0 (cache off)."""
    return PixelCache() if limit_bytes() > 0 else None


Place = Callable[[int, InstanceInfo, np.ndarray, dict[str, Any]], None]
Job = tuple[int, InstanceInfo]


def _fingerprint_or_none(path: str) -> str | None:
    try:
        return source_fingerprint(path)
    except OSError:
        return None


class LoadSession:
    """The cache's part in one series load: hits placed, misses written after decoding.

    ``read_hits`` places what the cache holds (checked reads on a few threads) and
    returns the jobs left to decode; ``storing(place)`` wraps the loader's place
    callback so each decoded instance is also written (on one background thread);
    ``finish()`` waits for those writes.
    """

    def __init__(self, cache: PixelCache) -> None:
        self.cache = cache
        self.fingerprints: dict[str, str] = {}
        self.hits = 0
        self._writer: ThreadPoolExecutor | None = None
        self._writes: list[Future[bool]] = []

    def _lookup(self, info: InstanceInfo) -> tuple[np.ndarray, dict[str, Any]] | None:
        if not info.sop_uid:
            return None
        fp = _fingerprint_or_none(info.path)
        if fp is None:
            return None
        self.fingerprints[info.path] = fp
        return self.cache.get(info.sop_uid, fp)

    def read_hits(self, jobs: list[Job], place: Place, state: TaskState) -> list[Job]:
        """Place cached instances; returns the jobs still to decode, in order.

        Reads run on a few threads (file reads and CRC-32 release the GIL) with at most
        :data:`_READ_WINDOW` entries in flight, so memory stays near the volume's size.
        """
        from collections import deque

        misses: list[Job] = []
        inflight: deque[tuple[Job, Future[tuple[np.ndarray, dict[str, Any]] | None]]] = deque()
        with ThreadPoolExecutor(max_workers=min(4, max(1, len(jobs)))) as pool:
            try:
                for job in jobs:
                    inflight.append((job, pool.submit(self._lookup, job[1])))
                    if len(inflight) >= _READ_WINDOW:
                        self._place_hit(*inflight.popleft(), place, misses, state)
                while inflight:
                    self._place_hit(*inflight.popleft(), place, misses, state)
            finally:
                for _, fut in inflight:
                    fut.cancel()
        misses.sort(key=lambda job: job[0])
        return misses

    def _place_hit(
        self,
        job: Job,
        fut: Future[tuple[np.ndarray, dict[str, Any]] | None],
        place: Place,
        misses: list[Job],
        state: TaskState,
    ) -> None:
        state.check()
        found = fut.result()
        if found is None:
            misses.append(job)
            return
        try:
            place(job[0], job[1], found[0], found[1])
        except Exception:  # e.g. another size: the decode path says why
            misses.append(job)
        else:
            self.hits += 1

    def storing(self, place: Place) -> Place:
        """``place`` that also writes each decoded instance to the cache."""

        def place_and_store(
            k: int, info: InstanceInfo, arr: np.ndarray, extra: dict[str, Any]
        ) -> None:
            place(k, info, arr, extra)
            fp = self.fingerprints.get(info.path)
            if fp is None or not info.sop_uid:
                return
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1)
            self._writes.append(self._writer.submit(self._store, info, fp, arr, extra))

        return place_and_store

    def _store(self, info: InstanceInfo, fp: str, arr: np.ndarray, extra: dict[str, Any]) -> bool:
        """Write an entry unless the source changed while it was being decoded."""
        if _fingerprint_or_none(info.path) != fp:
            return False
        return self.cache.put(info.sop_uid, fp, arr, extra)

    def finish(self) -> int:
        """Wait for the pending writes; returns how many entries were written."""
        written = 0
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            written = sum(1 for f in self._writes if not f.exception() and f.result())
            self._writer = None
            self._writes = []
        return written


def load_session(jobs: Iterable[Job]) -> LoadSession | None:
    """A cache session for a load of these compressed jobs, or None (cache off)."""
    if not any(info.sop_uid for _, info in jobs):
        return None
    cache = default_cache()
    return LoadSession(cache) if cache is not None else None


def warm(instances: list[InstanceInfo], state: TaskState | None = None) -> tuple[int, int]:
    """Decode into the cache the compressed ``instances`` not in it yet (no volume is
    built). Returns ``(already cached, newly written)``. Cancellable between files."""
    from medview.io import decoders
    from medview.io.dicom import decode_file

    state = ensure_state(state)
    cache = default_cache()
    coded = [i for i in instances if i.pixel_offset is None and i.sop_uid and not i.pixel_problem]
    if cache is None or not coded:
        return 0, 0
    todo: list[tuple[InstanceInfo, str]] = []
    for info in coded:
        state.check()
        fp = _fingerprint_or_none(info.path)
        if fp is not None and not cache.has(info.sop_uid, fp):
            todo.append((info, fp))
    have, written = len(coded) - len(todo), 0
    pool = decoders.decoder_pool()  # None: MEDVIEW_DECODE_WORKERS < 2, decode here
    window = max(2, decoders.decode_workers())
    for start in range(0, len(todo), window):
        state.check()
        batch = todo[start : start + window]
        if pool is not None:
            results = _decode_batch(pool, [info.path for info, _ in batch])
            if results is None:  # the pool broke: warming is optional, stop here
                decoders.mark_broken()
                break
        else:
            results = [_decode_or_none(decode_file, info.path) for info, _ in batch]
        for (info, fp), res in zip(batch, results, strict=True):
            if res is not None and cache.put(info.sop_uid, fp, res[0], res[1]):
                written += 1
        done = start + len(batch)
        state.progress(done / len(todo), f"caching {done}/{len(todo)}")
    return have, written


def _decode_batch(
    pool: Any, paths: list[str]
) -> list[tuple[np.ndarray, dict[str, Any]] | None] | None:
    """Decode ``paths`` on the process pool (None for a file that failed); None when
    the pool broke."""
    from concurrent.futures.process import BrokenProcessPool

    from medview.io.dicom import decode_file

    results: list[tuple[np.ndarray, dict[str, Any]] | None] = []
    try:
        futs = [pool.submit(decode_file, path) for path in paths]
    except (BrokenProcessPool, RuntimeError):
        return None
    for f in futs:
        try:
            results.append(f.result())
        except BrokenProcessPool:
            return None
        except Exception:  # this file does not decode: the load will say why
            results.append(None)
    return results


def _decode_or_none(
    fn: Callable[[str], tuple[np.ndarray, dict[str, Any]]], path: str
) -> tuple[np.ndarray, dict[str, Any]] | None:
    try:
        return fn(path)
    except Exception:
        return None
