"""Export of a 3D rotation (issue 16, item 6): the real CT rendered by VTK offscreen at
evenly spaced azimuths and written as an animated GIF and an MP4 that decode to the
asked frame count, each frame the volume seen from its own angle."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkRenderingCore", reason="VTK is not installed (optional)")

from medview.viewer import export  # noqa: E402
from medview.viewer import volume3d as V  # noqa: E402

FRAMES = 8
SIZE = (160, 160)


def _gif_frames(path) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")).copy() for f in ImageSequence.Iterator(im)]


def test_rotation_views_turn_evenly_and_keep_the_rest():
    start = V.View3D(preset="lung", azimuth=10.0, elevation=20.0, zoom=1.5, size=SIZE)
    views = V.rotation_views(start, 4)
    assert [v.azimuth for v in views] == [10.0, 100.0, 190.0, 280.0]
    assert {(v.preset, v.elevation, v.zoom, v.size) for v in views} == {("lung", 20.0, 1.5, SIZE)}
    with pytest.raises(ValueError, match="1 to 3600 frames"):
        V.rotation_views(start, 0)


def test_rotation_gif_has_one_frame_per_angle(ct_volume, volume_renderer, tmp_path):
    view = V.View3D(size=SIZE)
    out = tmp_path / "turn.gif"
    n = export.write_rotation(
        str(out), ct_volume, view, frames=FRAMES, fps=12, renderer=volume_renderer
    )
    frames = _gif_frames(out)
    assert n == FRAMES and len(frames) == FRAMES
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    # each GIF frame is the frame rendered at its angle (palette-quantised, so close)
    for k in (0, FRAMES // 4):
        direct = volume_renderer.render(V.rotation_views(view, FRAMES)[k])
        diff = np.abs(frames[k].astype(int) - direct.astype(int)).mean()
        assert diff < 6, (k, diff)
    # none is blank; a quarter turn shows the body from the side, where its front-to-back
    # depth spans fewer columns than its width from the front
    assert all((f.max(axis=2) > 20).mean() > 0.01 for f in frames)
    width = [int((f.max(axis=2) > 20).any(axis=0).sum()) for f in frames]
    assert width[FRAMES // 4] < 0.8 * width[0], width


@pytest.mark.skipif(not export.mp4_available(), reason="imageio-ffmpeg is not installed")
def test_rotation_mp4_decodes_to_the_frame_count(ct_volume, tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "turn.mp4"
    n = export.write_rotation(str(out), ct_volume, V.View3D(size=SIZE), frames=FRAMES, fps=10)
    count, _secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == FRAMES and count == FRAMES


def test_rotation_refusals(ct_volume, tmp_path):
    with pytest.raises(ValueError, match="written as .gif or .mp4"):
        export.write_rotation(str(tmp_path / "x.avi"), ct_volume)


def test_render_rotate_on_the_command_line(ct_dir, tmp_path, capsys):
    from PIL import Image

    from medview.cli import main

    out = tmp_path / "turn.gif"
    args = ["render", str(ct_dir), "--rotate", "5", "--preset3d", "soft tissue", "--fps", "5"]
    assert main([*args, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "5 frames, 512x512, 3D soft tissue, 5 fps" in said
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (512, 512)
        assert abs(gif.info["duration"] - 200) <= 10
    for bad, why in (
        (["--rotate", "5", "--out", str(tmp_path / "x.png")], "written as .gif or .mp4"),
        (["--rotate", "5", "--cine", "--out", str(out)], "leave out --cine"),
        (["--rotate", "0", "--out", str(out)], "1 to 3600 frames"),
    ):
        assert main(["render", str(ct_dir), *bad]) == 2
        assert why in capsys.readouterr().err
