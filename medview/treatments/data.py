"""From a :class:`~medview.records.RecordSet` to the matrices the recommender reads.

* items: treatments keyed ``"<kind>:<code>"`` (medications by RxNorm, procedures and
  care plans by SNOMED CT);
* ``X``: patient x item, 1 when the patient ever received the item;
* ``C``: patient x condition, 1 when the condition was ever recorded (``active``
  marks those without an end date);
* ``reason_patients[c, i]`` / ``reason_events[c, i]``: patients / events where item
  ``i`` was recorded with condition ``c`` as its reason (Synthea REASONCODE, FHIR
  reasonCode / reasonReference / CarePlan.addresses);
* ``allergies``: each patient's allergies (for the safety checks);
* demographic and lab features: age band, sex, and flags from the latest key labs
  (HbA1c >= 6.5 %, glucose >= 126 mg/dL, systolic >= 140 mmHg, BMI >= 30 kg/m2).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import numpy as np

from medview.records.model import (
    Allergy,
    Condition,
    Encounter,
    Observation,
    RecordSet,
    TreatmentEvent,
)

KINDS = ("medication", "procedure", "careplan")
ACTIVE_STATUSES = ("", "active", "on-hold", "intended", "draft")

AGE_BANDS = ((0, 18, "0-17"), (18, 40, "18-39"), (40, 65, "40-64"), (65, 200, "65+"))

# LOINC code -> (label, threshold in canonical unit): flag when the latest value >= threshold
KEY_LABS: dict[str, tuple[str, float]] = {
    "4548-4": ("HbA1c >= 6.5 %", 6.5),
    "2339-0": ("glucose >= 126 mg/dL", 126.0),
    "8480-6": ("systolic BP >= 140 mmHg", 140.0),
    "39156-5": ("BMI >= 30 kg/m2", 30.0),
}


def item_key(t: TreatmentEvent) -> str:
    return f"{t.kind}:{t.code}"


def is_current(t: TreatmentEvent) -> bool:
    """A medication or care plan still running (no end date, not stopped/completed)."""
    return t.kind != "procedure" and t.stop is None and t.status in ACTIVE_STATUSES


def age_band(birth: date | None, at: date | None) -> str:
    if birth is None or at is None:
        return ""
    years = (at - birth).days / 365.25
    for lo, hi, name in AGE_BANDS:
        if lo <= years < hi:
            return name
    return ""


@dataclass
class TreatmentData:
    patients: list[str]
    items: list[str]
    item_display: dict[str, str]
    conditions: list[str]
    condition_display: dict[str, str]
    X: np.ndarray  # (P, I) float32 0/1
    C: np.ndarray  # (P, C) float32 0/1 ever recorded
    C_active: np.ndarray  # (P, C) bool
    reason_patients: np.ndarray  # (C, I) int
    reason_events: np.ndarray  # (C, I) int
    features: np.ndarray  # (P, F) float32 demographics + lab flags
    feature_names: list[str]
    current: dict[str, set[str]]  # patient -> current item keys
    first_seen: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    last_seen: dict[tuple[str, str], datetime | None] = field(default_factory=dict)
    # (patient, item) -> {condition index: events recorded with that reason}
    pair_reasons: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    allergies: dict[str, list[Allergy]] = field(default_factory=dict)  # patient -> allergies

    def __post_init__(self) -> None:
        self.p_index = {p: i for i, p in enumerate(self.patients)}
        self.i_index = {k: i for i, k in enumerate(self.items)}
        self.c_index = {c: i for i, c in enumerate(self.conditions)}

    def without(self, patient: str, item: str) -> TreatmentData:
        """A copy with every event of ``item`` for ``patient`` removed (leave-one-out).

        Same result as rebuilding with ``build_data(records, exclude={(patient, item)})``
        except that the item stays in ``items`` (with a zero column if nobody else had it).
        """
        X = self.X.copy()
        rp, re_ = self.reason_patients.copy(), self.reason_events.copy()
        pi, ii = self.p_index[patient], self.i_index.get(item)
        if ii is not None:
            X[pi, ii] = 0.0
            for ci, n in self.pair_reasons.get((patient, item), {}).items():
                rp[ci, ii] -= 1
                re_[ci, ii] -= n
        current = {p: set(v) for p, v in self.current.items()}
        current.get(patient, set()).discard(item)
        pair = (patient, item)
        return replace(
            self,
            X=X,
            reason_patients=rp,
            reason_events=re_,
            current=current,
            first_seen={k: v for k, v in self.first_seen.items() if k != pair},
            last_seen={k: v for k, v in self.last_seen.items() if k != pair},
            pair_reasons={k: v for k, v in self.pair_reasons.items() if k != pair},
        )

    def history(self, patient: str) -> set[str]:
        row = self.X[self.p_index[patient]]
        return {self.items[j] for j in np.flatnonzero(row)}

    def patient_conditions(self, patient: str) -> list[str]:
        row = self.C[self.p_index[patient]]
        return [self.conditions[j] for j in np.flatnonzero(row)]


@dataclass
class _Usage:
    """Who received which item, when, and for which recorded reason."""

    X: np.ndarray
    current: dict[str, set[str]]
    first_seen: dict[tuple[str, str], datetime | None]
    last_seen: dict[tuple[str, str], datetime | None]
    reason_patients: np.ndarray
    reason_events: np.ndarray
    pair_reasons: dict[tuple[str, str], dict[int, int]]


def _item_displays(events: list[TreatmentEvent]) -> dict[str, str]:
    """Item key -> its most frequent display text."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for t in events:
        votes[item_key(t)][t.display] += 1
    return {k: v.most_common(1)[0][0] for k, v in votes.items()}


