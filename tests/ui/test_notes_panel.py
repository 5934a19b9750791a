"""Reports & notes panel (pytest-qt): follows the patient, highlights by status, jumps to
the sentence, flags AI-vs-report discordance on both panels, cohort search opens studies."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("PySide6")

from medview.records import load_records  # noqa: E402
from medview.ui.context import StudyContext  # noqa: E402
from tests.helpers.data_helpers import import_radiograph  # noqa: E402
from tests.helpers.panel_helpers import add_panel, wait_idle  # noqa: E402

REPORTS = {
    "p1": [
        (
            "2019-04-02",
            "FINDINGS: Mild cardiomegaly. No pleural effusion.\nIMPRESSION: Possible "
            "left lower lobe pneumonia.",
        ),
        (
            "2021-06-30",
            "FINDINGS: No focal consolidation or opacity.\nIMPRESSION: No pneumonia. "
            "No acute disease.",
        ),
    ],
    "p2": [("2020-01-15", "IMPRESSION: Right lower lobe pneumonia. 6 mm nodule.")],
}
NAMES = {"p1": ("Ann", "Able"), "p2": ("Bob", "Baker")}


def _bundle(path: Path) -> Path:
    entries = []
    for pid, (given, family) in NAMES.items():
        entries.append(
            {
                "resource": {
                    "resourceType": "Patient",
                    "id": pid,
                    "name": [{"given": [given], "family": family}],
                    "birthDate": "1950-01-01",
                }
            }
        )
        for i, (day, text) in enumerate(REPORTS[pid]):
            data = base64.b64encode(text.encode()).decode()
            entries.append(
                {
                    "resource": {
                        "resourceType": "DiagnosticReport",
                        "id": f"{pid}-r{i}",
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectiveDateTime": day,
                        "presentedForm": [{"contentType": "text/plain", "data": data}],
                    }
                }
            )
    path.write_text(json.dumps({"resourceType": "Bundle", "entry": entries}))
    return path


@pytest.fixture()
def panel(qtbot, tmp_path, medview_home):
    from medview.ui.panels.notes_panel import NotesPanel

    records = load_records(_bundle(tmp_path / "bundle.json"))
    return add_panel(qtbot, NotesPanel(records=records))


def _show(qtbot, panel, pid: str):
    with qtbot.waitSignal(panel.documents_shown, timeout=30000) as blocker:
        panel.set_study_context(StudyContext(patient_id=pid))
    return blocker.args[0]


def _format_at(panel, pos: int):
    from PySide6.QtGui import QTextCursor

    cur = QTextCursor(panel.text.document())
    cur.setPosition(pos + 1)
    return cur.charFormat()


def test_follows_the_patient_in_date_order_with_highlights(qtbot, panel) -> None:
    shown = _show(qtbot, panel, "p1")
    assert panel.header.text().startswith("Patient: Ann Able") and panel.shown_patient == "p1"
    assert [a.document.date for a in shown] == ["2019-04-02", "2021-06-30"]
    assert panel.doc_list.topLevelItemCount() == 2
    assert panel.doc_list.topLevelItem(0).text(0) == "2019-04-02"
    rows = [panel.findings.topLevelItem(i) for i in range(panel.findings.topLevelItemCount())]
    assert {(r.text(1), r.text(2)) for r in rows} == {
        ("cardiomegaly", "present"),
        ("pleural_effusion", "absent"),
        ("pneumonia", "uncertain"),
        ("consolidation", "absent"),
        ("lung_opacity", "absent"),
        ("pneumonia", "absent"),
    }
    # the first document: each status in its own style, not colour alone
    panel.show_document(0)
    a = shown[0]
    by = {f.label: f for f in a.findings}
    present = _format_at(panel, by["cardiomegaly"].start)
    assert present.fontWeight() >= 700 and present.fontUnderline()
    absent = _format_at(panel, by["pleural_effusion"].start)
    assert absent.fontStrikeOut() and not absent.fontUnderline()
    unc = _format_at(panel, by["pneumonia"].start)
    assert unc.fontItalic() and unc.underlineStyle().name == "DotLine"
    plain = _format_at(panel, 0)
    assert not (plain.fontStrikeOut() or plain.fontItalic() or plain.fontUnderline())
    # another patient: the old documents go, the header names the new one
    shown = _show(qtbot, panel, "p2")
    assert panel.header.text().startswith("Patient: Bob Baker") and len(shown) == 1
    assert panel.doc_list.topLevelItemCount() == 1
    assert "Mild cardiomegaly" not in panel.text.toPlainText()
    # back to p1: shown from memory, at once (no worker)
    panel.set_study_context(StudyContext(patient_id="p1"))
    assert panel.shown_patient == "p1" and panel.doc_list.topLevelItemCount() == 2


def test_click_a_finding_selects_its_sentence(qtbot, panel) -> None:
    shown = _show(qtbot, panel, "p1")
    rows = [panel.findings.topLevelItem(i) for i in range(panel.findings.topLevelItemCount())]
    (row,) = [r for r in rows if (r.text(1), r.text(2)) == ("pleural_effusion", "absent")]
    panel.findings.itemClicked.emit(row, 0)
    assert panel.text.toPlainText() == shown[0].document.text
    assert panel.text.textCursor().selectedText() == "No pleural effusion."
    (row,) = [r for r in rows if r.text(1) == "lung_opacity"]
    panel.findings.itemClicked.emit(row, 0)
    assert panel.text.toPlainText() == shown[1].document.text
    assert panel.text.textCursor().selectedText() == "No focal consolidation or opacity."


def test_discordance_on_both_panels_and_out_of_scope_ignored(qtbot, panel) -> None:
    from medview.ui.panels.ai_panel import AIPanel

    ai = AIPanel()
    qtbot.addWidget(ai, before_close_func=lambda w: w.shutdown())
    panel.discordance_changed.connect(ai.set_discordance)
    _show(qtbot, panel, "p1")
    result = SimpleNamespace(
        probabilities={"normal": 0.08, "pneumonia": 0.92},
        threshold=0.5,
        in_scope=True,
        model="pneumonia_cnn",
    )
    with qtbot.waitSignal(panel.discordance_changed) as blocker:
        panel.set_ai_result(result)
    (d,) = blocker.args[0]
    assert d.kind == "ai-positive-report-negative"  # the newest report negates pneumonia
    assert not panel.flag.isHidden() and "disagree" in panel.flag.text()
    assert not ai.discordance_label.isHidden() and "pneumonia" in ai.discordance_label.text()
    panel.show_discordance_evidence()
    assert panel.text.textCursor().selectedText() in (
        "No focal consolidation or opacity.",
        "No pneumonia.",
    )
    # out of the model's intended use: never discordant evidence
    panel.set_ai_result(SimpleNamespace(**{**vars(result), "in_scope": False}))
    assert panel.discordances == [] and ai.discordance_label.isHidden()
    assert "outside its intended use" in panel.flag.text()
    # the reverse: AI negative, the report of p2 states pneumonia
    panel.set_ai_result(SimpleNamespace(**{**vars(result), "probabilities": {"pneumonia": 0.1}}))
    assert panel.discordances == []  # p1's newest report negates it: they agree
    _show(qtbot, panel, "p2")
    assert [d.kind for d in panel.discordances] == ["ai-negative-report-positive"]
    panel.set_ai_result(None)
    assert panel.flag.isHidden() and ai.discordance_label.isHidden()


def test_ai_panel_sends_its_latest_result(qtbot) -> None:
    from medview.ui.panels.ai_panel import AIPanel

    ai = AIPanel()
    qtbot.addWidget(ai, before_close_func=lambda w: w.shutdown())
    got = []
    ai.report_result.connect(got.append)
    ai._show_current_rows()  # nothing in view: nothing new to send
    assert got == []


def test_cohort_search_opens_the_local_study(qtbot, panel, xray_dir, tmp_path) -> None:
    study = import_radiograph(xray_dir)
    pid = study["patient_id"]
    # a study patient without records: documents stored under its PatientID are shown
    _show(qtbot, panel, pid)
    assert (
        pid in panel.header.text()
        and "no linked records" in panel.header.text()
        and panel.doc_list.topLevelItemCount() == 0
    )
    note = tmp_path / "cxr.txt"
    note.write_text("FINDINGS: 6 mm nodule in the right upper lobe.\nIMPRESSION: Nodule.\n")
    with qtbot.waitSignal(panel.documents_shown, timeout=30000) as blocker:
        panel.open_paths([str(note)])
    (a,) = blocker.args[0]
    assert a.document.patient == pid and a.label_status() == {"nodule": "present"}
    _show(qtbot, panel, "p1")  # stores p1's notes from the records' bundle (done above)
    panel.search_label.setCurrentText("nodule")
    with qtbot.waitSignal(panel.search_done, timeout=30000) as blocker:
        panel.search()
    hits = blocker.args[0]
    assert sorted(h["patient"] for h in hits) == sorted(["p2", pid])
    rows = {panel.results.topLevelItem(i).text(1): panel.results.topLevelItem(i) for i in range(2)}
    assert rows["p2"].text(3) == "none"
    panel.open_hit(rows["p2"])
    assert "no study in the local database" in panel.search_info.text()
    with qtbot.waitSignal(panel.open_series, timeout=30000) as blocker:
        panel.results.itemDoubleClicked.emit(rows[pid], 0)
    series = blocker.args[0]
    assert series.study_uid == study["study_uid"] and series.instances
    panel.search_since.setText("not a date")
    panel.search()
    assert "not a date" in panel.search_info.text()


def test_record_patients_are_prefetched_so_a_change_is_instant(qtbot, panel) -> None:
    _show(qtbot, panel, "p1")
    qtbot.waitUntil(lambda: "p2" in panel._cache, timeout=30000)  # noqa: SLF001
    got = []
    panel.documents_shown.connect(got.append)
    panel.select_patient("p2")  # served from memory: shown before select returns
    assert len(got) == 1 and [a.document.patient for a in got[0]] == ["p2"]
    assert panel.header.text().startswith("Patient: Bob Baker")
    # stored documents change: what is in memory goes
    panel._forget_documents()  # noqa: SLF001
    assert panel._cache == {}  # noqa: SLF001


def test_without_records_the_study_patients_documents_show(qtbot, medview_home, tmp_path) -> None:
    """The saved-records load runs in the panel's slot: the documents still arrive."""
    from medview.notes.store import import_notes
    from medview.ui.panels.notes_panel import NotesPanel

    note = tmp_path / "r.txt"
    note.write_text("IMPRESSION: Small right pleural effusion.\n")
    assert import_notes([note], patient="PID-7").saved == 1
    w = NotesPanel()
    qtbot.addWidget(w, before_close_func=lambda x: x.shutdown())
    with qtbot.waitSignal(w.documents_shown, timeout=30000) as blocker:
        w.set_study_context(StudyContext(patient_id="PID-7", patient_name="Doe^Jane"))
    (a,) = blocker.args[0]
    assert a.label_status() == {"pleural_effusion": "present"}
    assert w.header.text() == "Patient: Doe Jane, PatientID PID-7 (no linked records)"
    wait_idle(qtbot)


