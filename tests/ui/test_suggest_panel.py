"""Suggestions panel (pytest-qt): follows the study's patient, filters, working conditions."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from medview.records import RecordSet, load_records  # noqa: E402
from medview.ui.context import StudyContext  # noqa: E402
from tests.helpers.panel_helpers import add_panel  # noqa: E402

HYPERTENSION = "59621000"
LISINOPRIL = "314076"
ADULT = "5a595dfb-9ecf-d4ac-2893-b3e1ced04951"  # hypertension, on lisinopril
CHILD = "3edac2e3-d223-6fae-d515-daf96ef6bc76"  # no hypertension


@pytest.fixture(scope="module")
def csv_records(csv_dir: Path) -> RecordSet:
    return load_records(csv_dir)


@pytest.fixture()
def panel(qtbot, csv_records):
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    return add_panel(qtbot, SuggestionsPanel(records=csv_records))


def _context(qtbot, panel, ctx: StudyContext):
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.set_study_context(ctx)
    return blocker.args[0]


def test_follows_study_patient(qtbot, panel, csv_records) -> None:
    assert "not clinical guidance" in panel.notice.text()
    res = _context(qtbot, panel, StudyContext(patient_id=ADULT))
    assert panel.patient == ADULT and "matched by PatientID" in panel.link_label.text()
    assert res.status == "ok" and panel.tree.topLevelItemCount() == len(res.suggestions) > 0
    history = {(t.kind, t.code) for t in csv_records.treatments if t.patient_id == ADULT}
    shown = [panel.tree.topLevelItem(i).data(0, 256) for i in range(panel.tree.topLevelItemCount())]
    assert not {(s.kind, s.code) for s in shown} & history
    assert panel.current_list.topLevelItemCount() == len(res.current) + len(res.past)
    assert panel.why.topLevelItemCount() == len(res.similar) > 0
    assert "given to" in panel.evidence.toPlainText()  # evidence of the first suggestion


def test_name_birth_date_and_no_match(qtbot, panel, csv_records) -> None:
    p = csv_records.patients[CHILD]
    first, last = p.name.split(" ")
    res = _context(
        qtbot, panel, StudyContext(patient_name=f"{last}^{first}", birth_date=p.birth_date)
    )
    assert panel.patient == CHILD and res.patient == CHILD
    panel.set_study_context(
        StudyContext(patient_id="XYZ", patient_name="Nobody^Here", birth_date=date(1900, 1, 1))
    )
    assert "No match" in panel.link_label.text()
    assert panel.patient == "" and panel.tree.topLevelItemCount() == 0
    assert panel.header.text() == "No patient selected" and panel.result is None
    assert panel.patient_combo.currentIndex() == -1


def test_header_names_the_listed_patient_and_late_results_drop(qtbot, panel, csv_records) -> None:
    """Issue 10 item 2: the header and the list come from one snapshot; older results drop."""
    res = _context(qtbot, panel, StudyContext(patient_id=ADULT))
    adult = csv_records.patients[ADULT]
    assert panel.header.text() == f"Patient: {adult.name} (born {adult.birth_date.isoformat()})"
    assert panel.shown.patient_id == res.patient == ADULT
    old_view, old_req = panel.shown, panel._request
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.select_patient(CHILD)  # picked by hand
    child = csv_records.patients[CHILD]
    assert blocker.args[0].patient == CHILD and panel.header.text().startswith(
        f"Patient: {child.name}"
    )
    rows = panel.tree.topLevelItemCount()
    # the adult's result arriving late (a worker that ignored its cancel): dropped
    panel._computed((None, res), old_req, old_view)
    assert panel.result.patient == CHILD and panel.tree.topLevelItemCount() == rows
    assert panel.header.text().startswith(f"Patient: {child.name}")


def test_filters_and_working_condition(qtbot, panel) -> None:
    _context(qtbot, panel, StudyContext(patient_id=CHILD))
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.add_working_condition(HYPERTENSION, "Hypertension")
    res = blocker.args[0]
    assert LISINOPRIL in [s.code for s in res.suggestions]
    assert "Hypertension" in panel.working_label.text()
    panel.kind_boxes["medication"].setChecked(False)
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.kind_boxes["procedure"].setChecked(False)
    res = blocker.args[0]
    assert res.suggestions and all(s.kind == "careplan" for s in res.suggestions)
    # an AI finding nobody in the records has: said so, no crash
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.add_working_condition("233604007", "Pneumonia")
    assert "No patient in these records has Pneumonia" in blocker.args[0].message


def test_not_enough_data(qtbot, panel, csv_records) -> None:
    treated = {t.patient_id for t in csv_records.treatments}
    lonely = next(p for p in csv_records.patients if p not in treated)
    res = _context(qtbot, panel, StudyContext(patient_id=lonely))
    assert res.status == "not_enough_data"
    assert "Not enough data" in panel.status.text()
    assert panel.tree.topLevelItemCount() == 0


def test_open_saves_and_reloads_from_database(qtbot, medview_home, records_dir) -> None:
    from medview.records import load_saved_records
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    first = add_panel(qtbot, SuggestionsPanel())
    with qtbot.waitSignal(first.suggestions_ready, timeout=30000):
        first.set_study_context(StudyContext(patient_id=ADULT))  # nothing loaded yet
        first.open_path(str(records_dir / "synthea_csv_ma27"))
    assert len(load_saved_records().patients) == 27
    # a later session: picks the records up from the database
    second = add_panel(qtbot, SuggestionsPanel())
    with qtbot.waitSignal(second.suggestions_ready, timeout=30000) as blocker:
        second.set_study_context(StudyContext(patient_id=ADULT))
    assert blocker.args[0].patient == ADULT and blocker.args[0].status == "ok"
