"""What every side panel offers the main window, and how panels are created.

The main window talks to its dock panels only through these types (no ``hasattr``
checks):

* :class:`SidePanel` - every panel: ``notify(str)`` for one-line notifications,
  ``set_study_context(ctx)`` whenever the image (or slice) in view changes, and
  ``shutdown()`` on quit (cancel its task; must not block long).
* :class:`OverlaySource` - a panel that draws on the viewport
  (``overlay_changed(Overlay | None)``); the AI panel.
* :class:`FindingSource` / :class:`FindingSink` - a panel that sends a finding
  ``(SNOMED code, display)`` and one that takes it as a working condition (AI ->
  treatment suggestions).
* :class:`PanelSpec` / :data:`PANEL_SPECS` / :func:`create_panel` - which panels
  exist, in which order, and which of them share the one
  :class:`~medview.records.patient_context.PatientRecords` (records follow the patient
  once: loaded once, linked once, for the forecast and the suggestion panels).

The protocols are ``runtime_checkable``: ``isinstance(panel, OverlaySource)`` says
whether a panel has that part of the contract.

Two building blocks for the panels themselves:

* :class:`PanelTasks` - a mixin (the idea of Orange3's ``ConcurrentWidgetMixin``):
  one :class:`~medview.ui.workers.TaskSlot` per panel, with the busy indicator,
  progress, cancel and errors wired once (:meth:`PanelTasks.run_task`).
* :class:`RecordsPanel` - a panel showing one record patient of the shared
  ``PatientRecords``: the header naming the patient, the patient picker, the link
  line, the saved records loaded once per context, and the request/snapshot check
  that drops results computed for an older patient (issue 10's safety rule).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PySide6.QtCore import Signal, SignalInstance
from PySide6.QtWidgets import (
    QBoxLayout,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medview.records.patient_context import NO_PATIENT, PatientRecords, PatientView
from medview.ui.workers import TaskHandle, TaskSlot

if TYPE_CHECKING:
    from medview.records import RecordSet
    from medview.ui.context import StudyContext

log = logging.getLogger(__name__)

#: the standing notice of the records panels (decision support, not guidance)
NOTICE_STYLE = "QLabel { background: #5a4a00; color: #fff3c4; padding: 4px; border-radius: 3px; }"


@runtime_checkable
class SidePanel(Protocol):
    """A dock panel of the main window (a ``QWidget``)."""

    #: ``Signal(str)``: a one-line, non-modal notification for the user
    notify: SignalInstance

    def set_study_context(self, ctx: StudyContext) -> None:
        """The image or slice in the active viewport changed (cheap when only the slice did)."""
        ...

    def shutdown(self) -> None:
        """Cancel the panel's task; nothing is delivered or started afterwards."""
        ...


@runtime_checkable
class OverlaySource(Protocol):
    """A panel that shows a heat map on the viewport."""

    #: ``Signal(object)``: an :class:`~medview.ui.context.Overlay` or ``None``
    overlay_changed: SignalInstance


@runtime_checkable
class FindingSource(Protocol):
    """A panel that sends a finding to other panels."""

    #: ``Signal(str, str)``: (SNOMED CT code, display)
    finding: SignalInstance


@runtime_checkable
class FindingSink(Protocol):
    """A panel that takes a finding as a working condition."""

    def add_working_condition(self, code: str, display: str = "") -> None:
        """Add ``code`` (SNOMED CT) as a working condition and refresh."""
        ...


@runtime_checkable
class AIResultSource(Protocol):
    """A panel with AI results that shows whether a report disagrees (the AI panel)."""

    #: ``Signal(object)``: its latest classifier result for the image in view, or None
    report_result: SignalInstance

    def set_discordance(self, items: list[Any]) -> None:
        """Show the discordances with the report (empty: hide the flag)."""
        ...


@runtime_checkable
class ResultsSource(Protocol):
    """A panel whose result list changes (the AI panel): the audit log listens to it."""

    #: ``Signal()``: results were added or cleared
    results_changed: SignalInstance