def test_long_notes_and_characters_outside_the_bmp(qtbot, medview_home) -> None:
    """Highlights stay on their words with emoji before them (UTF-16 positions in Qt), and
    a note with thousands of findings lists and highlights the first MAX_ROWS."""
    from medview.notes import analyze
    from medview.notes.model import Document
    from medview.ui.panels.notes_panel import MAX_ROWS, NotesPanel

    w = NotesPanel()
    qtbot.addWidget(w, before_close_func=lambda x: x.shutdown())
    text = "FINDINGS: \U0001f600\U0001f600 Mild cardiomegaly. No pneumothorax.\n"
    a = analyze(Document("e", text, "e", "text", "p", "2024-01-01"))
    long_text = "FINDINGS: " + "No pleural effusion. Possible small nodule. " * 600
    b = analyze(Document("l", long_text, "l", "text", "p", "2024-02-01"))
    w._show([a, b], "p", "Patient: p")  # noqa: SLF001 - the display step alone
    assert w.findings.topLevelItemCount() == MAX_ROWS
    assert f"the table lists the first {MAX_ROWS}" in w.status.text()
    assert w.text.toPlainText() == long_text  # the newest document is shown
    w.show_document(0)
    (card,) = [f for f in a.findings if f.label == "cardiomegaly"]
    fmt = _format_at(w, card.start + 2)  # two emoji: two more UTF-16 units before it
    assert fmt.fontUnderline() and fmt.fontWeight() >= 700
    assert not _format_at(w, card.start).fontUnderline()  # the space before it
    rows = [w.findings.topLevelItem(i) for i in range(2)]
    w.jump_to(rows[1])  # pneumothorax, absent
    assert w.text.textCursor().selectedText() == "No pneumothorax."


