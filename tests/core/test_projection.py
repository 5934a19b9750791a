"""MIP / MinIP / average slabs (medview.imaging.projection) and ``medview render --projection``,
checked on the real CT against numpy projections of the same Hounsfield-unit volume."""

from __future__ import annotations

import numpy as np
import pytest

from medview.cli import main
from medview.imaging import projection as P


@pytest.fixture(scope="module")
def ct(ct_dir):
    from medview.io import load_path

    return load_path(ct_dir)


@pytest.fixture(scope="module")
def hu(ct) -> np.ndarray:
    """The whole CT in Hounsfield units, (z, y, x) float32, built slice by slice."""
    return np.stack([ct.modality_values(k) for k in range(ct.shape[0])])


def test_whole_volume_mip_minip_avg_equal_numpy_on_hu(ct, hu):
    assert ct.unit == "HU" and ct.array.dtype == np.int16
    for proj, ref in (("mip", hu.max(0)), ("minip", hu.min(0)), ("avg", hu.mean(0))):
        slab = P.slab_range(ct, "axial", 10, None)
        assert (slab.first, slab.last) == (0, ct.shape[0] - 1)
        img, spacing = P.project_slab(ct, slab, proj)
        from medview.imaging.display import apply_modality_lut

        got = apply_modality_lut(img, ct.rescale_slope, ct.rescale_intercept)
        np.testing.assert_allclose(got, ref, atol=0.01 if proj == "avg" else 0)
        assert spacing == pytest.approx((ct.spacing[1], ct.spacing[0]))
    # real content: the MIP is at least the brightest slice's bone everywhere
    assert float(hu.max()) > 1000 and float(P.project_slab(ct, slab, "mip")[0].max()) > 1000


def test_coronal_slab_mip_follows_the_flip_rule(ct, hu):
    from medview.imaging.display import apply_modality_lut, extract_plane

    slab = P.slab_range(ct, "coronal", 256, 20.0)
    # 20 mm / 0.977 mm = 20.5 -> 20 rows, centred on 256 (one more after it)
    assert slab.count == round(20.0 / ct.spacing[1])
    assert slab.first <= 256 <= slab.last and slab.last - 256 - (256 - slab.first) in (0, 1)
    img, _ = P.project_slab(ct, slab, "mip")
    ref = hu[:, slab.first : slab.last + 1, :].max(axis=1)
    single, _ = extract_plane(ct, 256, "coronal")
    flipped = not np.array_equal(single, ct.array[:, 256, :])  # the viewer's flip rule
    ref = ref[::-1] if flipped else ref
    np.testing.assert_array_equal(apply_modality_lut(img, 1.0, ct.rescale_intercept), ref)
    assert img.shape == extract_plane(ct, 256, "coronal")[0].shape


def test_sagittal_and_a_one_slice_slab(ct):
    from medview.imaging.display import extract_plane

    one = P.slab_range(ct, "sagittal", 300, 0.5)  # thinner than a voxel: one slice
    assert (one.first, one.last) == (300, 300)
    img, _ = P.project_slab(ct, one, "minip")
    np.testing.assert_array_equal(img, extract_plane(ct, 300, "sagittal")[0])
    edge = P.slab_range(ct, "axial", 0, 10.0)  # 5 slices at 2 mm, kept inside the volume
    assert (edge.first, edge.last, edge.thickness_mm) == (0, 4, 10.0)
    with pytest.raises(ValueError):
        P.project_slab(ct, one, "max")
    with pytest.raises(IndexError):
        P.slab_range(ct, "axial", 20, 4.0)


def test_render_projection_windows_like_a_slice(ct):
    from medview.imaging.display import render_slice

    one = P.render_projection(ct, 7, "axial", "mip", 1.0, window=(40, 400))
    np.testing.assert_array_equal(one, render_slice(ct, 7, "axial", window=(40, 400)))
    thick = P.render_projection(ct, 7, "axial", "mip", 20.0, window=(40, 400))
    assert thick.dtype == np.uint8 and (thick >= one).all() and (thick > one).any()


def test_render_cli_projection_matches_the_core(ct_dir, ct, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "mip.png"
    args = ["render", str(ct_dir), "--projection", "mip", "--slab", "20", "--index", "9"]
    assert main([*args, "--window", "300,1500", "--out", str(out)]) == 0
    assert "slices 5..14 (20 mm)" in capsys.readouterr().out
    ref = P.render_projection(ct, 9, "axial", "mip", 20.0, window=(300, 1500))
    np.testing.assert_array_equal(np.array(Image.open(out)), ref)
    whole = tmp_path / "minip.png"
    assert main(["render", str(ct_dir), "--projection", "minip", "--out", str(whole)]) == 0
    assert "slices 0..19" in capsys.readouterr().out


def test_render_cli_refuses_bad_slab_options(ct_dir, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert main(["render", str(ct_dir), "--slab", "10", "--out", out]) == 2
    assert "--slab needs --projection" in capsys.readouterr().err
    assert main(["render", str(ct_dir), "--projection", "mip", "--slab", "-3", "--out", out]) == 2
    assert "above 0" in capsys.readouterr().err
