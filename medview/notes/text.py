"""Section and sentence splitting for reports and notes.

Both work on character offsets into the original text (nothing is rewritten), so
every finding can point back at its source. Sentence splitting knows the
de-identification token ``XXXX`` of the IU reports (``"chest x-XXXX."`` ends a
sentence; ``"Dr. XXXX"`` does not), decimals (``"1.5 cm"``), common abbreviations
and numbered lists (``"1. ... 2. ..."``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from medview.notes.terms import load_terms

#: Name used for text before any recognised section header.
NO_SECTION = "text"


@dataclass(frozen=True)
class Span:
    """A piece of the text: ``text[start:end]``; ``section`` is the canonical section name."""

    start: int
    end: int
    section: str


@lru_cache(maxsize=1)
def _header_patterns() -> tuple[re.Pattern[str], dict[str, str]]:
    sections: dict[str, list[str]] = load_terms()["sections"]
    names: dict[str, str] = {}
    alts: list[str] = []
    for canonical, variants in sections.items():
        for v in variants:
            names[v] = canonical
            alts.append(v)
    alts.sort(key=len, reverse=True)
    body = "|".join(a.replace(" ", r"[ \t]+") for a in alts)
    upper = "|".join(a.upper().replace(" ", r"[ \t]+") for a in alts)
    # a header: at a line start (optionally markdown '#') and ending in ':' or the line end,
    # or anywhere when written in capitals and followed by ':' ("... FINDINGS: ...").
    pattern = re.compile(
        rf"(?im)^[ \t]*(?:#+[ \t]*)?(?P<a>{body})[ \t]*(?::|$)"
        rf"|(?-i:\b(?P<b>{upper}):)"
    )
    return pattern, names


def _canonical(header: str, names: dict[str, str]) -> str:
    key = " ".join(header.lower().split())
    if key in names:
        return names[key]
    for variant, canonical in names.items():  # regex-style variants
        if re.fullmatch(variant, key):
            return canonical
    return NO_SECTION


def split_sections(text: str) -> list[Span]:
    """Section bodies in order; text before the first header is section ``"text"``.

    Header words themselves are not part of any body. Empty bodies are kept (a
    header with nothing after it) so callers can see which sections exist.
    """
    pattern, names = _header_patterns()
    spans: list[Span] = []
    pos = 0
    current = NO_SECTION
    for m in pattern.finditer(text):
        if m.start() > pos or spans or current != NO_SECTION:
            if m.start() > pos and (text[pos : m.start()].strip() or current != NO_SECTION):
                spans.append(Span(pos, m.start(), current))
        current = _canonical(m.group("a") or m.group("b"), names)
        pos = m.end()
    if text[pos:].strip() or current != NO_SECTION:
        spans.append(Span(pos, len(text), current))
    return spans


_ABBREV = frozenset(
    "dr mr mrs ms st vs v e.g i.e etc approx appt no nos fig cf al ca pt pts hx dx".split()
)
_BOUNDARY = re.compile(r"[.!?;](?=\s)|\n[ \t]*\n|\n(?=[ \t]*(?:[-*\u2022]|\d{1,2}[.)])[ \t])")
_LAST_WORD = re.compile(r"([A-Za-z.]+|\d+)$")


def split_sentences(
    text: str, start: int = 0, end: int | None = None, section: str = ""
) -> list[Span]:
    """Sentences of ``text[start:end]`` as spans into ``text`` (whitespace trimmed)."""
    end = len(text) if end is None else end
    out: list[Span] = []
    s = start

    def emit(a: int, b: int) -> None:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append(Span(a, b, section))

    for m in _BOUNDARY.finditer(text, start, end):
        ch = text[m.start()]
        if ch == ".":
            w = _LAST_WORD.search(text, s, m.start())
            word = w.group(1).lower() if w else ""
            if word in _ABBREV or (len(word) == 1 and word.isalpha() and word != "x"):
                continue
            if w and word.isdigit() and len(word) <= 2 and not text[s : w.start()].strip():
                continue  # a list number "2." at the start of a sentence
        cut = m.start() + 1 if ch in ".!?;" else m.start()
        emit(s, cut)
        s = cut
    emit(s, end)
    return out


def sentences(text: str) -> list[Span]:
    """All sentences of a document, each tagged with its section."""
    out: list[Span] = []
    for sec in split_sections(text):
        out.extend(split_sentences(text, sec.start, sec.end, sec.section))
    return out
