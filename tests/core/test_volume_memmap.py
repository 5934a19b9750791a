"""Very large series (issue 16, item 5): a series over the RAM budget is loaded into a
memory-mapped file (medview.io.volume.allocate_volume), the same values as in memory;
one that neither memory nor disk can hold is refused in one line before anything is
allocated, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from medview.errors import ReadError
from medview.io import scan
from medview.io import volume as V


@pytest.fixture()
def volume_dir(tmp_path, monkeypatch):
    folder = tmp_path / "volumes"
    monkeypatch.setenv(V.VOLUME_DIR_ENV, str(folder))
    monkeypatch.delenv("MEDVIEW_MAX_SERIES_MB", raising=False)
    return folder


def test_real_ct_memory_mapped_equals_in_memory(ct_dir, volume_dir, monkeypatch):
    series = scan(str(ct_dir)).series[0]
    in_ram = V.load_series(series, processes=False)
    assert not V.is_mapped(in_ram.array)
    monkeypatch.setenv(V.MEMMAP_ENV, "1")  # 20 x 512 x 512 int16 = 10 MB > 1 MB: mapped
    mapped = V.load_series(series, processes=False)
    assert V.is_mapped(mapped.array) and type(mapped.array) is np.ndarray
    assert mapped.array.dtype == np.int16 and mapped.shape == (20, 512, 512)
    assert np.array_equal(mapped.array, in_ram.array)
    assert list(volume_dir.iterdir()) == []  # unlinked at once (POSIX): nothing left behind
    # what the viewer does with it: reformat, slab, render
    from medview.imaging.display import render_slice
    from medview.imaging.projection import render_projection

    a = render_slice(mapped, 256, "coronal", window=(40, 400))
    b = render_slice(in_ram, 256, "coronal", window=(40, 400))
    assert np.array_equal(a, b)
    mip = render_projection(mapped, 256, "sagittal", "mip", 20.0, window=(40, 400))
    assert np.array_equal(
        mip, render_projection(in_ram, 256, "sagittal", "mip", 20.0, window=(40, 400))
    )


def test_a_series_the_machine_cannot_hold_is_refused_in_one_line(ct_dir, volume_dir, monkeypatch):
    series = scan(str(ct_dir)).series[0]
    monkeypatch.setenv(V.MEMMAP_ENV, "1")

    class Full:
        free = 100 * 2**20  # 100 MB free: less than the volume plus the margin left free

    monkeypatch.setattr(V.shutil, "disk_usage", lambda _p: Full)
    with pytest.raises(ReadError) as err:
        V.load_series(series, processes=False)
    text = str(err.value)
    assert "the series (20 slices) needs 10 MB: more than this machine can hold" in text
    assert "of memory available" in text and "100 MB free in" in text and "\n" not in text
    assert list(volume_dir.iterdir()) == []


def test_explicit_series_budget_still_refuses_and_one_file_is_never_mapped(volume_dir, monkeypatch):
    monkeypatch.setenv(V.MEMMAP_ENV, "1")
    monkeypatch.setenv("MEDVIEW_MAX_SERIES_MB", "1")
    with pytest.raises(ReadError, match="above the memory budget of 1 MB per series"):
        V.allocate_volume((40, 512, 512), np.dtype(np.int16), "the series (40 slices)", "x.dcm")
    monkeypatch.delenv("MEDVIEW_MAX_SERIES_MB")
    one = V.allocate_volume((8, 512, 512), np.dtype(np.int16), "one file", "x.dcm", mappable=False)
    assert not V.is_mapped(one)
    many = V.allocate_volume((8, 512, 512), np.dtype(np.int16), "the series", "x.dcm")
    assert V.is_mapped(many) and many.shape == (8, 512, 512)
    many[3] = 7
    assert int(many[3].sum()) == 7 * 512 * 512 and int(many[2].sum()) == 0
