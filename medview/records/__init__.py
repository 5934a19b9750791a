"""Patient records: import (FHIR, Synthea CSV, CGM CSV), storage and linking.

Entry points::

    from medview.records import load_records, link_patient, save_records
    rs = load_records("export/")              # FHIR .json/.ndjson, a folder, or Synthea CSV
    rs.problems                                # malformed resources/rows, skipped
    link = link_patient(rs, "PID123", "Doe^Jane", "19700101")
"""

from medview.records.link import LinkResult, link_patient
from medview.records.loader import detect_format, load_records
from medview.records.model import (
    Allergy,
    Condition,
    Encounter,
    Observation,
    Patient,
    RecordProblem,
    RecordSet,
    TreatmentEvent,
)
from medview.records.patient_context import PatientRecords, PatientView
from medview.records.store import (
    import_records,
    load_saved_records,
    save_link,
    save_records,
    saved_link,
)

__all__ = [
    "Allergy",
    "Condition",
    "Encounter",
    "LinkResult",
    "Observation",
    "Patient",
    "PatientRecords",
    "PatientView",
    "RecordProblem",
    "RecordSet",
    "TreatmentEvent",
    "detect_format",
    "import_records",
    "link_patient",
    "load_records",
    "load_saved_records",
    "save_link",
    "save_records",
    "saved_link",
]
