"""Long core work takes ``state: TaskState | None``: it reports progress and can be cancelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from medview.errors import Cancelled
from medview.records import load_records
from medview.records.model import RecordSet
from medview.tasks import TaskState
from medview.treatments.evaluate import evaluate_folds, prepare_folds


@pytest.fixture(scope="module")
def csv_records(records_dir: Path) -> RecordSet:
    return load_records(records_dir / "synthea_csv_ma27")


def test_evaluate_folds_reports_progress_per_fold(csv_records: RecordSet) -> None:
    folds = prepare_folds(csv_records)
    seen: list[float] = []
    result = evaluate_folds(folds, 5, state=TaskState(on_progress=lambda f, _m: seen.append(f)))
    assert len(result.cases) == len(folds) > 0
    assert len(seen) == len(folds)
    assert seen == sorted(seen) and seen[-1] == pytest.approx((len(folds) - 1) / len(folds))


def test_evaluate_folds_stops_when_cancelled(csv_records: RecordSet) -> None:
    folds = prepare_folds(csv_records)
    assert len(folds) > 1
    calls: list[float] = []

    def cancel_after_first(fraction: float, _msg: str) -> None:
        calls.append(fraction)
        if len(calls) == 2:
            state.cancel()

    state = TaskState(on_progress=cancel_after_first)
    with pytest.raises(Cancelled):
        evaluate_folds(folds, 5, state=state)
    assert len(calls) == 2


def test_tune_is_cancellable(records_dir: Path) -> None:
    from medview.treatments.tune import tune

    state = TaskState()
    state.cancel()
    with pytest.raises(Cancelled):
        tune(str(records_dir / "synthea_csv_ma27"), state=state)


def test_fhir_finish_runs_without_a_state(records_dir: Path) -> None:
    """The FHIR converter's second pass works with and without a state (ensure_state)."""
    from medview.records.fhir import read_fhir

    files = sorted((records_dir / "synthea_fhir").glob("*.json"))[:2]
    assert files
    seen: list[str] = []
    with_state = read_fhir(files, TaskState(on_progress=lambda _f, m: seen.append(m)))
    without = read_fhir(files)
    assert "converting FHIR resources" in seen
    assert len(with_state.observations) == len(without.observations) > 0
