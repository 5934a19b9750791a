"""A ConText/NegEx-style rule engine for findings in reports and notes.

Targets (the finding vocabulary) and triggers (negation, uncertainty, history,
other-person, termination and pseudo-triggers) are regular-expression fragments in
``terms.json``. For each sentence:

* a *pre* trigger (``"no"``, ``"possible"``, ``"history of"``) governs the targets
  after it up to the next termination term (``"but"``, ``"however"``, ``"there is"``)
  or the sentence end;
* a *post* trigger (``"is not seen"``, ``"cannot be excluded"``, ``"has resolved"``)
  governs the targets before it back to the previous termination or the sentence start;
* pseudo-triggers (``"no change"``, ``"no longer"``) are matched first and block
  the negation words inside them;
* when both a negation and an uncertainty trigger govern a target, the nearer one wins
  (``"no pneumothorax, possible small effusion"``).

Everything is offset-based: each :class:`~medview.notes.model.Finding` carries the
characters of the mention and of its sentence in the original text.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from medview.notes.model import LABELS, Finding
from medview.notes.terms import load_terms
from medview.notes.text import NO_SECTION, Span, sentences

#: internal label for abnormal findings outside the 16 labels (blocks ``normal``)
OTHER = "_other"
_HIST_SECTIONS = frozenset({"history", "indication"})

_TRIGGER_KINDS = (
    ("neg_post", "negation_post"),
    ("unc_post", "uncertain_post"),
    ("pseudo", "pseudo"),
    ("other", "other_person"),
    ("neg_pre", "negation_pre"),
    ("unc_pre", "uncertain_pre"),
    ("hist", "historical"),
    ("term", "termination"),
)


def _alternation(fragments: list[str]) -> str:
    parts = sorted({f.replace(" ", r"\s+") for f in fragments}, key=len, reverse=True)
    return "|".join(f"(?:{p})" for p in parts)


def compile_terms(fragments: list[str]) -> re.Pattern[str]:
    """One case-insensitive pattern matching any fragment as whole words."""
    return re.compile(rf"(?<![\w-])(?:{_alternation(fragments)})(?![\w])", re.IGNORECASE)


@dataclass(frozen=True)
class _Rules:
    targets: dict[str, re.Pattern[str]]
    triggers: tuple[tuple[str, re.Pattern[str]], ...]
    normal: re.Pattern[str]


@lru_cache(maxsize=1)
def rules() -> _Rules:
    """Compiled patterns from ``terms.json`` (built once)."""
    t = load_terms()
    targets = {label: compile_terms(t["labels"][label]) for label in LABELS}
    targets[OTHER] = compile_terms(t["other_abnormal"])
    triggers = tuple((kind, compile_terms(t[key])) for kind, key in _TRIGGER_KINDS if t.get(key))
    return _Rules(targets, triggers, compile_terms(t["normal"]))


def find_triggers(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """Trigger matches in text[start:end], overlaps resolved: pseudo first, then longest."""
    found = []
    for kind, pat in rules().triggers:
        for m in pat.finditer(text, start, end):
            found.append((m.start(), m.end(), kind))
    found.sort(key=lambda t: (t[2] != "pseudo", -(t[1] - t[0]), t[0]))
    taken = bytearray(end - start)  # characters already in a trigger (linear, not pairwise)
    out = []
    for a, b, kind in found:
        if any(taken[a - start : b - start]):
            continue
        taken[a - start : b - start] = b"\x01" * (b - a)
        out.append((a, b, kind))
    out.sort()
    return out


@dataclass(frozen=True)
class Mention:
    """A target match with its context, before it becomes a Finding."""

    label: str
    start: int
    end: int
    status: str
    historical: bool
    experiencer: str
    sentence: Span

    def span_fields(self, text: str) -> dict[str, Any]:
        """What a :class:`Finding` and a coded mention take from this match of ``text``:
        status, historical, section, text, start, end."""
        return {
            "status": self.status,
            "historical": self.historical,
            "section": self.sentence.section,
            "text": text[self.start : self.end],
            "start": self.start,
            "end": self.end,
        }


def _triggers_in(
    trig: list[tuple[int, int, str]], targets: list[tuple[int, int]]
) -> list[tuple[int, int, str]]:
    """Triggers of one sentence minus pseudo-triggers and trigger words inside a target."""
    return [
        (a, b, kind)
        for a, b, kind in trig
        if kind != "pseudo" and not any(ta < b and a < tb for ta, tb in targets)
    ]


def _context(
    start: int, end: int, sent: Span, trig: list[tuple[int, int, str]]
) -> tuple[str, bool, str]:
    """(status, historical, experiencer) of the target text[start:end] in sentence ``sent``."""
    # window: from the last termination before the target to the first one after it
    lo, hi = sent.start, sent.end
    for a, b, kind in trig:
        if kind == "term":
            if b <= start:
                lo = max(lo, b)
            elif a >= end:
                hi = min(hi, a)
    neg_d = unc_d = None
    historical = False
    experiencer = "patient"
    for a, b, kind in trig:
        if kind == "term":
            continue
        if b <= start and a >= lo:  # before the target: pre triggers
            d = start - b
            if kind == "neg_pre":
                neg_d = d if neg_d is None else min(neg_d, d)
            elif kind == "unc_pre":
                unc_d = d if unc_d is None else min(unc_d, d)
            elif kind == "hist":
                historical = True
            elif kind == "other":
                experiencer = "other"
        elif a >= end and b <= hi:  # after the target: post triggers
            d = a - end
            if kind == "neg_post":
                neg_d = d if neg_d is None else min(neg_d, d)
            elif kind == "unc_post":
                unc_d = d if unc_d is None else min(unc_d, d)
    if neg_d is not None and (unc_d is None or neg_d <= unc_d):
        status = "absent"
    elif unc_d is not None:
        status = "uncertain"
    else:
        status = "present"
    return status, historical, experiencer


def find_mentions(
    text: str,
    spans: list[Span] | None = None,
    extra: dict[str, re.Pattern[str]] | None = None,
) -> list[Mention]:
    """All target mentions (the 16 labels, ``_other`` and any ``extra`` patterns) in context."""
    spans = sentences(text) if spans is None else spans
    if not spans:
        return []
    patterns = dict(rules().targets)
    if extra:
        patterns.update(extra)
    starts = [s.start for s in spans]
    by_sentence: dict[int, list[tuple[int, int, str]]] = {}
    for label, pat in patterns.items():
        for m in pat.finditer(text, spans[0].start, spans[-1].end):
            a, b = m.span()
            i = bisect.bisect_right(starts, a) - 1
            if i < 0 or b > spans[i].end:
                continue
            by_sentence.setdefault(i, []).append((a, b, label))
    all_trig = find_triggers(text, spans[0].start, spans[-1].end)
    trig_starts = [t[0] for t in all_trig]
    out: list[Mention] = []
    for i in sorted(by_sentence):
        sent = spans[i]
        found = by_sentence[i]
        lo = bisect.bisect_left(trig_starts, sent.start)
        hi = bisect.bisect_left(trig_starts, sent.end)
        trig = _triggers_in(all_trig[lo:hi], [(a, b) for a, b, _ in found])
        # within one label, overlapping matches keep the longest
        found.sort(key=lambda t: (t[2], t[0], -(t[1] - t[0])))
        last: dict[str, int] = {}
        for a, b, label in found:
            if a < last.get(label, -1):
                continue
            last[label] = b
            status, hist, who = _context(a, b, sent, trig)
            if sent.section in _HIST_SECTIONS:
                hist = True
            out.append(Mention(label, a, b, status, hist, who, sent))
    out.sort(key=lambda m: (m.start, m.label))
    return out


def has_normal_statement(text: str, spans: list[Span]) -> bool:
    """True when a sentence outside history/indication states a normal study."""
    pat = rules().normal
    for s in spans:
        if s.section in _HIST_SECTIONS or s.section == "comparison":
            continue
        if pat.search(text, s.start, s.end):
            return True
    return False


def findings_from_mentions(text: str, mentions: list[Mention]) -> list[Finding]:
    """Findings for the 16 labels (``_other`` and extra patterns dropped)."""
    labels = set(LABELS)
    return [
        Finding(
            label=m.label,
            **m.span_fields(text),
            sentence_start=m.sentence.start,
            sentence_end=m.sentence.end,
            experiencer=m.experiencer,
        )
        for m in mentions
        if m.label in labels
    ]


def is_normal(text: str, spans: list[Span], mentions: list[Mention]) -> bool:
    """Document-level ``normal``: no present/uncertain finding and a normal study.

    A normal study is a stated one ("no acute disease", "normal chest"), or, in a
    radiology report (findings/impression sections, or no section headers at all),
    one that mentions no finding. A clinical note (history, medications, plan)
    without such a statement is never ``normal``.
    """
    for m in mentions:
        if m.experiencer != "patient" or m.sentence.section in _HIST_SECTIONS:
            continue
        if m.status != "absent":
            return False
    if has_normal_statement(text, spans):
        return True
    names = {s.section for s in spans}
    report_like = bool(names & {"findings", "impression"}) or names <= {NO_SECTION}
    return report_like and not any(m.sentence.section not in _HIST_SECTIONS for m in mentions)
