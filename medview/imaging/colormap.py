"""Colour maps and the one heat-map alpha rule (CLI PNG == viewer).

An AI heat map (values in [0, 1]) is shown as colour over the grey image. Both
``medview analyze --heatmap-out`` (:mod:`medview.ai.overlay`) and the viewer
(``medview.ui.viewport``) colour it with :func:`heat_rgba`, so the PNG a script
writes is what the radiologist sees:

* colour: :func:`colormap_lut` (``jet``, ``hot``, ``viridis``; 256 entries,
  anchors interpolated linearly), indexed by ``round(value * 255)``;
* alpha (:func:`heat_alpha`): ``opacity * clip((value - 0.1) * 2.5, 0, 1)``, i.e.
  transparent below 0.1 (the anatomy under a cold map stays untouched), full
  opacity from 0.5 up;
* compositing (:func:`composite`): the usual "over" operator with that 8-bit alpha.

NaN values count as 0.
"""

from __future__ import annotations

import numpy as np

# anchor colours (position, r, g, b) of the colour maps, interpolated linearly.
# "hot" reaches full red at 0.375 and full yellow at 0.75 (matplotlib's "hot" ramp).
_ANCHORS: dict[str, list[tuple[float, int, int, int]]] = {
    "jet": [
        (0.0, 0, 0, 128),
        (0.125, 0, 0, 255),
        (0.375, 0, 255, 255),
        (0.625, 255, 255, 0),
        (0.875, 255, 0, 0),
        (1.0, 128, 0, 0),
    ],
    "hot": [(0.0, 0, 0, 0), (0.375, 255, 0, 0), (0.75, 255, 255, 0), (1.0, 255, 255, 255)],
    "viridis": [
        (0.0, 68, 1, 84),
        (0.25, 59, 82, 139),
        (0.5, 33, 145, 140),
        (0.75, 94, 201, 98),
        (1.0, 253, 231, 37),
    ],
}
COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)
#: heat values at or below this are fully transparent
ALPHA_FLOOR = 0.1
#: heat values at or above this get the full opacity
ALPHA_FULL = 0.5

_LUTS: dict[str, np.ndarray] = {}


def colormap_lut(name: str = "jet") -> np.ndarray:
    """A (256, 3) uint8 lookup table for ``name`` (jet, hot, viridis); read-only."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colour map {name!r} (choose from {', '.join(COLORMAPS)})")
    lut = _LUTS.get(name)
    if lut is None:
        a = np.asarray(_ANCHORS[name], dtype=np.float64)
        x = np.linspace(0.0, 1.0, 256)
        table = np.stack([np.interp(x, a[:, 0], a[:, c]) for c in (1, 2, 3)], axis=1)
        lut = np.clip(np.rint(table), 0, 255).astype(np.uint8)
        lut.flags.writeable = False
        _LUTS[name] = lut
    return lut


def _unit(heat: np.ndarray) -> np.ndarray:
    """Heat values as float32 in [0, 1] (NaN -> 0)."""
    return np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float32)), 0.0, 1.0)


def colorize(heat: np.ndarray, name: str = "jet") -> np.ndarray:
    """Heat map in [0, 1] (H, W) -> RGB uint8 (H, W, 3)."""
    idx = np.rint(_unit(heat) * 255.0).astype(np.uint8)
    return colormap_lut(name)[idx]


def heat_alpha(heat: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """The one alpha rule, float32 in [0, 1]: ``opacity * clip((h - 0.1) * 2.5, 0, 1)``."""
    ramp = (_unit(heat) - np.float32(ALPHA_FLOOR)) * np.float32(1.0 / (ALPHA_FULL - ALPHA_FLOOR))
    return np.clip(ramp, 0.0, 1.0) * np.float32(min(max(float(opacity), 0.0), 1.0))


def heat_rgba(heat: np.ndarray, name: str = "jet", opacity: float = 1.0) -> np.ndarray:
    """Heat map -> (H, W, 4) uint8 RGBA: :func:`colorize` colours, :func:`heat_alpha` alpha."""
    h = np.asarray(heat)
    out = np.empty(h.shape + (4,), np.uint8)
    out[..., :3] = colorize(h, name)
    out[..., 3] = np.rint(heat_alpha(h, opacity) * 255.0).astype(np.uint8)
    return out


def composite(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """``rgba`` over an 8-bit grey (H, W) or RGB (H, W, 3) image -> RGB uint8 ("over")."""
    b = np.asarray(base)
    rgb = np.repeat(b[..., None], 3, axis=2) if b.ndim == 2 else b[..., :3]
    alpha = rgba[..., 3:4].astype(np.float32) / np.float32(255.0)
    out = rgb.astype(np.float32) * (1.0 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


__all__ = [
    "ALPHA_FLOOR",
    "ALPHA_FULL",
    "COLORMAPS",
    "colorize",
    "colormap_lut",
    "composite",
    "heat_alpha",
    "heat_rgba",
]
