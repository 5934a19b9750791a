"""The patient/study fields an instance and its series share (io.model.StudyFacts)."""

from __future__ import annotations

from dataclasses import fields

from medview.io.model import InstanceInfo, SeriesInfo, StudyFacts
from medview.io.scanning import _make_series
from medview.viewer.session import series_from_database

FACTS = {
    "study_uid": "1.2.3",
    "patient_id": "P7",
    "patient_name": "Doe^Jane",
    "patient_birth_date": "19700101",
    "patient_sex": "F",
    "study_date": "20240102",
    "study_description": "CT chest",
    "modality": "CT",
}


def test_the_shared_fields_are_the_study_facts() -> None:
    assert [f.name for f in fields(StudyFacts)] == list(FACTS)
    # each class keeps its own first positional argument
    assert InstanceInfo("a.dcm").path == "a.dcm"
    assert SeriesInfo("1.2.3.4").series_uid == "1.2.3.4"


def test_a_scanned_series_takes_its_first_instance_facts() -> None:
    inst = InstanceInfo(path="a.dcm", series_uid="1.2.3.4", series_description="axial", **FACTS)
    series = _make_series("1.2.3.4", [inst])
    assert {k: getattr(series, k) for k in FACTS} == FACTS
    assert series.description == "axial"


def test_database_instances_take_their_series_facts() -> None:
    study = {
        "study_uid": "1.2.3",
        "patient_id": "P7",
        "patient_name": "Doe^Jane",
        "birth_date": "19700101",
        "sex": "F",
        "study_date": "20240102",
        "study_description": "CT chest",
        "accession": "A1",
    }
    row = {"series_uid": "1.2.3.4", "modality": "CT", "description": "axial", "files": ["a", "b"]}
    series = series_from_database(study, row)
    for inst in series.instances:
        assert {k: getattr(inst, k) for k in FACTS} == FACTS
        assert (inst.series_uid, inst.accession_number) == ("1.2.3.4", "A1")
        assert inst.series_description == "axial"
