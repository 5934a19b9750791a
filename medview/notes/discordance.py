"""AI result vs report: flag when the two disagree.

A plain function so both the AI panel and a notes panel can call it with what they
have: the AI label (e.g. ``"pneumonia"``), its probability and threshold, and the
report's findings (:class:`~medview.notes.model.Finding`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from medview.notes.model import Finding

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
    if probability >= threshold:
        if not positive and (negated or normal):
            names = ", ".join(sorted({f.label for f in negated})) or "normal study"
            return Discordance(
                True,
                "ai-positive-report-negative",
                f"AI {label} {pct} but the report negates it ({names})",
                negated,
            )
        return Discordance(False, "", f"AI {label} {pct}; report agrees or is silent", positive)
    present = [f for f in positive if f.label == label and f.status == "present"]
    if present:
        return Discordance(
            True,
            "ai-negative-report-positive",
            f"AI {label} {pct} is negative but the report states {label}",
            present,
        )
    return Discordance(False, "", f"AI {label} {pct}; report agrees or is silent", negated)
