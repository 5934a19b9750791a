"""FHIR R4 import: JSON bundles (transaction/collection/searchset), single resources
and NDJSON bulk-data exports.

Resources read: Patient, Observation (value and components, e.g. the systolic and
diastolic parts of a blood-pressure panel), Condition, MedicationRequest,
MedicationStatement, MedicationAdministration, Procedure, CarePlan, Encounter,
AllergyIntolerance (and Medication, to resolve ``medicationReference``). Other resource types are
ignored. Reasons given as ``reasonReference`` / ``addresses`` (references to a
Condition) are resolved to the condition's SNOMED code after every file is read,
so references across NDJSON files work.

A malformed resource (missing subject, code or time, wrong types, a non-string
``resourceType``, a value that is not a finite number, a time out of range) is reported
as a :class:`~medview.records.model.RecordProblem` naming the file, the line and the
resource id, and skipped; everything else is imported. A Bundle that does not parse
whole (truncated, one broken entry, nesting too deep for the parser, bytes that are
not UTF-8) is read entry by entry. Files over ``_text.MAX_TEXT_BYTES`` are refused.

``Patient.identifier`` entries that are national identifiers (SSN, passport,
driving licence: :func:`is_national_identifier`) are dropped on import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from medview.records import model
from medview.records._common import make_observation, parse_date, parse_time
from medview.records._text import show
from medview.records.fhir_files import iter_fhir_file
from medview.tasks import TaskState, ensure_state

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

KNOWN_TYPES = {
    "Patient",
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Procedure",
    "CarePlan",
    "Encounter",
    "Medication",
    "AllergyIntolerance",
}


# identifier types (HL7 v2 table 0203) and systems of national identifiers: never kept
NATIONAL_ID_TYPES = {"SS", "SB", "DL", "PPN", "NI", "TAX", "CZ", "NNxxx"}
NATIONAL_ID_SYSTEM_WORDS = ("us-ssn", "ssn", "passport", "driver", "licen", "2.16.840.1.113883.4.3")


def is_national_identifier(identifier: dict) -> bool:
    """True for a Patient.identifier holding an SSN, passport or driving-licence number."""
    kind = identifier.get("type")
    codings = kind.get("coding") if isinstance(kind, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and str(coding.get("code") or "") in NATIONAL_ID_TYPES:
            return True
    system = str(identifier.get("system") or "").lower()
    return any(word in system for word in NATIONAL_ID_SYSTEM_WORDS)


def _label_id(rid: Any) -> str:
    """A resource id for a problem label (escaped and shortened when odd)."""
    if isinstance(rid, str) and rid.isprintable() and 0 < len(rid) <= 64:
        return rid
    return "?" if rid is None or rid == "" else show(rid)


class _Malformed(Exception):
    """A resource lacks something required; message is the one-line reason."""


# --------------------------------------------------------------------------- field helpers
def _ref_id(ref: Any) -> str:
    """'urn:uuid:X', 'Patient/X', 'Patient?identifier=sys|X', '#X' -> 'X'."""
    if isinstance(ref, dict):
        ref = ref.get("reference", "")
    if not isinstance(ref, str):
        return ""
    ref = ref.strip()
    if ref.startswith("urn:uuid:"):
        return ref[9:]
    if ref.startswith("#"):
        return ref[1:]
    if "?" in ref and "|" in ref:
        return ref.rsplit("|", 1)[1]
    return ref.rstrip("/").rsplit("/", 1)[-1]


def _coding(concept: Any, prefer: str | None = None) -> tuple[str, str]:
    """(code, display) of a CodeableConcept, preferring a coding of system ``prefer``."""
    if not isinstance(concept, dict):
        return "", ""
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict) and c.get("code")]
    chosen = None
    if prefer:
        chosen = next((c for c in codings if c.get("system") == prefer), None)
    if chosen is None and codings:
        chosen = codings[0]
    text = concept.get("text") or ""
    if chosen is None:
        return "", str(text)
    return str(chosen["code"]), str(chosen.get("display") or text)


def _subject(res: dict) -> str:
    pid = _ref_id(res.get("subject") or res.get("patient") or {})
    if not pid:
        raise _Malformed("no subject (patient reference)")
    return pid


def _time_or_none(res: dict, *fields: str) -> datetime | None:
    """First present time among ``fields`` (``xPeriod`` fields give their start), or None."""
    for f in fields:
        v = res.get(f)
        if v is None:
            continue
        if isinstance(v, dict):  # a Period
            v = v.get("start") or v.get("end")
        if not v:
            continue
        try:
            return parse_time(v)
        except (TypeError, ValueError) as exc:
            raise _Malformed(f"bad {f} {show(v)}") from exc
    return None


def _time(res: dict, *fields: str) -> datetime:
    """First present time among ``fields``; the resource is malformed without one."""
    when = _time_or_none(res, *fields)
    if when is None:
        raise _Malformed(f"no time ({' / '.join(fields)})")
    return when


def _end(res: dict, *fields: str) -> datetime | None:
    for f in fields:
        v = res.get(f)
        if isinstance(v, dict):
            v = v.get("end")
        if v:
            try:
                return parse_time(v)
            except (TypeError, ValueError) as exc:
                raise _Malformed(f"bad {f} {show(v)}") from exc
    return None


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _Malformed(f"{what} is not a number: {show(v)}")
    try:
        number = float(v)
    except (ValueError, OverflowError) as exc:
        raise _Malformed(f"{what} is not a finite number: {show(v)}") from exc
    if not math.isfinite(number):
        raise _Malformed(f"{what} is not a finite number: {show(v)}")
    return number


def _value(node: dict, what: str) -> tuple[float | None, str, str] | None:
    """(value, unit, text) of an Observation or component, or None when it has no value."""
    if "valueQuantity" in node:
        q = node["valueQuantity"]
        if not isinstance(q, dict) or "value" not in q:
            raise _Malformed(f"{what} valueQuantity without a value")
        # the UCUM code is the reliable spelling; ``unit`` is display text
        if q.get("system") == "http://unitsofmeasure.org" and q.get("code"):
            unit = q["code"]
        else:
            unit = q.get("unit") or q.get("code") or ""
        return _number(q["value"], what), str(unit), ""
    for key in ("valueInteger", "valueDecimal"):
        if key in node:
            return _number(node[key], what), "", ""
    if "valueCodeableConcept" in node:
        code, display = _coding(node["valueCodeableConcept"])
        return None, "", display or code
    for key in ("valueString", "valueBoolean", "valueDateTime", "valueTime"):
        if key in node:
            return None, "", str(node[key])
    return None


# The treatment resources: the fields their start time is read from (the first present;
# a Period gives its start) and the Period whose end stops them.
_TREATMENT_TIMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MedicationRequest": (("authoredOn",), ()),
    "MedicationStatement": (
        ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
        ("effectivePeriod",),
    ),
    "MedicationAdministration": (("effectiveDateTime", "effectivePeriod"), ("effectivePeriod",)),
    "Procedure": (("performedDateTime", "performedPeriod"), ("performedPeriod",)),
    "CarePlan": (("period", "created"), ("period",)),
}


# --------------------------------------------------------------------------- importer
class FhirImporter:
    """Accumulates resources from any number of files, then builds one RecordSet."""

    def __init__(self) -> None:
        self.records = model.RecordSet(format="fhir")
        self._conditions_by_id: dict[str, tuple[str, str]] = {}
        self._medications_by_id: dict[str, tuple[str, str]] = {}
        self._pending: list[tuple[str, dict]] = []

    # pass 1: index everything that others refer to
    def add(self, source: str, res: dict) -> None:
        """Index one resource for the second pass; a broken one is reported and skipped."""
        rtype = res.get("resourceType")
        if not isinstance(rtype, str):
            self.records.problems.append(
                model.RecordProblem(source, f"resourceType is not a string: {show(rtype)}; skipped")
            )
            return
        if rtype not in KNOWN_TYPES:
            return
        try:
            self._index(source, res, rtype)
        except Exception as exc:  # noqa: BLE001 - one broken resource never stops the import
            self.records.problems.append(
                model.RecordProblem(
                    f"{source} {rtype}", f"malformed resource ({type(exc).__name__})"
                )
            )

    def _index(self, source: str, res: dict, rtype: str) -> None:
        rid = str(res.get("id") or "")
        if rtype == "Condition" and rid:
            self._conditions_by_id[rid] = _coding(res.get("code"), SNOMED)
        elif rtype == "Medication" and rid:
            self._medications_by_id[rid] = _coding(res.get("code"), RXNORM)
            return
        for contained in res.get("contained") or []:
            if isinstance(contained, dict) and contained.get("resourceType") == "Medication":
                cid = str(contained.get("id") or "")
                if cid:
                    self._medications_by_id[cid] = _coding(contained.get("code"), RXNORM)
        self._pending.append((source, res))

    # pass 2: convert
    def finish(self, state: TaskState | None = None) -> model.RecordSet:
        """Convert the collected resources (second pass); problems go to ``records.problems``."""
        state = ensure_state(state)
        n = max(len(self._pending), 1)
        for i, (source, res) in enumerate(self._pending):
            if i % 2000 == 0:
                state.progress(0.5 + 0.5 * i / n, "converting FHIR resources")
            rtype = res["resourceType"]
            label = f"{source} {rtype}/{_label_id(res.get('id'))}"
            try:
                getattr(self, f"_do_{rtype}")(res)
            except _Malformed as exc:
                self.records.problems.append(model.RecordProblem(label, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one broken resource never stops the import
                self.records.problems.append(
                    model.RecordProblem(label, f"malformed resource ({type(exc).__name__})")
                )
        self._pending.clear()
        return self.records

    # ----------------------------------------------------------------- resources
    def _do_Patient(self, res: dict) -> None:  # noqa: N802
        pid = str(res.get("id") or "")
        if not pid:
            raise _Malformed("Patient without id")
        names = [n for n in res.get("name") or [] if isinstance(n, dict)]
        name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
        given = " ".join(str(g) for g in name.get("given") or [])
        text = " ".join(p for p in (given, str(name.get("family") or "")) if p) or str(
            name.get("text") or ""
        )
        try:
            birth = parse_date(res.get("birthDate"))
            death = parse_date(res.get("deceasedDateTime"))
        except ValueError as exc:
            raise _Malformed(f"bad birthDate/deceasedDateTime ({exc})") from exc
        gender = str(res.get("gender") or "").lower()
        sex = {"male": "M", "female": "F"}.get(gender, "")
        idents = [
            str(i["value"])
            for i in res.get("identifier") or []
            if isinstance(i, dict) and i.get("value") and not is_national_identifier(i)
        ]
        self.records.patients[pid] = model.Patient(pid, text, birth, death, sex, idents)

    def _do_Observation(self, res: dict) -> None:  # noqa: N802
        pid = _subject(res)
        t = _time(res, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        code, display = _coding(res.get("code"), LOINC)
        if not code:
            raise _Malformed("no code")
        out: list[model.Observation] = []
        val = _value(res, "value")
        if val is not None:
            out.append(make_observation(pid, t, code, display, *val))
        for k, comp in enumerate(res.get("component") or []):
            ccode, cdisplay = _coding(comp.get("code"), LOINC)
            if not ccode:
                raise _Malformed(f"component {k} has no code")
            cval = _value(comp, f"component {ccode}")
            if cval is not None:
                out.append(make_observation(pid, t, ccode, cdisplay, *cval))
        if not out:
            if res.get("dataAbsentReason") or res.get("hasMember"):
                return  # a panel or an explicitly absent value: nothing to keep
            raise _Malformed("no value and no component values")
        self.records.observations.extend(out)

    def _do_Condition(self, res: dict) -> None:  # noqa: N802
        pid = _subject(res)
        code, display = _coding(res.get("code"), SNOMED)
        if not code:
            raise _Malformed("no code")
        start = _time(res, "onsetDateTime", "onsetPeriod", "recordedDate")
        stop = _end(res, "abatementDateTime", "abatementPeriod")
        self.records.conditions.append(model.Condition(pid, start, stop, code, display))

    def _reason(self, res: dict, *ref_fields: str) -> tuple[str, str]:
        for rc in res.get("reasonCode") or []:
            code, display = _coding(rc, SNOMED)
            if code:
                return code, display
        for f in ref_fields:
            for ref in res.get(f) or []:
                hit = self._conditions_by_id.get(_ref_id(ref))
                if hit and hit[0]:
                    return hit
        return "", ""

    def _medication(self, res: dict) -> tuple[str, str]:
        if "medicationCodeableConcept" in res:
            code, display = _coding(res["medicationCodeableConcept"], RXNORM)
        else:
            ref = _ref_id(res.get("medicationReference") or {})
            code, display = self._medications_by_id.get(ref, ("", ""))
            if not code and ref:
                raise _Malformed(f"medicationReference {ref!r} not found")
        if not code:
            raise _Malformed("no medication code")
        return code, display

    def _add_treatment(self, res: dict, kind: str, code: str, display: str) -> None:
        starts, ends = _TREATMENT_TIMES[res["resourceType"]]
        start = _time(res, *starts)
        stop = _end(res, *ends)
        rcode, rdisplay = self._reason(res, "reasonReference", "addresses")
        self.records.treatments.append(
            model.TreatmentEvent(
                patient_id=_subject(res),
                kind=kind,
                start=start,
                stop=stop,
                code=code,
                display=display,
                reason_code=rcode,
                reason_display=rdisplay,
                status=str(res.get("status") or ""),
            )
        )

    def _do_medication(self, res: dict) -> None:
        code, display = self._medication(res)
        self._add_treatment(res, "medication", code, display)

    _do_MedicationRequest = _do_medication
    _do_MedicationStatement = _do_medication
    _do_MedicationAdministration = _do_medication

    def _do_Procedure(self, res: dict) -> None:  # noqa: N802
        code, display = _coding(res.get("code"), SNOMED)
        if not code:
            raise _Malformed("no code")
        self._add_treatment(res, "procedure", code, display)

    def _do_CarePlan(self, res: dict) -> None:  # noqa: N802
        code, display = "", ""
        for cat in res.get("category") or []:
            code, display = _coding(cat, SNOMED)
            if code and any(
                isinstance(c, dict) and c.get("system") == SNOMED for c in cat.get("coding") or []
            ):
                break
            code, display = "", ""
        if not code:
            raise _Malformed("no SNOMED CT care plan code in category")
        self._add_treatment(res, "careplan", code, display)

    def _do_Encounter(self, res: dict) -> None:  # noqa: N802
        pid = _subject(res)
        start = _time(res, "period")
        stop = _end(res, "period")
        types = res.get("type") or []
        code, display = _coding(types[0], SNOMED) if types else ("", "")
        cls = res.get("class")
        ecls = str(cls.get("code") or "") if isinstance(cls, dict) else ""
        self.records.encounters.append(model.Encounter(pid, start, stop, code, display, ecls))

    def _do_AllergyIntolerance(self, res: dict) -> None:  # noqa: N802
        pid = _subject(res)
        concept = res.get("code")
        codings = [
            c for c in (concept or {}).get("coding") or [] if isinstance(c, dict) and c.get("code")
        ]
        code, display = _coding(concept, RXNORM)
        if not code and not display:
            raise _Malformed("no code")
        system = next((str(c.get("system") or "") for c in codings if c.get("code") == code), "")
        system = {RXNORM: "RxNorm", SNOMED: "SNOMED-CT"}.get(system, system)
        start = _time_or_none(res, "onsetDateTime", "onsetPeriod", "recordedDate")
        stop = _end(res, "onsetPeriod")
        status, _ = _coding(res.get("clinicalStatus"))
        cats = [str(c) for c in res.get("category") or [] if isinstance(c, str)]
        reactions = []
        for reaction in res.get("reaction") or []:
            for m in reaction.get("manifestation") or [] if isinstance(reaction, dict) else []:
                _c, text = _coding(m)
                if text:
                    reactions.append(text)
        self.records.allergies.append(
            model.Allergy(
                patient_id=pid,
                start=start,
                stop=stop,
                code=code,
                display=display,
                system=system,
                type=str(res.get("type") or ""),
                category=cats[0] if cats else "",
                status=status,
                reactions=reactions,
            )
        )


def read_fhir(paths: Iterable[Path], state: TaskState | None = None) -> model.RecordSet:
    """Import FHIR JSON / NDJSON files into one RecordSet (references resolved across files)."""
    state = ensure_state(state)
    files = list(paths)
    imp = FhirImporter()
    problems: list[model.RecordProblem] = []
    for i, path in enumerate(files):
        state.progress(0.5 * i / max(len(files), 1), f"reading {path.name}")
        for source, res in iter_fhir_file(path, problems):
            imp.add(source, res)
        imp.records.sources.append(str(path))
    records = imp.finish(state)
    records.problems[:0] = problems
    state.progress(1.0, "FHIR import done")
    return records
