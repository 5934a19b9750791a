"""Treatment suggestions: collaborative filtering blended with condition-linked evidence.

Score of a candidate treatment T for patient p (each part scaled to [0, 1] over the
candidates, then blended with the weights in :class:`Params`):

* **condition-linked**: for each condition c of p (active conditions and working
  conditions weigh 1, resolved ones ``resolved_weight``), the share of the other
  patients with c who received T, with the patients who had T recorded *for* c
  (REASONCODE / reasonCode / reasonReference) counted ``reason_boost`` times more,
  divided by T's overall share to the power ``lift`` (so routine care given to
  everyone does not crowd out condition-specific treatment); the best condition
  counts fully, the others add ``cond_mix`` of their mean;
* **user-based CF**: the ``neighbours`` most similar patients by cosine similarity
  (scikit-learn ``NearestNeighbors``) over conditions, treatments, age band, sex and
  key-lab flags; T's score is the similarity-weighted share of neighbours who had it;
* **item-based CF**: mean cosine similarity (scikit-learn ``cosine_similarity``)
  between T and the patient's own treatments over the patient x treatment matrix;
* a small popularity term breaks ties.

Treatments the patient ever received are never candidates; they are listed
separately (current and past). A condition link counts only when at least
``min_support`` other patients with that condition received the treatment, and a
candidate needs ``min_support`` distinct supporting patients (with one of the
patient's conditions, or among the most similar patients) to be suggested. The
safety checks of :mod:`medview.treatments.safety` (same ingredient, allergies,
withdrawn drugs, contraindication rules) remove or flag candidates; removed ones are
listed in :attr:`SuggestionResult.removed` with their rule and reason. Every suggestion carries its evidence in words and
numbers. These are statistics from local records for decision support, not
clinical guidance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from medview.records.model import RecordSet
from medview.treatments.data import KINDS, TreatmentData, build_data
from medview.treatments.safety import SafetyChecker, SafetyFinding, SafetyRules

WEAK_SUPPORT = 3  # fewer supporting patients than this: the evidence is marked weak

NOTICE = (
    "Decision support only: these are statistics from the local records (what was done "
    "for similar patients), not clinical guidance or a guideline."
)


@dataclass
class Params:
    """Blend weights and settings (defaults tuned on the Synthea CSV set; see docs/notes)."""

    w_condition: float = 1.0
    w_user: float = 0.25
    w_item: float = 0.25
    w_pop: float = 0.05
    neighbours: int = 5
    resolved_weight: float = 0.25
    reason_boost: float = 2.0
    lift: float = 1.0
    cond_mix: float = 0.25
    smoothing: float = 1.0
    min_support: int = 3  # distinct supporting patients needed before a suggestion


@dataclass
class Suggestion:
    kind: str
    code: str
    display: str
    score: float  # blended, in [0, 1]
    evidence: list[str]
    counts: dict[str, int | float | str]
    components: dict[str, float] = field(default_factory=dict)
    flags: list[dict] = field(default_factory=list)  # SafetyFinding.as_dict() of "flag"s

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SimilarPatient:
    patient: str
    similarity: float
    shared_conditions: list[str]
    shared_treatments: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class SuggestionResult:
    patient: str
    status: str  # "ok" | "not_enough_data"
    message: str
    conditions: list[dict] = field(default_factory=list)
    current: list[dict] = field(default_factory=list)
    past: list[dict] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)
    similar: list[SimilarPatient] = field(default_factory=list)
    notice: str = NOTICE
    # candidates ranked above the last suggestion but removed by a safety check or the
    # minimum support: kind, code, display, score, findings (SafetyFinding.as_dict())
    removed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["suggestions"] = [s.as_dict() for s in self.suggestions]
        d["similar"] = [s.as_dict() for s in self.similar]
        return d


def _scaled(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = float(v[mask].max()) if mask.any() else 0.0
    return v / m if m > 0 else np.zeros_like(v)


class Recommender:
    """Suggestions over one :class:`TreatmentData` (build it with :func:`build_data`)."""

    def __init__(
        self,
        data: TreatmentData,
        params: Params | None = None,
        rules: SafetyRules | None = None,
    ) -> None:
        self.data = data
        self.params = params or Params()
        self.safety = SafetyChecker(data, rules)
        # patients who had item i recorded *for* condition c without c on their list
        self.reason_only = np.zeros(data.reason_patients.shape, np.float64)
        for (pid, item), per in data.pair_reasons.items():
            pi, ii = data.p_index[pid], data.i_index.get(item)
            if ii is None or not data.X[pi, ii]:
                continue
            for ci in per:
                if not data.C[pi, ci]:
                    self.reason_only[ci, ii] += 1
        X = data.X
        self.n_patients = X.shape[0]
        self.item_counts = X.sum(axis=0)
        if X.shape[1]:
            from sklearn.metrics.pairwise import cosine_similarity

            sim = cosine_similarity(X.T)
            np.fill_diagonal(sim, 0.0)
            self.item_sim = sim.astype(np.float32)
        else:
            self.item_sim = np.zeros((0, 0), np.float32)
        # inverse patient frequency for condition and treatment features
        cond_df = data.C.sum(axis=0)
        item_df = X.sum(axis=0)
        n = max(self.n_patients, 1)
        self.cond_idf = np.log((n + 1) / (cond_df + 1)) + 1.0
        self.item_idf = np.log((n + 1) / (item_df + 1)) + 1.0

    @classmethod
    def from_records(
        cls, records: RecordSet, params: Params | None = None, kinds: Iterable[str] = KINDS
    ) -> Recommender:
        return cls(build_data(records, kinds=kinds), params)

    # ------------------------------------------------------------------ pieces
    def _condition_weights(self, pi: int, working: Sequence[str]) -> np.ndarray:
        d, prm = self.data, self.params
        w = np.where(d.C_active[pi], 1.0, prm.resolved_weight * d.C[pi]).astype(np.float64)
        for code in working:
            ci = d.c_index.get(code)
            if ci is not None:
                w[ci] = 1.0
        return w

    def _patient_vector(self, pi: int, cond_w: np.ndarray) -> np.ndarray:
        d = self.data
        conds = (cond_w > 0).astype(np.float64) * self.cond_idf
        items = d.X[pi] * self.item_idf
        return np.concatenate([conds, items, d.features[pi]])

    def _neighbours(self, pi: int, cond_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(patient indices, cosine similarities) of the nearest other patients."""
        d = self.data
        if self.n_patients < 2:
            return np.zeros(0, int), np.zeros(0)
        from sklearn.neighbors import NearestNeighbors

        all_vecs = np.concatenate(
            [d.C * self.cond_idf, d.X * self.item_idf, d.features], axis=1
        ).astype(np.float64)
        others = np.array([i for i in range(self.n_patients) if i != pi])
        base = all_vecs[others]
        keep = np.linalg.norm(base, axis=1) > 0
        others, base = others[keep], base[keep]
        q = self._patient_vector(pi, cond_w)[None, :]
        if not len(others) or not np.linalg.norm(q) > 0:
            return np.zeros(0, int), np.zeros(0)
        k = min(self.params.neighbours, len(others))
        nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)
        dist, idx = nn.kneighbors(q)
        sims = 1.0 - dist[0]
        pos = sims > 0
        return others[idx[0][pos]], sims[pos]

    def _condition_scores(self, pi: int, cond_w: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-item score, best condition index, its counts (n_cT, n_c, reason patients),
        and the support: most other patients sharing one condition who had the item, and
        that condition's index."""
        d, prm = self.data, self.params
        n_items = d.X.shape[1]
        others = np.ones(self.n_patients, bool)
        others[pi] = False
        Xo, Co = d.X[others], d.C[others]
        n_all = max(int(others.sum()), 1)
        share_all = (Xo.sum(axis=0) + prm.smoothing) / (n_all + prm.smoothing)
        conds = np.flatnonzero(cond_w > 0)
        if not len(conds):
            z = np.zeros(n_items)
            return z, np.full(n_items, -1), z, z, z, z, np.full(n_items, -1)
        n_c = Co[:, conds].sum(axis=0)  # (k,)
        n_cT = Co[:, conds].T @ Xo  # (k, I)
        r_cT = d.reason_patients[conds].astype(np.float64)  # p has none among candidates
        s = (n_cT + prm.reason_boost * r_cT) / (n_c[:, None] + prm.smoothing)
        s = s / share_all[None, :] ** prm.lift
        s = s * cond_w[conds][:, None]
        # supporting patients: had T and have c, or had T recorded for c
        backing = n_cT + self.reason_only[conds]
        s = np.where(backing >= prm.min_support, s, 0.0)  # a link needs enough patients
        support_row = backing.argmax(axis=0)
        best_row = s.argmax(axis=0)
        best = s.max(axis=0)
        score = best + prm.cond_mix * s.mean(axis=0)
        cols = np.arange(n_items)
        return (
            score,
            conds[best_row],
            n_cT[best_row, cols],
            n_c[best_row],
            r_cT[best_row, cols],
            backing.max(axis=0),
            conds[support_row],
        )

    # ------------------------------------------------------------------ API
    def rank(
        self, patient: str, working: Sequence[str] = (), kinds: Iterable[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(candidate item indices best first, their blended scores, details for evidence)."""
        d, prm = self.data, self.params
        pi = d.p_index[patient]
        cand = d.X[pi] == 0
        if kinds is not None:
            ks = set(kinds)
            cand &= np.array([it.split(":", 1)[0] in ks for it in d.items], bool)
        cond_w = self._condition_weights(pi, working)
        c_score, best_c, n_cT, n_c, r_cT, c_support, support_c = self._condition_scores(pi, cond_w)
        nb, sims = self._neighbours(pi, cond_w)
        if len(nb):
            u_score = (sims[:, None] * d.X[nb]).sum(axis=0) / sims.sum()
            similar_given = d.X[nb].sum(axis=0)
        else:
            u_score = np.zeros(d.X.shape[1])
            similar_given = np.zeros(d.X.shape[1])
        support = np.maximum(c_support, similar_given).astype(int)
        hist = np.flatnonzero(d.X[pi])
        if len(hist):
            i_score = self.item_sim[:, hist].mean(axis=1)
            best_co = hist[self.item_sim[:, hist].argmax(axis=1)]
        else:
            i_score = np.zeros(d.X.shape[1])
            best_co = np.full(d.X.shape[1], -1)
        others_count = self.item_counts - d.X[pi]
        pop = others_count / max(self.n_patients - 1, 1)
        parts = {
            "condition": _scaled(c_score, cand),
            "similar_patients": _scaled(u_score, cand),
            "co_occurrence": _scaled(i_score, cand),
            "popularity": _scaled(pop, cand),
        }
        weights = {
            "condition": prm.w_condition,
            "similar_patients": prm.w_user,
            "co_occurrence": prm.w_item,
            "popularity": prm.w_pop,
        }
        total = sum(weights.values()) or 1.0
        blend = np.asarray(sum(weights[k] * parts[k] for k in parts) / total)
        idx = np.flatnonzero(cand)
        full_order = idx[np.lexsort((idx, -blend[idx]))]
        findings = self._findings(patient, working, full_order, support)
        removed = {j for j, f in findings.items() if any(x.action == "remove" for x in f)}
        order = np.array([j for j in full_order if j not in removed], dtype=int)
        details = {
            "full_order": full_order,
            "blend": blend,
            "findings": findings,
            "support": support,
            "support_condition": support_c,
            "condition_support": c_support,
            "similar_given": similar_given,
            "parts": parts,
            "best_condition": best_c,
            "n_cT": n_cT,
            "n_c": n_c,
            "r_cT": r_cT,
            "neighbours": nb,
            "sims": sims,
            "best_co": best_co,
            "others_count": others_count,
            "cond_w": cond_w,
        }
        return order, blend[order], details

    def _findings(
        self, patient: str, working: Sequence[str], cands: np.ndarray, support: np.ndarray
    ) -> dict[int, list[SafetyFinding]]:
        """Safety findings and the minimum-support check of each candidate."""
        ps = self.safety.patient(patient, working)
        m = self.params.min_support
        out: dict[int, list[SafetyFinding]] = {}
        for j in cands:
            f = self.safety.check(int(j), ps)
            if support[j] < m:
                n = int(support[j])
                f.append(
                    SafetyFinding(
                        "remove",
                        "min-support",
                        f"supported by {n} distinct patient{'s' if n != 1 else ''}, "
                        f"fewer than the minimum of {m}",
                    )
                )
            if f:
                out[int(j)] = f
        return out

    def suggest(
        self,
        patient: str,
        k: int = 5,
        working: Sequence[tuple[str, str]] = (),
        kinds: Iterable[str] | None = None,
    ) -> SuggestionResult:
        """Top-``k`` suggestions with evidence, or a "not enough data" answer."""
        d = self.data
        working = list(working)
        if patient not in d.p_index:
            return SuggestionResult(
                patient, "not_enough_data", f"patient {patient} has no records here"
            )
        pi = d.p_index[patient]
        res = SuggestionResult(patient, "ok", "")
        self._describe_patient(res, pi, working)
        has_treatments = bool(d.X[pi].any())
        has_conditions = bool(d.C[pi].any())
        known_working = [c for c, _ in working if c in d.c_index]
        for code, display in working:
            if code not in d.c_index:
                what = f"{display} ({code})" if display else f"condition {code}"
                res.message += (
                    f"No patient in these records has {what}; no treatments are linked to it. "
                )
        if not known_working and (not has_treatments or not has_conditions):
            missing = "treatments" if not has_treatments else "conditions"
            res.status = "not_enough_data"
            res.message += (
                f"Not enough data: no {missing} on record for this patient, so there is "
                "nothing to compare with similar patients or link treatments to. "
                "Add a working condition to see its linked treatments."
            )
            return res
        if self.n_patients < 3 or not d.items:
            res.status = "not_enough_data"
            res.message += (
                "Not enough data: fewer than 3 patients with treatments in these records."
            )
            return res
        _order, _scores, det = self.rank(patient, [c for c, _ in working], kinds)
        parts = det["parts"]
        personal = parts["condition"] + parts["similar_patients"] + parts["co_occurrence"]
        for j in det["full_order"]:
            if len(res.suggestions) >= k:
                break
            if personal[j] <= 0:
                continue
            found = det["findings"].get(int(j), [])
            score = round(float(det["blend"][j]), 4)
            if any(f.action == "remove" for f in found):
                kind, code = d.items[j].split(":", 1)
                res.removed.append(
                    {
                        "kind": kind,
                        "code": code,
                        "display": d.item_display[d.items[j]],
                        "score": score,
                        "findings": [f.as_dict() for f in found if f.action == "remove"],
                    }
                )
                continue
            sugg = self._suggestion(j, score, det)
            sugg.flags = [f.as_dict() for f in found]
            res.suggestions.append(sugg)
        nb, sims = det["neighbours"], det["sims"]
        for v, sim in zip(nb, sims, strict=True):
            shared = np.flatnonzero((det["cond_w"] > 0) & (d.C[v] > 0))
            res.similar.append(
                SimilarPatient(
                    d.patients[v],
                    round(float(sim), 3),
                    [d.condition_display.get(d.conditions[c], d.conditions[c]) for c in shared],
                    int((d.X[v] * d.X[pi]).sum()),
                )
            )
        if not res.suggestions:
            res.status = "not_enough_data"
            res.message += (
                "Not enough data: no treatment is linked to this patient's conditions or "
                "given to similar patients that the patient has not had already"
            )
            res.message += (
                f" and that passes the safety checks ({len(res.removed)} removed)."
                if res.removed
                else "."
            )
        return res

    # ------------------------------------------------------------------ text
    def _describe_patient(
        self, res: SuggestionResult, pi: int, working: Sequence[tuple[str, str]]
    ) -> None:
        d = self.data
        pid = d.patients[pi]
        for c in np.flatnonzero(d.C[pi]):
            code = d.conditions[c]
            res.conditions.append(
                {
                    "code": code,
                    "display": d.condition_display.get(code, code),
                    "active": bool(d.C_active[pi, c]),
                    "working": False,
                }
            )
        for code, display in working:
            res.conditions.append(
                {
                    "code": code,
                    "display": display or d.condition_display.get(code, code),
                    "active": True,
                    "working": True,
                }
            )
        cur = d.current.get(pid, set())
        for j in np.flatnonzero(d.X[pi]):
            key = d.items[j]
            kind, code = key.split(":", 1)
            since = d.first_seen.get((pid, key))
            last = d.last_seen.get((pid, key))
            entry = {
                "kind": kind,
                "code": code,
                "display": d.item_display[key],
                "first": since.date().isoformat() if since else None,
                "last": last.date().isoformat() if last else None,
            }
            (res.current if key in cur else res.past).append(entry)

    def _suggestion(self, j: int, score: float, det: dict) -> Suggestion:
        d = self.data
        key = d.items[j]
        kind, code = key.split(":", 1)
        evidence: list[str] = []
        counts: dict[str, int | float | str] = {}
        ci = int(det["best_condition"][j])
        if ci >= 0:
            cname = d.condition_display.get(d.conditions[ci], d.conditions[ci])
            n_cT = int(det["n_cT"][j])
            n_c = int(det["n_c"][j])
            r_cT = int(det["r_cT"][j])
            events = int(d.reason_events[ci, j])
            counts.update(
                condition=d.conditions[ci],
                condition_display=cname,
                patients_with_condition=n_c,
                given_with_condition=n_cT,
                reason_patients=r_cT,
                reason_events=events,
            )
            if n_cT or r_cT:
                text = f"given to {n_cT} of {n_c} other patients with {cname}"
                if events:
                    text += (
                        f"; recorded with this reason {events} times"
                        f" ({r_cT} patient{'s' if r_cT != 1 else ''})"
                    )
                evidence.append(text)
        nb = det["neighbours"]
        if len(nb):
            m = int(d.X[nb, j].sum())
            counts.update(similar_given=m, similar_patients=len(nb))
            if m:
                evidence.append(f"given to {m} of the {len(nb)} most similar patients")
        co = int(det["best_co"][j])
        if co >= 0 and self.item_sim[j, co] > 0:
            both = int((d.X[:, j] * d.X[:, co]).sum())
            n_co = int(d.X[:, co].sum())
            counts.update(co_item=d.items[co], co_given=both, co_patients=n_co)
            evidence.append(
                f"{both} of {n_co} patients who had {d.item_display[d.items[co]]} also had it"
            )
        n_t = int(det["others_count"][j])
        counts.update(population_given=n_t, population=self.n_patients - 1)
        evidence.append(f"{n_t} of {self.n_patients - 1} other patients in these records had it")
        support = int(det["support"][j])
        m = self.params.min_support
        counts.update(support=support, min_support=m)
        sc = int(det["support_condition"][j])
        n_sc = int(det["condition_support"][j])
        if sc >= 0 and n_sc >= int(counts.get("similar_given", 0)) and n_sc:
            scode = d.conditions[sc]
            counts["support_condition"] = scode
            if scode == counts.get("condition") and n_sc == counts.get("given_with_condition"):
                how = ""  # the first line already names the condition and the count
            else:
                how = f"{n_sc} with {d.condition_display.get(scode, scode)}; "
        else:
            how = f"{support} of the {len(nb)} most similar patients; "
        evidence.append(f"supported by {support} distinct other patients ({how}minimum {m})")
        counts["weak"] = int(support < WEAK_SUPPORT)
        if support < WEAK_SUPPORT:
            evidence.append(f"weak evidence: fewer than {WEAK_SUPPORT} patients support it")
        comps = {k: round(float(v[j]), 4) for k, v in det["parts"].items()}
        return Suggestion(kind, code, d.item_display[key], round(score, 4), evidence, counts, comps)
