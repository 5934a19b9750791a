"""Preprocessing shared by training and inference (numpy + Pillow, no torch).

Every image a model sees goes through the same two steps, in training and in
inference alike:

1. **to a display image**: anything the viewer opens (DICOM CR/DX including
   MONOCHROME1, PNG/JPEG, a CT slice) becomes an 8-bit greyscale image the way
   a radiologist sees it: modality LUT, the file's VOI window (or an automatic
   one), inversion for MONOCHROME1, colour reduced to luminance
   (:func:`display_image_from_volume`, :func:`display_image_from_array`);
2. **to the model input** (:func:`prepare`): centre-crop to the model's aspect
   ratio, resize to its declared size (area averaging when shrinking, bicubic
   when enlarging, nothing when the size already matches), scale to [0, 1] and
   normalise with the declared mean and std.

PneumoniaMNIST's 28x28 uint8 arrays are already display images, so the training
pipeline calls :func:`prepare` on them directly; a 28x28 PNG written from such an
array is read back unchanged and gives bit-identical model input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InputSpec:
    """A model's declared input (the ``input`` block of metadata.json)."""

    channels: int = 1
    height: int = 28
    width: int = 28
    mean: float = 0.5
    std: float = 0.25
    resize: str = "center-crop, area (shrink) / bicubic (enlarge)"
    intensity: str = "8-bit display image (modality LUT, VOI window, MONOCHROME1 inverted) / 255"
    polarity: str = "as-displayed"  # or "chest-auto": undo negatives (see polarity_score)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        size = d.get("size", [d.get("height", 28), d.get("width", 28)])
        if isinstance(size, int):
            size = [size, size]
        return cls(
            channels=int(d.get("channels", 1)),
            height=int(size[0]),
            width=int(size[1]),
            mean=float(d.get("mean", 0.5)),
            std=float(d.get("std", 0.25)),
            resize=str(d.get("resize", cls.resize)),
            intensity=str(d.get("intensity", cls.intensity)),
            polarity=str(d.get("polarity", "as-displayed")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "size": [self.height, self.width],
            "mean": self.mean,
            "std": self.std,
            "resize": self.resize,
            "intensity": self.intensity,
            "polarity": self.polarity,
        }


def to_gray_u8(img: np.ndarray) -> np.ndarray:
    """Reduce an 8-bit RGB(A) or grey image to 2-D uint8 luminance (ITU-R 601)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        rgb = a[..., :3].astype(np.float32)
        a = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        a = np.clip(np.rint(a), 0, 255)
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {tuple(np.shape(img))}")
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a


def center_crop(img: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """Crop the centre of ``img`` to width/height == ``aspect``."""
    h, w = img.shape[:2]
    if w / h > aspect:  # too wide
        nw = max(1, round(h * aspect))
        x0 = (w - nw) // 2
        return img[:, x0 : x0 + nw]
    nh = max(1, round(w / aspect))
    y0 = (h - nh) // 2
    return img[y0 : y0 + nh, :]


def resize_u8(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a 2-D uint8 image; identity when the size already matches."""
    if img.shape == (height, width):
        return img
    from PIL import Image

    shrinking = img.shape[0] >= height and img.shape[1] >= width
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(img).resize((width, height), method), dtype=np.uint8)


# Chest polarity guard. On a frontal chest radiograph shown with the standard
# polarity the central strip (spine, mediastinum) is brighter than the two lung
# fields. A clearly negative difference means the image is displayed as a negative
# (an inverted export, or a file whose Photometric Interpretation is wrong), and
# models declaring ``"polarity": "chest-auto"`` get it inverted back. The margin is
# set so that no PneumoniaMNIST train or val image is flipped (the lowest score there
# is -9.7 of 255), i.e. the guard never changes the training pipeline's inputs.
POLARITY_MARGIN = 12.0


def polarity_score(img: np.ndarray) -> float:
    """Mean of the central strip minus mean of the lung fields (uint8 units)."""
    x = np.asarray(img, dtype=np.float32)
    h, w = x.shape[-2:]
    r0, r1 = int(0.25 * h), int(0.75 * h)
    left = x[..., r0:r1, int(0.15 * w) : int(0.35 * w)]
    right = x[..., r0:r1, int(0.65 * w) : int(0.85 * w)]
    lungs = (left.sum() + right.sum()) / max(left.size + right.size, 1)
    center = x[..., r0:r1, int(0.42 * w) : int(0.58 * w)].mean()
    return float(center - lungs)


def looks_negative(img: np.ndarray) -> bool:
    """True when a chest radiograph appears to be displayed as a negative."""
    return polarity_score(img) < -POLARITY_MARGIN


