"""Forecast dock: a patient's observation history, forecast and 80 % interval.

Follows the patient of the study in view (``set_study_context``) through a
:class:`~medview.records.patient_context.PatientRecords` (shared with the
suggestions panel): the records (given with :meth:`ForecastPanel.set_records`,
opened with the buttons, or the ones saved in the local database) are linked to
the imaging patient by PatientID, or by name and birth date; when nothing
matches the panel says so and shows "No patient selected" with nothing plotted.
A header names the patient whose data is shown; it, the pickers, the plot and
the summary all come from one snapshot of the context, and a forecast that
arrives for an older snapshot is dropped. A standing disclaimer says forecasts
are not for diagnostic use.
The observation picker lists the patient's codes with their counts; choosing one
(or a horizon) starts the forecast on a worker (:class:`TaskSlot`), with
progress and cancel. The plot shows the history, the forecast, its 80 % band
and the reference range; the summary line says which method won the backtest.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QVBoxLayout,
)

from medview.disclaimers import FORECAST as DISCLAIMER
from medview.records.patient_context import PatientView
from medview.ui.panels.base import RecordsPanel

log = logging.getLogger(__name__)

DENSE_HORIZONS = [("30 min", 30), ("60 min", 60)]
SPARSE_HORIZONS = [
    ("3 months", 131490),
    ("6 months", 262980),
    ("1 year", 525960),
    ("2 years", 1051920),
]


# -- worker functions (run on the pool; Qt-free) -------------------------------


def _load_path(path: str, kind: str, state: Any = None) -> Any:
    if kind == "cgm":
        from medview.records.cgm import load_cgm_csv

        return load_cgm_csv(path)
    from medview.records import import_records

    return import_records(path, state=state)


def _forecast(records: Any, patient: str, code: str, horizon: int | None, state: Any = None) -> Any:
    from medview.forecast.api import forecast_records

    return forecast_records(records, patient, code, horizon, state=state)


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.timestamp()


class ForecastPanel(RecordsPanel):
    """Dock panel; see the module docstring."""

    forecast_ready = Signal(object)  # the ForecastResult shown (tests, other panels)
    COMPUTE_TASK = "forecast"
    NO_SAVED_RECORDS = "no records in the local database; open records or a CGM CSV"

    # -- layout --------------------------------------------------------------
    def _build(self, lay: QVBoxLayout) -> None:
        import pyqtgraph as pg

        open_rec = QPushButton("Records")
        open_rec.setToolTip("open FHIR JSON/NDJSON or a Synthea CSV folder")
        menu = QMenu(open_rec)
        menu.addAction("Folder (Synthea CSV or FHIR)...", self._open_records_folder)
        menu.addAction("File (FHIR .json / .ndjson)...", self._open_records_file)
        open_rec.setMenu(menu)
        open_cgm = QPushButton("CGM CSV...")
        open_cgm.clicked.connect(self._open_cgm)
        self.build_patient_rows(
            lay, DISCLAIMER, "the patient whose data this panel shows", [open_rec, open_cgm]
        )

        row = QHBoxLayout()
        self.code_combo = QComboBox()
        self.code_combo.setToolTip("observation (LOINC) with its number of values")
        self.code_combo.currentIndexChanged.connect(self._code_changed)
        self.horizon_combo = QComboBox()
        self.horizon_combo.currentIndexChanged.connect(lambda _i: self.start_forecast())
        row.addWidget(self.code_combo, 1)
        row.addWidget(QLabel("ahead"))
        row.addWidget(self.horizon_combo)
        lay.addLayout(row)

        lay.addLayout(self.task_row())

        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem()})
        self.plot.setBackground("w")
        self.plot.setToolTip(DISCLAIMER)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(5, 5))
        self.ref_region = pg.LinearRegionItem(
            orientation="horizontal", movable=False, brush=pg.mkBrush(0, 160, 0, 30)
        )
        self.ref_region.setZValue(-10)
        self.ref_region.setVisible(False)
        for line in self.ref_region.lines:
            line.setPen(pg.mkPen(0, 160, 0, 80))
        self.plot.addItem(self.ref_region)
        self.history_curve = self.plot.plot(
            [], [], pen=pg.mkPen(60, 60, 60), symbol="o", symbolSize=4, name="history"
        )
        self.lower_curve = self.plot.plot([], [], pen=pg.mkPen(30, 90, 200, 90))
        self.upper_curve = self.plot.plot([], [], pen=pg.mkPen(30, 90, 200, 90))
        self.band = pg.FillBetweenItem(
            self.lower_curve, self.upper_curve, brush=pg.mkBrush(30, 90, 200, 50)
        )
        self.plot.addItem(self.band)
        self.forecast_curve = self.plot.plot(
            [],
            [],
            pen=pg.mkPen(30, 90, 200, width=2),
            symbol="o",
            symbolSize=4,
            name="forecast (80% band)",
        )
        lay.addWidget(self.plot, 1)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.summary)
        self.message_label = self.summary

    # -- records panel hooks ---------------------------------------------------
    def _patient_items(self, records: Any) -> list[tuple[str, str]]:
        counts: dict[str, int] = {}
        for o in records.observations:
            counts[o.patient_id] = counts.get(o.patient_id, 0) + 1
        return [
            (f"{p.name or pid}  ({counts.get(pid, 0)} observations)", pid)
            for pid, p in sorted(records.patients.items())
        ]

    def _view_applied(self) -> None:
        self._fill_codes()

    def _show_error(self, message: str) -> None:
        self.summary.setText(f"<b>no forecast:</b> {message}")
        self._clear_results(keep_summary=True)
        self.notify.emit(message)

    def _no_match_text(self, view: PatientView) -> str:
        msg = view.link.message if view.link is not None else ""
        msg = msg or "no PatientID or name + birth date match"
        return f"<b>no record match</b> for the patient in view ({view.study.label}): {msg}"

    def _loaded_text(self, view: PatientView, records: Any) -> str:
        return f"{len(records.patients)} record patient(s) loaded; {view.reason}"

    def _open_records_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Records folder (Synthea CSV or FHIR)")
        if path:
            self.open_path(path, "records")

    def _open_records_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "FHIR file", "", "FHIR (*.json *.ndjson)")
        if path:
            self.open_path(path, "records")

    def _open_cgm(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CGM export", "", "CSV (*.csv *.txt)")
        if path:
            self.open_path(path, "cgm")

    def open_path(self, path: str, kind: str = "records") -> None:
        """Load records (``kind="records"``) or a CGM CSV (``"cgm"``) on a worker."""
        self.run_task(
            _load_path,
            path,
            kind,
            on_result=self._loaded,
            on_error=lambda message, path=path: self._load_failed(path, message),
            name=f"open {kind}",
        )

    def _load_failed(self, path: str, message: str) -> None:
        """A records/CGM file that cannot be read: said once; the patient shown stays."""
        if path not in message:  # the worker's one line may leave the file out
            message = f"{path}: {message}"
        self.link_label.setText(f"<b>not loaded:</b> {message}")
        self.notify.emit(message)

    def _loaded(self, records: Any) -> None:
        if records.problems:
            self.notify.emit(
                f"{len(records.problems)} record(s) skipped, first: {records.problems[0]}"
            )
        self.set_records(records)

    # -- selection -------------------------------------------------------------
    @property
    def code(self) -> str:
        return self.code_combo.currentData() or ""

    def _fill_codes(self) -> None:
        from medview.forecast.api import observation_summary

        self.code_combo.blockSignals(True)
        self.code_combo.clear()
        view = self._view
        if view.records is not None and view.patient_id:
            for code, display, n, unit in observation_summary(view.records, view.patient_id):
                self.code_combo.addItem(f"{display or code} [{code}] - {n} values ({unit})", code)
            # start on glucose when the patient has it, else the most frequent code
            for i in range(self.code_combo.count()):
                if self.code_combo.itemData(i) in ("99504-3", "2339-0"):
                    self.code_combo.setCurrentIndex(i)
                    break
        self.code_combo.blockSignals(False)
        self._code_changed(self.code_combo.currentIndex())

    def _code_changed(self, _index: int) -> None:
        self._clear_results()  # another observation: its own forecast is on the way
        dense = self._is_dense()
        options = DENSE_HORIZONS if dense else SPARSE_HORIZONS
        self.horizon_combo.blockSignals(True)
        self.horizon_combo.clear()
        for label, minutes in options:
            self.horizon_combo.addItem(label, minutes)
        self.horizon_combo.setCurrentIndex(len(options) - 1 if dense else 2)
        self.horizon_combo.blockSignals(False)
        self.start_forecast()

    def _is_dense(self) -> bool:
        if self.records is None or not self.code:
            return False
        from medview.forecast.api import is_dense
        from medview.forecast.series import series_from_observations

        return is_dense(
            series_from_observations(self.records.observations, self.code, self.patient)
        )

    def set_horizon(self, minutes: int) -> None:
        idx = self.horizon_combo.findData(minutes)
        if idx >= 0:
            self.horizon_combo.setCurrentIndex(idx)

    # -- forecasting -----------------------------------------------------------
    def start_forecast(self) -> None:
        """Forecast the selected code of the snapshot's patient on the worker."""
        request = self.begin_request()
        if request is None:
            return
        if not self.code:
            self.end_compute()
            return
        req, view = request
        horizon = self.horizon_combo.currentData()
        self.run_task(
            _forecast,
            view.records,
            view.patient_id,
            self.code,
            horizon,
            on_result=lambda r, req=req, view=view: self._show(r, req, view),
            on_error=lambda m, req=req: self._on_error(m, req),
            name="forecast",
        )

    def _clear_results(self, keep_summary: bool = False) -> None:
        for curve in (self.history_curve, self.forecast_curve, self.lower_curve, self.upper_curve):
            curve.setData([], [])
        self.ref_region.setVisible(False)
        self.result = None
        if not keep_summary:
            self.summary.setText("")

    def _show(self, r: Any, req: int | None = None, view: PatientView | None = None) -> None:
        """Display forecast ``r`` if it is the latest one asked for the patient in view."""
        import numpy as np

        if self.accept_result(req, view, r.patient, "a forecast") is None:
            return
        self.result = r
        hx = np.array([_epoch(t) for t in r.history_times])
        fx = np.array([_epoch(t) for t in r.times])
        self.history_curve.setData(hx, np.asarray(r.history_values, dtype=float))
        # the band and the forecast start at the last observation
        x0 = hx[-1:]
        y0 = np.asarray(r.history_values[-1:], dtype=float)
        self.forecast_curve.setData(np.r_[x0, fx], np.r_[y0, r.values])
        self.lower_curve.setData(np.r_[x0, fx], np.r_[y0, r.lower])
        self.upper_curve.setData(np.r_[x0, fx], np.r_[y0, r.upper])
        if r.reference is not None:
            low, high, label = r.reference
            self.ref_region.setRegion((low, high))
            self.ref_region.setToolTip(f"reference: {label}")
            self.ref_region.setVisible(True)
        else:
            self.ref_region.setVisible(False)
        if r.dense:  # show the last 24 h and the forecast
            self.plot.setXRange(max(hx[0], fx[-1] - 24 * 3600), fx[-1], padding=0.02)
        else:
            self.plot.setXRange(hx[0], fx[-1], padding=0.02)
        self.plot.setLabel("left", r.unit)
        self.plot.setTitle(f"{r.display or r.code}")
        self.summary.setText(self._summary_text(r))
        self.forecast_ready.emit(r)

    @staticmethod
    def _summary_text(r: Any) -> str:
        last = r.values[-1], r.lower[-1], r.upper[-1]
        head = (
            f"<b>{r.method.upper()}</b> forecast for {r.times[-1]:%Y-%m-%d %H:%M}: "
            f"{last[0]:.1f} {r.unit} (80% interval {last[1]:.1f}-{last[2]:.1f})"
        )
        if r.dense and r.method == "persistence":
            head = (
                "<b>Persistence wins</b> on this patient's backtest: no model beats "
                f"'glucose stays at {last[0]:.0f} {r.unit}' (80% interval "
                f"{last[1]:.0f}-{last[2]:.0f} at {r.times[-1]:%H:%M})"
            )
        if r.backtest:
            rows = ", ".join(
                f"{m} {v['rmse']:.2f}"
                for m, v in sorted(r.backtest.items(), key=lambda kv: kv[1]["rmse"])
            )
            won = f"<br><b>{r.winner}</b> won the backtest on this patient's history ({r.backtest_what}); RMSE: {rows}"
        else:
            won = "<br>no backtest possible"
        zones = r.backtest.get(r.winner, {}).get("clarke") if r.backtest else None
        if zones:
            shown = " ".join(f"{z} {v:.1f}%" for z, v in zones.items())
            won += f"<br>Clarke error grid ({r.winner}): {shown}"
        notes = "".join(f"<br><i>{n}</i>" for n in r.notes[:3])
        return head + won + notes + _agp_text(getattr(r, "agp", None))


def _agp_text(agp: dict[str, Any] | None) -> str:
    """The AGP section (consensus metrics of the CGM history shown)."""
    if not agp:
        return ""
    mage = "-" if agp["mage"] is None else f"{agp['mage']:.0f}"
    return (
        f"<br><b>AGP</b> ({agp['days']:.1f} days, CGM active {agp['active_percent']:.0f}%): "
        f"mean {agp['mean']:.0f} mg/dL, GMI {agp['gmi']:.1f}%, CV {agp['cv']:.0f}%, "
        f"MAGE {mage}; time &lt;54 {agp['tbr_54']:.1f}%, 54-69 {agp['tbr_70']:.1f}%, "
        f"70-180 <b>{agp['tir_70_180']:.1f}%</b>, 181-250 {agp['tar_180']:.1f}%, "
        f"&gt;250 {agp['tar_250']:.1f}%"
    )
