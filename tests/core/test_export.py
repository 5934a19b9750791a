"""Cine and image export (medview.viewer.export, ``medview render --cine``) on the real CT:
a reader decodes the right number of frames, in slice order."""

from __future__ import annotations

import numpy as np
import pytest

from medview.cli import main
from medview.viewer import export


@pytest.fixture(scope="module")
def ct(ct_dir):
    from medview.io import load_path

    return load_path(ct_dir)


def test_cine_gif_has_one_frame_per_slice_in_order(ct_dir, ct, tmp_path, capsys):
    from PIL import Image, ImageSequence

    from medview.imaging.display import render_slice

    out = tmp_path / "cine.gif"
    args = ["render", str(ct_dir), "--cine", "--fps", "8", "--window", "40,400"]
    assert main([*args, "--out", str(out)]) == 0
    assert f"{ct.shape[0]} frames" in capsys.readouterr().out
    with Image.open(out) as gif:
        frames = [np.array(f.convert("L")) for f in ImageSequence.Iterator(gif)]
        assert abs(gif.info["duration"] - 125) <= 10  # 8 fps (GIF stores centiseconds)
    assert len(frames) == ct.shape[0] == 20
    for k in (0, 7, 19):  # greyscale GIF is lossless: frame k is slice k
        np.testing.assert_array_equal(frames[k], render_slice(ct, k, window=(40, 400)))


@pytest.mark.skipif(not export.mp4_available(), reason="imageio-ffmpeg is not installed")
def test_cine_mp4_decodes_to_the_slice_count(ct_dir, ct, tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "cine.mp4"
    assert main(["render", str(ct_dir), "--cine", "--plane", "coronal", "--out", str(out)]) == 0
    frames, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == ct.shape[1] == 512
    assert secs == pytest.approx(512 / 10.0, abs=0.2)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (512, 42)  # 41 rows after the aspect correction, padded even
    first = np.frombuffer(next(reader), np.uint8).reshape(42, 512, 3)[:41, :, 0]
    reader.close()
    from medview.imaging.display import render_slice, volume_window

    ref = render_slice(ct, 0, "coronal", window=volume_window(ct)).astype(int)
    assert np.abs(first.astype(int) - ref).mean() < 4  # lossy H.264, the same picture


def test_cine_refusals(ct_dir, tmp_path, capsys):
    assert main(["render", str(ct_dir), "--cine", "--out", str(tmp_path / "a.avi")]) == 2
    assert "a cine is written as .gif or .mp4" in capsys.readouterr().err
    gif = str(tmp_path / "a.gif")
    assert main(["render", str(ct_dir), "--cine", "--fps", "0", "--out", gif]) == 2
    assert "--fps" in capsys.readouterr().err
    assert main(["render", str(ct_dir), "--out", gif]) == 2  # an image, not a cine
    assert "needs --cine" in capsys.readouterr().err


def test_write_image_png_and_jpeg(ct, tmp_path):
    from PIL import Image

    from medview.imaging.display import render_slice

    img = render_slice(ct, 3, window=(40, 400))
    export.write_image(str(tmp_path / "a.png"), img)
    export.write_image(str(tmp_path / "a.jpg"), np.dstack([img, img, img]))
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "a.png")), img)
    jpg = np.array(Image.open(tmp_path / "a.jpg").convert("L")).astype(int)
    assert jpg.shape == img.shape and np.abs(jpg - img).mean() < 3
    with pytest.raises(ValueError):
        export.write_image(str(tmp_path / "a.bmp"), img)


def test_gif_keeps_identical_frames_and_colour(tmp_path):
    """Pillow's save_all would merge the three identical frames into one (slices lost)."""
    from PIL import Image, ImageSequence

    grey = [np.zeros((10, 12), np.uint8)] * 3 + [np.full((10, 12), 200, np.uint8)]
    assert export.write_cine(str(tmp_path / "g.gif"), grey, 5) == 4
    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((10, 12, 3), np.uint8)
    blue[..., 2] = 250
    export.write_cine(str(tmp_path / "c.gif"), [red, red, blue], 5)
    with Image.open(tmp_path / "g.gif") as g, Image.open(tmp_path / "c.gif") as c:
        assert [int(np.array(f.convert("L"))[0, 0]) for f in ImageSequence.Iterator(g)] == [
            0,
            0,
            0,
            200,
        ]
        colours = [np.array(f.convert("RGB"))[0, 0].tolist() for f in ImageSequence.Iterator(c)]
        assert colours == [[255, 0, 0], [255, 0, 0], [0, 0, 250]]
        assert g.info["loop"] == 0 and g.info["duration"] == 200