@runtime_checkable
class ReportHolder(Protocol):
    """A panel with the patient's reports (Reports & notes)."""

    #: ``Signal(object)``: the list of discordances between AI result and report
    discordance_changed: SignalInstance
    #: ``Signal(object)``: a local-database series to open (a cohort search hit)
    open_series: SignalInstance

    def set_ai_result(self, result: Any) -> None:
        """The AI panel's latest result for the image in view (or None)."""
        ...


@dataclass(frozen=True)
class PanelSpec:
    """One dock panel: ``key`` in ``MainWindow.panels``, where its class lives, its title."""

    key: str
    module: str
    class_name: str
    title: str
    #: constructed with ``patients=`` (the one shared PatientRecords)
    shares_records: bool = False


#: the side panels, in docking order
PANEL_SPECS: tuple[PanelSpec, ...] = (
    PanelSpec("ai", "medview.ui.panels.ai_panel", "AIPanel", "AI"),
    PanelSpec("forecast", "medview.ui.panels.forecast_panel", "ForecastPanel", "Forecast", True),
    PanelSpec(
        "suggest",
        "medview.ui.panels.suggest_panel",
        "SuggestionsPanel",
        "Treatment suggestions",
        True,
    ),
    # "&&": a lone "&" would be a mnemonic in the dock's title and tab
    PanelSpec("notes", "medview.ui.panels.notes_panel", "NotesPanel", "Reports && notes", True),
    PanelSpec("labelmap", "medview.ui.panels.volume_ai_panel", "VolumeAIPanel", "CT label map"),
)


def create_panel(spec: PanelSpec, parent: QWidget, patients: PatientRecords) -> SidePanel:
    """Import and construct the panel of ``spec`` (imports are lazy: pyqtgraph, torch).

    Raises whatever the import or the constructor raises (the caller leaves the dock
    out with a warning); ``TypeError`` when the class does not meet :class:`SidePanel`.
    """
    cls = getattr(importlib.import_module(spec.module), spec.class_name)
    panel = cls(parent, patients=patients) if spec.shares_records else cls(parent)
    if not isinstance(panel, SidePanel):
        raise TypeError(f"{spec.module}.{spec.class_name} is not a side panel")
    return panel


# -- the task mixin --------------------------------------------------------------


