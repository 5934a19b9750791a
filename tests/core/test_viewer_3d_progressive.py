"""The 3D view's first frame (issue 16): a draft of the volume at half resolution in a
half-size frame, then the full frame, from one worker function. Skipped without VTK."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")

from medview.tasks import TaskState  # noqa: E402
from medview.viewer import volume3d as V  # noqa: E402


def _lit(img: np.ndarray) -> float:
    return float((img.max(axis=2) > 20).mean())


def test_progressive_first_frame_is_a_draft_then_the_full_frame(volume_renderer) -> None:
    drafts: list[np.ndarray] = []
    state = TaskState(on_partial=drafts.append)
    full = volume_renderer.render_progressive(V.View3D(size=(256, 192)), state)
    assert full is not None and full.shape == (192, 256, 3)
    assert len(drafts) == 1 and drafts[0].shape == (96, 128, 3)
    assert _lit(drafts[0]) > 0.005 and _lit(full) > 0.005  # both show the body
    p = volume_renderer._pipeline
    # the draft is every 2nd voxel of what the full frame uses, int16 without a float copy
    assert p.draft_array.dtype == np.int16
    np.testing.assert_array_equal(p.draft_array, p.array[::2, ::2, ::2])
    assert p.input is p.image  # the full frame ray cast the full-resolution volume
    # later frames (rotation) stay at full resolution
    again = volume_renderer.render(V.View3D(azimuth=40.0, size=(256, 192)))
    assert again is not None and again.shape == full.shape and p.input is p.image


def test_a_cancelled_progressive_render_stops_after_the_draft(volume_renderer) -> None:
    from medview.errors import Cancelled

    state = TaskState(on_partial=lambda _img: state.cancel())
    with pytest.raises(Cancelled):
        volume_renderer.render_progressive(V.View3D(size=(64, 64)), state)


def test_a_thin_volume_gets_no_draft_volume(ct_volume) -> None:
    import dataclasses

    thin = dataclasses.replace(ct_volume, array=np.ascontiguousarray(ct_volume.array[:4]))
    r = V.VolumeRenderer(thin)
    try:
        drafts: list[np.ndarray] = []
        full = r.render_progressive(V.View3D(size=(64, 64)), TaskState(on_partial=drafts.append))
        assert full is not None and len(drafts) == 1 and drafts[0].shape == (32, 32, 3)
        assert r._pipeline.draft_image is None  # the draft frame used the full volume
    finally:
        r.close()
