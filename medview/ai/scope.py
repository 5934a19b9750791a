"""Intended-use check: does an image fall inside what a model card says it is for?

A model card may declare, in ``metadata.json``::

    "intended_use_scope": {
        "modalities": ["CR", "DX"],          # DICOM Modality
        "body_parts": ["CHEST"],             # DICOM BodyPartExamined
        "projections": ["PA", "AP"],         # DICOM ViewPosition
        "age_years": {"min": 1, "max": 5}    # completed years, both ends included
    }

Cards without this block fall back to their older ``modality`` / ``body_part``
fields. The image side comes from its DICOM header (Modality, BodyPartExamined,
ViewPosition, PatientAge, else PatientBirthDate vs StudyDate), gathered once per
series by :func:`volume_scope_meta`.

The verdict (:func:`check_scope`) is ``(in_scope, reasons)``:

* a **known** value outside the card's list makes the result out of scope, with a
  reason such as ``"modality CT outside intended use (CR, DX)"``;
* an **unknown** value (no header: PNG/JPEG, NIfTI; a header lacking the tag;
  Modality "OT") does *not* make it out of scope, but is stated, e.g.
  ``"patient age unknown"``. An image without metadata is therefore "in scope,
  unverified": the person reading it must check the criteria themselves.

Numpy-free, torch-free, Qt-free.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

SCOPE_KEY = "intended_use_scope"
# DICOM BodyPartExamined synonyms seen for the chest (defined term CHEST)
_BODY_ALIASES = {"THORAX": "CHEST", "TORAX": "CHEST", "LUNG": "CHEST", "LUNGS": "CHEST"}
_UNKNOWN_MODALITIES = ("", "OT")  # "OT" (other): raster images and secondary captures


def card_scope(meta: dict[str, Any]) -> dict[str, Any]:
    """The card's intended-use criteria (lists upper-cased); {} when it states none."""
    raw = meta.get(SCOPE_KEY)
    scope: dict[str, Any] = {}
    if isinstance(raw, dict):
        for key in ("modalities", "body_parts", "projections"):
            vals = raw.get(key)
            if vals:
                scope[key] = [str(v).upper() for v in vals]
        age = raw.get("age_years")
        if isinstance(age, dict) and (age.get("min") is not None or age.get("max") is not None):
            scope["age_years"] = {"min": age.get("min"), "max": age.get("max")}
        return scope
    mods = meta.get("modality")
    if mods:
        scope["modalities"] = [str(m).upper() for m in ([mods] if isinstance(mods, str) else mods)]
    part = meta.get("body_part")
    if part:
        scope["body_parts"] = [str(p).upper() for p in ([part] if isinstance(part, str) else part)]
    return scope


def parse_age(value: str) -> float | None:
    """DICOM Age String ("062Y", "006M", "003W", "010D"; a bare "62" = years) -> years."""
    m = re.fullmatch(r"\s*(\d{1,3})\s*([DWMYdwmy]?)\s*", str(value or ""))
    if not m:
        return None
    n = int(m.group(1))
    unit = (m.group(2) or "Y").upper()
    return {"Y": float(n), "M": n / 12.0, "W": n * 7 / 365.25, "D": n / 365.25}[unit]


def _dicom_date(value: str) -> _dt.date | None:
    s = str(value or "").strip()
    try:
        return _dt.datetime.strptime(s[:8], "%Y%m%d").date() if len(s) >= 8 else None
    except ValueError:
        return None


def age_from_dates(birth: str, study: str) -> float | None:
    """Completed years between two DICOM dates (None when either is missing or bad)."""
    b, s = _dicom_date(birth), _dicom_date(study)
    if b is None or s is None or s < b:
        return None
    years = s.year - b.year - ((s.month, s.day) < (b.month, b.day))
    return float(years)


def _fmt_age(years: float) -> str:
    if years >= 2 or float(years).is_integer():
        return f"{int(years)} y"
    return f"{years * 12:.0f} months"