def _condition_displays(records: RecordSet, events: list[TreatmentEvent]) -> dict[str, str]:
    """Condition code -> display: the most frequent Condition display, else the reason's."""
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for c in records.conditions:
        votes[c.code][c.display] += 1
    for t in events:
        if t.reason_code:
            votes[t.reason_code][t.reason_display] += 0  # known code, display from conditions
    display = {k: (v.most_common(1)[0][0] if sum(v.values()) else "") for k, v in votes.items()}
    for t in events:  # reasons that never appear as a Condition: use the reason's display
        if t.reason_code and not display.get(t.reason_code):
            display[t.reason_code] = t.reason_display or t.reason_code
    return display


def _usage(
    events: list[TreatmentEvent],
    p_index: dict[str, int],
    i_index: dict[str, int],
    c_index: dict[str, int],
) -> _Usage:
    """The patient x item matrix, current items, first/last dates and reason counts."""
    X = np.zeros((len(p_index), len(i_index)), np.float32)
    current: dict[str, set[str]] = defaultdict(set)
    first_seen: dict[tuple[str, str], datetime | None] = {}
    last_seen: dict[tuple[str, str], datetime | None] = {}
    reason_pairs: set[tuple[str, int, int]] = set()
    pair_reasons: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    reason_events = np.zeros((len(c_index), len(i_index)), np.int64)
    for t in events:
        k = item_key(t)
        X[p_index[t.patient_id], i_index[k]] = 1.0
        if is_current(t):
            current[t.patient_id].add(k)
        key = (t.patient_id, k)
        if t.start is not None:
            first, last = first_seen.get(key), last_seen.get(key)
            if first is None or t.start < first:
                first_seen[key] = t.start
            if last is None or t.start > last:
                last_seen[key] = t.start
        if t.reason_code:
            ci, ii = c_index[t.reason_code], i_index[k]
            reason_events[ci, ii] += 1
            reason_pairs.add((t.patient_id, ci, ii))
            per = pair_reasons[(t.patient_id, k)]
            per[ci] = per.get(ci, 0) + 1
    reason_patients = np.zeros_like(reason_events)
    for _p, ci, ii in reason_pairs:
        reason_patients[ci, ii] += 1
    return _Usage(X, current, first_seen, last_seen, reason_patients, reason_events, pair_reasons)


