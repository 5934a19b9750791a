"""Heat-map PNGs of ``medview analyze --heatmap-out`` (numpy + Pillow).

Colours and the alpha rule come from :mod:`medview.imaging.colormap`, shared with the
viewer, so the PNG shows what the viewer shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medview.ai.inference import DISCLAIMER
from medview.imaging import colormap

COLORMAPS = colormap.COLORMAPS
# the one colour map table and colouring of medview.imaging.colormap (the viewer's too)
colormap_lut = colormap.colormap_lut
colorize = colormap.colorize


def blend(
    gray: np.ndarray, heat: np.ndarray, opacity: float = 0.4, cmap: str = "jet"
) -> np.ndarray:
    """Blend a heat map over an 8-bit grey (or RGB) image with the viewer's alpha rule.

    :func:`medview.imaging.colormap.heat_rgba` composited "over" the image: what the
    viewer paints for the same map, opacity and colour map.
    """
    return colormap.composite(gray, colormap.heat_rgba(heat, cmap, opacity))


def save_overlay_png(
    path: str | Path,
    gray: np.ndarray,
    heat: np.ndarray,
    opacity: float = 0.45,
    cmap: str = "jet",
    caption: str = "",
) -> Path:
    """Write the blended overlay with the disclaimer, caption and a colour bar burnt in.

    The text (disclaimer | caption) is wrapped onto as many lines as it needs; a
    colour bar labelled low/high sits at the right edge.
    """
    from PIL import Image, ImageDraw, ImageFont

    rgb = blend(gray, heat, opacity, cmap)
    im = Image.fromarray(rgb, "RGB")
    scale = max(1, round(512 / max(im.size)))
    if scale > 1:  # tiny inputs (28 px) are enlarged so the text stays legible
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(im)
    text = DISCLAIMER + (f" | {caption}" if caption else "")
    size = max(11, im.height // 42)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    lines = _wrap(draw, text, font, im.width - 8)
    line_h = size + 4
    strip = line_h * len(lines) + 4
    draw.rectangle([0, im.height - strip, im.width, im.height], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, im.height - strip + 2 + i * line_h), line, fill=(255, 255, 0), font=font)
    _draw_colour_bar(draw, im.width, im.height - strip, cmap, font, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def _wrap(draw: Any, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` pixels."""
    lines: list[str] = []
    cur = ""
    for word in text.split(" "):
        trial = f"{cur} {word}" if cur else word
        if cur and draw.textlength(trial, font=font) > width:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return [*lines, cur] if cur else lines or [""]


def _draw_colour_bar(draw: Any, width: int, bottom: int, cmap: str, font: Any, size: int) -> None:
    """A vertical colour bar (high at the top) with low/high labels, right edge."""
    lut = colormap_lut(cmap)
    bar_h = max(40, min(160, bottom // 3))
    x1 = width - 6
    x0 = x1 - max(8, size)
    y0 = max(2, (bottom - bar_h) // 2)
    for k in range(bar_h):
        c = tuple(int(v) for v in lut[round(255 * (1 - k / max(bar_h - 1, 1)))])
        draw.line([(x0, y0 + k), (x1, y0 + k)], fill=c)
    draw.rectangle([x0, y0, x1, y0 + bar_h], outline=(230, 230, 230))
    for label, y in (("high", y0), ("low", y0 + bar_h - size)):
        tw = draw.textlength(label, font=font)
        draw.text((x0 - 4 - tw + 1, y + 1), label, fill=(0, 0, 0), font=font)
        draw.text((x0 - 4 - tw, y), label, fill=(255, 255, 255), font=font)
