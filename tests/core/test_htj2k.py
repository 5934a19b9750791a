"""High-Throughput JPEG 2000 (DICOM 1.2.840.10008.1.2.4.201-203) is read.

pydicom 3 knows the three syntaxes and decodes them with pylibjpeg-openjpeg
(OpenJPEG >= 2.5). No HTJ2K file ships with pydicom or pydicom-data, so the test
series is made here: the real JPEG 2000 CT, each slice re-encoded losslessly as
HTJ2K with OpenJPH (imagecodecs' ``htj2k_encode``; OpenJPEG cannot encode HTJ2K).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medview.io import load_series, scan

HTJ2K_SYNTAXES = {
    "1.2.840.10008.1.2.4.201": "HTJ2KLossless",
    "1.2.840.10008.1.2.4.202": "HTJ2KLosslessRPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
}


def test_pydicom_lists_and_decodes_the_htj2k_syntaxes():
    import pydicom.uid
    from pydicom.pixels import get_decoder

    from medview.io.dicom import decoder_available

    for uid, name in HTJ2K_SYNTAXES.items():
        assert getattr(pydicom.uid, name) == uid
        assert get_decoder(uid).is_available, f"no installed decoder for {uid}"
        assert decoder_available(uid)


def _htj2k_series(src: Path, out: Path, syntax: str, count: int = 6) -> Path:
    """The first ``count`` slices of the CT with their pixels re-encoded as HTJ2K."""
    imagecodecs = pytest.importorskip("imagecodecs", reason="needs imagecodecs to encode HTJ2K")
    if not hasattr(imagecodecs, "htj2k_encode"):
        pytest.skip("this imagecodecs has no HTJ2K encoder")
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import UID

    out.mkdir()
    for f in sorted(src.iterdir())[:count]:
        ds = pydicom.dcmread(f)
        stream = imagecodecs.htj2k_encode(ds.pixel_array)
        assert stream[:4] == b"\xff\x4f\xff\x51"  # a raw codestream (SOC, SIZ)
        ds.PixelData = encapsulate([stream])
        ds.file_meta.TransferSyntaxUID = UID(syntax)
        ds.save_as(out / f.name)
    return out


@pytest.mark.parametrize("syntax", sorted(HTJ2K_SYNTAXES))
def test_an_htj2k_series_loads_to_the_same_voxels(ct_dir, tmp_path, monkeypatch, syntax):
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    folder = _htj2k_series(ct_dir, tmp_path / "ht", syntax)
    found = scan(folder)
    assert not found.errors and len(found.series) == 1
    series = found.series[0]
    assert series.transfer_syntax == syntax
    assert not any(i.pixel_problem for i in series.instances)
    ht = load_series(series, processes=False)
    names = {Path(i.path).name for i in series.instances}
    ref_series = scan([str(ct_dir / n) for n in names]).series[0]
    ref = load_series(ref_series, processes=False)  # the original J2K, same slices
    assert ht.array.dtype == ref.array.dtype == np.int16
    assert ht.array.shape == (6, 512, 512)
    assert np.array_equal(ht.array, ref.array)
    assert ht.unit == "HU" and int(ht.array.min()) == -1024
    assert not any("not decoded" in w for w in ht.warnings)
