"""DICOM Structured Report: a TID 1500 Measurement Report (via highdicom) of a series'
measurements and AI findings, and the way back (SR -> measurements).

* Each stored measurement (``medview.io.database`` measurements table, points in image pixel
  coordinates of the displayed slice, the DICOM SCOORD convention: the top-left pixel's centre
  is (0.5, 0.5)) becomes a TID 1410 *Planar ROI Measurements* group: the region (POLYLINE for a
  ruler, an angle and a rectangle, ELLIPSE for an ellipse) referencing the source SOP instance
  (and frame), with its values in UCUM units: Length (mm), Angle (deg), Area (mm2), Mean,
  Standard Deviation, Minimum, Maximum (Hounsfield unit for CT, no units otherwise); pixel
  units when the image has no pixel spacing.
* Each AI result becomes a TID 1501 *Measurements and Qualitative Evaluations* group for its
  image: Algorithm Identification (model name, version; parameters: weights sha256, decision
  threshold, device), Probability of the positive class, the anomaly score when there is one,
  and the predicted label as a Finding.

:func:`build_sr` returns the highdicom object; :func:`read_sr` turns an SR file back into the
measurement rows the viewer stores, :func:`import_sr` writes them into the study database.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.disclaimers import AI as DISCLAIMER

#: private coding scheme of this project (PS3.16 8.2: "99" prefix) for what no standard code has
SCHEME = "99MEDVIEW"
MANUFACTURER = "medview"

#: SNOMED CT codes of predicted labels; other labels use the private scheme
LABEL_CODES = {
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "normal": ("17621005", "SCT", "Normal"),
}


class SRError(ValueError):
    """A one-line reason why an SR cannot be written or read."""


def _codes() -> Any:
    from pydicom.sr.codedict import codes

    return codes


def _code(value: str, scheme: str, meaning: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(value, scheme, meaning)


def ucum(unit: str) -> Any:
    """UCUM code for a unit name used by medview."""
    table = {
        "mm": ("mm", "millimeter"),
        "mm2": ("mm2", "square millimeter"),
        "deg": ("deg", "degree"),
        "HU": ("[hnsf'U]", "Hounsfield unit"),
        "px": ("{pixels}", "pixels"),
        "px2": ("{pixels}", "pixels"),
        "1": ("1", "no units"),
    }
    value, meaning = table[unit]
    return _code(value, "UCUM", meaning)


@dataclass
class ImageRef:
    """What the SR needs of one source image (from its header)."""

    sop_uid: str
    sop_class: str
    frames: int
    spacing_known: bool
    modality: str
    header: Any  # pydicom Dataset without pixel data (the SR's evidence)


def image_refs(paths: list[str]) -> dict[str, ImageRef]:
    """SOP Instance UID -> :class:`ImageRef` for DICOM files (headers only)."""
    import pydicom

    from medview.io import read_header

    out: dict[str, ImageRef] = {}
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            info = read_header(p)
        except Exception as exc:
            raise SRError(f"{p}: cannot be read ({' '.join(str(exc).split())[:100]})") from None
        # UIDs missing from the file (blanked by an earlier anonymiser): medview's derived ones,
        # the same the viewer and the database use, so the SR references what medview shows
        for keyword, value in (
            ("SOPClassUID", info.sop_class_uid),
            ("SOPInstanceUID", info.sop_uid),
            ("StudyInstanceUID", info.study_uid),
            ("SeriesInstanceUID", info.series_uid),
        ):
            if not ds.get(keyword) and value:
                setattr(ds, keyword, value)
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if not sop or not ds.get("SOPClassUID"):
            continue
        spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
        out[sop] = ImageRef(
            sop_uid=sop,
            sop_class=str(ds.SOPClassUID),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            spacing_known=bool(spacing),
            modality=str(ds.get("Modality", "") or ""),
            header=ds,
        )
    return out


def _region(kind: str, points: list[tuple[float, float]]) -> tuple[str, list[list[float]]]:
    """(graphic type, (column, row) points) for a measurement's geometry."""
    pts = [[float(x), float(y)] for x, y in points]
    if kind in ("ruler", "angle"):
        return "POLYLINE", pts
    (x0, y0), (x1, y1) = pts[0], pts[1]
    xa, xb, ya, yb = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if kind == "rect":
        return "POLYLINE", [[xa, ya], [xb, ya], [xb, yb], [xa, yb], [xa, ya]]
    if kind == "ellipse":
        cx, cy, ax, ay = (xa + xb) / 2, (ya + yb) / 2, (xb - xa) / 2, (yb - ya) / 2
        horizontal = [[cx - ax, cy], [cx + ax, cy]]
        vertical = [[cx, cy - ay], [cx, cy + ay]]
        return "ELLIPSE", horizontal + vertical if ax >= ay else vertical + horizontal
    raise SRError(f"unknown measurement kind {kind!r}")