def test_main_window_wires_ai_to_notes_and_opens_cohort_hits(
    qtbot, medview_home, monkeypatch, xray_dir
) -> None:
    """layout.dock_side_panels: AI result -> notes panel -> flag on the AI panel; a cohort
    hit's series opens in the active viewport."""
    from medview.ui.main_window import MainWindow
    from medview.viewer.session import query_database

    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "0")
    win = MainWindow(load_panels=True)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: "notes" in win.panels and "ai" in win.panels, timeout=30000)
    ai, notes = win.panels["ai"], win.panels["notes"]
    assert win.panel_docks["notes"].windowTitle() == "Reports && notes"
    notes.analyses = [analyze_text_doc("IMPRESSION: No pneumonia. No focal consolidation.")]
    ai.report_result.emit(
        SimpleNamespace(probabilities={"pneumonia": 0.95}, threshold=0.5, in_scope=True, model="m")
    )
    assert notes.discordances and not ai.discordance_label.isHidden()
    ai.report_result.emit(None)
    assert ai.discordance_label.isHidden()
    import_radiograph(xray_dir)
    (series,) = query_database()
    notes.open_series.emit(series)
    qtbot.waitUntil(lambda: win.active.volume is not None, timeout=30000)
    assert win.active.volume.series.study_uid == series.study_uid
    qtbot.waitUntil(lambda: not win.busy, timeout=30000)
    win.close()


def analyze_text_doc(text: str):
    """An analysed one-document report of a patient (for the wiring test)."""
    from medview.notes import analyze
    from medview.notes.model import Document

    return analyze(Document("r", text, "r", "text", "p", "2024-01-01"))
