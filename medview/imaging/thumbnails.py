"""Series thumbnails (Qt-free, so the render can run in the decoder processes).

A compressed slice (JPEG 2000 and friends) is decoded by C code that holds the
GIL for tens of milliseconds; decoded on a thread, it would freeze the GUI that
long. Thumbnails of compressed series are therefore rendered in the core's
decoder *processes* when they exist (``MEDVIEW_DECODE_WORKERS`` >= 2), and on the
worker thread otherwise. A series shown in a viewport gets its thumbnail from the
loaded volume instead (no extra decode). The pool is the core's one decoder pool
(:func:`medview.io.decoders.decoder_pool`).

:func:`make_thumbnails` is a task function (``state: TaskState | None``); the GUI
runs it on a worker thread, which lowers its own priority (``medview.ui.workers``).
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import numpy as np

from medview.io import decoders
from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.io.model import SeriesInfo, Volume

log = logging.getLogger(__name__)
SIZE = 64


def shrink(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Decimate a rendered uint8 image to at most ``size`` pixels per side."""
    h, w = img.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / size)))
    return np.ascontiguousarray(img[::step, ::step])


def from_volume(vol: Volume, size: int = SIZE) -> np.ndarray:
    """Thumbnail of the middle slice of a loaded volume (core ``render_slice``)."""
    from medview.imaging.display import render_slice

    return shrink(render_slice(vol, vol.shape[0] // 2, "axial"), size)


def one_image_series(series: SeriesInfo) -> SeriesInfo:
    """The series reduced to its middle instance (what a thumbnail needs)."""
    if series.kind == "dicom" and len(series.instances) > 1:
        mid = series.instances[len(series.instances) // 2]
        return dataclasses.replace(series, instances=[mid], slices=1)
    return series


def render_thumbnail(series: SeriesInfo, size: int = SIZE) -> np.ndarray:
    """Load the middle image of ``series`` and render it small (any process)."""
    from medview.io import load_series

    return from_volume(load_series(one_image_series(series)), size)


def make_thumbnails(
    series_list: list[tuple[str, SeriesInfo]], state: TaskState | None = None
) -> int:
    """Worker task: ``state.partial((key, uint8 image))`` for each series.

    ``series_list`` holds (key, :class:`~medview.io.SeriesInfo`) pairs (a database
    series too: :func:`medview.viewer.session.middle_image_series`). Compressed DICOM is
    rendered in the decoder processes when there are some. Returns how many
    thumbnails were made.
    """
    state = ensure_state(state)
    done = 0
    total = max(1, len(series_list))
    pool = None
    for n, (key, series) in enumerate(series_list):
        state.progress(n / total, f"thumbnails {n}/{total}")
        one = one_image_series(series)
        compressed = one.kind == "dicom" and any(i.pixel_offset is None for i in one.instances)
        try:
            if compressed and pool is None:
                pool = decoders.decoder_pool()
            if compressed and pool is not None:
                fut = pool.submit(render_thumbnail, one)
                while True:  # wait, but stay cancellable
                    try:
                        thumb = fut.result(timeout=0.1)
                        break
                    except FutureTimeout:
                        if state.cancelled:
                            fut.cancel()
                            return done
            else:
                thumb = render_thumbnail(one)
        except Exception as exc:  # a thumbnail is optional
            log.info("no thumbnail for %s: %s", key, exc)
            continue
        state.partial((key, thumb))
        done += 1
    return done
