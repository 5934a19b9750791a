"""The "CT label map" dock panel: a 3D model on the volume in view.

Runs :func:`medview.ai.volume_analysis.segment_volume` (sliding windows, progress,
cancel) in the panel's worker slot on the volume of the active viewport, then sends the
result to the viewports (``labelmap_changed``: drawn over every MPR plane by
:mod:`medview.ui.labelmap_overlay`) and lists a legend: colour, label, volume in mL and
the HU statistics inside it. "Show label map" toggles the overlay (``labelmap_visible``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
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

from medview.ui.context import StudyContext
from medview.ui.panels.banner import disclaimer_banner
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


class SliceScorePlot(QWidget):
    """Score per slice (0..1 for probabilities) as a line, the slice in view marked."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scores: list[dict[str, Any]] = []
        self.current = -1  # 0-based slice in view
        self.setMinimumHeight(90)

    def set_scores(self, scores: list[dict[str, Any]]) -> None:
        self.scores = scores
        self.update()

    def set_current(self, index: int) -> None:
        self.current = index
        self.update()

    def points(self) -> list[tuple[float, float]]:
        """(x, y) widget coordinates of every scored slice (tests read them)."""
        vals = [s["score"] for s in self.scores if s["score"] is not None]
        if not vals:
            return []
        lo, hi = min(0.0, min(vals)), max(1.0, max(vals))
        n = max(1, len(self.scores) - 1)
        w, h = self.width() - 8, self.height() - 8
        return [
            (4 + w * i / n, 4 + h * (1 - (s["score"] - lo) / (hi - lo or 1.0)))
            for i, s in enumerate(self.scores)
            if s["score"] is not None
        ]

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(20, 20, 20))
        pts = self.points()
        if pts:
            p.setPen(QPen(QColor(240, 160, 60), 1.5))
            p.drawPolyline(QPolygonF([QPointF(x, y) for x, y in pts]))
            if 0 <= self.current < len(pts):
                p.setPen(QPen(QColor(120, 200, 255), 1))
                x = pts[self.current][0]
                p.drawLine(QPointF(x, 0), QPointF(x, self.height()))
        p.end()


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
        lay.addWidget(disclaimer_banner(self, wrap=True))
        self.model_box, self.run_btn, row = self._model_row("Segment volume", self.run_volume)
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
        self.slice_model_box, self.slice_btn, row2 = self._model_row(
            "Score every slice", self.run_slices
        )
        lay.addWidget(QLabel("Slice-level model over the series (score per slice):", self))
        lay.addLayout(row2)
        self.plot = SliceScorePlot(self)
        lay.addWidget(self.plot)

    def _model_row(
        self, label: str, slot: Callable[[], None]
    ) -> tuple[QComboBox, QPushButton, QHBoxLayout]:
        """A model picker and the button that runs ``slot``, in one row."""
        row = QHBoxLayout()
        box = QComboBox(self)
        button = QPushButton(label, self)
        button.clicked.connect(slot)
        row.addWidget(box, 1)
        row.addWidget(button)
        return box, button, row

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
        from medview.ai.registry import discover

        self.slice_model_box.clear()
        for m in sorted(discover().values(), key=lambda m: m.name):
            self.slice_model_box.addItem(f"{m.name} {m.version}", m.name)
        self.slice_btn.setEnabled(self.slice_model_box.count() > 0)
        if not models:
            self.status.setText("No volume model installed (models/ct_seg).")
        for e in errors:
            self.notify.emit(f"{self.task_error_prefix}{e}")

    # -- SidePanel --------------------------------------------------------------------
    def set_study_context(self, ctx: StudyContext) -> None:
        if ctx.volume is not self.ctx.volume and self.result is not None:
            if ctx.volume is not None and ctx.volume is not self.result.volume:
                self.status.setText("The label map belongs to another series (kept on it).")
        if ctx.volume is not self.ctx.volume:
            self.plot.set_scores([])
        self.ctx = ctx
        self.plot.set_current(ctx.index)

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

    def run_slices(self) -> None:
        """Run the chosen 2D model on every slice of the volume in view; plot the scores."""
        from medview.ai.volume_analysis import slice_scores

        vol = self.ctx.volume
        if vol is None:
            self.status.setText("No volume in view.")
            return
        name = self.slice_model_box.currentData()
        self.run_task(slice_scores, vol, name, "auto", on_result=self._scored, name="slices")

    def _scored(self, scores: list[dict[str, Any]]) -> None:
        self.plot.set_scores(scores)
        outside = sum(1 for s in scores if not s["in_scope"] or s["in_distribution"] is False)
        self.status.setText(
            f"{len(scores)} slices scored"
            + (f"; {outside} outside intended use or training data" if outside else "")
        )

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
