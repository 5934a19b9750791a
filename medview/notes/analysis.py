"""Analyse one document: findings in context, ``normal``, linked problems and medications."""

from __future__ import annotations

import re
from functools import lru_cache

from medview.notes.context import find_mentions, findings_from_mentions, is_normal
from medview.notes.model import CodedMention, Document, NoteAnalysis
from medview.notes.text import sentences
from medview.tasks import TaskState, ensure_state

_SEMANTIC_TAG = re.compile(
    r"\s*\((?:finding|disorder|situation|procedure|morphologic abnormality)\)\s*$", re.I
)


def _display_pattern(display: str) -> str | None:
    """A loose whole-word pattern for a record's display name (tag dropped, any spacing)."""
    core = _SEMANTIC_TAG.sub("", display).strip()
    if len(core) < 3:
        return None
    words = re.split(r"\s+", core)
    return r"\s+".join(re.escape(w) for w in words)


@lru_cache(maxsize=256)
def _code_patterns(
    items: tuple[tuple[str, str, str], ...],
) -> dict[str, re.Pattern[str]]:
    """``kind|display|code`` -> compiled pattern for each coded record name."""
    out: dict[str, re.Pattern[str]] = {}
    for kind, display, code in items:
        pat = _display_pattern(display)
        if pat:
            out[f"{kind}|{display}|{code}"] = re.compile(rf"(?<![\w-]){pat}(?![\w])", re.IGNORECASE)
    return out


def analyze(document: Document) -> NoteAnalysis:
    """Findings (16 labels, with status, history, section, offsets), ``normal`` and codes."""
    text = document.text
    spans = sentences(text)
    items = tuple(
        (kind[:-1] if kind.endswith("s") else kind, d, c)
        for kind in ("problems", "medications")
        for d, c in document.codes.get(kind, [])
    )
    extra = _code_patterns(items) if items else None
    mentions = find_mentions(text, spans, extra)
    problems: list[CodedMention] = []
    medications: list[CodedMention] = []
    for m in mentions:
        if "|" not in m.label:
            continue
        kind, display, code = m.label.split("|", 2)
        cm = CodedMention(
            kind=kind,
            display=display,
            code=code,
            **m.span_fields(text),
        )
        (problems if kind == "problem" else medications).append(cm)
    labelled = [m for m in mentions if "|" not in m.label]
    return NoteAnalysis(
        document=document,
        findings=findings_from_mentions(text, labelled),
        normal=is_normal(text, spans, labelled),
        problems=problems,
        medications=medications,
    )


def analyze_text(text: str) -> NoteAnalysis:
    """Shortcut: analyse a string (no patient, no codes)."""
    return analyze(Document(id="<text>", text=text, source="<text>", kind="text"))


def analyze_all(documents: list[Document], state: TaskState | None = None) -> list[NoteAnalysis]:
    """Analyse many documents, reporting progress and honouring cancellation."""
    state = ensure_state(state)
    out = []
    n = max(len(documents), 1)
    for i, d in enumerate(documents):
        if i % 50 == 0:
            state.progress(i / n, f"analysing {i + 1}/{len(documents)}")
        out.append(analyze(d))
    state.progress(1.0, f"{len(out)} documents analysed")
    return out


def patient_documents(analyses: list[NoteAnalysis], patient: str | None) -> list[NoteAnalysis]:
    """One patient's analysed documents in date order (undated last), for a panel."""
    mine = [a for a in analyses if a.document.patient == patient]
    return sorted(
        mine, key=lambda a: (a.document.date is None, a.document.date or "", a.document.id)
    )