def fit_display(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """2-D uint8 display image -> uint8 (H, W) at the model's size.

    Polarity guard (when the spec asks for it), centre crop, resize.
    """
    g = to_gray_u8(img)
    if spec.polarity == "chest-auto" and looks_negative(g):
        g = 255 - g
    g = center_crop(g, spec.width / spec.height)
    return resize_u8(g, spec.height, spec.width)


def normalize(u8: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (..., H, W) -> float32 normalised with the declared mean/std."""
    x = u8.astype(np.float32) / np.float32(255.0)
    return (x - np.float32(spec.mean)) / np.float32(spec.std)


def prepare(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """One display image -> float32 model input of shape (C, H, W)."""
    x = normalize(fit_display(img, spec), spec)
    return np.repeat(x[None], spec.channels, axis=0)


def prepare_batch(images: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A stack of uint8 display images (N, H, W) -> float32 (N, C, H', W')."""
    return (
        np.stack([prepare(im, spec) for im in images])
        if len(images)
        else np.zeros((0, spec.channels, spec.height, spec.width), np.float32)
    )


# -- from what the viewer opens to display images -----------------------------------


def display_image_from_volume(vol: Any, index: int = 0) -> np.ndarray:
    """Slice ``index`` of a :class:`medview.io.Volume` as the 8-bit image a reader sees.

    Uses the viewer's own pipeline (:func:`medview.imaging.display.render_slice`):
    modality LUT, the file's VOI LUT or window (an automatic window when the file
    has none), MONOCHROME1 inversion. An 8-bit greyscale image with no window
    (PNG/JPEG) already is a display image and is used as stored, so a PNG written
    from a training array reads back unchanged. Colour becomes luminance.
    """
    arr = vol.array
    plain_8bit = (
        arr.dtype == np.uint8
        and getattr(vol, "window", None) is None
        and getattr(vol, "voi_lut", None) is None
        and float(getattr(vol, "rescale_slope", 1.0)) == 1.0
        and float(getattr(vol, "rescale_intercept", 0.0)) == 0.0
    )
    if plain_8bit:
        out = to_gray_u8(arr[index])
        return 255 - out if getattr(vol, "invert", False) else out
    from medview.imaging.display import render_slice

    return to_gray_u8(render_slice(vol, index, "axial", aspect=False))


def display_image_from_array(arr: np.ndarray) -> np.ndarray:
    """A raw array (e.g. 16-bit PNG) -> 8-bit by min-max; 8-bit images pass through."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return to_gray_u8(a)
    if a.ndim == 3:
        a = a[..., :3].mean(axis=-1)
    a = a.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip(np.rint((a - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


@dataclass
class SourceImage:
    """One 2-D image to analyse: a key for caching/JSON, and its display image."""

    path: str
    index: int
    image: np.ndarray  # uint8 (H, W)
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def volume_images(
    vol: Any, name: str = "", indices: Iterable[int] | None = None
) -> Iterator[SourceImage]:
    """Slices of a :class:`medview.io.Volume` as display images, converted lazily.

    ``path`` of each image is the slice's own file when the series has one file per
    slice (CT), else ``name``; ``key`` adds ``#index`` for multi-slice sources.
    """
    from medview.ai.scope import volume_scope_meta

    n = int(vol.array.shape[0])
    idx = range(n) if indices is None else [i for i in indices if 0 <= i < n]
    instances = list(getattr(vol, "instances", None) or [])
    meta = volume_scope_meta(vol)  # for the intended-use verdict of every result
    for k in idx:
        src = name
        if len(instances) == n and getattr(instances[k], "path", None):
            src = str(instances[k].path)
        key = f"{src}#{k}" if (n > 1 and src == name) else src
        yield SourceImage(
            path=src,
            index=k,
            image=display_image_from_volume(vol, k),
            key=key,
            meta=dict(meta),
        )


def iter_path_images(path: str | Path) -> Iterator[SourceImage | Exception]:
    """Every 2-D image in a file or folder (all slices of each series), lazily.

    Reads with :func:`medview.io.scan` / ``load_series`` (DICOM incl. DICOMDIR,
    PNG/JPEG/TIFF, NIfTI/MHA/NRRD). One series is held at a time, in its stored
    integer type; slices are converted to display images one by one. Problems are
    yielded as :class:`~medview.errors.MedviewError` (one per file or series) so
    callers report them and continue.
    """
    from medview.errors import MedviewError
    from medview.io import load_series, scan

    p = Path(path)
    if not p.exists():
        yield MedviewError("no such file or folder", p)
        return
    res = scan(p)
    for prob in res.errors:
        yield MedviewError(prob.reason, prob.path)
    for series in res.series:
        label = str(series.instances[0].path) if series.instances else str(p)
        try:
            vol = load_series(series)
        except MedviewError as exc:
            yield exc
            continue
        except Exception as exc:  # noqa: BLE001 - report and continue with the rest
            yield MedviewError(f"cannot load series ({type(exc).__name__}: {exc})", label)
            continue
        yield from volume_images(vol, label)
