"""Reports and clinical notes (Qt-free): readers, sections, findings in context.

Typical use (CLI and a future "Reports & notes" panel)::

    from medview.notes import read_documents, analyze, patient_documents, check_discordance
    res = read_documents(["bundle.json", "reports/"])      # res.documents, res.problems
    analyses = [analyze(d) for d in res.documents]           # findings with offsets and status
    mine = patient_documents(analyses, patient_id)           # date order
    flag = check_discordance("pneumonia", 0.91, 0.5, mine[-1].findings, mine[-1].normal)

The finding vocabulary and trigger lists live in ``terms.json`` (data, not code).
"""

from medview.notes.analysis import analyze, analyze_all, analyze_text, patient_documents
from medview.notes.discordance import Discordance, check_discordance
from medview.notes.model import LABELS, CodedMention, Document, Finding, NoteAnalysis, ReadResult
from medview.notes.readers import NoteError, document_from_text, read_documents

__all__ = [
    "LABELS",
    "CodedMention",
    "Discordance",
    "Document",
    "Finding",
    "NoteAnalysis",
    "NoteError",
    "ReadResult",
    "analyze",
    "analyze_all",
    "analyze_text",
    "check_discordance",
    "document_from_text",
    "patient_documents",
    "read_documents",
]
