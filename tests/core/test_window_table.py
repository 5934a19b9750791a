"""display.window_stored (the viewer's windowing of 8/16-bit stored values by one table
lookup, issue 16) gives exactly the modality LUT + linear VOI window pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from medview.imaging.display import apply_modality_lut, apply_window, window_stored


@pytest.mark.parametrize("dtype", ["int16", "uint16", "uint8", "int8"])
@pytest.mark.parametrize(
    ("slope", "intercept", "window"),
    [(1.0, -1024.0, (40.0, 400.0)), (0.5, 3.0, (-600.0, 1500.0)), (2.5, 0.0, (100.0, 1.0))],
)
def test_window_stored_equals_the_float_pipeline(dtype, slope, intercept, window) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    img = rng.integers(info.min, info.max, size=(300, 257), endpoint=True).astype(dtype)
    img[0, :3] = [info.min, info.max, 0]
    reference = apply_window(apply_modality_lut(img, slope, intercept), *window)
    got = window_stored(img, slope, intercept, window)
    assert got.dtype == np.uint8 and got.shape == img.shape
    np.testing.assert_array_equal(got, reference)
    # a strided view (a sagittal cut) too
    np.testing.assert_array_equal(
        window_stored(img[:, ::3], slope, intercept, window), reference[:, ::3]
    )


def test_window_stored_falls_back_for_floats_and_nan_windows() -> None:
    img = np.linspace(-1000, 1000, 5000, dtype=np.float32).reshape(50, 100)
    np.testing.assert_array_equal(
        window_stored(img, 1.0, 0.0, (0.0, 500.0)), apply_window(img, 0.0, 500.0)
    )
    i16 = img.astype(np.int16)
    np.testing.assert_array_equal(
        window_stored(i16, 1.0, 0.0, (float("nan"), 500.0)),
        apply_window(apply_modality_lut(i16), float("nan"), 500.0),
    )
