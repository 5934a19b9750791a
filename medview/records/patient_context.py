"""One patient in view, for every records panel: :class:`PatientRecords` (Qt-free).

The forecast and the treatment-suggestion panels show one record patient's data.
They share one :class:`PatientRecords`: it holds the loaded
:class:`~medview.records.RecordSet` (from a file or the local database, loaded
once), links it to the imaging patient of the study in view once (with
:func:`~medview.records.link.link_patient`), keeps a hand-picked patient, and
hands out an immutable :class:`PatientView` snapshot. Every change (new records,
another study patient, a pick, a failed link) makes a new snapshot with a higher
``generation`` and calls the listeners; a panel computes its display from one
snapshot and drops any worker result requested under an older generation, so
a header can never name one patient over another patient's data.

Policy (never a silent guess):

* a study patient in view: the record patient it links to, else nobody
  ("no match" or "ambiguous", with the reason);
* no study patient: the hand-picked patient while it is in the records, else the
  only patient of a one-patient record set (a CGM file), else nobody;
* new records or another study patient drop an earlier hand pick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from medview.records.link import LinkResult, _as_date, link_patient
from medview.records.model import RecordSet

log = logging.getLogger(__name__)

NO_PATIENT = "No patient selected"


def parse_dicom_date(value: date | datetime | str | None) -> date | None:
    """A DICOM DA (``YYYYMMDD``) or ISO date as a :class:`date`; None when empty or invalid.

    The one date parser of the records panels and the main window (the linker's).
    """
    return _as_date(value)


def patient_display_name(records: RecordSet | None, patient_id: str) -> str:
    """``"Name (born YYYY-MM-DD)"`` of a record patient, or its id when it has no name."""
    if records is None or not patient_id:
        return ""
    p = records.patients.get(patient_id)
    if p is None:
        return patient_id
    born = f" (born {p.birth_date.isoformat()})" if p.birth_date else ""
    return f"{p.name or patient_id}{born}"


@dataclass(frozen=True)
class StudyPatient:
    """The imaging patient of the study in view (all empty: no study)."""

    patient_id: str = ""
    name: str = ""
    birth_date: date | None = None

    @property
    def empty(self) -> bool:
        return not (self.patient_id or self.name)

    @property
    def label(self) -> str:
        return (self.name or "").replace("^", " ").strip() or self.patient_id


@dataclass(frozen=True)
class PatientView:
    """One immutable snapshot: which record patient is shown, from which records.

    ``patient_id`` is empty when no patient is selected; then ``reason`` says why
    (no records, no match, ambiguous, nobody picked).
    """

    generation: int
    records: RecordSet | None
    patient_id: str
    name: str
    study: StudyPatient
    how: str  # "link" | "pick" | "only" | "none"
    reason: str
    link: LinkResult | None = None

    @property
    def selected(self) -> bool:
        return bool(self.patient_id)

    @property
    def header(self) -> str:
        """The panel header: the patient the displayed data belongs to."""
        if not self.patient_id:
            return NO_PATIENT
        return f"Patient: {self.name}"


Listener = Callable[[PatientView], None]


class PatientRecords:
    """Shared, Qt-free records context of the panels; see the module docstring.

    Used from one thread (the GUI's); listeners run synchronously inside each change.
    """

    def __init__(self, records: RecordSet | None = None) -> None:
        self._records: RecordSet | None = None
        self._study = StudyPatient()
        self._picked = ""
        self._generation = 0
        self._db_claimed = False
        self._listeners: list[Listener] = []
        self._view = self._compute()
        if records is not None:
            self.set_records(records)

    # -- observers -------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(view)`` after every change (not for the current view)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- state -------------------------------------------------------------------
    @property
    def view(self) -> PatientView:
        return self._view

    @property
    def generation(self) -> int:
        return self._view.generation

    @property
    def records(self) -> RecordSet | None:
        return self._records

    @property
    def patient_id(self) -> str:
        return self._view.patient_id

    @property
    def study(self) -> StudyPatient:
        return self._study

    def is_current(self, generation: int, patient_id: str) -> bool:
        """True when a result asked for under ``generation`` for ``patient_id`` may be shown."""
        v = self._view
        return generation == v.generation and bool(patient_id) and patient_id == v.patient_id

    def claim_database_load(self) -> bool:
        """True once, for the one panel that loads the saved records (none loaded yet)."""
        if self._db_claimed or self._records is not None:
            return False
        self._db_claimed = True
        return True

    # -- changes -----------------------------------------------------------------
    def set_records(self, records: RecordSet | None) -> PatientView:
        """Use new records (None: none): drops a hand pick and links the study patient again."""
        self._records = records
        self._picked = ""
        return self._changed()

    def set_study(
        self,
        patient_id: str = "",
        name: str = "",
        birth_date: date | datetime | str | None = None,
    ) -> bool:
        """Follow the imaging patient; False (nothing happens) when it did not change."""
        study = StudyPatient(
            str(patient_id or "").strip(), str(name or "").strip(), parse_dicom_date(birth_date)
        )
        if study == self._study:
            return False
        self._study = study
        self._picked = ""
        self._changed()
        return True

    def select(self, patient_id: str) -> PatientView:
        """Pick a record patient by hand ("" for nobody); an unknown id selects nobody."""
        pid = str(patient_id or "")
        if self._records is None or pid not in self._records.patients:
            pid = ""
        if pid == self._view.patient_id:
            return self._view
        self._picked = pid
        return self._changed()

    # -- internals ---------------------------------------------------------------
    def _changed(self) -> PatientView:
        self._generation += 1
        self._view = self._compute()
        for listener in list(self._listeners):
            try:
                listener(self._view)
            except Exception:  # one broken panel must not stop the others
                log.exception("patient-context listener failed")
        return self._view

    def _compute(self) -> PatientView:
        rs, study, gen = self._records, self._study, self._generation

        def view(pid: str, how: str, reason: str, link: LinkResult | None = None) -> PatientView:
            return PatientView(
                gen, rs, pid, patient_display_name(rs, pid), study, how, reason, link
            )

        if rs is None:
            return view("", "none", "no records loaded")
        if self._picked and self._picked in rs.patients:
            also = f"; the study in view is {study.label}" if not study.empty else ""
            return view(self._picked, "pick", f"picked by hand{also}")
        if not study.empty:
            res = link_patient(rs, study.patient_id, study.name, study.birth_date)
            if res.matched and res.record_patient_id in rs.patients:
                return view(res.record_patient_id or "", "link", res.message, res)
            return view(
                "",
                "none",
                f"the study's patient ({study.label}) is not in these records: {res.message}",
                res,
            )
        if len(rs.patients) == 1:
            return view(next(iter(rs.patients)), "only", "the only patient in these records")
        return view("", "none", f"{len(rs.patients)} record patients loaded; pick a patient")