def _measurement_values(kind: str, stats: dict[str, Any], ref: ImageRef) -> list[Any]:
    from highdicom.sr import Measurement

    codes = _codes()
    length_unit = "mm" if ref.spacing_known else "px"
    value_unit = "HU" if ref.modality == "CT" else "1"
    out = []

    def add(name: Any, key: str, unit: str) -> None:
        v = stats.get(key)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            out.append(Measurement(name=name, value=float(v), unit=ucum(unit)))

    if kind == "ruler":
        add(codes.SCT.Length, "length", length_unit)
    elif kind == "angle":
        add(codes.SCT.Angle, "angle", "deg")
    else:
        add(codes.SCT.Area, "area", "mm2" if ref.spacing_known else "px2")
        if stats.get("n"):
            add(codes.SCT.Mean, "mean", value_unit)
            add(codes.SCT.StandardDeviation, "sd", value_unit)
            add(codes.SCT.Minimum, "min", value_unit)
            add(codes.SCT.Maximum, "max", value_unit)
    return out


@dataclass
class AIFinding:
    """An AI result as the SR stores it (from :class:`medview.ai.inference.AIResult`)."""

    sop_uid: str
    frame: int
    model: str
    version: str
    sha256: str
    device: str
    threshold: float | None
    probability: float | None  # of the positive class
    positive_label: str | None
    predicted: str | None
    anomaly_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sop_uid": self.sop_uid,
            "frame": self.frame,
            "model": self.model,
            "version": self.version,
            "sha256": self.sha256,
            "device": self.device,
            "threshold": self.threshold,
            "probability": self.probability,
            "positive_label": self.positive_label,
            "predicted": self.predicted,
            "anomaly_score": self.anomaly_score,
        }


def finding_from_result(result: Any) -> AIFinding:
    """An :class:`AIFinding` from an AIResult whose ``key`` is ``SOP`` or ``SOP#frame``."""
    from medview.ai.registry import get_model

    key = str(result.key or "")
    sop, _, frame = key.partition("#")
    info = get_model(result.model)
    positive = info.meta.get("output", {}).get("positive_label")
    labels = info.labels
    if positive is None and len(labels) == 2:
        positive = labels[1]
    prob = None
    if result.probabilities is not None and positive in result.probabilities:
        prob = float(result.probabilities[positive])
    return AIFinding(
        sop_uid=sop,
        frame=int(frame) if frame.isdigit() else 0,
        model=result.model,
        version=result.version,
        sha256=str(info.meta.get("weights", {}).get("sha256", "")),
        device=result.device,
        threshold=result.threshold,
        probability=prob,
        positive_label=positive,
        predicted=result.predicted,
        anomaly_score=result.anomaly_score,
    )


def _label_code(label: str) -> Any:
    value, scheme, meaning = LABEL_CODES.get(label.lower(), (label.upper()[:16], SCHEME, label))
    return _code(value, scheme, meaning)


