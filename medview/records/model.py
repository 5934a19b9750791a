"""Data model for patient records (Qt-free).

Importers (FHIR R4 bundles / NDJSON, Synthea CSV, CGM CSV) produce a
:class:`RecordSet`. Forecasting reads :class:`Observation` series (keyed by LOINC
code, values in a canonical unit); treatment suggestions read conditions and the
treatment events (medications by RxNorm, procedures and care plans by SNOMED CT)
and the patient's allergies (checked against suggested medications).

All times are naive ``datetime`` objects in UTC (the FHIR and Synthea importers
convert offsets to UTC and drop the tzinfo; a plain date becomes midnight).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass
class Patient:
    id: str
    name: str = ""
    birth_date: date | None = None
    death_date: date | None = None
    sex: str = ""  # "M", "F" or ""
    identifiers: list[str] = field(default_factory=list)  # MRN, SSN... for linking


@dataclass
class Observation:
    patient_id: str
    time: datetime
    code: str  # LOINC
    display: str
    value: float | None  # in `unit` (canonical unit when convertible)
    unit: str
    original_value: float | None = None
    original_unit: str = ""
    unit_flag: str = ""  # non-empty when the unit could not be converted (value kept as given)
    text: str = ""  # value of a non-numeric observation (e.g. smoking status), else ""


@dataclass
class Condition:
    patient_id: str
    start: datetime
    stop: datetime | None
    code: str  # SNOMED CT
    display: str


@dataclass
class TreatmentEvent:
    """A medication (RxNorm), procedure or care plan (SNOMED CT) given to a patient."""

    patient_id: str
    kind: str  # "medication" | "procedure" | "careplan"
    start: datetime
    stop: datetime | None
    code: str
    display: str
    reason_code: str = ""  # SNOMED CT condition code the record gives as the reason
    reason_display: str = ""
    status: str = ""  # source status when given (FHIR "active", "stopped"...), else ""


@dataclass
class Encounter:
    patient_id: str
    start: datetime
    stop: datetime | None
    code: str
    display: str
    encounter_class: str = ""


@dataclass
class Allergy:
    """An allergy or intolerance (Synthea allergies.csv, FHIR AllergyIntolerance)."""

    patient_id: str
    start: datetime | None
    stop: datetime | None
    code: str  # RxNorm for medications, SNOMED CT for substances
    display: str
    system: str = ""  # "RxNorm", "SNOMED-CT" (as the source spells it) or a FHIR system URL
    type: str = ""  # "allergy" | "intolerance" | ""
    category: str = ""  # "medication" | "food" | "environment" | "biologic" | ""
    status: str = ""  # clinical status when given ("active", "inactive", "resolved"), else ""
    reactions: list[str] = field(default_factory=list)  # reaction displays

    @property
    def is_active(self) -> bool:
        """No end date and not marked inactive/resolved."""
        return self.stop is None and self.status not in ("inactive", "resolved")


@dataclass
class RecordProblem:
    """A record that was skipped: where it was (file and line, or resource id) and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class RecordSet:
    patients: dict[str, Patient] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    treatments: list[TreatmentEvent] = field(default_factory=list)
    encounters: list[Encounter] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # files / folders read
    format: str = ""  # "fhir", "synthea-csv" (or "mixed" after extend)

    def extend(self, other: RecordSet) -> None:
        self.patients.update(other.patients)
        self.observations.extend(other.observations)
        self.conditions.extend(other.conditions)
        self.treatments.extend(other.treatments)
        self.encounters.extend(other.encounters)
        self.allergies.extend(other.allergies)
        self.problems.extend(other.problems)
        self.sources.extend(other.sources)
        if other.format and self.format and other.format != self.format:
            self.format = "mixed"
        elif other.format:
            self.format = other.format

    def for_patient(self, patient_id: str) -> RecordSet:
        """A new RecordSet holding only one patient's records (problems not included)."""
        out = RecordSet(format=self.format, sources=list(self.sources))
        if patient_id in self.patients:
            out.patients[patient_id] = self.patients[patient_id]
        out.observations = [o for o in self.observations if o.patient_id == patient_id]
        out.conditions = [c for c in self.conditions if c.patient_id == patient_id]
        out.treatments = [t for t in self.treatments if t.patient_id == patient_id]
        out.encounters = [e for e in self.encounters if e.patient_id == patient_id]
        out.allergies = [a for a in self.allergies if a.patient_id == patient_id]
        return out

    def counts(self) -> dict[str, int]:
        """Number of records of each kind (for summaries and tests)."""
        kinds: dict[str, int] = {"medication": 0, "procedure": 0, "careplan": 0}
        for t in self.treatments:
            kinds[t.kind] = kinds.get(t.kind, 0) + 1
        return {
            "patients": len(self.patients),
            "observations": len(self.observations),
            "conditions": len(self.conditions),
            "medications": kinds["medication"],
            "procedures": kinds["procedure"],
            "careplans": kinds["careplan"],
            "encounters": len(self.encounters),
            "allergies": len(self.allergies),
            "problems": len(self.problems),
        }
