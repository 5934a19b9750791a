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
from tests.core.test_patient_records import synthetic_sets  # noqa: E402
from tests.helpers.panel_helpers import wait_idle  # noqa: E402

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
    from medview.ui.panels.forecast_panel import ForecastPanel
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    shared = PatientRecords()
    fc, sg = ForecastPanel(patients=shared), SuggestionsPanel(patients=shared)
    for w in (fc, sg):
        qtbot.addWidget(w)
    yield shared, fc, sg
    wait_idle(qtbot)
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


# -- randomized interleavings ---------------------------------------------------------
# Small synthetic record sets; the workers are replaced by a queue whose jobs run when
# the test says, in any order, cancelled or not (the worst a slow worker can do).


STUDIES = [
    StudyContext(),  # no study in view
    StudyContext(patient_id="MRN-A1", patient_name="Alpha^Ann"),
    StudyContext(patient_name="Beta^Bob", birth_date=__import__("datetime").date(1980, 2, 2)),
    StudyContext(patient_id="DUP"),  # ambiguous in the CSV set
    StudyContext(patient_id="UNKNOWN-9", patient_name="Nobody^Here"),  # the CR of the issue
    StudyContext(patient_name="Zeta^Fay", birth_date=__import__("datetime").date(1955, 5, 5)),
    StudyContext(patient_id="pump"),
]


class _Job:
    def __init__(self, slot, fn, args, on_result, on_error, name) -> None:
        self.slot, self.fn, self.args = slot, fn, args
        self.on_result, self.on_error, self.name = on_result, on_error, name
        self.running = True

    def cancel(self) -> None:  # a late worker: its result is delivered all the same
        pass


class _QueueSlot:
    """Stands in for TaskSlot: jobs wait in a shared queue until delivered."""

    def __init__(self, queue: list) -> None:
        self.queue, self.current, self.closed = queue, None, False

    def run(self, fn, *args, on_result, on_error=None, name="", **_callbacks):
        job = _Job(self, fn, args, on_result, on_error, name)
        self.queue.append(job)
        self.current = job
        return job

    def cancel(self) -> None:
        self.current = None

    def close(self) -> None:
        self.closed = True

    @property
    def busy(self) -> bool:
        return False


def _deliver(job: _Job) -> None:
    job.running = False
    try:
        value = job.fn(*job.args, state=None)
    except ValueError as exc:
        if job.on_error is not None:
            job.on_error(str(exc))
        return
    job.on_result(value)


def _fake_forecast(records, patient: str, code: str, horizon, state=None):
    from datetime import timedelta

    import numpy as np

    from medview.forecast.api import ForecastResult

    obs = sorted(
        (o for o in records.observations if o.patient_id == patient and o.code == code),
        key=lambda o: o.time,
    )
    if len(obs) < 3:
        raise ValueError(f"{code}: needs at least 3 values, {patient} has {len(obs)}")
    last = obs[-1]
    times = [last.time + timedelta(minutes=(horizon or 60) * k / 3) for k in (1, 2, 3)]
    values = np.array([last.value + 0.25 * k for k in (1, 2, 3)])
    return ForecastResult(
        patient=patient,
        code=code,
        display=last.display,
        unit=last.unit,
        method="gp",
        history_times=[o.time for o in obs],
        history_values=np.array([o.value for o in obs]),
        times=times,
        values=values,
        lower=values - 1,
        upper=values + 1,
    )


def _fake_suggest(records, recommender, patient: str, k, working, kinds, state=None):
    from medview.treatments.recommender import Suggestion, SuggestionResult

    rows = [
        Suggestion("medication", f"{j}", f"tx for {patient} #{j}", 0.5, [f"ev {patient}"], {})
        for j in range(1 + len(patient) % 3)
    ]
    return None, SuggestionResult(patient, "ok", "", suggestions=rows)


class _Oracle:
    """Which record patient must be shown: the policy of the issue, written independently."""

    def __init__(self) -> None:
        self.records = None
        self.study = StudyContext()
        self.picked = ""
        self.expected = ""

    def update(self) -> None:
        from medview.records import link_patient

        rs, st = self.records, self.study
        if rs is None:
            self.expected = ""
        elif self.picked in rs.patients:
            self.expected = self.picked
        elif st.patient_id or st.patient_name:
            res = link_patient(rs, st.patient_id, st.patient_name, st.birth_date)
            self.expected = res.record_patient_id if res.matched else ""
        else:
            self.expected = next(iter(rs.patients)) if len(rs.patients) == 1 else ""