def _ai_group(f: AIFinding, ref: ImageRef, n: int) -> Any:
    import highdicom as hd
    from highdicom.sr import (
        AlgorithmIdentification,
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        SourceImageForMeasurementGroup,
        TrackingIdentifier,
    )

    codes = _codes()
    params = [f"weights sha256 {f.sha256}", f"device {f.device}"]
    if f.threshold is not None:
        params.insert(1, f"threshold {f.threshold:g}")
    algo = AlgorithmIdentification(name=f.model, version=f.version, parameters=params)
    scores = (  # unitless numbers of the finding, each with its concept name
        (f.probability, codes.DCM.Probability),
        (f.threshold, _code("THRESHOLD", SCHEME, "Decision threshold")),
        (f.anomaly_score, _code("ANOMALY", SCHEME, "Anomaly score")),
    )
    measurements = [
        Measurement(name=name, value=float(value), unit=ucum("1"))
        for value, name in scores
        if value is not None
    ]
    evaluations = []
    if f.predicted:
        evaluations.append(QualitativeEvaluation(codes.DCM.Finding, _label_code(f.predicted)))
    frames = [f.frame + 1] if ref.frames > 1 else None
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=hd.UID(), identifier=f"AI {f.model} {f.version} #{n}"
        ),
        algorithm_id=algo,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[
            SourceImageForMeasurementGroup(
                ref.sop_class, ref.sop_uid, referenced_frame_numbers=frames
            )
        ],
    )


def _roi_group(row: dict[str, Any], refs: dict[str, ImageRef], n: int) -> Any | None:
    """The TID 1410 group of one stored measurement, or None when it cannot be placed."""
    import highdicom as hd
    import numpy as np
    from highdicom.sr import (
        ImageRegion,
        PlanarROIMeasurementsAndQualitativeEvaluations,
        SourceImageForRegion,
        TrackingIdentifier,
    )

    ref = refs.get(str(row.get("sop_uid", "")))
    data = row.get("data") or {}
    if ref is None or data.get("plane", "axial") != "axial":
        return None
    kind = str(row.get("kind", ""))
    points = [(float(x), float(y)) for x, y in data.get("points", [])]
    if len(points) < (3 if kind == "angle" else 2):
        return None
    gtype, gdata = _region(kind, points)
    frame = int(data.get("frame", 0) or 0)
    source = SourceImageForRegion(
        ref.sop_class,
        ref.sop_uid,
        referenced_frame_numbers=[frame + 1] if ref.frames > 1 else None,
    )
    region = ImageRegion(graphic_type=gtype, graphic_data=np.array(gdata), source_image=source)
    ident = f"medview {kind} {row.get('id', n)}"
    return PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier=ident),
        referenced_region=region,
        measurements=_measurement_values(kind, data.get("stats") or {}, ref),
    )


def _observation_context(observer: str | None) -> Any:
    """Person observer (the OS user unless given) and the device observer (medview)."""
    from highdicom.sr import ObservationContext

    person, device = observers(observer)
    return ObservationContext(observer_person_context=person, observer_device_context=device)


def observers(observer: str | None) -> tuple[Any, Any]:
    """(person, device) highdicom ObserverContexts: the OS user unless given, and medview."""
    import highdicom as hd
    from highdicom.sr import (
        DeviceObserverIdentifyingAttributes,
        ObserverContext,
        PersonObserverIdentifyingAttributes,
    )

    from medview import __version__

    codes = _codes()
    if observer is None:
        from medview.results.audit import os_user

        observer = os_user().replace("^", " ") + "^"  # PN: family name component
    return (
        ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=PersonObserverIdentifyingAttributes(name=observer),
        ),
        ObserverContext(
            observer_type=codes.cid270.Device,
            observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
                uid=hd.UID(),
                name="medview",
                manufacturer_name=MANUFACTURER,
                model_name=f"medview {__version__}",
            ),
        ),
    )


