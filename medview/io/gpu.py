"""Optional GPU decoding of lossless JPEG 2000 / HTJ2K frames with NVIDIA nvImageCodec.

Used only when all of these hold; otherwise :func:`decode_jobs` returns every job
untouched and the CPU path (pydicom's plugins in the decoder processes) decodes:

* the ``nvidia.nvimgcodec`` package imports (``pip install nvidia-nvimgcodec-cu12``),
* the CUDA driver reports at least one device (``cuInit`` / ``cuDeviceGetCount``
  through ``libcuda``; no torch needed),
* ``MEDVIEW_GPU_DECODE`` is not ``0``,
* the instance is lossless JPEG 2000 or HTJ2K (1.2.840.10008.1.2.4.90, .201, .202),
  one sample per pixel, MONOCHROME1/2, 8 or 16 bits allocated, no LUT sequences.

Frames are sent to the GPU in batches of :data:`BATCH` files. The first file a
process decodes on the GPU is also decoded on the CPU and compared: if the two
differ by one bit, the GPU path is switched off for the rest of the process (so a
decoder difference can never show other pixels than the CPU path would).

Not measured: no machine with a GPU was available when this was written; see
docs/benchmarks.md.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from medview.io.model import InstanceInfo
from medview.tasks import TaskState

#: files sent to the GPU per decode call
BATCH = 32
LOSSLESS_J2K = frozenset(
    {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}
)
Place = Callable[[int, InstanceInfo, np.ndarray, dict[str, Any]], None]
Job = tuple[int, InstanceInfo]

_state: dict[str, Any] = {"available": None, "verified": False, "decoder": None}


def _cuda_devices() -> int:
    """CUDA devices the driver reports (0 without a driver)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    return 0


def available() -> bool:
    """Whether the GPU path can be used in this process (checked once)."""
    if os.environ.get("MEDVIEW_GPU_DECODE", "").strip() == "0":
        return False
    if _state["available"] is None:
        ok = False
        try:
            from nvidia import nvimgcodec  # type: ignore[import-not-found]

            if _cuda_devices() > 0:
                _state["decoder"] = nvimgcodec.Decoder()
                ok = True
        except Exception:  # not installed, no driver, or the decoder would not start
            ok = False
        _state["available"] = ok
    return bool(_state["available"])


def suitable(info: InstanceInfo) -> bool:
    """Whether this instance's pixels may be decoded on the GPU."""
    return (
        info.transfer_syntax in LOSSLESS_J2K
        and info.samples_per_pixel == 1
        and info.photometric.upper() in ("MONOCHROME1", "MONOCHROME2")
        and info.bits_allocated in (8, 16)
        and not info.has_modality_lut
        and not info.has_voi_lut
        and not info.pixel_problem
    )


def _stored(arr: np.ndarray, info: InstanceInfo) -> np.ndarray:
    """A decoded frame as the CPU path gives it: the stored type, with the bits above
    BitsStored sign-extended (signed) or cleared (unsigned)."""
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[..., 0]
    signed = bool(info.pixel_representation)
    if info.bits_allocated == 8:
        dtype: np.dtype = np.dtype(np.int8 if signed else np.uint8)
    else:
        dtype = np.dtype("<i2" if signed else "<u2")
    if arr.dtype.itemsize != dtype.itemsize:
        arr = arr.astype(dtype)
    arr = np.ascontiguousarray(arr).view(dtype)
    bits = info.bits_stored
    if bits and bits < info.bits_allocated:
        if signed:
            shift = info.bits_allocated - bits
            arr = ((arr.astype(np.int32) << shift) >> shift).astype(dtype)
        else:
            arr = arr & np.array((1 << bits) - 1, dtype=dtype)
    return arr


def _frames(info: InstanceInfo) -> list[bytes]:
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(info.path, force=True)
    return list(generate_frames(ds.PixelData, number_of_frames=info.frames))


def plain_codestream(frame: bytes, info: InstanceInfo) -> bool:
    """Whether a frame is a bare J2K codestream whose one component has exactly the
    precision and signedness the header declares (SIZ marker segment, ISO 15444-1 A.5.1).

    Anything else (a JP2 wrapper, a sign or precision that pydicom corrects for, more
    components) stays on the CPU path, which knows those corrections."""
    if len(frame) < 43 or frame[:4] != b"\xff\x4f\xff\x51":
        return False
    components = int.from_bytes(frame[40:42], "big")
    ssiz = frame[42]
    signed, precision = bool(ssiz & 0x80), (ssiz & 0x7F) + 1
    bits = info.bits_stored or info.bits_allocated
    return components == 1 and signed == bool(info.pixel_representation) and precision == bits


def decode_files(infos: list[InstanceInfo]) -> list[np.ndarray | None]:
    """Decode the files' frames on the GPU: (frames, rows, cols) each, in the stored
    type; None for a file left to the CPU (see :func:`plain_codestream`)."""
    from nvidia import nvimgcodec

    streams: list[bytes] = []
    counts: list[int] = []
    for info in infos:
        try:
            frames = _frames(info)
        except Exception:  # unreadable here: the CPU path says why
            frames = []
        if not all(plain_codestream(f, info) for f in frames):
            frames = []
        streams.extend(frames)
        counts.append(len(frames))
    params = nvimgcodec.DecodeParams(
        color_spec=nvimgcodec.ColorSpec.UNCHANGED, allow_any_depth=True
    )
    images = _state["decoder"].decode(streams, params=params) if streams else []
    out: list[np.ndarray | None] = []
    pos = 0
    for info, n in zip(infos, counts, strict=True):
        imgs = images[pos : pos + n]
        pos += n
        if n == 0 or any(img is None for img in imgs):
            out.append(None)
            continue
        out.append(np.stack([_stored(np.asarray(img.cpu()), info) for img in imgs]))
    return out


def _verify(info: InstanceInfo, gpu_frames: np.ndarray) -> bool:
    """Compare the process's first GPU decode with the CPU decode, bit for bit."""
    from medview.io.dicom import decode_file

    cpu, _ = decode_file(info.path)
    same = cpu.dtype == gpu_frames.dtype and np.array_equal(cpu, gpu_frames)
    _state["verified"] = same
    _state["available"] = same
    return same


def decode_jobs(jobs: list[Job], place: Place, state: TaskState) -> list[Job]:
    """Decode the GPU-suitable jobs in batches and place them; returns the jobs left
    for the CPU (all of them when there is no GPU decoder)."""
    if not jobs or not available():
        return jobs
    todo = [job for job in jobs if suitable(job[1])]
    left = [job for job in jobs if not suitable(job[1])]
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        state.check()
        try:
            decoded = decode_files([info for _, info in batch])
        except Exception:
            left.extend(todo[start:])  # the CPU path reports what is really wrong
            break
        done = [(job, arr) for job, arr in zip(batch, decoded, strict=True) if arr is not None]
        first = done[0] if done else None
        if first is not None and not _state["verified"] and not _verify(first[0][1], first[1]):
            left.extend(todo[start:])
            break
        for (k, info), arr in zip(batch, decoded, strict=True):
            if arr is None:
                left.append((k, info))
            else:
                place(k, info, arr, {})
    left.sort(key=lambda job: job[0])
    return left