def _wrong_displays(fc, sg, shared, oracle) -> list[str]:
    """Everything displayed belongs to the named patient, or the panel is empty."""
    import numpy as np

    from medview.forecast.api import observation_summary

    bad = []
    view = shared.view
    if view.patient_id != oracle.expected:
        bad.append(f"context shows {view.patient_id!r}, expected {oracle.expected!r}")
    for w in (fc, sg):
        name = type(w).__name__
        if w.shown is not view or w.header.text() != view.header:
            bad.append(f"{name}: header {w.header.text()!r} is not the context's {view.header!r}")
        pid = w.shown.patient_id
        if (w.patient_combo.currentData() or "") != pid:
            bad.append(f"{name}: picker on {w.patient_combo.currentData()!r}, header {pid!r}")
        if w.result is not None and w.result.patient != pid:
            bad.append(f"{name}: result of {w.result.patient!r} under {pid!r}")
    pid, rs = view.patient_id, view.records
    # forecast: code picker, plot, summary
    codes = [fc.code_combo.itemData(i) for i in range(fc.code_combo.count())]
    want_codes = [c for c, *_ in observation_summary(rs, pid)] if pid else []
    if codes != want_codes:
        bad.append(f"forecast codes {codes} are not {pid!r}'s {want_codes}")
    x, y = fc.history_curve.getData()
    plotted = x is not None and len(x) > 0
    if plotted:
        own = [o.value for o in rs.observations if o.patient_id == pid and o.code == fc.code]
        if fc.result is None or not np.array_equal(np.sort(y), np.sort(np.asarray(own))):
            bad.append(f"forecast plot values {list(y)[:3]} are not {pid!r}'s {fc.code}")
        if f"{fc.result.values[-1]:.1f}" not in fc.summary.text():
            bad.append("forecast summary is not the plotted result's")
    if not pid:
        if plotted or fc.result is not None or fc.summary.text() or fc.header.text() != NO_PATIENT:
            bad.append("forecast panel not empty without a patient")
        if sg.result is not None or sg.tree.topLevelItemCount() or sg.header.text() != NO_PATIENT:
            bad.append("suggestions panel not empty without a patient")
    elif fc.summary.text() and not plotted and "no forecast" not in fc.summary.text():
        bad.append(f"forecast summary {fc.summary.text()!r} without a plot")
    # suggestions: every row is the named patient's
    for i in range(sg.tree.topLevelItemCount()):
        text = sg.tree.topLevelItem(i).text(0)
        if not text.startswith(f"tx for {pid} #"):
            bad.append(f"suggestion row {text!r} under {pid!r}")
    return bad


def _interleave(qtbot, monkeypatch, sequences: int, seed: int) -> tuple[int, int, list[str]]:
    import random

    from medview.records import PatientRecords
    from medview.ui.panels import base, forecast_panel, suggest_panel

    sets = synthetic_sets()
    monkeypatch.setattr(forecast_panel, "_forecast", _fake_forecast)
    monkeypatch.setattr(suggest_panel, "_compute", _fake_suggest)
    monkeypatch.setattr(forecast_panel, "_load_path", lambda name, kind, state=None: sets[name])
    monkeypatch.setattr(suggest_panel, "_load_path", lambda name, state=None: sets[name])
    # the saved records load once per shared context, by whichever panel asks first
    monkeypatch.setattr(base, "_load_saved", lambda state=None: sets["empty"])
    queue: list[_Job] = []
    shared = PatientRecords()
    fc = forecast_panel.ForecastPanel(patients=shared)
    sg = suggest_panel.SuggestionsPanel(patients=shared)
    for w in (fc, sg):
        w._slot.close()  # the real slots are never used
        w._slot = _QueueSlot(queue)
        qtbot.addWidget(w)
    rng = random.Random(seed)
    oracle = _Oracle()
    steps, failures = 0, []
    names = list(sets)

    def step(seq: int, job: _Job | None = None) -> None:
        """Deliver ``job`` (when given), update the oracle, note every wrong display."""
        nonlocal steps
        if job is not None:
            _deliver(job)
            if job.name in ("open records", "load records"):
                oracle.records, oracle.picked = sets[job.args[0]], ""
        oracle.update()
        steps += 1
        failures.extend(
            f"seq {seq} step {steps}: {b}" for b in _wrong_displays(fc, sg, shared, oracle)
        )

    for seq in range(sequences):
        # a fresh start: no records, no study, nothing pending
        queue.clear()
        shared.set_records(None)
        for w in (fc, sg):
            w.set_study_context(StudyContext())
        oracle.__init__()
        for _ in range(rng.randint(6, 14)):
            action = rng.choice(("study", "load", "open", "pick", "horizon", "code", "deliver"))
            if action == "study":
                ctx = rng.choice(STUDIES)
                for w in (fc, sg):
                    w.set_study_context(ctx)
                if (ctx.patient_id, ctx.patient_name, ctx.birth_date) != (
                    oracle.study.patient_id,
                    oracle.study.patient_name,
                    oracle.study.birth_date,
                ):
                    oracle.study, oracle.picked = ctx, ""
            elif action == "load":  # records handed over in memory
                rs = sets[rng.choice(names)]
                rng.choice((fc, sg)).set_records(rs)
                oracle.records, oracle.picked = rs, ""
            elif action == "open":  # Records > Folder: on the worker, arrives later
                name = rng.choice(names)
                if rng.random() < 0.5:
                    fc.open_path(name, "records")
                else:
                    sg.open_path(name)
            elif action == "pick":
                w = rng.choice((fc, sg))
                index = rng.randint(-1, w.patient_combo.count() - 1)
                pid = w.patient_combo.itemData(index) if index >= 0 else ""
                w.patient_combo.setCurrentIndex(index)
                if (pid or "") != oracle.expected:
                    oracle.picked = pid or ""
            elif action == "horizon" and fc.horizon_combo.count():
                fc.horizon_combo.setCurrentIndex(rng.randrange(fc.horizon_combo.count()))
            elif action == "code" and fc.code_combo.count():
                fc.code_combo.setCurrentIndex(rng.randrange(fc.code_combo.count()))
            elif action == "deliver" and queue:
                jobs = rng.sample(queue, rng.randint(1, len(queue)))
                for job in jobs:
                    queue.remove(job)
                    step(seq, job)
                continue
            step(seq)
        # drain the queue: late results of every kind arrive last
        rng.shuffle(queue)
        while queue:
            step(seq, queue.pop())
    for w in (fc, sg):
        w.shutdown()
    return sequences, steps, failures