def check_scope(meta: dict[str, Any], image_meta: dict[str, Any]) -> tuple[bool, list[str]]:
    """Intended-use verdict of one image for one model card: (in_scope, reasons).

    ``image_meta`` keys (all optional): ``modality``, ``body_part``,
    ``view_position``, ``age_years`` (float). Reasons list every criterion the
    image is outside of, then every criterion that could not be checked.
    """
    scope = card_scope(meta)
    if not scope:
        return True, ["model card states no intended-use criteria"]
    out: list[str] = []
    unknown: list[str] = []

    modality = str(image_meta.get("modality") or "").strip().upper()
    if "modalities" in scope:
        allowed = scope["modalities"]
        if modality in _UNKNOWN_MODALITIES:
            unknown.append("modality unknown" + (" (OT: other)" if modality == "OT" else ""))
        elif modality not in allowed:
            out.append(f"modality {modality} outside intended use ({', '.join(allowed)})")

    for key, meta_key, what, aliases in (
        ("body_parts", "body_part", "body part", _BODY_ALIASES),
        ("projections", "view_position", "projection", {}),
    ):
        if key not in scope:
            continue
        allowed = scope[key]
        value = str(image_meta.get(meta_key) or "").strip().upper()
        if not value:
            unknown.append(f"{what} unknown")
        elif value not in allowed and aliases.get(value, value) not in allowed:
            out.append(f"{what} {value} outside intended use ({', '.join(allowed)})")

    if "age_years" in scope:
        lo, hi = scope["age_years"].get("min"), scope["age_years"].get("max")
        span = f"{lo if lo is not None else 0}-{hi if hi is not None else ''} y"
        age = image_meta.get("age_years")
        if age is None:
            unknown.append("patient age unknown")
        else:
            whole = int(float(age))  # completed years, as the card's range means
            if (lo is not None and float(age) < float(lo)) or (hi is not None and whole > hi):
                out.append(f"patient age {_fmt_age(float(age))} outside intended use ({span})")
    return not out, out + unknown


# -- image metadata ------------------------------------------------------------------

_HEADER_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "PatientAge")


def _read_header_tags(path: str) -> dict[str, str]:
    """A few tags from a DICOM file's header ({} when it is not DICOM)."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
    except Exception:  # noqa: BLE001 - not DICOM / unreadable: metadata unknown
        return {}
    return {t: str(ds.get(t, "") or "") for t in _HEADER_TAGS}


def volume_scope_meta(vol: Any) -> dict[str, Any]:
    """Modality, body part, projection and age (years) of a :class:`medview.io.Volume`.

    Read from the series' first instance: the loaded ``InstanceInfo`` fields and,
    for ViewPosition and PatientAge (not kept by :mod:`medview.io`), that file's
    header. Missing values are left out (they are "unknown" to :func:`check_scope`).
    """
    meta: dict[str, Any] = {}
    modality = str(getattr(vol, "modality", "") or "")
    if modality:
        meta["modality"] = modality
    instances = list(getattr(vol, "instances", None) or [])
    series = getattr(vol, "series", None)
    inst: Any = instances[0] if instances else None
    if inst is None and series is not None and getattr(series, "instances", None):
        inst = series.instances[0]
    if inst is None:
        return meta
    if getattr(inst, "body_part", ""):
        meta["body_part"] = str(inst.body_part)
    inst_modality = str(getattr(inst, "modality", "") or "")
    if not meta.get("modality") and inst_modality:
        meta["modality"] = inst_modality
    kind = str(getattr(series, "kind", "dicom") or "dicom") if series is not None else "dicom"
    tags = _read_header_tags(str(inst.path)) if kind == "dicom" and inst.path else {}
    if tags.get("ViewPosition"):
        meta["view_position"] = tags["ViewPosition"]
    if not meta.get("body_part") and tags.get("BodyPartExamined"):
        meta["body_part"] = tags["BodyPartExamined"]
    if not meta.get("modality") and tags.get("Modality"):
        meta["modality"] = tags["Modality"]
    age = parse_age(tags.get("PatientAge", ""))
    if age is None:
        age = age_from_dates(
            str(getattr(inst, "patient_birth_date", "") or ""),
            str(getattr(inst, "study_date", "") or ""),
        )
    if age is not None:
        meta["age_years"] = age
    return meta
