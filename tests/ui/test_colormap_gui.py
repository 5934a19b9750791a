"""The viewer shows the same heat-map pixels as the CLI PNG (one colour map, one alpha
rule; the Qt-free checks are in tests/core/test_colormap.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medview.imaging import colormap
from tests.core.test_colormap import N, _inputs


@pytest.mark.parametrize("name", colormap.COLORMAPS)
def test_cli_png_and_viewer_show_the_same_pixels(qtbot, tmp_path, name):
    """The PNG of --heatmap-out and the viewport's painted heat map agree pixel for pixel."""
    pytest.importorskip("PySide6")
    from PIL import Image

    from medview.ai.overlay import save_overlay_png
    from medview.io.model import Volume
    from medview.ui.context import Overlay
    from medview.ui.viewport import Viewport

    gray, heat = _inputs()
    opacity = 0.6
    png = np.asarray(
        Image.open(save_overlay_png(tmp_path / "h.png", gray, heat, opacity, name)).convert("RGB")
    )
    assert png.shape[:2] == (N, N)

    vol = Volume(array=gray[None].copy(), spacing=(1.0, 1.0, 1.0))
    vp = Viewport()
    qtbot.addWidget(vp)
    vp.resize(N, N)
    vp.show()
    qtbot.waitExposed(vp)
    vp.set_volume(vol, index=0)
    vp.set_window(128.0, 256.0)  # PS3.3 linear VOI with c=128, w=256: the identity on 0..255
    vp.one_to_one()
    vp.set_ai_overlay(Overlay(heatmap=heat, opacity=opacity, colormap=name))
    img = vp.grab().toImage()
    assert (img.width(), img.height()) == (N, N)
    # away from the corner texts, the AI caption (top), the legends (right) and the PNG's
    # caption strip (bottom)
    box = range(64, 440, 3)
    shown = np.array([[img.pixelColor(c, r).getRgb()[:3] for c in box] for r in box], dtype=int)
    written = png[np.ix_(list(box), list(box))].astype(int)
    diff = np.abs(shown - written)
    assert diff.max() <= 2, f"{name}: viewer and PNG differ by up to {diff.max()} levels"
    # the box holds cold (untouched grey) and hot (coloured) pixels
    h = heat[np.ix_(list(box), list(box))]
    assert (h <= 0.1).any() and (h >= 0.5).any()
    assert np.abs(written[h >= 0.5] - gray[np.ix_(list(box), list(box))][h >= 0.5, None]).max() > 40
