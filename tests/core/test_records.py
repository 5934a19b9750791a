"""Records import (FHIR R4 JSON/NDJSON, Synthea CSV), units, storage and linking."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pytest

from medview.errors import MedviewError
from medview.records import (
    Patient,
    RecordSet,
    link_patient,
    load_records,
    load_saved_records,
    save_records,
)
from medview.records.units import to_canonical
from tests.helpers.data_helpers import csv_rows

FHIR_NAME = "synthea_fhir"


@pytest.fixture(scope="module")
def fhir_dir(records_dir: Path) -> Path:
    return records_dir / FHIR_NAME


@pytest.fixture(scope="module")
def csv_records(csv_dir: Path) -> RecordSet:
    return load_records(csv_dir)


@pytest.fixture(scope="module")
def fhir_records(fhir_dir: Path) -> RecordSet:
    return load_records(fhir_dir)


def _fhir_resources(fhir_dir: Path) -> list[dict]:
    out = []
    for f in sorted(fhir_dir.glob("*.json")):
        out.extend(e["resource"] for e in json.loads(f.read_text())["entry"])
    return out


# ----------------------------------------------------------------------------- Synthea CSV
def test_synthea_counts_match_files(csv_records: RecordSet, csv_dir: Path) -> None:
    c = csv_records.counts()
    assert csv_records.format == "synthea-csv"
    assert c["problems"] == 0, csv_records.problems[:3]
    for name, key in [
        ("patients", "patients"),
        ("observations", "observations"),
        ("conditions", "conditions"),
        ("medications", "medications"),
        ("procedures", "procedures"),
        ("careplans", "careplans"),
        ("encounters", "encounters"),
    ]:
        assert c[key] == len(csv_rows(csv_dir / f"{name}.csv")), name
    assert c["patients"] == 27


def test_synthea_fields(csv_records: RecordSet, csv_dir: Path) -> None:
    row = csv_rows(csv_dir / "patients.csv")[0]
    p = csv_records.patients[row["Id"]]
    assert p.birth_date == date.fromisoformat(row["BIRTHDATE"])
    assert p.name == f"{row['FIRST']} {row['LAST']}"
    assert p.sex == row["GENDER"]
    assert row["SSN"] and row["SSN"] not in p.identifiers  # national identifiers not kept
    meds = csv_rows(csv_dir / "medications.csv")
    with_reason = sum(1 for r in meds if r["REASONCODE"])
    got = sum(1 for t in csv_records.treatments if t.kind == "medication" and t.reason_code)
    assert got == with_reason
    # times are naive UTC
    first = next(o for o in csv_records.observations)
    assert first.time.tzinfo is None
    # numeric values equal the CSV, text values are kept as text
    obs = csv_rows(csv_dir / "observations.csv")
    bp = [float(r["VALUE"]) for r in obs if r["CODE"] == "8480-6"]
    mine = [o.value for o in csv_records.observations if o.code == "8480-6"]
    assert sorted(mine) == sorted(bp)
    assert all(o.unit == "mmHg" for o in csv_records.observations if o.code == "8480-6")
    smoking = [o for o in csv_records.observations if o.code == "72166-2"]
    assert smoking and all(o.value is None and o.text for o in smoking)


# ----------------------------------------------------------------------------- FHIR
def test_fhir_counts_match_bundles(fhir_records: RecordSet, fhir_dir: Path) -> None:
    res = _fhir_resources(fhir_dir)
    n = Counter(r["resourceType"] for r in res)
    c = fhir_records.counts()
    assert fhir_records.format == "fhir"
    assert c["problems"] == 0, fhir_records.problems[:3]
    assert c["patients"] == n["Patient"] == 12
    assert c["conditions"] == n["Condition"]
    assert c["medications"] == (
        n["MedicationRequest"] + n["MedicationStatement"] + n["MedicationAdministration"]
    )
    assert c["procedures"] == n["Procedure"]
    assert c["careplans"] == n["CarePlan"]
    assert c["encounters"] == n["Encounter"]
    # each Observation gives its value plus one observation per valued component
    expected = 0
    for r in res:
        if r["resourceType"] != "Observation":
            continue
        expected += any(k.startswith("value") for k in r)
        expected += sum(any(k.startswith("value") for k in comp) for comp in r.get("component", []))
    assert c["observations"] == expected


def test_fhir_blood_pressure_components(fhir_records: RecordSet, fhir_dir: Path) -> None:
    panels = [
        r
        for r in _fhir_resources(fhir_dir)
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "85354-9"
    ]
    observations = [r for r in _fhir_resources(fhir_dir) if r["resourceType"] == "Observation"]
    # systolic values wherever they are: components of any panel (85354-9, 55284-4) or alone
    sys_vals = sorted(
        [
            comp["valueQuantity"]["value"]
            for r in observations
            for comp in r.get("component", [])
            if comp["code"]["coding"][0]["code"] == "8480-6"
        ]
        + [
            r["valueQuantity"]["value"]
            for r in observations
            if r["code"]["coding"][0]["code"] == "8480-6"
        ]
    )
    mine = sorted(o.value for o in fhir_records.observations if o.code == "8480-6")
    assert len(panels) > 50
    assert mine == sys_vals
    assert {o.unit for o in fhir_records.observations if o.code in ("8480-6", "8462-4")} == {"mmHg"}


def test_fhir_reason_reference_resolved(fhir_records: RecordSet, fhir_dir: Path) -> None:
    res = _fhir_resources(fhir_dir)
    cond = {
        r["id"]: r["code"]["coding"][0]["code"] for r in res if r["resourceType"] == "Condition"
    }
    expected = Counter()
    for r in res:
        if r["resourceType"] == "MedicationRequest" and r.get("reasonReference"):
            ref = r["reasonReference"][0]["reference"].split(":")[-1]
            expected[cond[ref]] += 1
    got = Counter(
        t.reason_code for t in fhir_records.treatments if t.kind == "medication" and t.reason_code
    )
    # MedicationAdministration reasons are counted too; requests alone must all be there
    assert sum(expected.values()) > 100
    for code, n in expected.items():
        assert got[code] >= n
    # patients: times converted to naive UTC (bundles carry -07:00/-08:00 offsets)
    enc = fhir_records.encounters[0]
    assert enc.start.tzinfo is None


def _observation(
    oid: str,
    when: str,
    coding: tuple[str | None, str],
    quantity: tuple[float, str] | None = None,
    subject: str | None = "Patient/p1",
) -> dict:
    """A FHIR Observation: ``coding`` is (system or None, code), ``quantity`` (value, unit)."""
    system, code = coding
    obs: dict = {"resourceType": "Observation", "id": oid, "effectiveDateTime": when}
    obs["code"] = {
        "coding": [{"code": code} if system is None else {"system": system, "code": code}]
    }
    if subject is not None:
        obs["subject"] = {"reference": subject}
    if quantity is not None:
        obs["valueQuantity"] = {"value": quantity[0], "unit": quantity[1]}
    return obs


def test_fhir_ndjson_and_malformed(tmp_path: Path) -> None:
    lines = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "birthDate": "1960-02-03",
            "gender": "female",
            "name": [{"given": ["Ann"], "family": "Lee"}],
        },
        {
            "resourceType": "Condition",
            "id": "c1",
            "subject": {"reference": "Patient/p1"},
            "code": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}
                ]
            },
            "onsetDateTime": "2010-01-01",
        },
        _observation("o1", "2020-01-01T08:00:00+01:00", ("http://loinc.org", "15074-8"))
        | {
            "valueQuantity": {
                "value": 5.5,
                "unit": "millimole per litre",  # display text; the UCUM code is used
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        },
        _observation("o2-no-subject", "2020-01-01", (None, "2339-0"), (99, "mg/dL"), subject=None),
        _observation("o3", "2020-01-02", ("http://loinc.org", "2339-0"), (7, "g/furlong")),
        _observation("o4-bad-date", "yesterday", (None, "2339-0"), (7, "mg/dL")),
        _observation("bp", "2020-01-03", ("http://loinc.org", "85354-9"))
        | {
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 16, "unit": "kPa"},
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {"value": 80, "unit": "mm[Hg]"},
                },
            ],
        },
    ]
    f = tmp_path / "export.ndjson"
    body = [json.dumps(x) for x in lines[:3]] + ["{not json"] + [json.dumps(x) for x in lines[3:]]
    f.write_text("\n".join(body) + "\n")
    # a second file referring to the condition in the first
    (tmp_path / "MedicationStatement.ndjson").write_text(
        json.dumps(
            {
                "resourceType": "MedicationStatement",
                "id": "m1",
                "status": "active",
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2011-01-01",
                "medicationCodeableConcept": {
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}
                    ]
                },
                "reasonReference": [{"reference": "Condition/c1"}],
            }
        )
        + "\n"
    )
    rs = load_records(tmp_path)
    problems = [str(p) for p in rs.problems]
    assert len(problems) == 3, problems
    assert any("export.ndjson:4" in p and "invalid JSON" in p for p in problems)
    assert any("export.ndjson:5" in p and "o2-no-subject" in p and "subject" in p for p in problems)
    assert any("o4-bad-date" in p and "yesterday" in p for p in problems)
    assert rs.patients["p1"].birth_date == date(1960, 2, 3)
    assert rs.patients["p1"].sex == "F"
    by_code = {o.code: o for o in rs.observations}
    g = by_code["15074-8"]
    assert g.unit == "mg/dL" and g.value == pytest.approx(99.088, abs=1e-3)
    assert g.original_value == 5.5 and g.original_unit == "mmol/L" and not g.unit_flag
    assert g.time == datetime(2020, 1, 1, 7, 0)  # UTC
    bad = by_code["2339-0"]
    assert bad.unit_flag and bad.value == 7 and bad.unit == "g/furlong"
    assert by_code["8480-6"].value == pytest.approx(120.01, abs=0.01)
    assert by_code["8462-4"].value == 80 and by_code["8462-4"].unit == "mmHg"
    (med,) = rs.treatments
    assert med.reason_code == "44054006" and med.status == "active"


def test_fhir_bad_file(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    (tmp_path / "other.json").write_text('{"hello": 1}')
    rs = load_records(tmp_path)
    assert rs.counts()["patients"] == 0
    reasons = sorted(str(p) for p in rs.problems)
    assert len(reasons) == 2
    assert "broken.json: invalid JSON" in reasons[0]
    assert "other.json: not a FHIR resource" in reasons[1]


# ----------------------------------------------------------------------------- malformed CSV
def test_synthea_malformed_rows(tmp_path: Path, csv_dir: Path) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    shutil.copy(csv_dir / "patients.csv", folder / "patients.csv")
    src = (csv_dir / "observations.csv").read_text().splitlines()
    n_good = len(src) - 1
    bad_date = src[1].replace(src[1].split(",")[0], "2020-13-45T00:00:00Z", 1)
    bad_value = ",".join(src[1].split(",")[:6] + ["abc"] + src[1].split(",")[7:])
    short = ",".join(src[1].split(",")[:4])
    (folder / "observations.csv").write_text(
        "\n".join([src[0], *src[1:], bad_date, bad_value, short]) + "\n"
    )
    (folder / "conditions.csv").write_text("START,PATIENT\n2020-01-01,x\n")
    rs = load_records(folder)
    assert len(rs.observations) == n_good
    assert len(rs.patients) == 27
    probs = [str(p) for p in rs.problems]
    assert len(probs) == 4, probs
    assert any(f"observations.csv:{n_good + 2}" in p and "bad DATE" in p for p in probs)
    assert any(f"observations.csv:{n_good + 3}" in p and "not a number" in p for p in probs)
    assert any(f"observations.csv:{n_good + 4}" in p and "fields" in p for p in probs)
    assert any("conditions.csv" in p and "missing column" in p and "CODE" in p for p in probs)


def test_load_records_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(MedviewError, match="no such file"):
        load_records(tmp_path / "nothing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedviewError, match="not a records file"):
        load_records(tmp_path / "notes.txt")
    with pytest.raises(MedviewError, match="no Synthea CSV"):
        load_records(tmp_path)


# ----------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    "code,value,unit,expected,canon",
    [
        ("2339-0", 5.5, "mmol/L", 99.088, "mg/dL"),
        ("2339-0", 99.0, "mg/dL", 99.0, "mg/dL"),
        ("4548-4", 53.0, "mmol/mol", 7.0, "%"),  # IFCC 53 mmol/mol = NGSP 7.0 %
        ("4548-4", 6.5, "%", 6.5, "%"),
        ("8480-6", 16.0, "kPa", 120.01, "mmHg"),
        ("8480-6", 120.0, "mm[Hg]", 120.0, "mmHg"),
        ("39156-5", 24.0, "kg/m2", 24.0, "kg/m2"),
        ("29463-7", 154.0, "[lb_av]", 69.853, "kg"),
        ("8302-2", 1.8, "m", 180.0, "cm"),
        ("8310-5", 98.6, "[degF]", 37.0, "°C"),
        ("38483-4", 88.42, "umol/L", 1.0, "mg/dL"),
        ("2093-3", 5.0, "mmol/L", 193.35, "mg/dL"),
    ],
)
def test_unit_conversion(code, value, unit, expected, canon) -> None:
    conv = to_canonical(code, value, unit)
    assert conv.flag == ""
    assert conv.unit == canon
    assert conv.value == pytest.approx(expected, abs=0.01)


def test_unit_not_convertible_is_flagged() -> None:
    conv = to_canonical("2339-0", 5.5, "mg")
    assert conv.value == 5.5 and conv.unit == "mg" and "cannot convert" in conv.flag
    missing = to_canonical("4548-4", 6.1, "")
    assert missing.value == 6.1 and "no unit" in missing.flag
    other = to_canonical("72514-3", 3.0, "{score}")  # no canonical unit: kept, not flagged
    assert other.value == 3.0 and other.unit == "{score}" and other.flag == ""


# ----------------------------------------------------------------------------- storage
def test_store_roundtrip(tmp_path: Path, csv_records: RecordSet, medview_home: Path) -> None:
    db = tmp_path / "rec.sqlite"
    assert save_records(csv_records, db) == 27
    save_records(csv_records, db)  # re-import replaces, no duplicates
    back = load_saved_records(db)
    assert back.counts() | {"problems": 0} == csv_records.counts() | {"problems": 0}
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables and all(t.startswith("rec_") for t in tables)
    pid = next(iter(csv_records.patients))
    one = load_saved_records(db, [pid])
    assert list(one.patients) == [pid]
    assert len(one.observations) == sum(o.patient_id == pid for o in csv_records.observations)
    o0 = next(o for o in csv_records.observations if o.patient_id == pid)
    assert one.observations[0].time == o0.time
    # default location is medview.paths.database_path() (under MEDVIEW_HOME here)
    save_records(csv_records.for_patient(pid))
    assert (medview_home / "medview.sqlite").is_file()


# ----------------------------------------------------------------------------- linking
def test_link_by_patient_id_and_identifier(csv_records: RecordSet, csv_dir: Path) -> None:
    row = csv_rows(csv_dir / "patients.csv")[1]
    res = link_patient(csv_records, row["Id"], "", None)
    assert res.matched and res.record_patient_id == row["Id"] and res.method == "patient_id"
    res = link_patient(csv_records, row["SSN"], "", None)  # SSNs are not kept (privacy)
    assert not res.matched


def test_link_by_name_and_birth_date(csv_records: RecordSet, csv_dir: Path) -> None:
    row = csv_rows(csv_dir / "patients.csv")[2]
    dicom_name = f"{row['LAST']}^{row['FIRST']}"
    dicom_date = row["BIRTHDATE"].replace("-", "")
    res = link_patient(csv_records, "UNKNOWN-ID", dicom_name, dicom_date)
    assert res.matched and res.record_patient_id == row["Id"]
    assert res.method == "name_birth_date"
    # right name, wrong birth date: a clear no match
    res = link_patient(csv_records, "UNKNOWN-ID", dicom_name, "19000101")
    assert not res.matched and res.method == "none" and res.record_patient_id is None
    assert "no match" in res.message and "UNKNOWN-ID" in res.message


def test_link_ambiguous_and_empty() -> None:
    rs = RecordSet()
    for pid in ("a", "b"):
        rs.patients[pid] = Patient(pid, "Jane Doe", date(1970, 1, 1))
    res = link_patient(rs, "", "DOE^JANE", date(1970, 1, 1))
    assert not res.matched and res.method == "ambiguous" and res.candidates == ["a", "b"]
    res = link_patient(rs, "", "", None)
    assert not res.matched and "no PatientID" in res.message


def test_import_records_keeps_them_for_the_next_session(records_dir, tmp_path):
    from medview.records import import_records, load_saved_records

    db = tmp_path / "rec.sqlite"
    rs = import_records(records_dir / "synthea_fhir", db_path=db)
    assert not rs.problems
    again = load_saved_records(db)
    assert set(again.patients) == set(rs.patients)
    # a database that cannot be written is reported, the records still come back
    blocked = tmp_path / "is_a_folder"
    blocked.mkdir()
    rs2 = import_records(records_dir / "synthea_fhir", db_path=blocked)
    assert set(rs2.patients) == set(rs.patients)
    assert any("not saved" in p.reason for p in rs2.problems)


# ----------------------------------------------------------------------------- allergies
def test_synthea_allergies_match_file(csv_records: RecordSet, csv_dir: Path) -> None:
    rows = csv_rows(csv_dir / "allergies.csv")
    assert csv_records.counts()["allergies"] == len(rows) == len(csv_records.allergies)
    got = Counter((a.patient_id, a.code, a.category) for a in csv_records.allergies)
    assert got == Counter((r["PATIENT"], r["CODE"], r["CATEGORY"]) for r in rows)
    pen = next(a for a in csv_records.allergies if a.display == "Penicillin V")
    row = next(r for r in rows if r["DESCRIPTION"] == "Penicillin V")
    assert pen.system == "RxNorm" and pen.code == row["CODE"] == "7984"
    assert pen.start == datetime.fromisoformat(row["START"]) and pen.stop is None
    assert pen.reactions == [row["DESCRIPTION1"]]


def test_fhir_allergies_match_bundles(fhir_records: RecordSet, fhir_dir: Path) -> None:
    res = [r for r in _fhir_resources(fhir_dir) if r["resourceType"] == "AllergyIntolerance"]
    assert fhir_records.counts()["allergies"] == len(res) > 0
    got = Counter((a.patient_id, a.code) for a in fhir_records.allergies)
    want = Counter(
        (r["patient"]["reference"].split(":")[-1], r["code"]["coding"][0]["code"]) for r in res
    )
    assert got == want
    lis = next(a for a in fhir_records.allergies if a.display == "Lisinopril")
    assert lis.type == "intolerance" and lis.category == "medication"
    assert lis.system == "RxNorm" and lis.status == "active"


def test_store_allergies_roundtrip_and_migration(tmp_path: Path, csv_records: RecordSet) -> None:
    db = tmp_path / "old.sqlite"
    # a database written before allergies were stored: no rec_allergies table
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE rec_patients (id TEXT PRIMARY KEY, name TEXT, birth_date TEXT, "
        "death_date TEXT, sex TEXT, identifiers TEXT, source TEXT, imported_at TEXT)"
    )
    con.execute("INSERT INTO rec_patients VALUES ('old', 'Old P', NULL, NULL, 'F', '', '', '')")
    con.commit()
    con.close()
    assert list(load_saved_records(db).patients) == ["old"]  # migrated on open
    save_records(csv_records, db)
    back = load_saved_records(db)
    assert back.counts()["allergies"] == csv_records.counts()["allergies"] > 0
    key = lambda a: (a.patient_id, a.code, a.start, a.category, tuple(a.reactions))  # noqa: E731
    assert sorted(map(key, back.allergies)) == sorted(map(key, csv_records.allergies))
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] >= 2
    con.close()
