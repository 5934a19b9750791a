"""3D volume rendering (medview.viewer.volume3d, VTK offscreen) of the real CT, and the
3D layout of the window. Skipped without VTK (an optional extra: pip install 'vtk>=9.3')."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")

from medview.viewer import volume3d as V  # noqa: E402


def _lit(img: np.ndarray) -> float:
    """Fraction of pixels that are not background."""
    return float((img.max(axis=2) > 20).mean())


def test_presets_are_placed_in_stored_values(ct_volume):
    pts = V.transfer_points(ct_volume, "bone")
    hu = [p[0] * ct_volume.rescale_slope + ct_volume.rescale_intercept for p in pts]
    assert hu == pytest.approx([p[0] for p in V.PRESETS["bone"]])
    assert set(V.PRESETS) == {"bone", "lung", "soft tissue", "angio"}


def test_offscreen_render_is_not_blank_and_follows_the_camera(volume_renderer, ct_volume):
    top = V.View3D(preset="bone", elevation=89.0, size=(256, 256))  # looking down the body axis
    img = volume_renderer.render(top)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    # the axial extent (0.98 mm x 512) fills most of a top view; bone (spine, ribs) is lit
    assert _lit(img) > 0.005 and img.max() > 100
    front = volume_renderer.render(V.View3D(preset="bone", size=(256, 256)))
    assert not np.array_equal(front, img)  # another camera, another picture
    soft = volume_renderer.render(dataclass_replace(top, preset="soft tissue"))
    assert _lit(soft) > _lit(img)  # soft tissue shows more than bone
    clipped = volume_renderer.render(dataclass_replace(top, clip=(0.0, 0.5, 0.0, 1.0, 0.0, 1.0)))
    assert _lit(clipped) < _lit(soft) and _lit(clipped) < _lit(img) + 1e-9
    assert volume_renderer.first_frame_s is not None and volume_renderer.first_frame_s > 0
    assert volume_renderer.backend in ("cpu", "gpu")  # llvmpipe (no GPU here): "cpu"


def test_cpu_ray_casting_mode_renders_too(ct_volume):
    img = V.render_volume(
        ct_volume, V.View3D(preset="lung", elevation=60.0, size=(128, 128), mode="cpu")
    )
    assert _lit(img) > 0.02


def test_large_volumes_are_subsampled_in_plane(ct_volume):
    """300 slices of 512x512 (the real slices repeated): every 4th row and column go to
    VTK (4.9 M voxels <= MAX_VOXELS), the frame still shows the body."""
    import dataclasses

    big = dataclasses.replace(ct_volume, array=np.tile(ct_volume.array, (15, 1, 1)))
    r = V.VolumeRenderer(big)
    try:
        img = r.render(V.View3D(preset="bone", size=(200, 200)))
        assert (r._pipeline.step, r._pipeline.zstep) == (4, 1)
        assert r._pipeline.array.shape == (300, 128, 128)
        assert r._pipeline.array.dtype == np.int16  # no float copy
        assert _lit(img) > 0.02
    finally:
        r.close()


def test_a_single_image_is_refused(xray_dir):
    from medview.io import load_path

    with pytest.raises(ValueError, match="single image"):
        V.VolumeRenderer(load_path(xray_dir / "cr_chest_pa_jpeg_baseline.dcm"))


def dataclass_replace(view: V.View3D, **kw) -> V.View3D:
    import dataclasses

    return dataclasses.replace(view, **kw)