class PanelTasks:
    """One task slot for a panel, with busy, progress, cancel and errors wired once.

    Use with a ``QWidget`` that has a ``notify = Signal(str)``: call
    :meth:`init_tasks` first in ``__init__``, give the widgets with
    :meth:`task_widgets` (or make them with :meth:`task_row`), then start work with
    :meth:`run_task`. While a task runs the progress bar shows (hidden when idle
    unless ``hide_when_idle=False``) and the cancel button is enabled; progress
    messages go to the status label (or into the bar's text); an error goes to the
    status label and to ``notify``, prefixed with :attr:`task_error_prefix`.
    Override :meth:`on_task_busy`, :meth:`on_task_progress` or :meth:`on_task_error`
    to add to that.
    """

    #: resolution of the progress bar
    PROGRESS_STEPS = 1000
    #: put before an error message sent to ``notify`` (e.g. "AI: ")
    task_error_prefix = ""

    notify: SignalInstance
    _slot: TaskSlot
    progress: QProgressBar | None
    cancel_button: QPushButton | None
    _task_status: QLabel | None
    _hide_idle: bool

    def init_tasks(self) -> None:
        """Create the slot (call once, early in ``__init__``)."""
        assert isinstance(self, QWidget), "PanelTasks is a mixin for QWidget panels"
        self._slot = TaskSlot(self)
        self.progress = None
        self.cancel_button = None
        self._task_status = None
        self._hide_idle = True

    def task_widgets(
        self,
        progress: QProgressBar | None,
        cancel_button: QPushButton | None,
        status: QLabel | None = None,
        hide_when_idle: bool = True,
    ) -> None:
        """The widgets that show the task (any may be None)."""
        self.progress, self.cancel_button = progress, cancel_button
        self._task_status, self._hide_idle = status, hide_when_idle
        if progress is not None:
            progress.setRange(0, self.PROGRESS_STEPS)
            progress.setValue(0)
            progress.setVisible(not hide_when_idle)
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(lambda _checked=False: self.cancel())

    def task_row(self, status: QLabel | None = None) -> QHBoxLayout:
        """A row with ``status`` (if given), a progress bar and a Cancel button."""
        assert isinstance(self, QWidget)
        row = QHBoxLayout()
        bar = QProgressBar(self)
        bar.setTextVisible(True)
        button = QPushButton("Cancel", self)
        if status is not None:
            row.addWidget(status, 1)
            row.addWidget(bar)
        else:
            row.addWidget(bar, 1)
        row.addWidget(button)
        self.task_widgets(bar, button, status)
        return row

    @property
    def slot(self) -> TaskSlot:
        """The panel's task slot (``busy``, ``current``)."""
        return self._slot

    @property
    def tasks_closed(self) -> bool:
        """The panel was shut down: nothing starts or arrives any more."""
        return self._slot.closed

    def run_task(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_finished: Callable[[TaskHandle], None] | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> TaskHandle | None:
        """Run ``fn`` in the panel's slot (cancelling its running task); see TaskSlot.run."""
        return self._slot.run(
            fn,
            *args,
            on_result=on_result,
            on_partial=on_partial,
            on_progress=self.on_task_progress,
            on_error=on_error or self.on_task_error,
            on_busy=self.on_task_busy,
            on_finished=on_finished,
            name=name,
            **kwargs,
        )

    def cancel_task(self, name: str | None = None) -> bool:
        """Cancel the running task (only if it is called ``name``, when given).

        True if a task was running and is cancelled; the busy display ends either way
        unless ``name`` did not match.
        """
        current = self._slot.current
        if name is not None and (current is None or current.name != name):
            return False
        was_busy = self._slot.busy
        self._slot.cancel()
        self.on_task_busy(False)
        return was_busy

    def cancel(self) -> None:
        """The Cancel button: cancel the running task."""
        self.cancel_task()

    def close_tasks(self) -> None:
        """Cancel the task and refuse new ones (``shutdown``)."""
        self._slot.close()

    # -- hooks -------------------------------------------------------------------
    def on_task_busy(self, on: bool, what: str = "") -> None:
        """A task starts (``on``, called ``what``) or the panel's last task ended."""
        bar, button, status = self.progress, self.cancel_button, self._task_status
        if button is not None:
            button.setEnabled(on)
        if bar is not None:
            if self._hide_idle:
                bar.setVisible(on)
            if on:
                bar.setValue(0)
                bar.setFormat("%p%")
        if on and what:
            if status is not None:
                status.setText(f"{what}...")
            elif bar is not None:
                bar.setFormat(f"{what}... %p%")

    def on_task_progress(self, fraction: float, message: str) -> None:
        """Progress of the running task, in [0, 1], with an optional message."""
        bar, status = self.progress, self._task_status
        if bar is not None:
            bar.setValue(int(round(fraction * self.PROGRESS_STEPS)))
        if message:
            if status is not None:
                status.setText(message)
            elif bar is not None:
                bar.setFormat(f"{message} %p%")

    def on_task_error(self, message: str) -> None:
        """The task failed with a one-line ``message``."""
        if self._task_status is not None:
            self._task_status.setText(message)
        self.notify.emit(f"{self.task_error_prefix}{message}")


# -- records panels ----------------------------------------------------------------


def _load_saved(state: Any = None) -> RecordSet | None:
    """Worker: all records saved in the local database (once per shared context)."""
    from medview.records import load_saved_records

    return load_saved_records()


class RecordsPanel(QWidget, PanelTasks):
    """A panel that shows one record patient of a shared :class:`PatientRecords`.

    Constructed as ``Panel(parent, records=None, patients=None)``: a subclass builds
    its widgets in :meth:`_build` (:meth:`build_patient_rows` makes the notice, the
    header, the patient picker and the link line), after which the panel follows
    ``patients``. It sets :attr:`message_label` and implements
    :meth:`_patient_items`, :meth:`_no_match_text`, :meth:`_loaded_text`,
    :meth:`_clear_results` and :meth:`_view_applied` (start its computation for the
    new snapshot). Computations go through :meth:`begin_request` and their
    results through :meth:`accept_result`, which drops a result asked for under an
    older snapshot or for another patient.
    """

    notify = Signal(str)
    #: where :meth:`_show_message` writes (set by ``_build``)
    message_label: QLabel
    #: name of the panel's computation task (cancelled when the patient changes)
    COMPUTE_TASK = "compute"
    #: what the link line says when the database holds no records
    NO_SAVED_RECORDS = "no records loaded"

    def __init__(
        self,
        parent: QWidget | None = None,
        records: RecordSet | None = None,
        patients: PatientRecords | None = None,
    ) -> None:
        super().__init__(parent)
        self.init_tasks()
        self.result: Any = None
        self.patients = patients if patients is not None else PatientRecords()
        self._view: PatientView = self.patients.view
        self.shown: PatientView = self._view  # the snapshot the display was computed for
        self._request = 0  # id of the request whose result may still be shown
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self._build(lay)
        self._follow_patients(records)

    def build_patient_rows(
        self, lay: QBoxLayout, notice: str, header_tip: str, buttons: list[QWidget]
    ) -> None:
        """The standing notice, the header naming the patient, the picker row, the link line."""
        self.notice = QLabel(notice)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet(NOTICE_STYLE)
        lay.addWidget(self.notice)
        self.header = QLabel(NO_PATIENT)
        self.header.setWordWrap(True)
        self.header.setStyleSheet("QLabel { font-weight: bold; }")
        self.header.setToolTip(header_tip)
        lay.addWidget(self.header)
        top = QHBoxLayout()
        self.patient_combo = QComboBox()
        self.patient_combo.setToolTip("record patient (follows the study in view)")
        self.patient_combo.currentIndexChanged.connect(self._patient_picked)
        top.addWidget(QLabel("Patient"))
        top.addWidget(self.patient_combo, 1)
        for button in buttons:
            top.addWidget(button)
        lay.addLayout(top)
        self.link_label = QLabel("no records loaded")
        self.link_label.setWordWrap(True)
        lay.addWidget(self.link_label)

    def _follow_patients(self, records: RecordSet | None) -> None:
        """Show the context's snapshot and follow it from now on (end of ``__init__``)."""
        self._apply_view(self.patients.view)
        self.patients.subscribe(self._apply_view)
        if records is not None:
            self.set_records(records)

    # -- panel contract ------------------------------------------------------------
    def set_study_context(self, ctx: StudyContext) -> None:
        """Follow the patient in view; the saved records load once per shared context."""
        self.patients.set_study(ctx.patient_id, ctx.patient_name, ctx.birth_date)
        if (ctx.patient_id or ctx.patient_name) and self.patients.claim_database_load():
            self.run_task(_load_saved, on_result=self._saved_loaded, name="load saved records")

    def shutdown(self) -> None:
        """Stop following the context and cancel the task; nothing starts afterwards."""
        self.patients.unsubscribe(self._apply_view)
        self.close_tasks()

    def cancel(self) -> None:
        """Cancel the running task; a result still on its way is dropped."""
        self._request += 1
        self.cancel_task()
        self._show_message("cancelled")

    # -- records -------------------------------------------------------------------
    @property
    def records(self) -> RecordSet | None:
        """The record set of the current snapshot, or None."""
        return self._view.records

    @property
    def patient(self) -> str:
        """Record patient id of the current snapshot ("" for none)."""
        return self._view.patient_id

    def set_records(self, records: RecordSet | None) -> None:
        """Use ``records``; the shared context relinks the patient in view."""
        self.patients.set_records(records)

    def select_patient(self, patient_id: str) -> None:
        """Pick a record patient by hand (every panel sharing the context follows)."""
        self.patients.select(patient_id)

    def _saved_loaded(self, records: RecordSet | None) -> None:
        if self.patients.records is not None:
            return  # records were opened meanwhile: they win
        if records is not None and records.patients:
            self.set_records(records)
        else:
            self.link_label.setText(self.NO_SAVED_RECORDS)

    def _patient_picked(self, index: int) -> None:
        """The user picked a patient: the shared context changes, every panel follows."""
        pid = self.patient_combo.itemData(index) if index >= 0 else ""
        self.patients.select(str(pid or ""))

    def _apply_view(self, view: PatientView) -> None:
        """Show ``view``: everything of the old patient goes, then the new one's."""
        if self.tasks_closed:
            return
        self._view_changing(view)
        self._view = view
        self._request += 1  # results asked for under an older snapshot are dropped
        self.cancel_task(self.COMPUTE_TASK)
        self._clear_results()
        self.shown = view
        self.header.setText(view.header)
        self.link_label.setText(self._link_text(view))
        self.patient_combo.blockSignals(True)
        self.patient_combo.clear()
        if view.records is not None:
            for label, pid in self._patient_items(view.records):
                self.patient_combo.addItem(label, pid)
        self.patient_combo.setCurrentIndex(self.patient_combo.findData(view.patient_id))
        self.patient_combo.blockSignals(False)
        self._view_applied()

    # -- requests ------------------------------------------------------------------
    def begin_request(self) -> tuple[int, PatientView] | None:
        """A new computation: (request id, snapshot), or None (nothing to compute:
        the running computation is cancelled and the results cleared)."""
        self._request += 1
        view = self._view
        if self.tasks_closed or view.records is None or not view.patient_id:
            self.end_compute()
            return None
        return self._request, view

    def end_compute(self) -> None:
        """Cancel a running computation (a records load in the slot goes on), clear."""
        self.cancel_task(self.COMPUTE_TASK)
        self._clear_results()

    def is_current(self, req: int, view: PatientView | None = None) -> bool:
        """May a result of request ``req`` (asked for under ``view``) still be shown?"""
        if req != self._request or self.tasks_closed:
            return False
        if view is None:
            return True
        return view is self._view and self.patients.is_current(view.generation, view.patient_id)

    def accept_result(
        self, req: int | None, view: PatientView | None, patient: str, what: str
    ) -> PatientView | None:
        """The snapshot to show a result of ``patient`` under, or None to drop it.

        ``req``/``view`` are the request and snapshot it was asked for (None: the
        current ones). Accepting sets the header from that same snapshot.
        """
        view = view if view is not None else self._view
        if req is not None and not self.is_current(req, view):
            log.debug("dropped %s of an older request (%s)", what, patient)
            return None
        if patient != view.patient_id:
            log.warning("dropped %s of %s while %s is shown", what, patient, view.patient_id)
            return None
        self.shown = view
        self.header.setText(view.header)
        return view

    def _on_error(self, message: str, req: int | None = None) -> None:
        """A task failed; an error of an older request is dropped."""
        if self.tasks_closed or (req is not None and not self.is_current(req)):
            return
        self._show_error(message)

    def on_task_error(self, message: str) -> None:
        self._on_error(message)

    # -- what a subclass provides --------------------------------------------------
    def _view_changing(self, view: PatientView) -> None:
        """Called before the panel switches to ``view`` (``self._view`` is the old one)."""

    def _patient_items(self, records: RecordSet) -> list[tuple[str, str]]:
        """(label, patient id) of the picker, in order."""
        raise NotImplementedError

    def _link_text(self, view: PatientView) -> str:
        """The line saying how the record patient was found (or why none was)."""
        rs = view.records
        if rs is None:
            return "no records loaded"
        if view.how == "link":
            return view.reason
        if view.link is not None and not view.selected:
            return self._no_match_text(view)
        return self._loaded_text(view, rs)

    def _build(self, lay: QVBoxLayout) -> None:
        """Create the panel's widgets in ``lay``."""
        raise NotImplementedError

    def _no_match_text(self, view: PatientView) -> str:
        """The link line when the study's patient is not in the records."""
        raise NotImplementedError

    def _loaded_text(self, view: PatientView, records: RecordSet) -> str:
        """The link line otherwise (records loaded, a patient picked or none)."""
        raise NotImplementedError

    def _clear_results(self) -> None:
        """Remove everything computed for the previous request."""
        raise NotImplementedError

    def _view_applied(self) -> None:
        """The new snapshot is shown: start its computation."""
        raise NotImplementedError

    def _show_message(self, text: str) -> None:
        """Show a short status line (in :attr:`message_label`)."""
        self.message_label.setText(text)

    def _show_error(self, message: str) -> None:
        """Show a task's one-line error (and notify)."""
        self._show_message(message)
        self.notify.emit(f"{self.task_error_prefix}{message}")
