"""The "CT label map" dock panel: a 3D model on the volume in view.

Runs :func:`medview.ai.volume_analysis.segment_volume` (sliding windows, progress,
cancel) in the panel's worker slot on the volume of the active viewport, then sends the
result to the viewports (``labelmap_changed``: drawn over every MPR plane by
:mod:`medview.ui.labelmap_overlay`) and lists a legend: colour, label, volume in mL and
the HU statistics inside it. "Show label map" toggles the overlay (``labelmap_visible``).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.disclaimers import AI as DISCLAIMER
from medview.ui.context import StudyContext
from medview.ui.panels.base import PanelTasks

LEGEND_COLUMNS = ["", "Label", "mL", "HU mean \u00b1 sd", "HU min..max"]


def legend_rows(result: Any) -> list[tuple[str, str, str, str, str]]:
    """(colour, name, mL, mean +- sd, min..max) per label of a SegmentationResult."""
    rows = []
    for s in result.stats:
        if s.voxels:
            mean = f"{s.mean:.0f} \u00b1 {s.sd:.0f}"
            span = f"{s.min:.0f}..{s.max:.0f}"
        else:
            mean = span = "-"
        rows.append((s.color, s.name, f"{s.ml:.1f}", mean, span))
    return rows


class VolumeAIPanel(QWidget, PanelTasks):
    """Dock panel: run a volume model, show the legend, toggle the label map."""

    notify = Signal(str)
    labelmap_changed = Signal(object)  # SegmentationResult | None
    labelmap_visible = Signal(bool)
    task_error_prefix = "CT label map: "

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.init_tasks()
        self.ctx = StudyContext()
        self.result: Any | None = None
        self._build()
        self.reload_models()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        warn = QLabel(f"<b>{DISCLAIMER}</b>", self)
        warn.setStyleSheet("color: white; background: #a00000; padding: 3px;")
        warn.setAlignment(Qt.AlignmentFlag.AlignCenter)
        warn.setWordWrap(True)
        lay.addWidget(warn)
        row = QHBoxLayout()
        self.model_box = QComboBox(self)
        self.run_btn = QPushButton("Segment volume", self)
        self.run_btn.clicked.connect(self.run_volume)
        row.addWidget(self.model_box, 1)
        row.addWidget(self.run_btn)
        lay.addLayout(row)
        self.status = QLabel("Open a CT series, then Segment volume.", self)
        self.status.setWordWrap(True)
        lay.addLayout(self.task_row(self.status))
        self.show_check = QCheckBox("Show label map on every plane", self)
        self.show_check.setChecked(True)
        self.show_check.toggled.connect(self.labelmap_visible.emit)
        lay.addWidget(self.show_check)
        self.legend = QTableWidget(0, len(LEGEND_COLUMNS), self)
        self.legend.setHorizontalHeaderLabels(LEGEND_COLUMNS)
        self.legend.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.legend.verticalHeader().setVisible(False)
        self.legend.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        lay.addWidget(self.legend, 1)
        self.scope_label = QLabel("", self)
        self.scope_label.setWordWrap(True)
        lay.addWidget(self.scope_label)

    def reload_models(self) -> None:
        """Fill the model list with the volume models (a broken card is notified)."""
        from medview.ai.volume_inference import volume_models

        errors: list[str] = []
        try:
            models = volume_models(errors)
        except Exception as exc:  # noqa: BLE001 - the panel stays usable without models
            models, errors = [], [str(exc)]
        self.model_box.clear()
        for m in models:
            self.model_box.addItem(f"{m.name} {m.version}", m.name)
        self.run_btn.setEnabled(bool(models))
        if not models:
            self.status.setText("No volume model installed (models/ct_seg).")
        for e in errors:
            self.notify.emit(f"{self.task_error_prefix}{e}")

    # -- SidePanel --------------------------------------------------------------------
    def set_study_context(self, ctx: StudyContext) -> None:
        if ctx.volume is not self.ctx.volume and self.result is not None:
            if ctx.volume is not None and ctx.volume is not self.result.volume:
                self.status.setText("The label map belongs to another series (kept on it).")
        self.ctx = ctx

    def shutdown(self) -> None:
        self.close_tasks()

    # -- running ----------------------------------------------------------------------
    def run_volume(self) -> None:
        """Segment the volume in view with the chosen model (in the worker slot)."""
        from medview.ai.volume_analysis import segment_volume

        vol = self.ctx.volume
        if vol is None:
            self.status.setText("No volume in view.")
            return
        if vol.is_color or vol.array.shape[0] < 2:
            self.status.setText("A volume model needs a greyscale series of several slices.")
            return
        name = self.model_box.currentData()
        self.run_task(segment_volume, vol, name, "auto", on_result=self._done, name="segment")

    def _done(self, result: Any) -> None:
        self.result = result
        self._fill_legend(result)
        verdict = "in intended use" if result.in_scope else "OUTSIDE INTENDED USE"
        if result.scope_reasons:
            verdict += ": " + "; ".join(result.scope_reasons)
        self.scope_label.setText(verdict)
        self.status.setText(
            f"{result.model} {result.version} on {result.device}: {result.windows} windows "
            f"in {result.elapsed_s:.1f} s"
        )
        self.labelmap_changed.emit(result)
        self.labelmap_visible.emit(self.show_check.isChecked())

    def _fill_legend(self, result: Any) -> None:
        rows = legend_rows(result)
        self.legend.setRowCount(len(rows))
        for r, (color, *texts) in enumerate(rows):
            swatch = QTableWidgetItem("")
            swatch.setBackground(QColor(color))
            self.legend.setItem(r, 0, swatch)
            for c, text in enumerate(texts, start=1):
                item = QTableWidgetItem(text)
                if c > 1:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.legend.setItem(r, c, item)

    def clear_result(self) -> None:
        """Forget the label map (removed from the viewports)."""
        self.result = None
        self.legend.setRowCount(0)
        self.scope_label.setText("")
        self.labelmap_changed.emit(None)