def test_randomized_interleavings_show_one_patient(qtbot, monkeypatch) -> None:
    """>= 1,000 random interleavings; after every step no value of another patient is shown."""
    sequences, steps, failures = _interleave(qtbot, monkeypatch, sequences=1000, seed=20261201)
    print(f"{sequences} interleavings, {steps} checked steps, {len(failures)} wrong displays")
    assert sequences >= 1000 and steps > 5 * sequences
    assert not failures, "\n".join(failures[:10])


@pytest.mark.slow
def test_randomized_interleavings_more_seeds(qtbot, monkeypatch) -> None:
    """The same with 5,000 more interleavings on other seeds (slow)."""
    for seed in (1, 2, 3, 4, 5):
        _, _, failures = _interleave(qtbot, monkeypatch, sequences=1000, seed=seed)
        assert not failures, "\n".join(failures[:10])


def test_saved_records_load_once_for_both_panels(qtbot, monkeypatch, medview_home) -> None:
    """Records follow the patient once: one database load serves both panels."""
    from medview.records import PatientRecords
    from medview.ui.panels import base, forecast_panel, suggest_panel
    from medview.ui.panels.forecast_panel import ForecastPanel
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    sets = synthetic_sets()
    loads: list[int] = []

    def load_saved(state=None):
        loads.append(1)
        return sets["csv"]

    monkeypatch.setattr(base, "_load_saved", load_saved)
    monkeypatch.setattr(forecast_panel, "_forecast", _fake_forecast)
    monkeypatch.setattr(suggest_panel, "_compute", _fake_suggest)
    shared = PatientRecords()
    panels = [ForecastPanel(patients=shared), SuggestionsPanel(patients=shared)]
    for w in panels:
        qtbot.addWidget(w)
    for ctx in (StudyContext(patient_id="MRN-A1"), StudyContext(patient_id="MRN-B2")):
        for w in panels:
            w.set_study_context(ctx)
    qtbot.waitUntil(lambda: shared.records is not None, timeout=30000)
    wait_idle(qtbot)
    assert loads == [1]
    assert all(w.records is sets["csv"] for w in panels)
    assert all(w.patient == "" for w in panels)  # MRN-B2 is not in these records
    for w in panels:
        w.shutdown()


def test_the_docked_panels_meet_the_side_panel_protocol(qtbot) -> None:
    from PySide6.QtWidgets import QWidget

    from medview.records import PatientRecords
    from medview.ui.panels.base import (
        PANEL_SPECS,
        FindingSink,
        FindingSource,
        OverlaySource,
        SidePanel,
        create_panel,
    )

    parent, shared = QWidget(), PatientRecords()
    qtbot.addWidget(parent)
    panels = {s.key: create_panel(s, parent, shared) for s in PANEL_SPECS}
    assert all(isinstance(p, SidePanel) for p in panels.values())
    assert isinstance(panels["ai"], OverlaySource) and isinstance(panels["ai"], FindingSource)
    assert isinstance(panels["suggest"], FindingSink)
    assert not isinstance(panels["forecast"], OverlaySource)
    # the records panels share the one context given
    assert panels["forecast"].patients is shared and panels["suggest"].patients is shared
    assert not isinstance(QWidget(), SidePanel)
    for p in panels.values():
        p.shutdown()
