"""Link the imaging patient (DICOM PatientID, PatientName, PatientBirthDate) to records.

Order: PatientID against each record patient's id and identifiers (MRN, SSN...);
then name and birth date together (names compared as word sets, so DICOM
``Family^Given`` matches ``Given Family``). Two or more candidates, or none, give
an explicit "no match" result with the reason - never a silent guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from medview.records.model import Patient, RecordSet


@dataclass
class LinkResult:
    """Outcome of :func:`link_patient`. ``matched`` is False for "no match" and "ambiguous"."""

    matched: bool
    record_patient_id: str | None = None
    method: str = "none"  # "patient_id" | "name_birth_date" | "ambiguous" | "none"
    message: str = ""
    candidates: list[str] = field(default_factory=list)

    @property
    def patient(self) -> str | None:
        """Alias of ``record_patient_id``."""
        return self.record_patient_id

    def as_dict(self) -> dict:
        return {
            "matched": self.matched,
            "record_patient_id": self.record_patient_id,
            "method": self.method,
            "message": self.message,
            "candidates": list(self.candidates),
        }


def _tokens(name: str, strip_digits: bool = False) -> frozenset[str]:
    s = name.lower()
    if strip_digits:
        s = re.sub(r"\d+", "", s)
    return frozenset(t for t in re.split(r"[\s\^,.;]+", s) if t)


def _names_match(a: str, b: str) -> bool:
    for strip in (False, True):
        ta, tb = _tokens(a, strip), _tokens(b, strip)
        small, big = (ta, tb) if len(ta) <= len(tb) else (tb, ta)
        if len(small) >= 2 and small <= big:
            return True
        if len(small) == 1 and small == big:
            return True
    return False


def _as_date(v: date | datetime | str | None) -> date | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    s = str(v).strip()
    try:
        if len(s) == 8 and s.isdigit():  # DICOM DA
            return date(int(s[:4]), int(s[4:6]), int(s[6:]))
        return date.fromisoformat(s[:10])
    except ValueError:
        return None


def _describe(p: Patient) -> str:
    born = p.birth_date.isoformat() if p.birth_date else "?"
    return f"{p.id} ({p.name or 'no name'}, born {born})"


def _verdict(hits: list[Patient], method: str, matched: str, ambiguous: str) -> LinkResult | None:
    """Linked by ``method`` when exactly one record patient is in ``hits`` ("``matched``:
    who"), not linked when several are (``ambiguous``), None when there is none."""
    if len(hits) == 1:
        return LinkResult(True, hits[0].id, method, f"{matched}: {_describe(hits[0])}")
    if len(hits) > 1:
        return LinkResult(False, None, "ambiguous", ambiguous, [p.id for p in hits])
    return None


def link_patient(
    records: RecordSet,
    patient_id: str = "",
    name: str = "",
    birth_date: date | datetime | str | None = None,
) -> LinkResult:
    """Find the record patient of an imaging patient; see the module docstring."""
    pid = (patient_id or "").strip()
    if pid:
        key = pid.lower()
        hits = [
            p
            for p in records.patients.values()
            if p.id.lower() == key or any(i.strip().lower() == key for i in p.identifiers)
        ]
        found = _verdict(
            hits,
            "patient_id",
            f"matched by PatientID {pid!r}",
            f"PatientID {pid!r} matches {len(hits)} record patients; not linked",
        )
        if found is not None:
            return found
    born = _as_date(birth_date)
    if name and name.strip() and born is not None:
        hits = [
            p
            for p in records.patients.values()
            if p.birth_date == born and p.name and _names_match(name, p.name)
        ]
        found = _verdict(
            hits,
            "name_birth_date",
            f"matched by name {name!r} and birth date {born}",
            f"{len(hits)} record patients named {name!r} born {born}; not linked",
        )
        if found is not None:
            return found
    tried = []
    if pid:
        tried.append(f"PatientID {pid!r}")
    if name and name.strip():
        tried.append(f"name {name!r} born {born}" if born else f"name {name!r} (no birth date)")
    what = " or ".join(tried) if tried else "no PatientID, name or birth date given"
    return LinkResult(
        False,
        None,
        "none",
        f"no match in {len(records.patients)} record patients ({what})",
    )