def build_sr(
    refs: dict[str, ImageRef],
    measurements: list[dict[str, Any]],
    findings: list[AIFinding] | None = None,
    observer: str | None = None,
    series_number: int = 900,
) -> Any:
    """A highdicom Comprehensive 3D SR holding a TID 1500 Measurement Report.

    ``measurements`` are rows as ``StudyDatabase.measurements`` returns them (``sop_uid``,
    ``kind``, ``data`` with ``points``, ``frame``, ``stats``); rows of images not in ``refs``
    (or drawn on a reformatted plane) are left out.
    """
    from highdicom.sr import Comprehensive3DSR, MeasurementReport

    if not refs:
        raise SRError("no DICOM image to reference")
    groups: list[Any] = []
    for n, row in enumerate(measurements, start=1):
        group = _roi_group(row, refs, n)
        if group is not None:
            groups.append(group)
    for n, f in enumerate(findings or [], start=1):
        ref = refs.get(f.sop_uid)
        if ref is not None:
            groups.append(_ai_group(f, ref, n))
    if not groups:
        raise SRError("nothing to report: no stored measurement or AI result for these images")
    report = MeasurementReport(
        observation_context=_observation_context(observer),
        procedure_reported=_code("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups,
    )
    return new_document(
        Comprehensive3DSR,
        [r.header for r in refs.values()],
        report,
        series_number,
        is_complete=True,
        series_description=f"medview measurements ({DISCLAIMER})"
        if findings
        else "medview measurements",
    )


def new_document(cls: Any, evidence: list[Any], content: Any, series_number: int, **kw: Any) -> Any:
    """A new highdicom document of ``cls`` (an SR or a KOS) about the images ``evidence``: its
    own series and instance UIDs, medview as manufacturer and software version."""
    import highdicom as hd

    from medview import __version__

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom's notes on the images' own patient names
        doc = cls(
            evidence=evidence,
            content=content,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            **kw,
        )
    doc.SoftwareVersions = __version__
    # attributes copied from the images that are invalid there (e.g. Patient's Age "62"):
    # left out rather than guessed, so the document itself is valid
    age = str(doc.get("PatientAge", "") or "")
    if age and not re.fullmatch(r"\d{3}[DWMY]", age):
        del doc.PatientAge
    return doc


def write_sr(sr: Any, out: str | Path) -> Path:
    """Write the SR to ``out`` (folders created)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path, enforce_file_format=True)
    return path


# ---------------------------------------------------------------- reading back
def _kind_of(gtype: str, pts: list[list[float]]) -> tuple[str, list[tuple[float, float]]]:
    if gtype == "ELLIPSE":
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return "ellipse", [(min(xs), min(ys)), (max(xs), max(ys))]
    if gtype == "POLYLINE" and len(pts) == 2:
        return "ruler", [tuple(p) for p in pts]  # type: ignore[misc]
    if gtype == "POLYLINE" and len(pts) == 3:
        return "angle", [tuple(p) for p in pts]  # type: ignore[misc]
    if gtype == "POLYLINE" and len(pts) == 5 and pts[0] == pts[-1]:
        return "rect", [tuple(pts[0]), tuple(pts[2])]  # type: ignore[list-item]
    raise SRError(f"region {gtype} with {len(pts)} points is not a medview measurement")


_STAT_OF = {
    "410668003": "length",
    "1483009": "angle",
    "42798000": "area",
    "373098007": "mean",
    "386136009": "sd",
    "255605001": "min",
    "56851009": "max",
}


@dataclass
class SRContents:
    """What :func:`read_sr` found: measurement rows and AI findings."""

    path: str
    study_uid: str
    measurements: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "study_uid": self.study_uid,
            "measurements": self.measurements,
            "findings": self.findings,
            "skipped": self.skipped,
        }


def read_sr(path: str | Path) -> SRContents:
    """Measurements (rows like the database's: ``sop_uid``, ``kind``, ``data``) and AI
    findings of a TID 1500 Measurement Report."""
    import highdicom as hd

    try:
        sr = hd.sr.srread(str(path))
    except Exception as exc:
        raise SRError(
            f"{path}: not a readable measurement report ({' '.join(str(exc).split())[:100]})"
        ) from None
    out = SRContents(str(path), str(sr.StudyInstanceUID))
    content: Any = sr.content  # a MeasurementReport (highdicom types it as ContentSequence)
    for group in content.get_planar_roi_measurement_groups():
        roi = group.roi
        if roi is None:
            out.skipped.append(f"{group.tracking_identifier}: no image region")
            continue
        try:
            kind, points = _kind_of(
                roi.graphic_type.value, [list(map(float, p)) for p in roi.value]
            )
        except SRError as exc:
            out.skipped.append(str(exc))
            continue
        ref = roi.ContentSequence[0].ReferencedSOPSequence[0]  # the "selected from" IMAGE
        frames = ref.get("ReferencedFrameNumber")
        frame = (int(frames[0]) if isinstance(frames, list) else int(frames)) - 1 if frames else 0
        stats: dict[str, Any] = {}
        for m in group.get_measurements():
            key = _STAT_OF.get(m.name.value)
            if key:
                stats[key] = float(m.value)
        out.measurements.append(
            {
                "sop_uid": str(ref.ReferencedSOPInstanceUID),
                "kind": kind,
                "data": {
                    "points": [[round(x, 3), round(y, 3)] for x, y in points],
                    "plane": "axial",
                    "frame": frame,
                    "stats": stats,
                },
            }
        )
    for group in content.get_image_measurement_groups():
        texts = _group_texts(group)
        finding: dict[str, Any] = {
            "model": next(iter(texts.get("111001", [])), None),
            "version": next(iter(texts.get("111003", [])), None),
            "parameters": texts.get("111002", []),
            "sop_uids": [str(s.referenced_sop_instance_uid) for s in group.source_images],
        }
        for m in group.get_measurements():
            if m.name.value == "122157":
                finding["probability"] = float(m.value)
            elif m.name.value == "THRESHOLD":
                finding["threshold"] = float(m.value)
            elif m.name.value == "ANOMALY":
                finding["anomaly_score"] = float(m.value)
        for container in group:
            for item in container.get("ContentSequence", []):
                name = item.ConceptNameCodeSequence[0].CodeValue
                if item.get("ValueType") == "CODE" and name == "121071":  # Finding
                    finding["predicted"] = str(item.ConceptCodeSequence[0].CodeMeaning).lower()
        for p in finding["parameters"]:
            if p.startswith("weights sha256 "):
                finding["sha256"] = p.split()[-1]
            elif p.startswith("device "):
                finding["device"] = p.split()[-1]
        out.findings.append(finding)
    return out


def _group_texts(group: Any) -> dict[str, list[str]]:
    """TEXT items directly under a measurement group, by concept code (Algorithm Name 111001,
    Algorithm Version 111003, Algorithm Parameters 111002)."""
    out: dict[str, list[str]] = {}
    for container in group:
        for item in container.get("ContentSequence", []):
            if item.get("ValueType") != "TEXT":
                continue
            code = str(item.ConceptNameCodeSequence[0].CodeValue)
            out.setdefault(code, []).append(str(item.TextValue))
    return out


def import_sr(path: str | Path, db: Any) -> int:
    """Store the measurements of an SR in the study database (the viewer shows them on the
    referenced images); returns how many were stored. Rows already present are not doubled."""
    contents = read_sr(path)
    n = 0
    for row in contents.measurements:
        existing = db.measurements(row["sop_uid"])
        if any(e["kind"] == row["kind"] and e["data"] == row["data"] for e in existing):
            continue
        db.save_measurement(row["sop_uid"], row["kind"], row["data"])
        n += 1
    return n
