"""Forecast panel standalone with pytest-qt: follows the patient, plots, cancels."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")

from medview.records.model import Observation, Patient, RecordSet  # noqa: E402
from medview.ui.context import StudyContext  # noqa: E402

T0 = datetime(2024, 5, 1)


@pytest.fixture()
def records():
    rng = np.random.default_rng(11)
    rs = RecordSet()
    rs.patients["p1"] = Patient("p1", "Jane Doe", date(1970, 2, 3), identifiers=["MRN-77"])
    rs.patients["p2"] = Patient("p2", "John Roe", date(1980, 1, 1))
    n = 288 * 2
    cgm = 140 + 45 * np.sin(np.arange(n) / 28.0) + rng.normal(0, 4, n)
    rs.observations += [
        Observation(
            "p1", T0 + timedelta(minutes=5 * k), "99504-3", "CGM glucose", float(v), "mg/dL"
        )
        for k, v in enumerate(cgm)
    ]
    rs.observations += [
        Observation("p1", T0 - timedelta(days=180 * k), "4548-4", "HbA1c", v, "%")
        for k, v in enumerate([7.9, 7.6, 7.4, 7.1, 6.9])
    ]
    rs.observations += [
        Observation("p1", T0 - timedelta(days=100 * k), "8480-6", "Systolic", v, "mmHg")
        for k, v in enumerate([128.0, 131.0])
    ]
    rs.observations.append(Observation("p2", T0, "4548-4", "HbA1c", 5.5, "%"))
    return rs


def _forecast_panel(qtbot):
    """A forecast panel owned by pytest-qt, shut down before it is closed."""
    from medview.ui.panels.forecast_panel import ForecastPanel

    p = ForecastPanel()
    qtbot.addWidget(p, before_close_func=lambda w: w.shutdown())
    return p


@pytest.fixture()
def panel(qtbot, records):
    p = _forecast_panel(qtbot)
    p.resize(500, 500)
    return p


def test_follows_patient_and_forecasts_glucose(qtbot, panel, records):
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000) as sig:
        panel.set_records(records)
        panel.set_study_context(StudyContext(patient_id="MRN-77", patient_name="DOE^JANE"))
    r = sig.args[0]
    assert panel.patient == "p1" and "MRN-77" in panel.link_label.text()
    assert r.method == r.winner and r.code == "99504-3" and len(r.times) == 12
    # picker lists codes with counts, most frequent first
    labels = [panel.code_combo.itemText(i) for i in range(panel.code_combo.count())]
    assert labels[0].startswith("CGM glucose [99504-3] - 576 values")
    assert any("HbA1c [4548-4] - 5 values" in t for t in labels)
    x, y = panel.history_curve.getData()
    assert len(x) == 576 and y[0] == pytest.approx(records.observations[0].value)
    fx, fy = panel.forecast_curve.getData()
    assert len(fx) == 13 and fy[-1] == pytest.approx(r.values[-1])
    lx, ly = panel.lower_curve.getData()
    ux, uy = panel.upper_curve.getData()
    assert np.all(ly <= fy) and np.all(fy <= uy)
    assert panel.ref_region.isVisible() and panel.ref_region.getRegion() == (70.0, 180.0)
    assert "won the backtest" in panel.summary.text()
    assert not panel.progress.isVisible()
    # horizon selector
    assert [panel.horizon_combo.itemData(i) for i in range(panel.horizon_combo.count())] == [30, 60]
    with qtbot.waitSignal(panel.forecast_ready, timeout=5000) as sig:
        panel.set_horizon(30)
    assert len(sig.args[0].times) == 6
    # slice changes of the same patient start nothing
    qtbot.waitUntil(lambda: not panel._slot.busy, timeout=5000)
    before = panel._slot.current
    panel.set_study_context(StudyContext(patient_id="MRN-77", patient_name="DOE^JANE", index=5))
    assert panel._slot.current is before and not panel._slot.busy


def test_sparse_code_and_refusal(qtbot, panel, records):
    panel.set_records(records)
    # no study in view and two record patients: nobody is guessed, the user picks
    assert panel.header.text() == "No patient selected" and panel.code_combo.count() == 0
    assert panel.patient_combo.currentIndex() == -1
    panel.patient_combo.setCurrentIndex(panel.patient_combo.findData("p1"))
    qtbot.waitUntil(lambda: panel.result is not None, timeout=10000)
    assert panel.header.text() == "Patient: Jane Doe (born 1970-02-03)"
    idx = panel.code_combo.findData("4548-4")
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000) as sig:
        panel.code_combo.setCurrentIndex(idx)
    r = sig.args[0]
    assert r.method == "gp" and r.code == "4548-4"
    assert panel.horizon_combo.currentText() == "1 year"
    assert panel.ref_region.getRegion() == (4.0, 5.7)
    # two values of systolic BP: refused, with the reason shown
    idx = panel.code_combo.findData("8480-6")
    panel.code_combo.setCurrentIndex(idx)
    qtbot.waitUntil(lambda: "no forecast" in panel.summary.text(), timeout=10000)
    assert "at least 3" in panel.summary.text()
    assert panel.history_curve.getData()[0] is None or len(panel.history_curve.getData()[0]) == 0


def test_no_match_is_shown(qtbot, panel, records):
    panel.set_records(records)
    panel.set_study_context(StudyContext(patient_id="UNKNOWN-1", patient_name="Nobody^Here"))
    assert "no record match" in panel.link_label.text()
    assert panel.header.text() == "No patient selected" and panel.code_combo.count() == 0


def test_disclaimer_shown(panel):
    """Issue 10 item 6: the forecast panel carries a standing disclaimer, as AI and suggestions."""
    from medview.commands.forecast import DISCLAIMER

    assert panel.notice.text() == DISCLAIMER and "not for diagnostic use" in DISCLAIMER
    assert panel.plot.toolTip() == DISCLAIMER


def test_cancel(qtbot, panel, records):
    panel.set_records(records)
    panel.cancel()
    assert panel.summary.text() == "cancelled"
    assert not panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: not panel._slot.busy, timeout=5000)
    assert panel.result is None


def test_loads_cgm_file(qtbot, panel, tmp_path):
    path = tmp_path / "pump.csv"
    lines = [
        f"{(T0 + timedelta(minutes=5 * k)).isoformat()},{120 + 30 * np.sin(k / 20):.1f}"
        for k in range(300)
    ]
    path.write_text("\n".join(lines) + "\n")
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000) as sig:
        panel.open_path(str(path), "cgm")
    assert sig.args[0].patient == "pump" and sig.args[0].method == sig.args[0].winner


def test_follows_patient_from_saved_records(qtbot, medview_home, records):
    """Without set_records, the panel links the patient in view against the database."""
    from medview.records import save_records

    save_records(records)
    p = _forecast_panel(qtbot)
    with qtbot.waitSignal(p.forecast_ready, timeout=15000) as sig:
        p.set_study_context(
            StudyContext(patient_name="Doe^Jane", birth_date=date(1970, 2, 3), patient_id="X9")
        )
    assert p.patient == "p1" and "name" in p.link_label.text()
    assert sig.args[0].code == "99504-3" and len(sig.args[0].history_values) == 576


def test_late_result_of_another_patient_is_dropped(qtbot, panel, records):
    """A forecast asked for under an older snapshot never reaches the plot (issue 10 item 2)."""
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000) as sig:
        panel.set_records(records)
        panel.set_study_context(StudyContext(patient_id="MRN-77"))
    jane, old_view, old_req = sig.args[0], panel.shown, panel._request
    panel.set_study_context(StudyContext(patient_name="Roe^John", birth_date=date(1980, 1, 1)))
    assert panel.header.text() == "Patient: John Roe (born 1980-01-01)"
    qtbot.waitUntil(lambda: "no forecast" in panel.summary.text(), timeout=10000)  # 1 value
    panel._show(jane, old_req, old_view)  # Jane's forecast arriving late
    assert panel.result is None and panel.shown.patient_id == "p2"
    assert panel.history_curve.getData()[0] is None or len(panel.history_curve.getData()[0]) == 0
    assert panel.header.text() == "Patient: John Roe (born 1980-01-01)"


def test_unreadable_records_keep_the_patient_shown(qtbot, panel, records, tmp_path):
    """A records folder that cannot be read is said in one line; the shown patient stays."""
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000):
        panel.set_records(records)
        panel.set_study_context(StudyContext(patient_id="MRN-77"))
    shown = panel.result
    with qtbot.waitSignal(panel.notify, timeout=10000) as sig:
        panel.open_path(str(tmp_path), "records")  # empty folder: nothing importable
    assert str(tmp_path) in sig.args[0] and "\n" not in sig.args[0]
    assert "not loaded" in panel.link_label.text()
    assert panel.result is shown and panel.header.text() == "Patient: Jane Doe (born 1970-02-03)"


def test_persistence_wins_is_said_and_agp_clarke_shown(qtbot, panel, tmp_path):
    """Issue 15: a forecast that loses to persistence is not presented as the answer."""
    rng = np.random.default_rng(2)
    v = np.clip(150 + np.cumsum(rng.choice([-6, 6], 288 * 3)), 40, 390)  # a random walk
    path = tmp_path / "walk.csv"
    path.write_text(
        "\n".join(f"{(T0 + timedelta(minutes=5 * k)).isoformat()},{x:.0f}" for k, x in enumerate(v))
        + "\n"
    )
    with qtbot.waitSignal(panel.forecast_ready, timeout=10000) as sig:
        panel.open_path(str(path), "cgm")
    r = sig.args[0]
    assert r.method == r.winner == "persistence"
    assert np.all(r.values == v[-1])  # glucose held at the last reading
    text = panel.summary.text()
    assert "Persistence wins" in text and "LSTM</b> forecast" not in text
    assert "Clarke error grid (persistence): A " in text
    mean = v.mean()
    assert "<b>AGP</b>" in text and f"mean {mean:.0f} mg/dL" in text
    assert f"GMI {3.31 + 0.02392 * mean:.1f}%" in text
