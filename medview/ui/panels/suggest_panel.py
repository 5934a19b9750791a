"""Treatment suggestions dock: ranked treatments with score bars and their evidence.

Follows the patient of the study in view (``set_study_context``) through a
:class:`~medview.records.patient_context.PatientRecords` (shared with the forecast
panel): the records (given with :meth:`SuggestionsPanel.set_records`, opened with
"Records..." - which also saves them in the local database - or the ones saved
there earlier) are linked to the imaging patient by PatientID, or by name and
birth date; when nothing matches the panel says so, shows "No patient selected"
with an empty list, and the patient can be picked by hand. A header names the
patient whose suggestions are listed (from the same snapshot they were computed
for); results for an older snapshot are dropped. Suggestions are computed on a worker
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
)

from medview.records.patient_context import PatientView
from medview.ui.panels.base import RecordsPanel

log = logging.getLogger(__name__)

KIND_LABELS = (
    ("medication", "Medications"),
    ("procedure", "Procedures"),
    ("careplan", "Care plans"),
)


# -- worker functions (run on the pool; Qt-free) -------------------------------
def _load_path(path: str, state: Any = None) -> Any:
    """Import records and keep them in the local database for the next session."""
    from medview.records import import_records

    return import_records(path, state=state)


def _compute(
    records: Any,
    recommender: Any,
    patient: str,
    k: int,
    working: list[tuple[str, str]],
    kinds: list[str],
    state: Any = None,
) -> Any:
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


def _removed_html(res: Any) -> str:
    """The candidates a safety check or the minimum support removed, with reasons."""
    removed = getattr(res, "removed", None) or []
    if not removed:
        return ""
    low = [r for r in removed if {f["rule"] for f in r["findings"]} == {"min-support"}]
    out = [f"<p><b>Not suggested ({len(removed)} candidates removed)</b></p><ul>"]
    for r in removed:
        if r in low:
            continue
        why = "; ".join(
            f"{f['rule']}: {f['reason']}" + (f" [{f['source']}]" if f["source"] else "")
            for f in r["findings"]
        )
        out.append(f"<li>{html.escape(r['display'])} - {html.escape(why)}</li>")
    if low:
        names = ", ".join(r["display"] for r in low[:5])
        more = f" and {len(low) - 5} more" if len(low) > 5 else ""
        out.append(f"<li>{len(low)} below the minimum support: {html.escape(names + more)}</li>")
    out.append("</ul>")
    return "\n".join(out)


class SuggestionsPanel(RecordsPanel):
    """Dock panel; see the module docstring."""

    suggestions_ready = Signal(object)  # the SuggestionResult shown (tests, other panels)
    COMPUTE_TASK = "treatment suggestions"
    NO_SAVED_RECORDS = "no records loaded (use Records... to open an export)"
    task_error_prefix = "Treatment suggestions: "

    # -- layout --------------------------------------------------------------
    def _build(self, lay: QVBoxLayout) -> None:
        from medview.treatments.recommender import NOTICE

        self.working: list[tuple[str, str]] = []
        self._recommender: Any = None
        self._recommender_records: Any = None  # the RecordSet _recommender was built from
        open_rec = QPushButton("Records...")
        open_rec.setToolTip("open FHIR JSON/NDJSON or a Synthea CSV folder")
        open_rec.clicked.connect(self._open_records)
        self.build_patient_rows(lay, NOTICE, "the patient whose suggestions are listed", [open_rec])

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

        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addLayout(self.task_row(self.status))
        self.message_label = self.status

    # -- working conditions --------------------------------------------------
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
        """Use ``records`` (a RecordSet); the shared context relinks the patient in view."""
        if records is not None and records.problems:
            self.notify.emit(
                f"records: {len(records.problems)} malformed entries skipped "
                f"(first: {records.problems[0]})"
            )
        self.patients.set_records(records)

    def _open_records(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Records folder (FHIR or Synthea CSV)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "FHIR file", "", "FHIR (*.json *.ndjson)")
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> None:
        self.run_task(_load_path, path, on_result=self.set_records, name="load records")

    # -- records panel hooks -------------------------------------------------
    def _view_changing(self, view: PatientView) -> None:
        if view.study != self._view.study and self.working:
            # working conditions come from the study in view (an AI finding): not another's
            self.working.clear()
            self._show_working()
        if view.records is not self._recommender_records:
            self._recommender, self._recommender_records = None, None

    def _patient_items(self, records: Any) -> list[tuple[str, str]]:
        items = sorted(records.patients.items(), key=lambda kv: (kv[1].name, kv[0]))
        return [
            (f"{p.name or pid} ({p.birth_date.isoformat() if p.birth_date else '?'})", pid)
            for pid, p in items
        ]

    def _view_applied(self) -> None:
        self.status.setText("")
        self.start()

    def _no_match_text(self, view: PatientView) -> str:
        msg = view.link.message if view.link is not None else ""
        return (
            f"No match: the study's patient is not in these records ({msg}). "
            "Pick a patient by hand."
        )

    def _loaded_text(self, view: PatientView, records: Any) -> str:
        if view.study.empty and not view.selected:
            return f"{len(records.patients)} record patients; no study in view - pick a patient"
        return f"{len(records.patients)} record patients loaded; {view.reason}"

    def kinds(self) -> list[str]:
        return [k for k, box in self.kind_boxes.items() if box.isChecked()]

    # -- computation ---------------------------------------------------------
    def _filters_changed(self, *_args: Any) -> None:
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
        """Compute the suggestions of the snapshot's patient on the worker."""
        request = self.begin_request()
        if request is None:
            return
        req, view = request
        kinds = self.kinds()
        if not kinds:
            self.end_compute()
            self.status.setText("no kind selected: tick medications, procedures or care plans")
            return
        self.run_task(
            _compute,
            view.records,
            self._recommender,
            view.patient_id,
            self.k_spin.value(),
            list(self.working),
            kinds,
            on_result=lambda v, req=req, view=view: self._computed(v, req, view),
            on_error=lambda m, req=req: self._on_error(m, req),
            name="treatment suggestions",
        )

    def _computed(
        self, value: Any, req: int | None = None, view: PatientView | None = None
    ) -> None:
        recommender, result = value
        view = view if view is not None else self._view
        if view.records is self._view.records and recommender is not None:
            self._recommender, self._recommender_records = recommender, view.records
        if self.accept_result(req, view, result.patient, "suggestions") is None:
            return
        self._show(result)

    # -- display -------------------------------------------------------------
    def _clear_results(self) -> None:
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
        self._clear_results()
        self.result = res
        for s in res.suggestions:
            flags = getattr(s, "flags", [])  # safety warnings: "! " marks the row
            shown = f"! {s.display}" if flags else s.display
            item = QTreeWidgetItem([shown, s.kind, f"{s.score:.2f}"])
            item.setData(0, Qt.ItemDataRole.UserRole, s)
            tips = [f"flagged ({f['rule']}): {f['reason']}" for f in flags]
            item.setToolTip(0, "\n".join(tips + s.evidence))
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
        n_removed = len(getattr(res, "removed", []))
        if res.status == "ok":
            text = (
                f"{len(res.suggestions)} suggestions; {n_cur} current and {n_past} past "
                "treatments are not suggested"
            )
            if n_removed:
                text += f"; {n_removed} removed by safety checks or minimum support"
            if res.message:
                text = f"{res.message.strip()} {text}"
        else:
            text = res.message.strip() or "Not enough data"
        self.status.setText(text)
        if self.tree.topLevelItemCount():
            self.tree.setCurrentItem(self.tree.topLevelItem(0))
        else:
            self.evidence.setHtml(f"<p>{html.escape(text)}</p>" + _removed_html(res))
        self.suggestions_ready.emit(res)

    def _selection_changed(self, item: QTreeWidgetItem | None, _prev: Any = None) -> None:
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
        for f in getattr(s, "flags", []):
            src = f" [{f['source']}]" if f["source"] else ""
            lines.append(f"<p><b>flagged ({html.escape(f['rule'])})</b>: ")
            lines.append(f"{html.escape(f['reason'] + src)}</p>")
        comps = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in s.components.items())
        lines.append(f"<p>score parts (each scaled 0-1): {comps}</p>")
        self.evidence.setHtml("\n".join(lines) + _removed_html(self.result))
