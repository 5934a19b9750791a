"""Series thumbnails (Qt-free, so the function can run in the decoder processes).

A compressed slice (JPEG 2000 and friends) is decoded by C code that holds the
GIL for tens of milliseconds; decoded on a thread, it would freeze the GUI that
long. Thumbnails of compressed series are therefore rendered in the core's
decoder *processes* when they exist (``MEDVIEW_DECODE_WORKERS`` >= 2), and on the
worker thread otherwise. A series shown in a viewport gets its thumbnail from the
loaded volume instead (no extra decode).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
SIZE = 64


def shrink(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Decimate a rendered uint8 image to at most ``size`` pixels per side."""
    h, w = img.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / size)))
    return np.ascontiguousarray(img[::step, ::step])


def from_volume(vol: Any, size: int = SIZE) -> np.ndarray:
    """Thumbnail of the middle slice of a loaded volume (core ``render_slice``)."""
    from medview.imaging.display import render_slice

    return shrink(render_slice(vol, vol.shape[0] // 2, "axial"), size)


def one_image_series(series: Any) -> Any:
    """The series reduced to its middle instance (what a thumbnail needs)."""
    if series.kind == "dicom" and len(series.instances) > 1:
        mid = series.instances[len(series.instances) // 2]
        return dataclasses.replace(series, instances=[mid], slices=1)
    return series


def render_thumbnail(series: Any, size: int = SIZE) -> np.ndarray:
    """Load the middle image of ``series`` and render it small (any process)."""
    from medview.io import load_series

    return from_volume(load_series(one_image_series(series)), size)


def _decoder_pool():
    """The core's decoder process pool, or None (in-process decoding)."""
    from medview.io.volume import decoder_pool

    return decoder_pool()


def make_thumbnails(series_list: list[tuple[str, Any]], state=None) -> int:
    """Worker task: ``state.partial((key, uint8 image))`` for each series."""
    from medview.ui.background import lower_thread_priority

    lower_thread_priority()
    done = 0
    total = max(1, len(series_list))
    pool = None
    for n, (key, series) in enumerate(series_list):
        if state is not None:
            state.progress(n / total, f"thumbnails {n}/{total}")
        if isinstance(series, dict):  # a database series: scan its middle file first
            files = list(series.get("files") or [])
            if not files:
                continue
            try:
                from medview.io import scan

                found = scan([files[len(files) // 2]]).series
            except Exception as exc:
                log.info("no thumbnail for %s: %s", key, exc)
                continue
            if not found:
                continue
            series = found[0]
        one = one_image_series(series)
        compressed = one.kind == "dicom" and any(i.pixel_offset is None for i in one.instances)
        try:
            if compressed and pool is None:
                pool = _decoder_pool()
            if compressed and pool is not None:
                fut = pool.submit(render_thumbnail, one)
                while True:  # wait, but stay cancellable
                    try:
                        thumb = fut.result(timeout=0.1)
                        break
                    except TimeoutError:
                        if state is not None and state.cancelled:
                            fut.cancel()
                            return done
            else:
                thumb = render_thumbnail(one)
        except Exception as exc:  # a thumbnail is optional
            log.info("no thumbnail for %s: %s", key, exc)
            continue
        if state is not None:
            state.partial((key, thumb))
        done += 1
    return done
