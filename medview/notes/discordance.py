"""AI result vs report: flag when the two disagree.

A plain function so both the AI panel and a notes panel can call it with what they
have: the AI label (e.g. ``"pneumonia"``), its probability and threshold, and the
report's findings (:class:`~medview.notes.model.Finding`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from medview.notes.model import Finding, NoteAnalysis

#: report labels that support (or, when all negated, contradict) an AI label
RELATED: dict[str, tuple[str, ...]] = {
    "pneumonia": ("pneumonia", "consolidation", "lung_opacity"),
    "pleural_effusion": ("pleural_effusion",),
    "cardiomegaly": ("cardiomegaly",),
    "pneumothorax": ("pneumothorax",),
    "edema": ("edema",),
    "atelectasis": ("atelectasis",),
    "nodule": ("nodule", "granuloma"),
}


@dataclass
class Discordance:
    """The outcome of comparing an AI result with a report.

    ``kind``: ``"ai-positive-report-negative"``, ``"ai-negative-report-positive"`` or
    ``""`` (no discordance). ``evidence`` are the findings behind the decision (the
    negated or present mentions), so a panel can point at the sentence.
    """

    discordant: bool
    kind: str
    message: str
    evidence: list[Finding] = field(default_factory=list)


def check_discordance(
    label: str,
    probability: float,
    threshold: float,
    findings: Iterable[Finding],
    normal: bool = False,
) -> Discordance:
    """Compare an AI probability for ``label`` with a report's findings.

    * AI positive (``probability >= threshold``) and the report mentions none of the
      related labels as present or uncertain, while it negates at least one of them
      or states a normal study -> ``ai-positive-report-negative``.
    * AI negative and the report has a present, current mention of ``label`` itself
      -> ``ai-negative-report-positive``.

    Mentions about someone else (family history) are ignored.
    """
    related = RELATED.get(label, (label,))
    own = [f for f in findings if f.experiencer == "patient" and f.label in related]
    positive = [f for f in own if f.status in ("present", "uncertain") and not f.historical]
    negated = [f for f in own if f.status == "absent"]
    pct = f"{probability:.2f} (threshold {threshold:.2f})"
    # one rule per direction of the AI call: when it is discordant, its kind and message,
    # the findings against the AI call and those that agree with it
    if probability >= threshold:
        names = ", ".join(sorted({f.label for f in negated})) or "normal study"
        discordant = not positive and bool(negated or normal)
        kind, message = "ai-positive-report-negative", f"but the report negates it ({names})"
        against, agreeing = negated, positive
    else:
        present = [f for f in positive if f.label == label and f.status == "present"]
        discordant = bool(present)
        kind, message = "ai-negative-report-positive", f"is negative but the report states {label}"
        against, agreeing = present, negated
    if discordant:
        return Discordance(True, kind, f"AI {label} {pct} {message}", against)
    return Discordance(False, "", f"AI {label} {pct}; report agrees or is silent", agreeing)


@dataclass(frozen=True)
class AIEvidence:
    """One AI probability to compare with a report (e.g. from an ``AIResult``).

    ``in_scope`` is the model card's intended-use verdict: an out-of-scope result
    is never evidence of discordance (its output is not meaningful).
    """

    label: str
    probability: float
    threshold: float
    in_scope: bool = True
    model: str = ""


def ai_evidence(
    probabilities: dict[str, float] | None,
    threshold: float | None,
    in_scope: bool = True,
    model: str = "",
) -> list[AIEvidence]:
    """The labels of an AI result that a report can confirm or contradict.

    Only labels in :data:`RELATED` count (``normal`` of a two-class model does not);
    a result without probabilities or threshold gives nothing.
    """
    if not probabilities or threshold is None:
        return []
    return [
        AIEvidence(label, float(p), float(threshold), bool(in_scope), model)
        for label, p in probabilities.items()
        if label in RELATED
    ]


def _iso_day(value: str | None) -> str:
    """``YYYYMMDD`` or an ISO date/time -> ``YYYY-MM-DD`` ("" when neither)."""
    v = (value or "").strip()
    if len(v) >= 8 and v[:8].isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:8]}"
    if len(v) >= 10 and v[4] == "-" and v[7] == "-":
        return v[:10]
    return ""


def report_for_study(
    analyses: list[NoteAnalysis], study_date: str | None = None
) -> NoteAnalysis | None:
    """The report an AI result on a study is compared with.

    A document dated on the study's day (DICOM ``YYYYMMDD`` or ISO) wins; otherwise
    the newest document that says something about the chest (a finding about the
    patient, or a normal study). None when no document qualifies.
    """
    day = _iso_day(study_date)
    if day:
        same = [a for a in analyses if _iso_day(a.document.date) == day]
        if same:
            return same[-1]
    chest = [a for a in analyses if a.normal or any(f.experiencer == "patient" for f in a.findings)]
    if not chest:
        return None
    return max(chest, key=lambda a: (a.document.date is not None, a.document.date or ""))


def compare_with_report(
    evidence: Iterable[AIEvidence], report: NoteAnalysis | None
) -> list[Discordance]:
    """Discordances between AI results and a report (empty: none, or nothing to compare).

    Out-of-scope AI results are skipped: they never count as discordant evidence.
    """
    if report is None:
        return []
    out = []
    for e in evidence:
        if not e.in_scope:
            continue
        d = check_discordance(e.label, e.probability, e.threshold, report.findings, report.normal)
        if d.discordant:
            out.append(d)
    return out
