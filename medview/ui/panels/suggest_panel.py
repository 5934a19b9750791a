"""Treatment suggestions dock: ranked treatments with score bars and their evidence.

Follows the patient of the study in view (``set_study_context``): the records
(given with :meth:`SuggestionsPanel.set_records`, opened with "Records..." - which
also saves them in the local database - or the ones saved there earlier) are linked to the imaging patient by PatientID,
or by name and birth date; when nothing matches the panel says so and the
patient can be picked by hand. Suggestions are computed on a worker
(:class:`~medview.ui.workers.TaskSlot`); the list shows score bars, the evidence
of the selected suggestion in words and numbers, filters by kind, the patient's
current treatments (never suggested) and a "why" view of the most similar
patients with their shared conditions. Working conditions are added by hand
(SNOMED CT code) or from an AI finding (:meth:`add_working_condition`). A
standing notice says these are statistics for decision support, not guidance.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.ui.context import StudyContext
from medview.ui.workers import TaskSlot

log = logging.getLogger(__name__)

KIND_LABELS = (
    ("medication", "Medications"),
    ("procedure", "Procedures"),
    ("careplan", "Care plans"),
)


# -- worker functions (run on the pool; Qt-free) -------------------------------
def _load_path(path: str, state=None) -> Any:
    """Import records and keep them in the local database for the next session."""
    from medview.records import import_records

    return import_records(path, state=state)


def _load_saved(state=None) -> Any:
    from medview.records import load_saved_records

    return load_saved_records()


def _compute(records, recommender, patient: str, k: int, working, kinds, state=None) -> Any:
    """(recommender, SuggestionResult); builds the recommender once per record set."""
    from medview.treatments import Recommender

    if state is not None:
        state.progress(0.1, "building the treatment matrix")
    if recommender is None:
        recommender = Recommender.from_records(records)
    if state is not None:
        state.progress(0.6, "ranking treatments")
    result = recommender.suggest(patient, k=k, working=working, kinds=kinds)
    return recommender, result


class SuggestionsPanel(QWidget):
    """Dock panel; see the module docstring."""

    notify = Signal(str)
    suggestions_ready = Signal(object)  # the SuggestionResult shown (tests, other panels)

    def __init__(self, parent: QWidget | None = None, records: Any | None = None) -> None:
        super().__init__(parent)
        self.records = None
        self.result = None
        self.working: list[tuple[str, str]] = []
        self._recommender = None
        self._ctx = StudyContext()
        self._context_key: tuple = ()
        self._db_tried = False
        self._slot = TaskSlot(self)
        self._build()
        if records is not None:
            self.set_records(records)

    # -- layout --------------------------------------------------------------
    def _build(self) -> None:
        from medview.treatments.recommender import NOTICE

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.notice = QLabel(NOTICE)
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet(
            "QLabel { background: #5a4a00; color: #fff3c4; padding: 4px; border-radius: 3px; }"
        )
        lay.addWidget(self.notice)

        top = QHBoxLayout()
        self.patient_combo = QComboBox()
        self.patient_combo.setToolTip("record patient (follows the study in view)")
        self.patient_combo.currentIndexChanged.connect(self._patient_changed)
        open_rec = QPushButton("Records...")
        open_rec.setToolTip("open FHIR JSON/NDJSON or a Synthea CSV folder")
        open_rec.clicked.connect(self._open_records)
        top.addWidget(QLabel("Patient"))
        top.addWidget(self.patient_combo, 1)
        top.addWidget(open_rec)
        lay.addLayout(top)

        self.link_label = QLabel("no records loaded")
        self.link_label.setWordWrap(True)
        lay.addWidget(self.link_label)

        filt = QHBoxLayout()
        self.kind_boxes: dict[str, QCheckBox] = {}
        for kind, label in KIND_LABELS:
            box = QCheckBox(label)
            box.setChecked(True)
            box.toggled.connect(self._filters_changed)
            self.kind_boxes[kind] = box
            filt.addWidget(box)
        filt.addStretch(1)
        filt.addWidget(QLabel("Top"))
        self.k_spin = QSpinBox()
        self.k_spin.setRange(1, 30)
        self.k_spin.setValue(8)
        self.k_spin.valueChanged.connect(self._filters_changed)
        filt.addWidget(self.k_spin)
        lay.addLayout(filt)

        cond = QHBoxLayout()
        self.condition_edit = QLineEdit()
        self.condition_edit.setPlaceholderText("working condition: SNOMED CT code")
        self.condition_edit.returnPressed.connect(self._add_typed_condition)
        add = QPushButton("Add")
        add.clicked.connect(self._add_typed_condition)
        clear = QPushButton("Clear")
        clear.setToolTip("remove the working conditions")
        clear.clicked.connect(self.clear_working_conditions)
        cond.addWidget(self.condition_edit, 1)
        cond.addWidget(add)
        cond.addWidget(clear)
        lay.addLayout(cond)
        self.working_label = QLabel("")
        self.working_label.setWordWrap(True)
        lay.addWidget(self.working_label)

        split = QSplitter(Qt.Orientation.Vertical)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Treatment", "Kind", "Score"])
        self.tree.setRootIsDecorated(False)
        self.tree.setColumnWidth(0, 260)
        self.tree.currentItemChanged.connect(self._selection_changed)
        split.addWidget(self.tree)

        self.tabs = QTabWidget()
        self.evidence = QTextBrowser()
        self.tabs.addTab(self.evidence, "Evidence")
        self.why = QTreeWidget()
        self.why.setHeaderLabels(["Similar patient", "Similarity", "Shared conditions"])
        self.why.setRootIsDecorated(False)
        self.tabs.addTab(self.why, "Why (similar patients)")
        self.current_list = QTreeWidget()
        self.current_list.setHeaderLabels(["Treatment", "Kind", "Since", "Status"])
        self.current_list.setRootIsDecorated(False)
        self.tabs.addTab(self.current_list, "Already has")
        split.addWidget(self.tabs)
        lay.addWidget(split, 1)

        bottom = QHBoxLayout()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setVisible(False)
        self.cancel_btn.clicked.connect(self.cancel)
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.progress)
        bottom.addWidget(self.cancel_btn)
        lay.addLayout(bottom)

    # -- contract ------------------------------------------------------------
    def set_study_context(self, ctx: StudyContext) -> None:
        """Follow the imaging patient: link it to the records and show its suggestions."""
        key = (ctx.patient_id, ctx.patient_name, ctx.birth_date)
        self._ctx = ctx
        if key == self._context_key:
            return
        self._context_key = key
        if self.records is None:
            if not self._db_tried and (ctx.patient_id or ctx.patient_name):
                self._db_tried = True
                self._run(_load_saved, on_result=self._saved_loaded, name="load saved records")
            return
        self._link()

    def shutdown(self) -> None:
        """Cancel the task; nothing starts afterwards (widget teardown emits index changes)."""
        self._slot.close()

    def cancel(self) -> None:
        self._slot.cancel()
        self._busy(False)
        self.status.setText("cancelled")

    def add_working_condition(self, code: str, display: str = "") -> None:
        """Add a working condition (by hand or from an AI finding) and refresh."""
        code = str(code).strip()
        if not code:
            return
        if any(c == code for c, _ in self.working):
            return
        if not display and self._recommender is not None:
            display = self._recommender.data.condition_display.get(code, "")
        self.working.append((code, display))
        self._show_working()
        self.notify.emit(f"Treatment suggestions: working condition {display or code} added")
        self.start()

    def clear_working_conditions(self) -> None:
        if self.working:
            self.working.clear()
            self._show_working()
            self.start()

    # -- records -------------------------------------------------------------
    def set_records(self, records: Any) -> None:
        """Use ``records`` (a RecordSet); fills the patient list and relinks."""
        self.records = records
        self._recommender = None
        self.patient_combo.blockSignals(True)
        self.patient_combo.clear()
        for pid, p in sorted(records.patients.items(), key=lambda kv: (kv[1].name, kv[0])):
            born = p.birth_date.isoformat() if p.birth_date else "?"
            self.patient_combo.addItem(f"{p.name or pid} ({born})", pid)
        self.patient_combo.setCurrentIndex(-1)
        self.patient_combo.blockSignals(False)
        n = len(records.patients)
        self.link_label.setText(f"{n} record patients loaded")
        if records.problems:
            self.notify.emit(
                f"records: {len(records.problems)} malformed entries skipped "
                f"(first: {records.problems[0]})"
            )
        self._link()

    def _saved_loaded(self, records: Any) -> None:
        if records is not None and records.patients:
            self.set_records(records)
        else:
            self.link_label.setText("no records loaded (use Records... to open an export)")

    def _open_records(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Records folder (FHIR or Synthea CSV)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "FHIR file", "", "FHIR (*.json *.ndjson)")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        self._run(_load_path, path, on_result=self.set_records, name="load records")

    def _link(self) -> None:
        if self.records is None:
            return
        from medview.records import link_patient

        ctx = self._ctx
        if not (ctx.patient_id or ctx.patient_name):
            if self.patient_combo.currentIndex() < 0 and self.patient_combo.count():
                self.link_label.setText(
                    f"{len(self.records.patients)} record patients; no study in view - "
                    "pick a patient"
                )
            return
        res = link_patient(self.records, ctx.patient_id, ctx.patient_name, ctx.birth_date)
        if res.matched:
            self.link_label.setText(res.message)
            self.select_patient(res.record_patient_id)
        else:
            self.link_label.setText(
                f"No match: the study's patient is not in these records ({res.message}). "
                "Pick a patient by hand."
            )
            self.patient_combo.setCurrentIndex(-1)
            self._clear()

    def select_patient(self, patient_id: str) -> None:
        idx = self.patient_combo.findData(patient_id)
        if idx < 0:
            return
        if idx == self.patient_combo.currentIndex():
            self.start()
        else:
            self.patient_combo.setCurrentIndex(idx)

    @property
    def patient(self) -> str:
        data = self.patient_combo.currentData()
        return str(data) if data else ""

    def kinds(self) -> list[str]:
        return [k for k, box in self.kind_boxes.items() if box.isChecked()]

    # -- computation ---------------------------------------------------------
    def _patient_changed(self, _index: int) -> None:
        self.start()

    def _filters_changed(self, *_args) -> None:
        self.start()

    def _add_typed_condition(self) -> None:
        code = self.condition_edit.text().strip()
        if not code:
            return
        if not code.isdigit():
            self.status.setText(f"{code!r} is not a SNOMED CT code (digits only)")
            return
        self.condition_edit.clear()
        self.add_working_condition(code, "")

    def start(self) -> None:
        """Compute the suggestions of the selected patient on the worker."""
        if self._slot.closed or self.records is None or not self.patient:
            return
        kinds = self.kinds()
        if not kinds:
            self._clear()
            self.status.setText("no kind selected: tick medications, procedures or care plans")
            return
        self._run(
            _compute,
            self.records,
            self._recommender,
            self.patient,
            self.k_spin.value(),
            list(self.working),
            kinds,
            on_result=self._computed,
            name="treatment suggestions",
        )

    def _run(self, fn, *args, on_result, name: str) -> None:
        self._slot.run(
            fn,
            *args,
            on_result=on_result,
            on_progress=self._on_progress,
            on_error=self._on_error,
            on_busy=self._busy,
            name=name,
        )

    def _busy(self, on: bool, what: str = "") -> None:
        self.progress.setVisible(on)
        self.cancel_btn.setVisible(on)
        if on:
            self.progress.setValue(0)
            self.status.setText(f"{what}...")

    def _on_progress(self, fraction: float, message: str) -> None:
        if self._slot.closed:
            return
        self.progress.setValue(int(round(100 * fraction)))
        if message:
            self.status.setText(message)

    def _on_error(self, message: str) -> None:
        if self._slot.closed:
            return
        self.status.setText(message)
        self.notify.emit(f"Treatment suggestions: {message}")

    def _computed(self, value: Any) -> None:
        recommender, result = value
        self._recommender = recommender
        self._show(result)

    # -- display -------------------------------------------------------------
    def _clear(self) -> None:
        self.result = None
        self.tree.clear()
        self.why.clear()
        self.current_list.clear()
        self.evidence.clear()

    def _show_working(self) -> None:
        if not self.working:
            self.working_label.setText("")
            return
        names = ", ".join(f"{d or c} ({c})" for c, d in self.working)
        self.working_label.setText(f"Working conditions: {names}")

    def _show(self, res: Any) -> None:
        self._clear()
        self.result = res
        for s in res.suggestions:
            item = QTreeWidgetItem([s.display, s.kind, f"{s.score:.2f}"])
            item.setData(0, Qt.ItemDataRole.UserRole, s)
            item.setToolTip(0, "\n".join(s.evidence))
            self.tree.addTopLevelItem(item)
            bar = QProgressBar()
            bar.setRange(0, 100)
            bar.setValue(int(round(100 * s.score)))
            bar.setFormat(f"{s.score:.2f}")
            bar.setMaximumHeight(16)
            self.tree.setItemWidget(item, 2, bar)
        for sp in res.similar:
            shared = ", ".join(sp.shared_conditions) or "(none shared)"
            item = QTreeWidgetItem([sp.patient, f"{sp.similarity:.2f}", shared])
            item.setToolTip(2, f"{sp.shared_treatments} treatments in common")
            self.why.addTopLevelItem(item)
        for status, entries in (("current", res.current), ("past", res.past)):
            for t in entries:
                self.current_list.addTopLevelItem(
                    QTreeWidgetItem([t["display"], t["kind"], t["first"] or "?", status])
                )
        n_cur, n_past = len(res.current), len(res.past)
        if res.status == "ok":
            text = (
                f"{len(res.suggestions)} suggestions; {n_cur} current and {n_past} past "
                "treatments are not suggested"
            )
            if res.message:
                text = f"{res.message.strip()} {text}"
        else:
            text = res.message.strip() or "Not enough data"
        self.status.setText(text)
        if self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
        else:
            self.evidence.setPlainText(text)
        self.suggestions_ready.emit(res)

    def _selection_changed(self, item: QTreeWidgetItem | None, _prev=None) -> None:
        if item is None:
            return
        s = item.data(0, Qt.ItemDataRole.UserRole)
        if s is None:
            return
        code_system = "RxNorm" if s.kind == "medication" else "SNOMED CT"
        title = html.escape(s.display)
        lines = [f"<b>{title}</b> ({code_system} {s.code}) - score {s.score:.2f}", "<ul>"]
        lines += [f"<li>{html.escape(e)}</li>" for e in s.evidence]
        lines.append("</ul>")
        comps = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in s.components.items())
        lines.append(f"<p>score parts (each scaled 0-1): {comps}</p>")
        self.evidence.setHtml("\n".join(lines))
