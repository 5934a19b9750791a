"""Suggestion safety checks: ingredients, same ingredient/class, allergies, minimum
support, withdrawn drugs and contraindication rules (issue 10 item 4)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import pytest

from medview.cli import main
from medview.records import (
    Allergy,
    Condition,
    Patient,
    RecordSet,
    TreatmentEvent,
    load_records,
)
from medview.treatments import Params, Recommender
from medview.treatments.data import is_current
from medview.treatments.safety import SafetyRules, drug_classes, ingredients

HYPERTENSION = ("59621000", "Hypertension")
MISUSE = ("361055000", "Misuses drugs (finding)")


# ----------------------------------------------------------------------------- ingredients
@pytest.mark.parametrize(
    "display, expected",
    [
        ("amlodipine 2.5 MG Oral Tablet", ["amlodipine"]),
        ("amLODIPine 2.5 MG Oral Tablet", ["amlodipine"]),
        ("Amlodipine 5 MG Oral Tablet", ["amlodipine"]),
        ("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", ["metformin"]),
        (
            "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet [Percocet]",
            ["acetaminophen", "oxycodone"],
        ),
        ("Nitroglycerin 0.4 MG/ACTUAT Mucosal Spray", ["nitroglycerin"]),
        (
            "NDA020503 200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            ["albuterol"],
        ),
        (
            "60 ACTUAT Fluticasone propionate 0.25 MG/ACTUAT / salmeterol 0.05 MG/ACTUAT "
            "Dry Powder Inhaler",
            ["fluticasone", "salmeterol"],
        ),
        ("Acetaminophen 325 MG / HYDROcodone Bitartrate 7.5 MG Oral Tablet", None),
        ("1 ML medroxyPROGESTERone acetate 150 MG/ML Injection", ["medroxyprogesterone"]),
        ("Vitamin B 12 5 MG/ML Injectable Solution", ["vitamin b 12"]),
        ("ferrous sulfate 325 MG Oral Tablet", ["ferrous sulfate"]),
        ("Jolivette 28 Day Pack", ["norethindrone"]),
        ("NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring", None),
        ("3 ML Amiodarone hydrocholoride 50 MG/ML Prefilled Syringe", ["amiodarone"]),
        ("Terfenadine 60 MG Oral Tablet", ["terfenadine"]),
        ("Penicillin V", ["penicillin v"]),
    ],
)
def test_ingredients(display: str, expected: list[str] | None) -> None:
    got = ingredients(display)
    if expected is None:  # checked by class below
        assert len(got) == 2
    else:
        assert got == expected


def test_classes_from_ingredients() -> None:
    hc = ingredients("Acetaminophen 325 MG / HYDROcodone Bitartrate 7.5 MG Oral Tablet")
    assert set(hc) == {"acetaminophen", "hydrocodone"}
    assert drug_classes(hc) == ["opioids"]
    assert drug_classes(ingredients("lisinopril 10 MG Oral Tablet")) == ["ACE inhibitors"]
    assert drug_classes(["captopril"]) == ["ACE inhibitors"]
    nuva = ingredients("NuvaRing 0.12/0.015 MG per 24HR 21 Day Vaginal Ring")
    assert set(nuva) == {"etonogestrel", "ethinyl estradiol"}
    assert set(drug_classes(nuva)) == {"hormonal contraceptives", "estrogens"}


def test_rules_are_data_with_sources() -> None:
    rules = SafetyRules.load()
    raw = json.loads(Path(rules.path).read_text(encoding="utf-8"))
    assert rules.path.name == "safety_rules.json"
    assert {"terfenadine", "cisapride", "rofecoxib"} <= set(rules.withdrawn)
    for entry in raw["withdrawn"]:
        assert entry["source"] and entry["reason"] and entry["ingredient"].islower()
    ids = [r["id"] for r in raw["contraindications"]]
    assert len(ids) == len(set(ids)) >= 4
    for r in raw["contraindications"]:
        assert r["action"] in ("remove", "flag") and r["source"] and r["reason"]
        assert all(c in rules.classes for c in r["drug_classes"])
    for cls in raw["allergy_cross_reactive_classes"]:
        assert cls == "about" or cls in rules.classes
    members = [i for v in raw["classes"].values() for i in v]
    assert all(i == i.lower().strip() for i in members)


# ----------------------------------------------------------------------------- synthetic
def _synthetic() -> RecordSet:
    """8 hypertensive patients who all had the same drugs; p0 is the patient asked about."""
    rs = RecordSet()
    t0 = datetime(2020, 1, 1)
    drugs = [
        ("308136", "Amlodipine 5 MG Oral Tablet"),
        ("310798", "Hydrochlorothiazide 25 MG Oral Tablet"),
        ("1000", "Terfenadine 60 MG Oral Tablet"),
        ("1049625", "Acetaminophen 325 MG / Oxycodone Hydrochloride 10 MG Oral Tablet [Percocet]"),
        ("562251", "Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet"),
        ("317173", "Captopril 25 MG Oral Tablet"),
    ]
    for i in range(9):
        pid = f"p{i}"
        rs.patients[pid] = Patient(pid, f"P {i}", date(1960, 1, 1), sex="F")
        rs.conditions.append(Condition(pid, t0, None, *HYPERTENSION))
        if i == 0:
            continue
        for code, display in drugs:
            rs.treatments.append(
                TreatmentEvent(pid, "medication", t0, None, code, display, *HYPERTENSION)
            )
    # a drug only one other patient had (with lisinopril, so it co-occurs with p0's
    # history): below the minimum support
    rs.treatments.append(
        TreatmentEvent("p1", "medication", t0, None, "999", "Rare drug 1 MG Oral Tablet")
    )
    rs.treatments.append(
        TreatmentEvent("p1", "medication", t0, t0, "314076", "lisinopril 10 MG Oral Tablet")
    )
    for code, display in [
        ("314076", "lisinopril 10 MG Oral Tablet"),
        ("197361", "amLODIPine 2.5 MG Oral Tablet"),
    ]:
        rs.treatments.append(TreatmentEvent("p0", "medication", t0, None, code, display))
    rs.conditions.append(Condition("p0", t0, None, *MISUSE))
    rs.allergies.append(Allergy("p0", t0, None, "7984", "Penicillin V", "RxNorm", "allergy"))
    return rs


def test_synthetic_removed_and_flagged_with_reasons() -> None:
    rec = Recommender.from_records(_synthetic())
    res = rec.suggest("p0", k=10)
    assert res.status == "ok"
    shown = {s.display.split()[0]: s for s in res.suggestions}
    assert set(shown) == {"Hydrochlorothiazide", "Captopril"}
    hctz = shown["Hydrochlorothiazide"]
    assert "given to 8 of 8 other patients with Hypertension" in hctz.evidence[0]
    assert hctz.counts["support"] == 8 and hctz.counts["min_support"] == 3
    assert hctz.flags == []
    cap = shown["Captopril"]
    assert [f["rule"] for f in cap.flags] == ["same-class"]
    assert "ACE inhibitors" in cap.flags[0]["reason"] and "lisinopril" in cap.flags[0]["reason"]
    removed = {r["display"].split()[0]: r for r in res.removed}
    rules = {name: [f["rule"] for f in r["findings"]] for name, r in removed.items()}
    assert "same-ingredient" in rules["Amlodipine"]
    assert "withdrawn" in rules["Terfenadine"]
    assert "opioid-substance-misuse" in rules["Acetaminophen"]
    assert "allergy" in rules["Amoxicillin"]  # penicillin V allergy: all penicillins
    assert rules["Rare"] == ["min-support"]
    for r in res.removed:
        assert all(f["action"] == "remove" and f["reason"] for f in r["findings"])
    terf = next(f for f in removed["Terfenadine"]["findings"] if f["rule"] == "withdrawn")
    assert "FDA" in terf["source"]
    amox = next(f for f in removed["Amoxicillin"]["findings"] if f["rule"] == "allergy")
    assert "Penicillin V" in amox["reason"] and "penicillins" in amox["reason"]


def test_min_support_is_configurable() -> None:
    rs = _synthetic()
    res = Recommender(Recommender.from_records(rs).data, Params(min_support=1)).suggest("p0", k=10)
    assert "Rare drug 1 MG Oral Tablet" in [s.display for s in res.suggestions]
    res = Recommender(Recommender.from_records(rs).data, Params(min_support=9)).suggest("p0", k=10)
    assert res.suggestions == [] and res.status == "not_enough_data"
    assert all("min-support" in [f["rule"] for f in r["findings"]] for r in res.removed)


def test_inactive_allergy_and_past_drug() -> None:
    rs = _synthetic()
    rs.allergies[0].status = "resolved"
    for t in rs.treatments:  # amlodipine 2.5 stopped: amlodipine 5 is flagged, not removed
        if t.patient_id == "p0" and t.code == "197361":
            t.stop = datetime(2021, 1, 1)
    res = Recommender.from_records(rs).suggest("p0", k=10)
    names = {s.display.split()[0]: s for s in res.suggestions}
    assert "Amoxicillin" in names
    assert [f["rule"] for f in names["Amlodipine"].flags] == ["same-ingredient-past"]


# ----------------------------------------------------------------------------- shared records
def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _allergy_names(folder: Path) -> dict[str, set[str]]:
    """patient -> active allergy substance names, read independently of the importers."""
    out: dict[str, set[str]] = defaultdict(set)
    if (folder / "allergies.csv").is_file():
        for r in _csv_rows(folder / "allergies.csv"):
            if not r["STOP"]:
                out[r["PATIENT"]].add(r["DESCRIPTION"])
        return out
    for f in folder.glob("*.json"):
        for e in json.loads(f.read_text(encoding="utf-8"))["entry"]:
            r = e["resource"]
            if r["resourceType"] == "AllergyIntolerance":
                status = r.get("clinicalStatus", {}).get("coding", [{}])[0].get("code", "")
                if status not in ("inactive", "resolved"):
                    pid = r["patient"]["reference"].split(":")[-1]
                    out[pid].add(r["code"]["coding"][0]["display"])
    return out


@pytest.mark.parametrize("name", ["synthea_csv_ma27", "synthea_fhir"])
def test_every_patient_is_safe(records_dir: Path, name: str) -> None:
    folder = records_dir / name
    records = load_records(folder)
    rec = Recommender.from_records(records)
    rules = SafetyRules.load()
    allergies = _allergy_names(folder)
    assert sum(map(len, allergies.values())) > 0
    patients_with: dict[str, set[str]] = defaultdict(set)  # condition -> patients
    for c in records.conditions:
        patients_with[c.code].add(c.patient_id)
    given: dict[str, set[str]] = defaultdict(set)  # item -> patients
    for_reason: dict[tuple[str, str], set[str]] = defaultdict(set)  # (item, condition)
    current: dict[str, set[str]] = defaultdict(set)  # patient -> ingredients taken now
    for t in records.treatments:
        given[f"{t.kind}:{t.code}"].add(t.patient_id)
        if t.reason_code:
            for_reason[(f"{t.kind}:{t.code}", t.reason_code)].add(t.patient_id)
        if t.kind == "medication" and is_current(t):
            current[t.patient_id].update(ingredients(t.display))
    n_sugg = dup = allergic = below = withdrawn = 0
    for pid in records.patients:
        res = rec.suggest(pid, k=10)
        conds = {c["code"] for c in res.conditions}
        for s in res.suggestions:
            n_sugg += 1
            ingr = set(ingredients(s.display)) if s.kind == "medication" else set()
            dup += bool(ingr & current[pid])
            withdrawn += bool(ingr & set(rules.withdrawn))
            for a in allergies[pid]:
                words = a.lower().replace("(substance)", "").strip()
                allergic += words in s.display.lower()
                allergic += bool(ingr & set(rules.allergen_ingredients(a, "medication")))
            # support recounted from the records: other patients with one of this
            # patient's conditions (or who had it recorded for that condition) who had
            # it, or similar patients who had it
            key = f"{s.kind}:{s.code}"
            others = given[key] - {pid}
            by_cond = max(
                (len(others & (patients_with[c] | for_reason[(key, c)])) for c in conds),
                default=0,
            )
            support = max(by_cond, int(s.counts.get("similar_given", 0)))
            assert support == s.counts["support"], (pid, s.display)
            below += support < 3
    assert n_sugg > 20
    assert (dup, allergic, below, withdrawn) == (0, 0, 0, 0)


def test_issue_cases_on_shared_records(records_dir: Path) -> None:
    fhir = load_records(records_dir / "synthea_fhir")
    misusers = {c.patient_id for c in fhir.conditions if c.code == MISUSE[0]}
    assert misusers
    rec = Recommender.from_records(fhir)
    for pid in misusers:
        res = rec.suggest(pid, k=10)
        assert not any("opioids" in drug_classes(ingredients(s.display)) for s in res.suggestions)
    csv_rs = load_records(records_dir / "synthea_csv_ma27")
    rec = Recommender.from_records(csv_rs)
    seen_terf = False
    for pid in csv_rs.patients:
        res = rec.suggest(pid, k=10)
        assert not any("Terfenadine" in s.display for s in res.suggestions)
        for r in res.removed:
            if "Terfenadine" in r["display"]:
                seen_terf = True
                assert r["findings"][0]["rule"] in ("withdrawn", "min-support")
    assert seen_terf


def test_cli_shows_removed_and_flags(records_dir: Path, capsys) -> None:
    folder = records_dir / "synthea_fhir"
    pid = next(c.patient_id for c in load_records(folder).conditions if c.code == MISUSE[0])
    args = ["suggest", "--records", str(folder), "--patient", pid, "--k", "10"]
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"patient", "status", "suggestions", "similar", "notice", "removed"} <= set(d)
    assert all("flags" in s and "support" in s["counts"] for s in d["suggestions"])
    assert d["removed"] and all(r["findings"] for r in d["removed"])
    percocet = next(r for r in d["removed"] if "[Percocet]" in r["display"])
    assert percocet["findings"][0]["rule"] == "opioid-substance-misuse"
    assert "FDA" in percocet["findings"][0]["source"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Not suggested" in out and "x opioid-substance-misuse: opioid" in out
    assert "below the minimum support" in out
    rc = main(["suggest", "--records", str(folder), "--patient", pid, "--min-support", "0"])
    assert rc == 2 and "--min-support" in capsys.readouterr().err


def test_bad_rules_file_is_one_line_error(tmp_path: Path) -> None:
    from medview.errors import MedviewError

    bad = tmp_path / "rules.json"
    bad.write_text('{"salts": [', encoding="utf-8")
    with pytest.raises(MedviewError) as err:
        SafetyRules.load(bad)
    assert str(err.value).startswith(f"{bad}: ") and "\n" not in str(err.value)
    with pytest.raises(MedviewError, match="missing"):
        SafetyRules.load(tmp_path / "missing.json")
    bad.write_text('{"salts": []}', encoding="utf-8")
    with pytest.raises(MedviewError, match="lack the table"):
        SafetyRules.load(bad)
