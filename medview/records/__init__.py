"""Patient records: import (FHIR, Synthea CSV, CGM CSV), storage and linking."""

from medview.records.model import (
    Condition,
    Encounter,
    Observation,
    Patient,
    RecordProblem,
    RecordSet,
    TreatmentEvent,
)

__all__ = [
    "Condition",
    "Encounter",
    "Observation",
    "Patient",
    "RecordProblem",
    "RecordSet",
    "TreatmentEvent",
]
