"""What the Reports & notes panel runs on its workers (Qt-free, tested without Qt)."""

from __future__ import annotations

from medview.notes.model import STATUSES, NoteAnalysis
from medview.notes.store import import_notes, patient_analyses
from medview.tasks import TaskState, ensure_state


def load_patient_notes(
    patient: str, sources: list[str], state: TaskState | None = None
) -> tuple[list[NoteAnalysis], list[str]]:
    """(patient's analyses in date order, problems): first stores the notes of ``sources``.

    ``sources`` are record files (FHIR) whose notes are not stored yet; a file that
    cannot be read is one line in the problems.
    """
    state = ensure_state(state)
    problems: list[str] = []
    if sources:
        state.progress(0.05, "reading the notes of the records")
        res = import_notes(sources, state=state)
        problems = [str(p) for p in res.problems]
    return patient_analyses(patient, state=state), problems


def prefetch_patients(patients: list[str], state: TaskState | None = None) -> int:
    """Analyse each patient's stored documents ahead: ``state.partial((pid, analyses))``."""
    state = ensure_state(state)
    for i, pid in enumerate(patients):
        state.progress(i / max(len(patients), 1), "")
        state.partial((pid, patient_analyses(pid, state=state)))
    return len(patients)


def summary(analysis: NoteAnalysis) -> str:
    """One line for a document list: ``"normal, 2 absent"`` / ``"no chest findings"``."""
    counts: dict[str, int] = {}
    for f in analysis.findings:
        if f.experiencer == "patient":
            counts[f.status] = counts.get(f.status, 0) + 1
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts.get(s)]
    if analysis.normal:
        parts.insert(0, "normal")
    return ", ".join(parts) or "no chest findings"
