"""Issue 10 item 2: one patient in view, in the forecast and the suggestion panels.

The issue's path, on the shared data: the CR (its patient is in no records) in
view, Records > Folder > synthea_csv_ma27, pick Caleb651, then Records > Folder >
synthea_fhir. Before the fix the patient box said "Elbert916 Crooks415" while
the plot, the picker and the summary still showed Caleb651's glucose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pyqtgraph")

from medview.records.patient_context import NO_PATIENT, parse_dicom_date  # noqa: E402
from medview.ui.context import StudyContext  # noqa: E402

CALEB = "5f8d3e13-bc80-dd66-0f1b-d24f9692a697"  # Caleb651 Pagac496, synthea_csv_ma27
ADULT = "5a595dfb-9ecf-d4ac-2893-b3e1ced04951"  # in synthea_csv_ma27, has treatments


def _cr_context(xray_dir: Path) -> StudyContext:
    import pydicom

    ds = pydicom.dcmread(xray_dir / "cr_chest_pa_jpeg_baseline.dcm", stop_before_pixels=True)
    return StudyContext(
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        birth_date=parse_dicom_date(str(ds.get("PatientBirthDate", ""))),
    )


def _forecast_shows_one_patient(panel) -> str:
    """Everything the forecast panel displays belongs to one patient; returns its id ("" none)."""
    x, _y = panel.history_curve.getData()
    plotted = x is not None and len(x) > 0
    combo_pid = panel.patient_combo.currentData() or ""
    if plotted:
        assert panel.result is not None
        assert panel.result.patient == combo_pid, (
            f"plot shows {panel.result.patient} while the patient box says "
            f"{panel.patient_combo.currentText()!r}"
        )
    if not combo_pid:
        assert not plotted and panel.code_combo.count() == 0
    return combo_pid


@pytest.fixture()
def forecast(qtbot, medview_home):
    from medview.ui.panels.forecast_panel import ForecastPanel

    p = ForecastPanel()
    qtbot.addWidget(p)
    yield p
    qtbot.waitUntil(lambda: not p._slot.busy, timeout=30000)
    p.shutdown()


def _open(qtbot, panel, path: Path) -> None:
    """Records > Folder > path, and wait until the panel shows the new records."""
    before = panel.records
    panel.open_path(str(path), "records")
    qtbot.waitUntil(
        lambda: panel.records is not None and panel.records is not before, timeout=30000
    )
    qtbot.waitUntil(lambda: not panel._slot.busy, timeout=30000)


def test_issue_path_forecast(qtbot, forecast, xray_dir, records_dir) -> None:
    panel = forecast
    panel.set_study_context(_cr_context(xray_dir))
    qtbot.waitUntil(lambda: not panel._slot.busy, timeout=30000)  # empty database
    _open(qtbot, panel, records_dir / "synthea_csv_ma27")
    assert "no record match" in panel.link_label.text()
    assert _forecast_shows_one_patient(panel) == ""
    # pick Caleb651: his glucose is forecast
    with qtbot.waitSignal(panel.forecast_ready, timeout=30000) as sig:
        panel.patient_combo.setCurrentIndex(panel.patient_combo.findData(CALEB))
    r = sig.args[0]
    assert r.patient == CALEB and r.code == "2339-0" and len(r.history_values) == 4
    assert _forecast_shows_one_patient(panel) == CALEB
    assert panel.header.text() == "Patient: Caleb651 Pagac496 (born 1971-05-16)"
    # Records > Folder > synthea_fhir: Caleb651 is not there, the CR's patient neither
    _open(qtbot, panel, records_dir / "synthea_fhir")
    assert _forecast_shows_one_patient(panel) == ""
    assert panel.header.text() == NO_PATIENT
    assert panel.result is None and panel.summary.text() == ""
    assert panel.code_combo.count() == 0 and "no record match" in panel.link_label.text()
    assert panel.patient_combo.count() == 12  # the FHIR patients, none picked
    qtbot.wait(300)  # nothing arrives later either
    assert panel.history_curve.getData()[0] is None or len(panel.history_curve.getData()[0]) == 0


@pytest.fixture()
def both(qtbot, medview_home):
    """The two panels on one shared PatientRecords, as the main window docks them."""
    from medview.records import PatientRecords
    from medview.ui import workers
    from medview.ui.panels.forecast_panel import ForecastPanel
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    shared = PatientRecords()
    fc, sg = ForecastPanel(patients=shared), SuggestionsPanel(patients=shared)
    for w in (fc, sg):
        qtbot.addWidget(w)
    yield shared, fc, sg
    qtbot.waitUntil(lambda: not workers.active_tasks(), timeout=30000)
    fc.shutdown()
    sg.shutdown()


def test_issue_path_both_panels_follow_one_patient(qtbot, both, xray_dir, records_dir) -> None:
    from medview.records import load_records

    shared, fc, sg = both
    cr = _cr_context(xray_dir)
    for w in (fc, sg):
        w.set_study_context(cr)
    qtbot.waitUntil(lambda: not fc._slot.busy and not sg._slot.busy, timeout=30000)
    csv = load_records(records_dir / "synthea_csv_ma27")
    fc.set_records(csv)  # one load serves both panels
    assert sg.records is csv and fc.records is csv
    assert fc.header.text() == sg.header.text() == NO_PATIENT
    assert sg.tree.topLevelItemCount() == 0 and sg.patient_combo.currentIndex() == -1
    # pick Caleb651 in the forecast panel: the suggestions panel follows
    with (
        qtbot.waitSignal(fc.forecast_ready, timeout=30000) as f_sig,
        qtbot.waitSignal(sg.suggestions_ready, timeout=30000) as s_sig,
    ):
        fc.patient_combo.setCurrentIndex(fc.patient_combo.findData(CALEB))
    assert f_sig.args[0].patient == s_sig.args[0].patient == CALEB
    assert fc.header.text() == sg.header.text() == "Patient: Caleb651 Pagac496 (born 1971-05-16)"
    assert sg.patient_combo.currentData() == CALEB
    # Records > Folder > synthea_fhir (in the suggestions panel this time): both go empty
    before = shared.generation
    sg.open_path(str(records_dir / "synthea_fhir"))
    qtbot.waitUntil(lambda: shared.generation > before, timeout=30000)
    for w in (fc, sg):
        assert w.header.text() == NO_PATIENT and w.patient == "" and w.result is None
        assert w.patient_combo.count() == 12 and w.patient_combo.currentIndex() == -1
    assert fc.code_combo.count() == 0 and sg.tree.topLevelItemCount() == 0
    assert "no record match" in fc.link_label.text() and "No match" in sg.link_label.text()
    # another study whose patient IS in the CSV records: both show that patient
    fc.set_records(csv)
    with qtbot.waitSignal(sg.suggestions_ready, timeout=30000) as s_sig:
        for w in (fc, sg):
            w.set_study_context(StudyContext(patient_id=ADULT))
    adult = csv.patients[ADULT]
    want = f"Patient: {adult.name} (born {adult.birth_date.isoformat()})"
    assert fc.header.text() == sg.header.text() == want and s_sig.args[0].patient == ADULT
    qtbot.waitUntil(
        lambda: fc.result is not None or "no forecast" in fc.summary.text(), timeout=30000
    )
    assert fc.result is None or fc.result.patient == ADULT
    # and back to the CR: "No patient selected" again, nothing of the adult left
    for w in (fc, sg):
        w.set_study_context(cr)
    for w in (fc, sg):
        assert w.header.text() == NO_PATIENT and w.result is None
    assert sg.tree.topLevelItemCount() == 0 and fc.code_combo.count() == 0
