"""Treatment suggestions: exclusions, evidence counts vs the CSV, evaluation, CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest

from medview.cli import main
from medview.records import Condition, Patient, RecordSet, TreatmentEvent, load_records
from medview.treatments import Params, Recommender, leave_one_out
from medview.treatments.evaluate import expected_metrics, hidden_items
from tests.helpers.data_helpers import csv_rows

HYPERTENSION = "59621000"
LISINOPRIL = "314076"


@pytest.fixture(scope="module")
def fhir_dir(records_dir: Path) -> Path:
    return records_dir / "synthea_fhir"


@pytest.fixture(scope="module")
def csv_records(csv_dir: Path) -> RecordSet:
    return load_records(csv_dir)


@pytest.fixture(scope="module")
def rec(csv_records: RecordSet) -> Recommender:
    return Recommender.from_records(csv_records)


@pytest.fixture(scope="module")
def history_from_csv(csv_dir: Path) -> dict[str, set[str]]:
    hist: dict[str, set[str]] = defaultdict(set)
    for name, kind in [
        ("medications", "medication"),
        ("procedures", "procedure"),
        ("careplans", "careplan"),
    ]:
        for r in csv_rows(csv_dir / f"{name}.csv"):
            hist[r["PATIENT"]].add(f"{kind}:{r['CODE']}")
    return hist


def test_history_never_suggested(rec: Recommender, csv_records, history_from_csv) -> None:
    n_ok = 0
    for pid in csv_records.patients:
        res = rec.suggest(pid, k=15)
        keys = {f"{s.kind}:{s.code}" for s in res.suggestions}
        assert not keys & history_from_csv[pid], pid
        listed = {f"{t['kind']}:{t['code']}" for t in res.current + res.past}
        assert listed == history_from_csv[pid]
        if res.status == "ok":
            n_ok += 1
            assert res.suggestions
            for s in res.suggestions:  # every suggestion carries evidence with numbers
                assert s.evidence and any(ch.isdigit() for ch in s.evidence[0])
                assert 0.0 < s.score <= 1.0
    assert n_ok >= 20


def test_current_listed_separately(rec: Recommender, csv_dir: Path) -> None:
    meds = csv_rows(csv_dir / "medications.csv")
    pid = "5a595dfb-9ecf-d4ac-2893-b3e1ced04951"
    open_meds = {r["CODE"] for r in meds if r["PATIENT"] == pid and not r["STOP"]}
    res = rec.suggest(pid, k=5)
    cur = {t["code"] for t in res.current if t["kind"] == "medication"}
    assert cur == open_meds and LISINOPRIL in cur


def test_evidence_counts_match_csv(rec: Recommender, csv_dir: Path) -> None:
    conditions = csv_rows(csv_dir / "conditions.csv")
    meds = csv_rows(csv_dir / "medications.csv")
    pid = "5a595dfb-9ecf-d4ac-2893-b3e1ced04951"
    res = rec.suggest(pid, k=5, kinds=["medication"])
    checked = 0
    for s in res.suggestions:
        c = s.counts.get("condition")
        if not c:
            continue
        with_c = {r["PATIENT"] for r in conditions if r["CODE"] == c} - {pid}
        given = {r["PATIENT"] for r in meds if r["CODE"] == s.code}
        reason_rows = [r for r in meds if r["CODE"] == s.code and r["REASONCODE"] == c]
        assert s.counts["patients_with_condition"] == len(with_c)
        assert s.counts["given_with_condition"] == len(with_c & given)
        assert s.counts["reason_events"] == len(reason_rows)
        assert s.counts["reason_patients"] == len({r["PATIENT"] for r in reason_rows})
        assert s.counts["population_given"] == len(given - {pid})
        if s.counts["reason_events"]:
            assert f"recorded with this reason {len(reason_rows)} times" in s.evidence[0]
        checked += 1
    assert checked >= 1
    top = res.suggestions[0]
    assert top.code == "310798"  # hydrochlorothiazide, for her hypertension
    assert top.counts["condition"] == HYPERTENSION


def test_working_condition(rec: Recommender, csv_records: RecordSet) -> None:
    pid = "3edac2e3-d223-6fae-d515-daf96ef6bc76"  # a child without hypertension
    res = rec.suggest(pid, k=5, working=[(HYPERTENSION, "Hypertension")])
    assert res.status == "ok"
    codes = [s.code for s in res.suggestions]
    assert LISINOPRIL in codes
    assert any(c["working"] and c["code"] == HYPERTENSION for c in res.conditions)
    res = rec.suggest(pid, k=5, working=[("233604007", "Pneumonia")])
    assert "No patient in these records has Pneumonia (233604007)" in res.message


def test_not_enough_data(rec: Recommender, csv_records: RecordSet, history_from_csv) -> None:
    no_treat = [p for p in csv_records.patients if not history_from_csv.get(p)]
    assert no_treat
    res = rec.suggest(no_treat[0], k=5)
    assert res.status == "not_enough_data" and "Not enough data" in res.message
    assert res.suggestions == []
    # a synthetic patient with treatments but no conditions
    rs = RecordSet()
    t0 = datetime(2020, 1, 1)
    for i in range(4):
        rs.patients[f"p{i}"] = Patient(f"p{i}", f"P {i}", date(1970, 1, 1), sex="F")
        rs.treatments.append(TreatmentEvent(f"p{i}", "medication", t0, None, "111", "drug A"))
        if i:
            rs.conditions.append(Condition(f"p{i}", t0, None, "222", "cond B"))
    res = Recommender.from_records(rs).suggest("p0")
    assert res.status == "not_enough_data" and "no conditions" in res.message


def test_expected_metrics_ties() -> None:
    scores = np.array([3.0, 2.0, 2.0, 2.0, 1.0])
    rank, hit, ndcg = expected_metrics(scores, 1, k=2)
    assert rank == 3.0  # positions 2, 3, 4 equally likely
    assert hit == pytest.approx(1 / 3)
    assert ndcg == pytest.approx((1 / np.log2(3)) / 3)


def test_evaluation_beats_popularity_on_untuned_set(fhir_dir: Path) -> None:
    # Params were tuned on the Synthea CSV set; this FHIR set was not used for tuning.
    # The ranking is judged with min_support=1 (safety checks on, no support cut):
    # with the default of 3 most hidden treatments of this 12-patient set have too
    # few supporting patients to be suggested at all (checked below).
    records = load_records(fhir_dir)
    res = leave_one_out(records, k=5, params=Params(min_support=1)).as_dict()
    assert res["patients"] == len(hidden_items(records)) == 10
    assert res["method"]["hit_rate"] >= 2 * res["popularity"]["hit_rate"] > 0
    assert res["method"]["ndcg"] > res["popularity"]["ndcg"]
    assert res["safety"]["hidden_removed"] == 0
    default = leave_one_out(records, k=5)
    d = default.as_dict()
    removed = [c for c in default.cases if c.removed_by]
    assert d["safety"] == {
        "min_support": 3,
        "hidden_removed": len(removed),
        "hidden_removed_by": {"min-support": len(removed)},
    }
    assert removed and all(c.method_hit == 0 for c in removed)
    assert d["method"]["hit_rate"] <= res["method"]["hit_rate"]


def test_evaluation_hides_from_population(csv_records: RecordSet) -> None:
    res = leave_one_out(csv_records, k=5)
    assert res.patients == 20
    d = res.as_dict()
    assert d["method"]["hit_rate"] > d["popularity"]["hit_rate"]
    # a hidden treatment given to nobody else cannot be ranked: a miss for both
    lone = [c for c in res.cases if c.method_rank == float("inf")]
    assert lone and all(c.method_hit == 0 and c.pop_hit == 0 for c in lone)


# ----------------------------------------------------------------------------- CLI
def test_cli_evaluate_json(csv_dir: Path, capsys) -> None:
    assert main(["suggest", "--records", str(csv_dir), "--evaluate", "--k", "5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"k", "patients", "method", "popularity", "safety"}
    assert d["safety"]["min_support"] == 3
    assert set(d["method"]) == set(d["popularity"]) == {"hit_rate", "ndcg"}
    assert d["k"] == 5 and d["patients"] == 20


def test_cli_suggest(csv_dir: Path, capsys) -> None:
    pid = "5a595dfb-9ecf-d4ac-2893-b3e1ced04951"
    rc = main(["suggest", "--records", str(csv_dir), "--patient", pid, "--k", "3", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["patient"] == pid and d["status"] == "ok" and len(d["suggestions"]) == 3
    assert "not clinical guidance" in d["notice"]
    rc = main(["suggest", "--records", str(csv_dir), "--patient", pid, "--kind", "careplan"])
    out = capsys.readouterr().out
    assert rc == 0 and "Decision support only" in out
    assert "[medication]" not in out.split("Suggestions:")[1].split("Most similar")[0]


def test_cli_bad_input(csv_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["suggest", "--records", str(tmp_path / "none"), "--evaluate"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["suggest", "--records", str(csv_dir), "--patient", "nobody"]) == 2
    assert "no match" in capsys.readouterr().err
    assert main(["suggest", "--records", str(csv_dir)]) == 2


def test_fold_copy_equals_rebuild(csv_records: RecordSet) -> None:
    from medview.treatments import build_data

    base = build_data(csv_records)
    for pid, hidden in list(hidden_items(csv_records).items())[:6]:
        fast = base.without(pid, hidden)
        slow = build_data(csv_records, exclude={(pid, hidden)})
        cols = [fast.i_index[k] for k in slow.items]
        rows = [fast.c_index[c] for c in slow.conditions]
        assert np.array_equal(fast.X[:, cols], slow.X)
        assert not fast.X[:, [fast.i_index[k] for k in fast.items if k not in slow.i_index]].any()
        assert np.array_equal(fast.reason_patients[np.ix_(rows, cols)], slow.reason_patients)
        assert np.array_equal(fast.reason_events[np.ix_(rows, cols)], slow.reason_events)
        assert fast.current.get(pid, set()) == slow.current.get(pid, set())
