"""Reports & notes dock: the patient's reports and notes with findings highlighted.

Follows the patient through the shared
:class:`~medview.records.patient_context.PatientRecords` like the forecast and
suggestion panels (:class:`~medview.ui.panels.base.RecordsPanel`): the header names
whose documents are shown, and everything is cleared when the patient changes. The
documents come from the local database (``note_`` tables of :mod:`medview.notes.store`):
notes of FHIR records opened in any records panel are read and stored once per record
set, and "Reports..." reads more (text, FHIR, IU XML, DICOM SR, folders); a document
that names no patient is kept under the patient shown. Without a record patient, the
documents stored under the study's DICOM PatientID are shown.

The documents are listed in date order; the chosen one is shown with every finding
highlighted by status in styles that do not rely on colour (present: bold + solid
underline; absent: struck through, grey; uncertain: italic + dotted underline). The
findings table lists all findings of the patient; clicking one shows its document and
selects its sentence. Loading and analysis run on a worker; a patient seen before is
shown from memory at once.

Discordance: :meth:`NotesPanel.set_ai_result` takes the AI panel's latest result for
the image in view; when it disagrees with the report of the study
(:func:`medview.notes.discordance.compare_with_report`; out-of-scope results never
count) a flag shows here and :attr:`NotesPanel.discordance_changed` tells the AI panel.
The "Cohort search" tab finds stored documents by finding, status and date; double-
clicking a hit opens the patient's study from the local database (``open_series``).
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.notes.cohort import search_cohort
from medview.notes.library import load_patient_notes, prefetch_patients, summary
from medview.notes.model import LABELS, STATUSES
from medview.notes.store import import_notes
from medview.records.patient_context import PatientView
from medview.ui.panels.base import RecordsPanel
from medview.ui.workers import TaskSlot

log = logging.getLogger(__name__)

NOTICE = (
    "Findings are found by word rules in the text: a reading aid, not a diagnosis. "
    "Check each one against the highlighted sentence."
)
FLAG_STYLE = "QLabel { background: #7a0000; color: white; font-weight: bold; padding: 4px; }"
OUT_OF_SCOPE_STYLE = "QLabel { color: #707070; font-style: italic; padding: 4px; }"
#: Okabe-Ito based colours; each status also differs in weight, line and slant
STATUS_COLOURS = {"present": "#a04000", "absent": "#707070", "uncertain": "#005a9c"}
ROLE = Qt.ItemDataRole.UserRole
#: most findings listed in the table, and highlighted in one document (a huge note
#: would otherwise hold the GUI thread for seconds)
MAX_ROWS = 1000


def status_format(status: str) -> QTextCharFormat:
    """The highlight of a finding: never colour alone (weight, strike-out, slant, line)."""
    fmt = QTextCharFormat()
    fmt.setForeground(QBrush(QColor(STATUS_COLOURS.get(status, "#000000"))))
    if status == "present":
        fmt.setFontWeight(QFont.Weight.Bold)
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
    elif status == "absent":
        fmt.setFontStrikeOut(True)
    elif status == "uncertain":
        fmt.setFontItalic(True)
        fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.DotLine)
    return fmt


def qt_positions(text: str) -> list[int] | None:
    """Python offsets -> QTextDocument positions (UTF-16), or None when they are equal."""
    if all(ord(c) < 0x10000 for c in text):
        return None
    out, pos = [], 0
    for c in text:
        out.append(pos)
        pos += 2 if ord(c) >= 0x10000 else 1
    out.append(pos)
    return out


# -- worker functions (run on the pool; Qt-free) -------------------------------
def _study_series(study_uid: str, state: Any = None) -> Any:
    """The largest series of a local-database study, as the browser's SeriesInfo."""
    from medview.io.database import StudyDatabase
    from medview.viewer.session import series_from_database

    db = StudyDatabase()
    try:
        study = next((s for s in db.studies() if s["study_uid"] == study_uid), None)
        rows = db.series(study_uid) if study is not None else []
    finally:
        db.close()
    if study is None or not rows:
        return None
    return max((series_from_database(study, r) for r in rows), key=lambda s: s.slices)


