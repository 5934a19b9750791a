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
