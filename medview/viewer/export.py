"""Cine and image export (Qt-free): frames of a series written as GIF, MP4, PNG or JPEG.

:func:`cine_frames` renders one frame per slice of a plane, in slice order, through
the viewer's display pipeline (:func:`medview.imaging.display.render_slice`, or
:func:`medview.imaging.projection.render_projection` for a slab). :func:`write_cine`
writes them as an animated GIF (Pillow) or an H.264 MP4 (the ffmpeg binary that
the ``imageio-ffmpeg`` wheel bundles; nothing else is run); :func:`write_rotation` a full
turn of the 3D volume rendering the same way. :func:`write_image`
writes one uint8 image as PNG or JPEG (Pillow).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from medview.imaging import display
from medview.imaging.geometry import plane_count
from medview.tasks import TaskState

if TYPE_CHECKING:
    from medview.io.model import Volume

#: file suffixes :func:`write_cine` writes
CINE_SUFFIXES: tuple[str, ...] = (".gif", ".mp4")
#: file suffixes :func:`write_image` writes
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


def cine_frames(
    volume: Volume,
    plane: str = "axial",
    window: tuple[float, float] | None = None,
    projection: str | None = None,
    slab_mm: float | None = None,
    state: TaskState | None = None,
) -> Iterator[np.ndarray]:
    """One uint8 frame (H, W) or (H, W, 3) per slice of ``plane``, first to last.

    With ``projection`` each frame is the slab of ``slab_mm`` centred on that slice.
    ``state.progress`` reports the fraction done (and may cancel).
    """
    n = plane_count(volume, plane)
    if window is None and not volume.is_color:
        window = display.volume_window(volume)
    for k in range(n):
        if state is not None:
            state.progress(k / max(n, 1), f"frame {k + 1} of {n}")
        if projection:
            from medview.imaging.projection import render_projection

            yield render_projection(volume, k, plane, projection, slab_mm, window=window)
        else:
            yield display.render_slice(volume, k, plane, window=window)


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: pad one black row/column where needed."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (frame.ndim - 2)
    return np.pad(frame, pad)


def _rgb(frame: np.ndarray) -> np.ndarray:
    return np.repeat(frame[:, :, None], 3, axis=2) if frame.ndim == 2 else frame


def mp4_available() -> bool:
    """True when the ``imageio-ffmpeg`` package (with its bundled ffmpeg) is installed."""
    try:
        import imageio_ffmpeg

        return bool(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:
        return False


def _write_mp4(path: str, frames: list[np.ndarray], fps: float) -> None:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise ValueError(
            "MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); use .gif"
        ) from None
    first = _even(frames[0])
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(
        path,
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        macro_block_size=1,
        quality=8,
        output_params=["-g", "1"],
    )
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(_rgb(_even(f))))
    writer.close()


_GREY = bytes(v for g in range(256) for v in (g, g, g))


def _gif_frames(frames: list[np.ndarray]) -> list[Any]:
    """Palette images sharing ONE palette (the GIF's global one): an exact 256-level grey
    ramp for greyscale frames; for colour, 256 colours quantised from a subsample of
    every frame, which each frame is mapped to."""
    from PIL import Image

    colour = [f for f in frames if f.ndim == 3]
    palette: Any = None
    if colour:
        step = max(1, int(np.sqrt(len(colour) * colour[0].shape[0] * colour[0].shape[1] / 4e6)))
        sample = np.concatenate([f[::step, ::step, :3] for f in colour], axis=0)
        palette = Image.fromarray(np.ascontiguousarray(sample)).quantize(256)
    out: list[Any] = []
    for f in frames:
        f = np.ascontiguousarray(f)
        if f.ndim == 2:
            im = Image.frombytes("P", (f.shape[1], f.shape[0]), f.tobytes())
            im.putpalette(_GREY)
        else:
            im = Image.fromarray(np.ascontiguousarray(f[:, :, :3])).quantize(palette=palette)
        out.append(im)
    return out


def _write_gif(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Every frame written, identical ones too (Pillow's ``save_all`` merges consecutive
    identical frames, which would lose slices), looping forever."""
    from PIL import GifImagePlugin

    ms = max(20, int(round(1000.0 / fps)))
    images = _gif_frames(frames)
    header, _ = GifImagePlugin.getheader(images[0], info={"loop": 0, "duration": ms})
    with open(path, "wb") as fp:
        for part in header:
            fp.write(part)
        for im in images:
            for part in GifImagePlugin.getdata(im, duration=ms, disposal=1):
                fp.write(part)
        fp.write(b";")


def write_cine(path: str, frames: list[np.ndarray], fps: float = 10.0) -> int:
    """Write ``frames`` as ``path`` (.gif or .mp4) at ``fps``; returns the frame count.

    ``ValueError`` for an unknown suffix, no frames, a bad frame rate or a missing
    MP4 encoder; ``OSError`` when the file cannot be written.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in CINE_SUFFIXES:
        raise ValueError(f"a cine is written as {' or '.join(CINE_SUFFIXES)}, not {suffix!r}")
    if not frames:
        raise ValueError("no frames to write")
    if not 0 < fps <= 120:
        raise ValueError(f"--fps must be in (0, 120], not {fps}")
    if suffix == ".gif":
        _write_gif(path, frames, fps)
    else:
        _write_mp4(path, frames, fps)
    return len(frames)


def write_cine_of(
    path: str,
    volume: Volume,
    plane: str = "axial",
    window: tuple[float, float] | None = None,
    projection: str | None = None,
    slab_mm: float | None = None,
    fps: float = 10.0,
    state: TaskState | None = None,
) -> int:
    """:func:`cine_frames` of ``volume`` written by :func:`write_cine` (a worker function)."""
    frames = list(cine_frames(volume, plane, window, projection, slab_mm, state))
    return write_cine(path, frames, fps)


def write_rotation(
    path: str,
    volume: Volume,
    view: Any = None,
    frames: int = 36,
    fps: float = 10.0,
    renderer: Any = None,
    state: TaskState | None = None,
) -> int:
    """A 3D rotation of ``volume`` (a full turn about the head-foot axis from ``view``, a
    :class:`~medview.viewer.volume3d.View3D`; default: bone preset, from the front,
    512x512) written by :func:`write_cine` as GIF or MP4, ``frames`` frames. ``renderer``:
    the 3D view's :class:`~medview.viewer.volume3d.VolumeRenderer` (else one is made and
    closed here). A worker function; ``ValueError`` when VTK is missing."""
    from medview.viewer import volume3d

    if os.path.splitext(path)[1].lower() not in CINE_SUFFIXES:
        raise ValueError(f"a rotation is written as {' or '.join(CINE_SUFFIXES)}, not {path!r}")
    if renderer is None and not volume3d.vtk_available():
        raise ValueError("3D rendering needs VTK: pip install 'medview[3d]'")
    views = volume3d.rotation_views(view or volume3d.View3D(), frames)
    own = renderer is None
    r = volume3d.VolumeRenderer(volume) if own else renderer
    try:
        images = r.render_all(views, state)
    finally:
        if own:
            r.close()
    return write_cine(path, images, fps)


def write_image(path: str, image: np.ndarray, quality: int = 92) -> None:
    """Write a uint8 (H, W), (H, W, 3) or (H, W, 4) image as PNG or JPEG (by suffix)."""
    from PIL import Image

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"an image is written as PNG or JPEG, not {suffix!r}")
    img = Image.fromarray(np.ascontiguousarray(image))
    if suffix == ".png":
        img.save(path, format="PNG")
    else:
        img.convert("RGB" if img.mode in ("RGBA", "P") else img.mode).save(
            path, format="JPEG", quality=quality
        )


__all__ = [
    "CINE_SUFFIXES",
    "IMAGE_SUFFIXES",
    "cine_frames",
    "mp4_available",
    "write_cine",
    "write_cine_of",
    "write_image",
    "write_rotation",
]
