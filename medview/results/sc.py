"""AI heat maps as DICOM Secondary Capture images (highdicom), with "AI output, not for
diagnostic use", the map's label and a colour bar burnt into the pixels: the same picture as
``medview analyze --heatmap-out`` PNGs (:func:`medview.ai.overlay.save_overlay_png`), so any
viewer or PACS shows it, and no viewer can show it without the disclaimer.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from medview.disclaimers import AI as DISCLAIMER

#: patient-orientation letters of the LPS axes (PS3.3 C.7.6.1.1.1), positive direction
_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))


def _direction_letters(v: list[float]) -> str:
    """Orientation letters of a direction cosine vector, the main axis first."""
    order = np.argsort(-np.abs(np.asarray(v, dtype=float)))
    out = ""
    for axis in order:
        if abs(v[axis]) > 0.25:
            pos, neg = _LETTERS[axis]
            out += pos if v[axis] > 0 else neg
    return out[:3] or "L"


def patient_orientation(ds: Any) -> tuple[str, str] | None:
    """(row direction, column direction) letters of an image, or None when unknown."""
    po = ds.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(str(x) for x in po):
        return str(po[0]), str(po[1])
    iop = ds.get("ImageOrientationPatient")
    if iop is not None and len(iop) == 6:
        vals = [float(x) for x in iop]
        return _direction_letters(vals[:3]), _direction_letters(vals[3:])
    return None


def overlay_rgb(gray: np.ndarray, heat: np.ndarray, caption: str, cmap: str = "jet") -> np.ndarray:
    """The heat-map overlay with disclaimer, caption and colour bar burnt in (RGB uint8)."""
    from PIL import Image

    from medview.ai.overlay import save_overlay_png

    with tempfile.TemporaryDirectory() as tmp:
        png = save_overlay_png(Path(tmp) / "overlay.png", gray, heat, cmap=cmap, caption=caption)
        return np.asarray(Image.open(png).convert("RGB")).copy()


def heatmap_sc(
    source: Any,
    gray: np.ndarray,
    heat: np.ndarray,
    caption: str,
    series_uid: str,
    instance_number: int = 1,
    cmap: str = "jet",
) -> Any:
    """A Secondary Capture image of the overlay, in the study of ``source`` (a pydicom header).

    Patient Orientation comes from the source (its own, or from Image Orientation (Patient));
    when the source has neither it is left empty, never guessed.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    orientation = patient_orientation(source)
    rgb = overlay_rgb(gray, heat, caption, cmap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on the source's own patient name
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=rgb,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=901,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            manufacturer="medview",
            patient_orientation=orientation or ("L", "F"),  # emptied below when unknown
            transfer_syntax_uid="1.2.840.10008.1.2.1",
        )
    if orientation is None:  # Patient Orientation is type 2: empty rather than guessed
        sc.PatientOrientation = []
    if "Laterality" not in sc:  # type 2C of the General Series module: empty, not guessed
        sc.Laterality = ""
    sc.BurnedInAnnotation = "YES"
    sc.RecognizableVisualFeatures = "YES"
    sc.ImageComments = f"{DISCLAIMER}. {caption}"[:10240]
    sc.SeriesDescription = f"medview AI maps ({DISCLAIMER})"[:64]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    sc.SourceImageSequence = Sequence([ref])
    sc.DerivationDescription = f"heat map overlay: {caption}"[:1024]
    return sc
