"""Data model for reports and clinical notes (Qt-free).

A :class:`Document` is one report or note as read from a file (plain text, FHIR
``DiagnosticReport`` / ``DocumentReference``, IU OpenI XML, DICOM SR). Analysing it
(:func:`medview.notes.analyze`) gives a :class:`NoteAnalysis`: the chest
:class:`Finding` mentions with status, history flag, section and character offsets
into ``Document.text``, the document-level ``normal`` flag, and the problems and
medications linked to the patient's coded records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medview.errors import FileProblem

#: The finding labels, in the order the CLI and the evaluation list them.
LABELS: tuple[str, ...] = (
    "cardiomegaly",
    "pleural_effusion",
    "atelectasis",
    "lung_opacity",
    "consolidation",
    "pneumonia",
    "edema",
    "nodule",
    "granuloma",
    "emphysema",
    "pneumothorax",
    "fracture",
    "scoliosis",
    "hiatal_hernia",
    "scarring",
    "support_device",
)

STATUSES: tuple[str, ...] = ("present", "absent", "uncertain")


@dataclass
class Document:
    """One report or note.

    ``id`` is the path for a plain file, or ``path#resource-id`` for a document
    inside a bundle / archive. ``date`` is ISO 8601 (``YYYY-MM-DD`` or a full
    timestamp) or ``None``. ``codes`` holds the coded records of the same patient
    from the same source (``{"problems": [(display, code)], "medications": [...]}``)
    used to link problems and medications; ``meta`` keeps source-specific extras
    (e.g. the MeSH headings of an IU report under ``"mesh"``).
    """

    id: str
    text: str
    source: str
    kind: str  # "text" | "fhir-diagnosticreport" | "fhir-documentreference" | "iu-xml" | "dicom-sr"
    patient: str | None = None
    date: str | None = None
    title: str = ""
    codes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """A mention of a chest finding in a document.

    ``start``/``end`` are character offsets into ``Document.text`` (``text ==
    document.text[start:end]``); ``sentence_start``/``sentence_end`` bound the
    sentence that holds it (the evidence a panel highlights). ``experiencer`` is
    ``"patient"`` or ``"other"`` (family history and the like).
    """

    label: str
    status: str  # "present" | "absent" | "uncertain"
    historical: bool
    section: str
    text: str
    start: int
    end: int
    sentence_start: int
    sentence_end: int
    experiencer: str = "patient"

    def as_dict(self) -> dict[str, Any]:
        """The CLI JSON form: exactly label, status, historical, section, text, start, end."""
        return {"label": self.label, **_span_json(self)}


@dataclass(frozen=True)
class CodedMention:
    """A problem or medication named in a note and linked to a coded record."""

    kind: str  # "problem" | "medication"
    display: str  # the record's display name
    code: str  # SNOMED CT (problem) or RxNorm (medication)
    status: str
    historical: bool
    section: str
    text: str
    start: int
    end: int

    def as_dict(self) -> dict[str, Any]:
        """The CLI JSON form: display, code, then the fields it shares with a finding."""
        return {"display": self.display, "code": self.code, **_span_json(self)}


def _span_json(m: Finding | CodedMention) -> dict[str, Any]:
    """What a finding and a coded mention say alike about where and how a note names
    something: status, historical, section, text, start, end."""
    return {
        "status": m.status,
        "historical": m.historical,
        "section": m.section,
        "text": m.text,
        "start": m.start,
        "end": m.end,
    }


@dataclass
class NoteAnalysis:
    """Everything found in one document."""

    document: Document
    findings: list[Finding]
    normal: bool
    problems: list[CodedMention] = field(default_factory=list)
    medications: list[CodedMention] = field(default_factory=list)

    def label_status(self) -> dict[str, str]:
        """Document-level status per mentioned label (patient's own findings only).

        ``present`` if any mention is present, else ``uncertain`` if any is, else
        ``absent``; labels never mentioned are left out.
        """
        out: dict[str, str] = {}
        rank = {"absent": 0, "uncertain": 1, "present": 2}
        for f in self.findings:
            if f.experiencer != "patient":
                continue
            old = out.get(f.label)
            if old is None or rank[f.status] > rank[old]:
                out[f.label] = f.status
        return out

    def as_dict(self) -> dict[str, Any]:
        """The ``medview notes --json`` object for this document."""
        return {
            "document": self.document.id,
            "patient": self.document.patient,
            "normal": self.normal,
            "findings": [f.as_dict() for f in self.findings if f.experiencer == "patient"],
            "problems": [p.as_dict() for p in self.problems],
            "medications": [m.as_dict() for m in self.medications],
        }


@dataclass
class ReadResult:
    """Documents read from some paths, and the files that could not be read."""

    documents: list[Document] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