def _condition_matrices(
    records: RecordSet, p_index: dict[str, int], c_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """``(C, C_active)``: conditions ever recorded, and those without an end date."""
    C = np.zeros((len(p_index), len(c_index)), np.float32)
    C_active = np.zeros((len(p_index), len(c_index)), bool)
    for c in records.conditions:
        pi, ci = p_index[c.patient_id], c_index[c.code]
        C[pi, ci] = 1.0
        if c.stop is None:
            C_active[pi, ci] = True
    return C, C_active


def _last_record_times(records: RecordSet, events: list[TreatmentEvent]) -> dict[str, datetime]:
    """Each patient's latest record time (the age reference for patients still alive)."""
    last_time: dict[str, datetime] = {}
    seqs: tuple[Sequence[Observation | Condition | TreatmentEvent | Encounter], ...] = (
        records.observations,
        records.conditions,
        events,
        records.encounters,
    )
    for seq in seqs:
        for r in seq:
            when = getattr(r, "time", None) or getattr(r, "start", None)
            pid = r.patient_id
            if when is not None and (pid not in last_time or when > last_time[pid]):
                last_time[pid] = when
    return last_time


def _features(
    records: RecordSet, events: list[TreatmentEvent], p_index: dict[str, int]
) -> tuple[np.ndarray, list[str]]:
    """Demographic and latest-key-lab flags per patient, and their names."""
    last_time = _last_record_times(records, events)
    latest_lab: dict[tuple[str, str], tuple[datetime, float]] = {}
    for o in records.observations:
        if o.code in KEY_LABS and o.value is not None and not o.unit_flag:
            key = (o.patient_id, o.code)
            if key not in latest_lab or o.time > latest_lab[key][0]:
                latest_lab[key] = (o.time, o.value)
    feature_names = [f"age {b[2]}" for b in AGE_BANDS] + ["sex F", "sex M"]
    feature_names += [label for label, _ in KEY_LABS.values()]
    F = np.zeros((len(p_index), len(feature_names)), np.float32)
    for pid, pi in p_index.items():
        p = records.patients.get(pid)
        if p is not None:
            at = p.death_date or (last_time[pid].date() if pid in last_time else None)
            band = age_band(p.birth_date, at)
            if band:
                F[pi, feature_names.index(f"age {band}")] = 1.0
            if p.sex in ("F", "M"):
                F[pi, feature_names.index(f"sex {p.sex}")] = 1.0
        for code, (label, thr) in KEY_LABS.items():
            hit = latest_lab.get((pid, code))
            if hit is not None and hit[1] >= thr:
                F[pi, feature_names.index(label)] = 1.0
    return F, feature_names


def build_data(
    records: RecordSet,
    exclude: Iterable[tuple[str, str]] = (),
    kinds: Iterable[str] = KINDS,
) -> TreatmentData:
    """Build the matrices; ``exclude`` drops (patient, item key) pairs entirely (hold-out)."""
    excluded = set(exclude)
    kind_set = set(kinds)
    events = [
        t
        for t in records.treatments
        if t.kind in kind_set and (t.patient_id, item_key(t)) not in excluded
    ]
    pids = set(records.patients)
    pids.update(t.patient_id for t in events)
    pids.update(c.patient_id for c in records.conditions)
    patients = sorted(pids)
    item_display = _item_displays(events)
    items = sorted(item_display)
    condition_display = _condition_displays(records, events)
    conditions = sorted(condition_display)
    p_index = {p: i for i, p in enumerate(patients)}
    i_index = {k: i for i, k in enumerate(items)}
    c_index = {c: i for i, c in enumerate(conditions)}
    usage = _usage(events, p_index, i_index, c_index)
    C, C_active = _condition_matrices(records, p_index, c_index)
    features, feature_names = _features(records, events, p_index)
    allergies: dict[str, list[Allergy]] = {}
    for a in records.allergies:
        allergies.setdefault(a.patient_id, []).append(a)
    return TreatmentData(
        patients=patients,
        items=items,
        item_display=item_display,
        conditions=conditions,
        condition_display=condition_display,
        X=usage.X,
        C=C,
        C_active=C_active,
        reason_patients=usage.reason_patients,
        reason_events=usage.reason_events,
        features=features,
        feature_names=feature_names,
        current=dict(usage.current),
        first_seen=usage.first_seen,
        last_seen=usage.last_seen,
        pair_reasons=dict(usage.pair_reasons),
        allergies=allergies,
    )