class NotesPanel(RecordsPanel):
    """Dock panel; see the module docstring."""

    documents_shown = Signal(object)  # list[NoteAnalysis] now shown (tests, bench)
    discordance_changed = Signal(object)  # list[Discordance] (empty: none)
    open_series = Signal(object)  # a database SeriesInfo to open (cohort search)
    search_done = Signal(object)  # cohort hits shown
    COMPUTE_TASK = "reports and notes"
    NO_SAVED_RECORDS = "no records loaded (documents stored under the study's PatientID show)"
    task_error_prefix = "Reports & notes: "

    # -- layout --------------------------------------------------------------
    def _build(self, lay: QVBoxLayout) -> None:
        self.analyses: list[Any] = []
        self.shown_patient = ""  # whose documents are listed
        self._cache: dict[str, list[Any]] = {}
        self._imported: set[str] = set()  # record sources whose notes are stored
        self._ai: Any = None
        self._study_date = ""
        self.discordances: list[Any] = []
        self._search_slot = TaskSlot(self)
        self._prefetch_slot = TaskSlot(self)  # the record patients' documents, ahead
        self._prefetched: Any = None  # the RecordSet whose patients were prefetched
        self._cache_gen = 0  # bumped when stored documents change (prefetches then drop)
        self.hits: list[dict[str, Any]] = []
        open_btn = QPushButton("Reports...")
        open_btn.setToolTip("read reports or notes (text, FHIR, IU XML, DICOM SR, folder)")
        open_btn.clicked.connect(self._open_reports)
        self.build_patient_rows(lay, NOTICE, "the patient whose documents are shown", [open_btn])
        self.flag = QLabel("")
        self.flag.setWordWrap(True)
        self.flag.setStyleSheet(FLAG_STYLE)
        self.flag.setVisible(False)
        self.flag.setCursor(Qt.CursorShape.PointingHandCursor)
        self.flag.setToolTip("click to show the report's sentence")
        self.flag.mousePressEvent = lambda _e: self.show_discordance_evidence()  # type: ignore[method-assign]
        lay.addWidget(self.flag)
        self.legend = QTextEdit()
        self.legend.setReadOnly(True)
        self.legend.setMaximumHeight(30)
        self.legend.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._fill_legend()
        lay.addWidget(self.legend)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._documents_tab(), "Documents")
        self.tabs.addTab(self._search_tab(), "Cohort search")
        lay.addWidget(self.tabs, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addLayout(self.task_row(self.status))
        self.message_label = self.status

    def _fill_legend(self) -> None:
        cur = QTextCursor(self.legend.document())
        cur.insertText("Findings: ")
        for i, status in enumerate(STATUSES):
            cur.insertText(status, status_format(status))
            cur.insertText(", " if i < len(STATUSES) - 1 else "", QTextCharFormat())
        cur.insertText("  (historical: see the table)", QTextCharFormat())

    def _documents_tab(self) -> QWidget:
        split = QSplitter(Qt.Orientation.Vertical)
        self.doc_list = QTreeWidget()
        self.doc_list.setHeaderLabels(["Date", "Document", "Findings"])
        self.doc_list.setRootIsDecorated(False)
        self.doc_list.currentItemChanged.connect(self._document_picked)
        split.addWidget(self.doc_list)
        self.text = QTextEdit()
        self.text.setReadOnly(True)
        split.addWidget(self.text)
        self.findings = QTreeWidget()
        self.findings.setHeaderLabels(["Date", "Finding", "Status", "Section", "Text"])
        self.findings.setRootIsDecorated(False)
        self.findings.itemClicked.connect(lambda item, _c: self.jump_to(item))
        self.findings.currentItemChanged.connect(lambda item, _p: self.jump_to(item))
        split.addWidget(self.findings)
        split.setSizes([90, 260, 160])
        return split

    def _search_tab(self) -> QWidget:
        w = QWidget()
        lay = QVBoxLayout(w)
        row = QHBoxLayout()
        self.search_label = QComboBox()
        self.search_label.addItems(list(LABELS))
        self.search_label.setCurrentText("nodule")
        self.search_status = QComboBox()
        self.search_status.addItems(list(STATUSES))
        self.search_since = QLineEdit()
        self.search_since.setPlaceholderText("since YYYY-MM-DD")
        self.search_since.returnPressed.connect(self.search)
        go = QPushButton("Search")
        go.clicked.connect(self.search)
        for wid in (self.search_label, self.search_status, self.search_since, go):
            row.addWidget(wid)
        lay.addLayout(row)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Date", "Patient", "Mention", "Local study"])
        self.results.setRootIsDecorated(False)
        self.results.itemDoubleClicked.connect(lambda item, _c: self.open_hit(item))
        lay.addWidget(self.results, 1)
        self.search_info = QLabel("stored documents; double-click a hit to open its study")
        self.search_info.setWordWrap(True)
        lay.addWidget(self.search_info)
        return w

    # -- records panel hooks -------------------------------------------------
    def set_study_context(self, ctx: Any) -> None:
        """Follow the patient in view; remember the study's date (to pick its report)."""
        series = getattr(ctx.volume, "series", None) if ctx.volume is not None else None
        day = str(getattr(series, "study_date", "") or "")
        if day != self._study_date:
            self._study_date = day
            self._update_discordance()
        super().set_study_context(ctx)

    def _saved_loaded(self, records: Any) -> None:
        """The saved-records load ran in this panel's slot (cancelling its documents):
        with no records to relink, load the documents again."""
        generation = self.patients.generation
        super()._saved_loaded(records)
        if self.patients.generation == generation:
            self.start()

    def _patient_items(self, records: Any) -> list[tuple[str, str]]:
        items = sorted(records.patients.items(), key=lambda kv: (kv[1].name, kv[0]))
        return [(f"{p.name or pid}", pid) for pid, p in items]

    def _no_match_text(self, view: PatientView) -> str:
        msg = view.link.message if view.link is not None else ""
        return f"No match: the study's patient is not in these records ({msg})."

    def _loaded_text(self, view: PatientView, records: Any) -> str:
        return f"{len(records.patients)} record patients loaded; {view.reason}"

    def notes_patient(self, view: PatientView) -> tuple[str, str]:
        """(patient id, header): the record patient, else the study's DICOM PatientID."""
        if view.patient_id:
            return view.patient_id, view.header
        pid = view.study.patient_id
        if pid:
            who = f"{view.study.label}, PatientID {pid}" if view.study.label != pid else pid
            return pid, f"Patient: {who} (no linked records)"
        return "", view.header

    def _new_sources(self, view: PatientView) -> list[str]:
        rs = view.records
        if rs is None or rs.format not in ("fhir", "mixed"):
            return []
        return [s for s in rs.sources if s and s not in self._imported]

    def _view_applied(self) -> None:
        self.start()

    def start(self) -> None:
        """Show the patient's documents (from memory, else loaded on the worker)."""
        self._request += 1
        req, view = self._request, self._view
        pid, header = self.notes_patient(view)
        if self.tasks_closed:
            return
        if not pid:
            self.end_compute()
            self.status.setText("no patient: open a study or records, or pick a patient")
            return
        sources = self._new_sources(view)
        if not sources and pid in self._cache:
            self._show(self._cache[pid], pid, header)
            self._maybe_prefetch(view)
            return
        self.header.setText(header)
        self.run_task(
            load_patient_notes,
            pid,
            sources,
            on_result=lambda v, r=req, vw=view, p=pid, h=header, s=sources: self._loaded(
                v, r, vw, p, h, s
            ),
            on_error=lambda m, r=req: self._on_error(m, r),
            name=self.COMPUTE_TASK,
        )

    def _loaded(
        self, value: Any, req: int, view: PatientView, pid: str, header: str, sources: list[str]
    ) -> None:
        analyses, problems = value
        if sources:
            self._imported.update(sources)
            self._forget_documents()
        for p in problems[:3]:
            self.notify.emit(f"{self.task_error_prefix}skipped {p}")
        self._cache[pid] = analyses
        # the same request and snapshot (is_current also wants a record patient: the
        # documents of a study PatientID without records are shown too)
        if req != self._request or self.tasks_closed or view is not self._view:
            return
        if view.generation != self.patients.generation:
            return
        self._show(analyses, pid, header)
        self._maybe_prefetch(view)

    def _forget_documents(self) -> None:
        """Stored documents changed: drop what is in memory (and a running prefetch)."""
        self._cache.clear()
        self._cache_gen += 1
        self._prefetched = None
        self._prefetch_slot.cancel()

    def _maybe_prefetch(self, view: PatientView) -> None:
        """Analyse every record patient's documents ahead, so a patient change is instant."""
        rs = view.records
        if rs is None or rs is self._prefetched or self.tasks_closed:
            return
        self._prefetched = rs
        todo = [p for p in rs.patients if p not in self._cache]
        gen = self._cache_gen
        self._prefetch_slot.run(
            prefetch_patients,
            todo,
            on_partial=lambda v, g=gen: self._prefetched_one(v, g),
            on_error=lambda m: log.warning("notes prefetch failed: %s", m),
            name="prefetch notes",
        )

    def _prefetched_one(self, value: tuple[str, list[Any]], gen: int) -> None:
        pid, analyses = value
        if gen == self._cache_gen:
            self._cache.setdefault(pid, analyses)

    # -- display -------------------------------------------------------------
    def _clear_results(self) -> None:
        self.result = None
        self.analyses = []
        self.shown_patient = ""
        self.doc_list.clear()
        self.findings.clear()
        self.text.clear()
        self.text.setProperty("doc", None)
        self._update_discordance()

    def _show(self, analyses: list[Any], pid: str, header: str) -> None:
        self._clear_results()
        self.analyses, self.shown_patient, self.result = list(analyses), pid, analyses
        self.header.setText(header)
        rows = []
        for i, a in enumerate(analyses):
            d = a.document
            item = QTreeWidgetItem([d.date[:10] if d.date else "?", d.title or d.id, summary(a)])
            item.setToolTip(1, d.id)
            item.setData(0, ROLE, i)
            self.doc_list.addTopLevelItem(item)
            for f in a.findings:
                if f.experiencer == "patient" and len(rows) < MAX_ROWS:
                    rows.append(self._finding_item(i, a, f))
        self.findings.addTopLevelItems(rows)
        n = sum(len(a.findings) for a in analyses)
        text = f"{len(analyses)} documents, {n} findings" if analyses else "no stored documents"
        if len(rows) == MAX_ROWS:
            text += f" (the table lists the first {MAX_ROWS})"
        self.status.setText(text)
        if analyses:
            self.doc_list.setCurrentItem(self.doc_list.topLevelItem(len(analyses) - 1))
        self._update_discordance()
        self.documents_shown.emit(self.analyses)

    def _finding_item(self, i: int, a: Any, f: Any) -> QTreeWidgetItem:
        status = f.status + (", historical" if f.historical else "")
        day = a.document.date[:10] if a.document.date else "?"
        item = QTreeWidgetItem([day, f.label, status, f.section, f.text])
        item.setData(0, ROLE, (i, f))
        font = item.font(2)
        font.setBold(f.status == "present")
        font.setStrikeOut(f.status == "absent")
        font.setItalic(f.status == "uncertain")
        item.setFont(2, font)
        item.setForeground(2, QBrush(QColor(STATUS_COLOURS[f.status])))
        item.setToolTip(4, a.document.text[f.sentence_start : f.sentence_end])
        return item

    def _document_picked(self, item: QTreeWidgetItem | None, _prev: Any = None) -> None:
        if item is None:
            return
        self.show_document(int(item.data(0, ROLE)))

    def show_document(self, i: int) -> None:
        """Show document ``i`` with its findings, problems and medications highlighted."""
        if not 0 <= i < len(self.analyses):
            return
        a = self.analyses[i]
        if self.text.property("doc") == i:
            return
        text = a.document.text.replace("\r", " ")  # same length: offsets stay valid
        self.text.clear()
        self.text.setProperty("doc", i)
        # written piece by piece, in order (moving a cursor inside one long paragraph
        # costs milliseconds a step)
        marks = [f for f in a.findings if f.experiencer == "patient"]
        marks = sorted([*marks, *a.problems, *a.medications], key=lambda m: m.start)[:MAX_ROWS]
        formats = {st: status_format(st) for st in STATUSES}
        plain = QTextCharFormat()
        cur = QTextCursor(self.text.document())
        cur.beginEditBlock()
        done = 0
        for m in marks:
            if m.start < done:
                continue  # overlaps the previous mark
            cur.insertText(text[done : m.start], plain)
            cur.insertText(text[m.start : m.end], formats[m.status])
            done = m.end
        cur.insertText(text[done:], plain)
        cur.endEditBlock()
        item = self.doc_list.topLevelItem(i)
        if item is not None and self.doc_list.currentItem() is not item:
            self.doc_list.setCurrentItem(item)

    def jump_to(self, item: QTreeWidgetItem | None) -> None:
        """Show a finding's document and select the sentence that supports it."""
        data = item.data(0, ROLE) if item is not None else None
        if not data:
            return
        i, f = data
        self.select_sentence(i, f)

    def select_sentence(self, i: int, f: Any) -> None:
        self.show_document(i)
        pos = qt_positions(self.analyses[i].document.text)
        cur = QTextCursor(self.text.document())
        cur.setPosition(pos[f.sentence_start] if pos else f.sentence_start)
        cur.setPosition(
            pos[f.sentence_end] if pos else f.sentence_end, QTextCursor.MoveMode.KeepAnchor
        )
        self.text.setTextCursor(cur)
        self.text.ensureCursorVisible()

    # -- discordance ---------------------------------------------------------
    def set_ai_result(self, result: Any) -> None:
        """The AI panel's latest result for the image in view (an AIResult or None)."""
        self._ai = result
        self._update_discordance()

    def _update_discordance(self) -> None:
        from medview.notes.discordance import ai_evidence, compare_with_report, report_for_study

        r = self._ai
        evidence = (
            ai_evidence(r.probabilities, r.threshold, r.in_scope, r.model) if r is not None else []
        )
        report = report_for_study(self.analyses, self._study_date) if self.analyses else None
        found = compare_with_report(evidence, report)
        self.discordances = found
        out_of_scope = bool(evidence) and not any(e.in_scope for e in evidence)
        if found and report is not None:
            when = report.document.date[:10] if report.document.date else "undated"
            text = "; ".join(d.message for d in found)
            self.flag.setText(f"\u26a0 AI and report disagree: {text} (report {when})")
            self.flag.setStyleSheet(FLAG_STYLE)
        elif out_of_scope and report is not None:
            self.flag.setText("AI result outside its intended use: not compared with the report")
            self.flag.setStyleSheet(OUT_OF_SCOPE_STYLE)
        self.flag.setVisible(bool(found) or (out_of_scope and report is not None))
        self.discordance_changed.emit(found)

    def show_discordance_evidence(self) -> None:
        """Select the report sentence behind the flag."""
        if not self.discordances or not self.discordances[0].evidence:
            return
        f = self.discordances[0].evidence[0]
        for i, a in enumerate(self.analyses):
            if f in a.findings:
                self.tabs.setCurrentIndex(0)
                self.select_sentence(i, f)
                return

    # -- reports -------------------------------------------------------------
    def _open_reports(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of reports or notes")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Report or note")
        if path:
            self.open_paths([path])

    def open_paths(self, paths: list[str]) -> None:
        """Read and store reports/notes; a document without a patient goes to the one shown."""
        pid, _header = self.notes_patient(self._view)
        self.run_task(
            import_notes,
            list(paths),
            pid or None,
            on_result=self._imported_docs,
            name="read reports",
        )

    def _imported_docs(self, res: Any) -> None:
        for p in res.problems[:3]:
            self.notify.emit(f"{self.task_error_prefix}skipped {p}")
        self._forget_documents()
        self.notify.emit(
            f"Reports & notes: {res.saved} documents stored"
            + (f" ({res.attached} for the patient shown)" if res.attached else "")
            + (f"; {len(res.problems)} files skipped" if res.problems else "")
        )
        self.start()

    # -- cohort search -------------------------------------------------------
    def search(self) -> None:
        """Run the cohort search of the tab's label, status and date on a worker."""
        since = None
        text = self.search_since.text().strip()
        if text:
            try:
                since = date.fromisoformat(text)
            except ValueError:
                self.search_info.setText(f"since: {text!r} is not a date (YYYY-MM-DD)")
                return
        self.search_info.setText("searching...")
        self._search_slot.run(
            search_cohort,
            self.search_label.currentText(),
            self.search_status.currentText(),
            since,
            on_result=self._searched,
            on_error=lambda m: self.search_info.setText(m),
            name="cohort search",
        )

    def _searched(self, hits: list[dict[str, Any]]) -> None:
        self.results.clear()
        self.hits = hits
        for h in hits:
            st = h.get("study")
            where = f"{st['study_date'] or '?'} {st['description']}".strip() if st else "none"
            item = QTreeWidgetItem(
                [h["date"] or "?", h["patient"] or "-", f"{h['text']} [{h['section']}]", where]
            )
            item.setData(0, ROLE, h)
            item.setToolTip(0, h["document"])
            self.results.addTopLevelItem(item)
        with_study = sum(1 for h in hits if h.get("study"))
        self.search_info.setText(
            f"{len(hits)} documents of {len({h['patient'] for h in hits})} patients; "
            f"{with_study} with a study in the local database (double-click to open)"
        )
        self.search_done.emit(hits)

    def open_hit(self, item: QTreeWidgetItem | None) -> None:
        """Open the local study of a cohort hit (or say there is none)."""
        h = item.data(0, ROLE) if item is not None else None
        if not h:
            return
        st = h.get("study")
        if not st:
            self.search_info.setText(
                f"patient {h['patient'] or '-'} has no study in the local database"
            )
            return
        self._search_slot.run(
            _study_series,
            st["study_uid"],
            on_result=self._study_found,
            on_error=lambda m: self.search_info.setText(m),
            name="open study",
        )

    def _study_found(self, series: Any) -> None:
        if series is None:
            self.search_info.setText("the study is no longer in the local database")
            return
        self.open_series.emit(series)

    def shutdown(self) -> None:
        super().shutdown()
        self._search_slot.close()
        self._prefetch_slot.close()
