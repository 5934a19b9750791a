"""One colour map and one heat-map alpha rule for the CLI PNG and the viewer.

``medview analyze --heatmap-out`` (medview.ai.overlay.save_overlay_png) and the
viewport (its QImage path, painted by Qt) must show the same pixels for the same
grey image, heat map, opacity and colour map.
"""

from __future__ import annotations

import numpy as np
import pytest

from medview.imaging import colormap

N = 512  # a 512-pixel image is written to the PNG at scale 1


def _inputs() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:N, 0:N]
    gray = (rows // 2).astype(np.uint8)  # 0..255 down the image
    heat = np.clip((rows + cols - 100) / 800.0, 0.0, 1.0).astype(np.float32)  # 0..1 diagonally
    return gray, heat


def test_alpha_rule_is_transparent_below_a_tenth_and_full_from_a_half():
    heat = np.array([np.nan, 0.0, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0, 1.5], np.float32)
    alpha = colormap.heat_alpha(heat, opacity=0.6)
    ramp = np.clip((np.nan_to_num(heat) - 0.1) / 0.4, 0.0, 1.0) * 0.6
    np.testing.assert_allclose(alpha, ramp, atol=1e-6)
    assert alpha[:4].max() == 0.0 and alpha[5:].min() == pytest.approx(0.6)
    rgba = colormap.heat_rgba(heat, "jet", 0.6)
    assert rgba.shape == (9, 4) and rgba.dtype == np.uint8
    assert list(rgba[:, 3]) == [int(round(a * 255)) for a in ramp]


@pytest.mark.parametrize("name", colormap.COLORMAPS)
def test_lut_ends_and_anchors(name):
    lut = colormap.colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    anchors = colormap._ANCHORS[name]
    for pos, r, g, b in anchors:
        k = int(round(pos * 255))
        assert np.abs(lut[k].astype(int) - (r, g, b)).max() <= 3, (name, pos)
    with pytest.raises(ValueError, match="unknown colour map"):
        colormap.colormap_lut("rainbow")


def test_hot_is_red_before_yellow():
    lut = colormap.colormap_lut("hot").astype(int)
    # red saturates first (at 0.375), then green (at 0.75), blue last
    first_full = [int(np.argmax(lut[:, c] == 255)) for c in range(3)]
    assert first_full[0] < first_full[1] < first_full[2] == 255
    assert abs(first_full[0] - 0.375 * 255) <= 1 and abs(first_full[1] - 0.75 * 255) <= 1


def test_cli_blend_is_heat_rgba_over_the_image():
    from medview.ai.overlay import blend

    gray, heat = _inputs()
    out = blend(gray, heat, 0.45, "viridis")
    rgba = colormap.heat_rgba(heat, "viridis", 0.45)
    a = rgba[..., 3:4] / 255.0
    expected = np.rint(gray[..., None] * (1 - a) + rgba[..., :3] * a)
    assert np.array_equal(out, expected.astype(np.uint8))
    cold = heat <= 0.1
    assert cold.any() and np.array_equal(out[cold], np.repeat(gray[cold][:, None], 3, axis=1))
