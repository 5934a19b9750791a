"""The Qt-free patient-in-view context (medview.records.patient_context, issue 10 item 2);
the panels that follow it are tested in tests/ui/test_patient_in_view.py."""

from __future__ import annotations

from medview.records.patient_context import NO_PATIENT, parse_dicom_date


def synthetic_sets() -> dict[str, object]:
    from datetime import date, datetime, timedelta

    from medview.records.model import Observation, Patient, RecordSet

    def make(people, first_index: int) -> RecordSet:
        rs = RecordSet()
        for i, (pid, name, born, ids, n_a1c, n_glu) in enumerate(people, first_index):
            rs.patients[pid] = Patient(pid, name, born, identifiers=list(ids))
            t0 = datetime(2020, 1, 1) + timedelta(days=i)
            # every value encodes its patient (i) so a plotted value names its owner
            rs.observations += [
                Observation(
                    pid, t0 + timedelta(days=90 * k), "4548-4", "HbA1c", 1000.0 * i + k, "%"
                )
                for k in range(n_a1c)
            ]
            rs.observations += [
                Observation(
                    pid,
                    t0 + timedelta(days=30 * k),
                    "2339-0",
                    "Glucose",
                    1000.0 * i + 500 + k,
                    "mg/dL",
                )
                for k in range(n_glu)
            ]
        return rs

    a = make(
        [
            ("a1", "Ann Alpha", date(1970, 1, 1), ["MRN-A1"], 5, 4),
            ("a2", "Bob Beta", date(1980, 2, 2), ["MRN-A2"], 3, 0),
            ("a3", "Cid Gamma", date(1990, 3, 3), ["DUP"], 0, 6),
            ("a4", "Dee Delta", date(1960, 4, 4), ["DUP"], 2, 1),
            ("a5", "Eve Epsilon", date(1950, 5, 5), [], 0, 0),
        ],
        1,
    )
    b = make(
        [
            ("b1", "Ann Alpha", date(1970, 1, 1), ["MRN-A1"], 4, 3),  # a1 in another export
            ("b2", "Fay Zeta", date(1955, 5, 5), ["MRN-B2"], 6, 2),
            ("b3", "Gus Eta", date(2000, 6, 6), [], 1, 5),
        ],
        11,
    )
    one = make([("pump", "", None, [], 0, 8)], 21)
    return {"csv": a, "fhir": b, "empty": RecordSet(), "cgm": one}


def test_patient_records_context_rules() -> None:
    """The Qt-free context: link once, picks, generations, one database load, DA dates."""
    from datetime import date

    from medview.records import PatientRecords

    sets = synthetic_sets()
    ctx = PatientRecords()
    seen = []
    ctx.subscribe(seen.append)
    assert ctx.view.header == NO_PATIENT and ctx.view.reason == "no records loaded"
    assert ctx.claim_database_load() and not ctx.claim_database_load()  # once
    ctx.set_records(sets["csv"])
    assert ctx.patient_id == "" and "pick a patient" in ctx.view.reason  # 5 patients, no study
    assert ctx.set_study("MRN-A1", "Alpha^Ann", "19700101")
    assert not ctx.set_study("MRN-A1", "Alpha^Ann", "19700101")  # same patient: nothing
    assert ctx.patient_id == "a1" and ctx.view.how == "link"
    assert ctx.view.header == "Patient: Ann Alpha (born 1970-01-01)"
    ctx.select("a2")
    assert ctx.patient_id == "a2" and "the study in view is Alpha Ann" in ctx.view.reason
    ctx.select("nobody")  # unknown id: nobody picked, back to the linked patient
    assert ctx.patient_id == "a1"
    ctx.set_records(sets["fhir"])  # the same person under another id: followed
    assert ctx.patient_id == "b1"
    ctx.set_study(patient_id="DUP")
    ctx.set_records(sets["csv"])
    assert ctx.patient_id == "" and ctx.view.link.method == "ambiguous"
    ctx.set_study()
    ctx.set_records(sets["cgm"])
    assert ctx.patient_id == "pump" and ctx.view.how == "only"
    ctx.set_records(sets["empty"])
    assert ctx.patient_id == "" and ctx.view.header == NO_PATIENT
    gens = [v.generation for v in seen]
    assert gens == sorted(set(gens)) and len(gens) == 10  # one per change, increasing
    assert ctx.is_current(ctx.generation, "") is False
    ctx.set_records(sets["cgm"])
    assert ctx.is_current(ctx.generation, "pump") and not ctx.is_current(ctx.generation - 1, "pump")
    assert not ctx.claim_database_load()  # records are there
    assert parse_dicom_date("19710516") == date(1971, 5, 16)
    assert parse_dicom_date("19711332") is None and parse_dicom_date("") is None
