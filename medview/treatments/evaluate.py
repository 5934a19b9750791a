"""Leave-one-out evaluation: hit-rate@k and NDCG@k, method vs popularity.

For every patient with at least one *current* treatment (a medication or care plan
without an end date), the most recently started current treatment is hidden: all
of that patient's events of it are removed before the matrices are built, so it
counts neither in the patient's history nor in any population statistic (condition
links, reason counts, co-occurrence, popularity). Both rankers then rank every
treatment the patient has not had; a hit is the hidden one within the top k.

Ties are scored by their expectation (the hidden item is equally likely to be
anywhere in its tie group), so neither ranker gains from an arbitrary tie order.
A hidden treatment that no other patient ever received cannot be ranked and
counts as a miss for both. The method ranks as it suggests: a hidden treatment
that its safety checks or minimum support remove (see
:mod:`medview.treatments.safety`) is a miss for the method (``removed_by`` names the
rules); popularity ranks every candidate, unfiltered.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from medview.records.model import RecordSet
from medview.tasks import TaskState, ensure_state
from medview.treatments.data import TreatmentData, build_data, is_current, item_key
from medview.treatments.recommender import Params, Recommender


@dataclass
class EvalCase:
    patient: str
    hidden: str
    method_rank: float  # expected 1-based rank (inf when not rankable)
    popularity_rank: float
    method_hit: float
    method_ndcg: float
    pop_hit: float
    pop_ndcg: float
    removed_by: list[str] = field(default_factory=list)  # rules that removed the hidden one


@dataclass
class EvalResult:
    k: int
    cases: list[EvalCase] = field(default_factory=list)
    min_support: int = 0

    @property
    def patients(self) -> int:
        return len(self.cases)

    def _mean(self, attr: str) -> float:
        if not self.cases:
            return 0.0
        return float(np.mean([getattr(c, attr) for c in self.cases]))

    def as_dict(self) -> dict:
        """The JSON shape of ``medview suggest --evaluate --json``."""
        return {
            "k": self.k,
            "patients": self.patients,
            "method": {
                "hit_rate": round(self._mean("method_hit"), 4),
                "ndcg": round(self._mean("method_ndcg"), 4),
            },
            "popularity": {
                "hit_rate": round(self._mean("pop_hit"), 4),
                "ndcg": round(self._mean("pop_ndcg"), 4),
            },
            "safety": {
                "min_support": self.min_support,
                "hidden_removed": sum(1 for c in self.cases if c.removed_by),
                "hidden_removed_by": dict(
                    sorted(Counter(r for c in self.cases for r in c.removed_by).items())
                ),
            },
        }


def expected_metrics(scores: np.ndarray, target: int, k: int) -> tuple[float, float, float]:
    """(expected rank, hit@k, NDCG@k) of ``target`` among ``scores`` with random tie order."""
    s = scores[target]
    greater = int(np.sum(scores > s))
    ties = int(np.sum(scores == s))  # includes the target
    positions = range(greater + 1, greater + ties + 1)
    hit = sum(1 for r in positions if r <= k) / ties
    ndcg = sum(1.0 / math.log2(r + 1) for r in positions if r <= k) / ties
    return greater + (ties + 1) / 2.0, hit, ndcg


def hidden_items(records: RecordSet) -> dict[str, str]:
    """patient -> the current treatment to hide (latest start, then item key)."""
    latest: dict[str, tuple] = {}
    for t in records.treatments:
        if not is_current(t):
            continue
        key = (t.start.isoformat() if t.start else "", item_key(t))
        if t.patient_id not in latest or key > latest[t.patient_id]:
            latest[t.patient_id] = key
    return {p: v[1] for p, v in sorted(latest.items())}


@dataclass
class Fold:
    """One held-out case: the matrices without the hidden (patient, treatment) events."""

    patient: str
    hidden: str
    data: TreatmentData


def prepare_folds(
    records: RecordSet, patients: list[str] | None = None, state: TaskState | None = None
) -> list[Fold]:
    """Build one :class:`Fold` per patient with a current treatment."""
    state = ensure_state(state)
    targets = hidden_items(records)
    if patients is not None:
        wanted = set(patients)
        targets = {p: h for p, h in targets.items() if p in wanted}
    state.progress(0.0, "building the treatment matrix")
    base = build_data(records)
    folds = []
    for pid, hidden in targets.items():
        state.check()
        folds.append(Fold(pid, hidden, base.without(pid, hidden)))
    return folds


def evaluate_folds(
    folds: list[Fold],
    k: int = 5,
    params: Params | None = None,
    state: TaskState | None = None,
) -> EvalResult:
    """Score the method and popularity on prepared folds (progress once per fold)."""
    state = ensure_state(state)
    result = EvalResult(k, min_support=(params or Params()).min_support)
    for n, fold in enumerate(folds):
        state.progress(n / len(folds), f"evaluating patient {n + 1}/{len(folds)}")
        pid, hidden, data = fold.patient, fold.hidden, fold.data
        ii = data.i_index.get(hidden)
        if ii is None or not data.X[:, ii].any():  # nobody else ever had it
            inf = float("inf")
            result.cases.append(EvalCase(pid, hidden, inf, inf, 0.0, 0.0, 0.0, 0.0))
            continue
        rec = Recommender(data, params)
        pi = data.p_index[pid]
        # candidates: treatments someone has had and this patient has not
        cand = np.flatnonzero((data.X[pi] == 0) & data.X.any(axis=0))
        target = int(np.flatnonzero(cand == ii)[0])
        order, scores, det = rec.rank(pid)
        pos = {int(j): float(s) for j, s in zip(order, scores, strict=True)}
        # removed candidates are never suggested: below every kept one
        method_scores = np.array([pos.get(int(j), -np.inf) for j in cand])
        pop_scores = (rec.item_counts[cand] - data.X[pi, cand]).astype(float)
        p_rank, p_hit, p_ndcg = expected_metrics(pop_scores, target, k)
        if ii in pos:
            m_rank, m_hit, m_ndcg = expected_metrics(np.round(method_scores, 9), target, k)
            removed_by: list[str] = []
        else:
            m_rank, m_hit, m_ndcg = float("inf"), 0.0, 0.0
            found = det["findings"].get(ii, [])
            removed_by = sorted({f.rule for f in found if f.action == "remove"})
        result.cases.append(
            EvalCase(pid, hidden, m_rank, p_rank, m_hit, m_ndcg, p_hit, p_ndcg, removed_by)
        )
    return result


def leave_one_out(
    records: RecordSet,
    k: int = 5,
    params: Params | None = None,
    patients: list[str] | None = None,
    state: TaskState | None = None,
) -> EvalResult:
    """Run the evaluation described in the module docstring."""
    state = ensure_state(state)
    folds = prepare_folds(records, patients, state)
    result = evaluate_folds(folds, k, params, state)
    state.progress(1.0, "evaluation done")
    return result
