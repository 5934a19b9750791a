"""Evaluate the finding labels against the MeSH headings of the IU chest X-ray reports.

Each report is analysed as the plain text ``FINDINGS: ...`` / ``IMPRESSION: ...``
(the other sections are left out, as in the held-out check). A label is predicted
positive when the document has a *present* mention of it (historical mentions
included: "healed rib fractures" is indexed as a fracture); ``normal`` is the
document-level flag. The reference is the first component of each ``<major>``
heading, mapped with :data:`MESH_TO_LABEL`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medview.errors import FileProblem, MedviewError
from medview.notes.analysis import analyze
from medview.notes.model import LABELS, Document
from medview.notes.readers import iu_plain_text, read_documents
from medview.tasks import TaskState, ensure_state

EVAL_LABELS: tuple[str, ...] = (*LABELS, "normal")

#: MeSH heading (first component of <major>) -> label, as the issue defines it.
MESH_TO_LABEL: dict[str, str] = {
    "cardiomegaly": "cardiomegaly",
    "pleural effusion": "pleural_effusion",
    "pulmonary atelectasis": "atelectasis",
    "opacity": "lung_opacity",
    "airspace disease": "lung_opacity",
    "infiltrate": "lung_opacity",
    "consolidation": "consolidation",
    "pneumonia": "pneumonia",
    "pulmonary edema": "edema",
    "nodule": "nodule",
    "calcified granuloma": "granuloma",
    "granulomatous disease": "granuloma",
    "granuloma": "granuloma",
    "emphysema": "emphysema",
    "pulmonary emphysema": "emphysema",
    "pulmonary disease, chronic obstructive": "emphysema",
    "pneumothorax": "pneumothorax",
    "fractures, bone": "fracture",
    "scoliosis": "scoliosis",
    "hernia, hiatal": "hiatal_hernia",
    "cicatrix": "scarring",
    "catheters, indwelling": "support_device",
    "implanted medical device": "support_device",
    "surgical instruments": "support_device",
    "tube, inserted": "support_device",
    "medical device": "support_device",
    "stents": "support_device",
    "normal": "normal",
}


def gold_labels(mesh: Iterable[str]) -> set[str]:
    """Labels of a report from its ``<major>`` MeSH headings."""
    out = set()
    for heading in mesh:
        first = heading.split("/", 1)[0].strip().lower()
        if first in MESH_TO_LABEL:
            out.add(MESH_TO_LABEL[first])
    return out


def predicted_labels(doc: Document, count_uncertain: bool = False) -> set[str]:
    """Labels predicted for a document (present mentions; ``normal`` flag)."""
    a = analyze(doc)
    ok = {"present", "uncertain"} if count_uncertain else {"present"}
    out = {label for label, st in a.label_status().items() if st in ok}
    if a.normal:
        out.add("normal")
    return out


def split_of(report_id: str, tune_percent: int = 70) -> str:
    """``"tune"`` or ``"test"``: a fixed split by hash of the report id."""
    h = int(hashlib.sha256(report_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "tune" if h < tune_percent else "test"


@dataclass
class Evaluation:
    """Per-label counts and scores, micro/macro F1, speed (CPU seconds spent labelling)."""

    reports: int
    per_label: dict[str, dict[str, float]]
    micro: dict[str, float]
    macro_f1: float
    seconds: float
    split: str = "all"
    problems: list[FileProblem] = field(default_factory=list)

    @property
    def reports_per_second(self) -> float:
        return self.reports / self.seconds if self.seconds > 0 else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "reports": self.reports,
            "split": self.split,
            "labels": self.per_label,
            "micro": self.micro,
            "micro_f1": self.micro["f1"],
            "macro_f1": self.macro_f1,
            "seconds": round(self.seconds, 3),
            "reports_per_second": round(self.reports_per_second, 1),
            "skipped": [str(p) for p in self.problems],
        }


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def score(pairs: Iterable[tuple[set[str], set[str]]]) -> tuple[dict, dict, float, int]:
    """(per_label, micro, macro_f1, n) from (gold, predicted) label sets."""
    counts = {lab: [0, 0, 0] for lab in EVAL_LABELS}
    n = 0
    for gold, pred in pairs:
        n += 1
        for lab in EVAL_LABELS:
            g, p = lab in gold, lab in pred
            if g and p:
                counts[lab][0] += 1
            elif p:
                counts[lab][1] += 1
            elif g:
                counts[lab][2] += 1
    per_label = {}
    for lab, (tp, fp, fn) in counts.items():
        per_label[lab] = {**_prf(tp, fp, fn), "support": tp + fn, "tp": tp, "fp": fp, "fn": fn}
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    micro = _prf(tp, fp, fn)
    scored = [v["f1"] for v in per_label.values() if v["support"] or v["fp"]]
    macro = round(sum(scored) / len(scored), 4) if scored else 0.0
    return per_label, micro, macro, n


def load_iu(path: str | PathLike[str]) -> tuple[list[Document], list[FileProblem]]:
    """IU reports (folder of XML, .tar.gz, or XML files) as FINDINGS/IMPRESSION documents."""
    res = read_documents([path])
    docs = []
    for d in res.documents:
        if d.kind != "iu-xml":
            continue
        docs.append(
            Document(
                id=d.id,
                text=iu_plain_text(d.meta["sections"]),
                source=d.source,
                kind="text",
                date=d.date,
                title=d.title,
                meta=d.meta,
            )
        )
    if not docs:
        reason = res.problems[0].reason if res.problems else "no IU report XML found"
        raise MedviewError(reason, path)
    return docs, res.problems


def evaluate(
    path: str | PathLike[str],
    split: str = "all",
    count_uncertain: bool = False,
    state: TaskState | None = None,
) -> Evaluation:
    """Score the labeller on the IU reports at ``path`` (``split``: all, tune or test)."""
    state = ensure_state(state)
    if split not in ("all", "tune", "test"):
        raise MedviewError(f"unknown split {split!r} (all, tune, test)")
    docs, problems = load_iu(Path(path))
    if split != "all":
        docs = [d for d in docs if split_of(d.meta["report_id"]) == split]
    pairs = []
    t0 = time.process_time()  # CPU time of this process: one core, unaffected by machine load
    for i, d in enumerate(docs):
        if i % 100 == 0:
            state.progress(i / max(len(docs), 1), f"report {i + 1}/{len(docs)}")
        pairs.append((gold_labels(d.meta["mesh"]), predicted_labels(d, count_uncertain)))
    seconds = time.process_time() - t0
    per_label, micro, macro, n = score(pairs)
    return Evaluation(n, per_label, micro, macro, seconds, split, problems)
