"""PNG output of rendered images (Pillow)."""

from __future__ import annotations

import os

import numpy as np


def write_png(path: str | os.PathLike[str], img: np.ndarray) -> None:
    """Write a uint8 (H, W) or (H, W, 3) image as PNG."""
    from PIL import Image

    arr = np.ascontiguousarray(img)
    if arr.dtype != np.uint8:
        raise ValueError("write_png expects uint8")
    Image.fromarray(arr, mode=None).save(os.fspath(path), format="PNG")
