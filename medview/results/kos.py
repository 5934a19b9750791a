"""Key Object Selection document (PS3.3 A.35.4, TID 2010) of the images a reader flagged as
key images (:mod:`medview.results.key_images`), built with highdicom.

Document title ``(113000, DCM, "Of Interest")``; the person observer is the OS user, the
device observer medview; every flagged image is an IMAGE content item referencing its SOP
instance (and, for a multi-frame image, its frame), and the evidence (Current Requested
Procedure Evidence Sequence) lists the same instances, so a PACS or viewer that reads the KOS
shows exactly the flagged images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medview.results.key_images import KeyImage
from medview.results.sr import ImageRef, SRError, new_document, observers

#: CID 7010 Key Object Selection Document Title
TITLE_OF_INTEREST = ("113000", "DCM", "Of Interest")


def build_kos(
    refs: dict[str, ImageRef],
    keys: list[KeyImage],
    description: str = "Key images flagged in medview",
    observer: str | None = None,
    series_number: int = 901,
) -> Any:
    """A highdicom ``KeyObjectSelectionDocument`` referencing ``keys`` (those found in
    ``refs``, in order; an image flagged twice is referenced once). :class:`SRError` when no
    flagged image is among ``refs``."""
    from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
    from highdicom.sr import CodedConcept

    chosen: list[ImageRef] = []
    frames: dict[str, list[int]] = {}
    for k in keys:
        ref = refs.get(k.sop_uid)
        if ref is None:
            continue
        if k.sop_uid not in frames:
            chosen.append(ref)
            frames[k.sop_uid] = []
        if ref.frames > 1 and k.frame + 1 not in frames[k.sop_uid]:
            frames[k.sop_uid].append(k.frame + 1)
    if not chosen:
        raise SRError("no key image flagged for these images (the viewer's Key image action, K)")
    person, device = observers(observer)
    content = KeyObjectSelection(
        document_title=CodedConcept(*TITLE_OF_INTEREST),
        referenced_objects=[r.header for r in chosen],
        observer_person_context=person,
        observer_device_context=device,
        description=description[:1024] if description else None,
    )
    _add_frames(content, frames)
    kos = new_document(
        KeyObjectSelectionDocument, [r.header for r in chosen], content, series_number
    )
    kos.SeriesDescription = "medview key images"
    return kos


def _add_frames(content: Any, frames: dict[str, list[int]]) -> None:
    """Referenced Frame Number on the IMAGE items of multi-frame images."""
    for item in content[0].ContentSequence:
        if getattr(item, "ValueType", "") != "IMAGE":
            continue
        ref = item.ReferencedSOPSequence[0]
        nums = frames.get(str(ref.ReferencedSOPInstanceUID))
        if nums:
            ref.ReferencedFrameNumber = nums if len(nums) > 1 else nums[0]


def write_kos(kos: Any, out: str | Path) -> Path:
    """Write the KOS to ``out`` (folders created)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    kos.save_as(path, enforce_file_format=True)
    return path


def read_kos(path: str | Path) -> list[KeyImage]:
    """The images a KOS file references (frames 0-based; 0 when none is named)."""
    import pydicom

    ds = pydicom.dcmread(str(path))
    if str(ds.get("SOPClassUID", "")) != "1.2.840.10008.5.1.4.1.1.88.59":
        raise SRError(f"{path}: not a Key Object Selection document")
    study = str(ds.get("StudyInstanceUID", "") or "")
    series_of: dict[str, str] = {}
    for st in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for se in st.get("ReferencedSeriesSequence", []):
            for so in se.get("ReferencedSOPSequence", []):
                series_of[str(so.ReferencedSOPInstanceUID)] = str(se.SeriesInstanceUID)
    out: list[KeyImage] = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") != "IMAGE":
            continue
        ref = item.ReferencedSOPSequence[0]
        sop = str(ref.ReferencedSOPInstanceUID)
        nums = ref.get("ReferencedFrameNumber")
        if nums is None:
            nums = [1]
        elif not isinstance(nums, (list, pydicom.multival.MultiValue)):
            nums = [nums]
        out += [KeyImage(sop, int(n) - 1, series_of.get(sop, ""), study) for n in nums]
    return out
