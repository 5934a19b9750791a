"""A generated FHIR R4 bundle for the self-test's records, forecast and suggestion checks."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from medview.commands.selftest.base import (
    AMLODIPINE,
    DIABETES,
    GLUCOSE,
    HBA1C,
    HYPERTENSION,
    LISINOPRIL,
    METFORMIN,
    TARGET_PATIENT,
)


def fhir_bundle() -> dict[str, Any]:
    """A tiny FHIR R4 collection: 8 patients, conditions, medications, labs, CGM."""
    entries: list[dict[str, Any]] = []

    def add(res: dict) -> None:
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})

    def concept(system: str, code: str, display: str) -> dict:
        return {"coding": [{"system": system, "code": code, "display": display}], "text": display}

    def observation(
        pid: str, oid: str, code: tuple[str, str], when: str, value: float, unit: str
    ) -> None:
        add(
            {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "subject": {"reference": f"urn:uuid:{pid}"},
                "code": concept(loinc, *code),
                "effectiveDateTime": when,
                "valueQuantity": {
                    "value": value,
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )

    snomed, rxnorm, loinc = (
        "http://snomed.info/sct",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://loinc.org",
    )
    # patients 1..8 have hypertension; 2..8 take lisinopril, 1 takes only amlodipine;
    # the even ones also have diabetes and take metformin.
    for i in range(1, 9):
        pid = f"selftest-{i}"
        add(
            {
                "resourceType": "Patient",
                "id": pid,
                "name": [{"given": ["Test"], "family": f"Patient{i}"}],
                "gender": "female" if i % 2 else "male",
                "birthDate": f"{1950 + 3 * i}-0{1 + i % 9}-15",
            }
        )
        conds = [HYPERTENSION] + ([DIABETES] if i % 2 == 0 else [])
        for k, (code, disp) in enumerate(conds):
            add(
                {
                    "resourceType": "Condition",
                    "id": f"{pid}-cond-{k}",
                    "subject": {"reference": f"urn:uuid:{pid}"},
                    "code": concept(snomed, code, disp),
                    "onsetDateTime": "2018-03-01T09:00:00Z",
                }
            )
        meds = [AMLODIPINE] if i == 1 else [LISINOPRIL] + ([AMLODIPINE] if i % 3 == 0 else [])
        if i % 2 == 0:
            meds.append(METFORMIN)
        for k, (code, disp) in enumerate(meds):
            add(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{pid}-med-{k}",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": f"urn:uuid:{pid}"},
                    "medicationCodeableConcept": concept(rxnorm, code, disp),
                    "authoredOn": "2018-03-02T09:00:00Z",
                }
            )
    pid = TARGET_PATIENT
    # five yearly HbA1c values (%), slowly rising
    for k, v in enumerate((6.1, 6.3, 6.4, 6.7, 6.9)):
        observation(pid, f"{pid}-a1c-{k}", HBA1C, f"{2019 + k}-06-01T08:00:00Z", v, "%")
    # 8 h of CGM every 5 min: a smooth meal curve (deterministic, no noise)
    import math

    t0 = datetime(2024, 5, 1, 6, 0, 0)
    for k in range(96):
        v = 110.0 + 45.0 * math.exp(-(((k - 40) / 9.0) ** 2)) + 8.0 * math.sin(k / 7.0)
        when = (t0 + timedelta(minutes=5 * k)).isoformat() + "Z"
        observation(pid, f"{pid}-cgm-{k}", GLUCOSE, when, round(v, 1), "mg/dL")
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
