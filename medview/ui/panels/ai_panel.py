"""AI side panel: run the local models on the image in view, show results and heat maps.

Follows :mod:`medview.ui.context`: ``set_study_context`` is called by the main
window whenever the image in the active viewport changes; the panel emits
``notify(str)``, ``overlay_changed(Overlay | None)`` and ``finding(code, display)``.
Inference runs on the worker pool through the panel's task slot
(:class:`~medview.ui.panels.base.PanelTasks`; never on the GUI thread); a new run
cancels the old one, and cancel stops after the current batch. The chosen device
is kept in the settings store (:mod:`medview.ui.settings`, key ``ai/device``). Results are cached per image and model version, so scrolling
back to an analysed slice shows its result and heat map at once. Every result and
overlay carries "AI output, not for diagnostic use".

Every result carries its intended-use verdict (:mod:`medview.ai.scope`): results
outside the model card's intended use are shown greyed (never bold) with the reason
in the "Intended use" column, its tooltip and a line under the table, and cannot be
sent to other panels. Slices are numbered from 1, as in the viewport.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.disclaimers import AI as DISCLAIMER
from medview.ui import settings
from medview.ui.context import Overlay, StudyContext
from medview.ui.panels.banner import disclaimer_banner
from medview.ui.panels.base import PanelTasks

log = logging.getLogger(__name__)

PNEUMONIA_SNOMED = ("233604007", "Pneumonia")
COLUMNS = [
    "Slice",
    "Model",
    "Label",
    "Intended use",  # the verdict, next to the label it qualifies
    "Probability",
    "Uncertainty",  # spread (std over ensemble members, else shifted views) of the figure
    "Threshold",
    "Anomaly",
    "Device",
    "ms",
]
SCOPE_COLUMN = COLUMNS.index("Intended use")
OUT_OF_SCOPE_GREY = QColor(140, 140, 140)


def uncertainty_text(r: Any) -> str:
    """The spread (ensemble members or shifted views) of the Probability / Anomaly figure."""
    unc = getattr(r, "uncertainty", None) or {}
    if r.probabilities is not None:
        key = "pneumonia" if "pneumonia" in unc else (r.predicted if r.predicted in unc else "")
    else:
        key = "anomaly_score"
    return f"\u00b1{unc[key]:.3f}" if key in unc else ""


def scope_text(r: Any) -> str:
    """The visible intended-use verdict of a result (for the table's column)."""
    reasons = list(getattr(r, "scope_reasons", []) or [])
    if not getattr(r, "in_scope", True):
        bad = [x for x in reasons if "outside intended use" in x] or reasons
        return "OUTSIDE: " + "; ".join(bad)
    return "in scope (" + "; ".join(reasons) + ")" if reasons else "in scope"


HEATMAP_KINDS = [("grad-cam", "Grad-CAM (classifier)"), ("anomaly", "Anomaly map (autoencoder)")]


def _discover() -> tuple[list[Any], list[str]]:
    from medview.ai.registry import discover

    errors: list[str] = []
    models = sorted(discover(errors).values(), key=lambda m: m.name)
    return models, errors


def overlay_label(r: Any) -> str:
    """The viewer caption of a heat map: disclaimer, model, what it shows, verdict."""
    what = getattr(r, "heatmap_label", None) or str(r.heatmap_kind)
    text = f"{DISCLAIMER} | {r.model}: {what}"
    return text if r.in_scope else text + " | OUTSIDE INTENDED USE"


class AIPanel(QWidget, PanelTasks):
    """Dock panel running medview.ai models on the current image or series."""

    notify = Signal(str)
    overlay_changed = Signal(object)
    finding = Signal(str, str)
    results_changed = Signal()  # for tests and other listeners
    report_result = Signal(object)  # latest classifier result of the image in view (or None)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.init_tasks()
        self.ctx = StudyContext()
        self.cache: dict[tuple[str, str, str], Any] = {}  # (image key, model, version) -> AIResult
        self.models: list[Any] = []
        self._run_keys: list[str] = []
        self._report_result: Any = None  # what report_result last sent
        self._build()
        self.reload_models()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.addWidget(disclaimer_banner())

        lay.addWidget(QLabel("Models"))
        self.model_list = QListWidget(self)
        self.model_list.setMaximumHeight(90)
        lay.addWidget(self.model_list)

        form = QFormLayout()
        self.device_box = QComboBox(self)
        self.device_box.addItems(["auto", "cpu", "cuda", "mps"])
        saved = settings.value("ai/device", "auto")
        if saved in ("auto", "cpu", "cuda", "mps"):
            self.device_box.setCurrentText(saved)
        self.device_box.currentTextChanged.connect(lambda t: settings.set_value("ai/device", t))
        form.addRow("Device", self.device_box)
        lay.addLayout(form)

        row = QHBoxLayout()
        self.run_image_btn = QPushButton("Run on image", self)
        self.run_series_btn = QPushButton("Run on series", self)
        self.cancel_btn = QPushButton("Cancel", self)
        self.run_image_btn.clicked.connect(self.run_current)
        self.run_series_btn.clicked.connect(self.run_series)
        for b in (self.run_image_btn, self.run_series_btn, self.cancel_btn):
            row.addWidget(b)
        lay.addLayout(row)
        self.progress = QProgressBar(self)
        lay.addWidget(self.progress)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.task_widgets(self.progress, self.cancel_btn, self.status, hide_when_idle=False)

        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the verdict can be long: a fixed, resizable width (full text in the tooltip)
        self.table.horizontalHeader().setSectionResizeMode(
            SCOPE_COLUMN, QHeaderView.ResizeMode.Interactive
        )
        self.table.setColumnWidth(SCOPE_COLUMN, 230)
        self.table.setToolTip(DISCLAIMER)
        lay.addWidget(self.table, 1)
        # the verdict of the slice in view, in words (also in each row's tooltip)
        self.scope_label = QLabel("", self)
        self.scope_label.setWordWrap(True)
        lay.addWidget(self.scope_label)
        # AI vs report (set by the Reports & notes panel: set_discordance)
        self.discordance_label = QLabel("", self)
        self.discordance_label.setWordWrap(True)
        self.discordance_label.setStyleSheet(
            "QLabel { background: #7a0000; color: white; font-weight: bold; padding: 4px; }"
        )
        self.discordance_label.setVisible(False)
        lay.addWidget(self.discordance_label)

        ov = QFormLayout()
        self.overlay_check = QCheckBox("Show heat map on the viewport", self)
        self.overlay_check.setChecked(True)
        self.overlay_check.toggled.connect(self.update_overlay)
        ov.addRow(self.overlay_check)
        self.kind_box = QComboBox(self)
        for key, label in HEATMAP_KINDS:
            self.kind_box.addItem(label, key)
        self.kind_box.currentIndexChanged.connect(self.update_overlay)
        ov.addRow("Heat map", self.kind_box)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(40)
        self.opacity.valueChanged.connect(self.update_overlay)
        ov.addRow("Opacity", self.opacity)
        self.cmap_box = QComboBox(self)
        self.cmap_box.addItems(["jet", "hot", "viridis"])
        self.cmap_box.currentTextChanged.connect(self.update_overlay)
        ov.addRow("Colours", self.cmap_box)
        lay.addLayout(ov)
        self.heatmap_caption = QLabel("", self)  # which class / what the map shows
        self.heatmap_caption.setWordWrap(True)
        lay.addWidget(self.heatmap_caption)

        self.finding_btn = QPushButton("Send pneumonia finding to suggestions", self)
        self.finding_btn.setToolTip(
            "Adds 'Pneumonia' (SNOMED CT 233604007) as a working condition. " + DISCLAIMER
        )
        self.finding_btn.clicked.connect(self.send_finding)
        lay.addWidget(self.finding_btn)
        self._build_similar(lay)
        self._update_buttons()

    def reload_models(self) -> None:
        """(Re)read the model registry; all models are checked by default."""
        try:
            self.models, errors = _discover()
        except Exception as exc:  # noqa: BLE001 - a broken registry must not break the GUI
            self.models, errors = [], [str(exc)]
        self.model_list.clear()
        for m in self.models:
            item = QListWidgetItem(f"{m.name} {m.version} ({m.task})")
            item.setData(Qt.ItemDataRole.UserRole, m.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(str(m.meta.get("description", "")))
            self.model_list.addItem(item)
        for e in errors:
            self.notify.emit(f"AI model not loaded: {e}")
        if not self.models:
            self.status.setText("No AI models found (models/ or the per-user models folder).")
        self._update_buttons()

    def selected_models(self) -> list[Any]:
        names = {
            self.model_list.item(i).data(Qt.ItemDataRole.UserRole)
            for i in range(self.model_list.count())
            if self.model_list.item(i).checkState() == Qt.CheckState.Checked
        }
        return [m for m in self.models if m.name in names]

    def set_selected(self, names: list[str]) -> None:
        for i in range(self.model_list.count()):
            it = self.model_list.item(i)
            on = it.data(Qt.ItemDataRole.UserRole) in names
            it.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def _update_buttons(self) -> None:
        has = self.ctx.volume is not None and bool(self.models)
        busy = self.slot.busy
        self.run_image_btn.setEnabled(has and not busy)
        n = self._n_slices()
        self.run_series_btn.setEnabled(has and not busy and n > 1)
        self.cancel_btn.setEnabled(busy)
        self.finding_btn.setEnabled(self._current_positive() is not None)
        here = self._results_for(int(self.ctx.index)) if self.ctx.volume is not None else []
        self.similar_btn.setEnabled(not busy and any(r.latent is not None for r in here))
        blocked = self._current_positive(in_scope_only=False)
        base = "Adds 'Pneumonia' (SNOMED CT 233604007) as a working condition. " + DISCLAIMER
        if blocked is not None and not blocked.in_scope:
            base = (
                "Disabled: the result is outside the model's intended use ("
                + "; ".join(r for r in blocked.scope_reasons if "outside" in r)
                + ")"
            )
        self.finding_btn.setToolTip(base)

    # ------------------------------------------------------------- context
    def _n_slices(self) -> int:
        vol = self.ctx.volume
        return int(vol.array.shape[0]) if vol is not None else 0

    def set_study_context(self, ctx: StudyContext) -> None:
        """Called by the main window when the image or slice in view changes."""
        changed_volume = ctx.volume is not self.ctx.volume
        self.ctx = ctx
        if changed_volume and self.slot.busy:
            self.cancel()
        self._update_buttons()
        self._show_current_rows()
        self.update_overlay()

    def _key(self, k: int) -> str:
        from medview.ai.inference import slice_key

        return slice_key(self.ctx.volume, k)

    def _results_for(self, k: int) -> list[Any]:
        if self.ctx.volume is None:
            return []
        key = self._key(k)
        return [r for (kk, _n, _v), r in self.cache.items() if kk == key]

    # ----------------------------------------------------------------- runs
    def run_current(self) -> None:
        """Analyse the slice in view with the checked models."""
        if self.ctx.volume is None:
            return
        self._start([int(self.ctx.index)])

    def run_series(self) -> None:
        """Analyse every slice of the series in view (batched, cancellable)."""
        if self.ctx.volume is None:
            return
        self._start(list(range(self._n_slices())))

    def _start(self, indices: list[int]) -> None:
        from medview.ai.inference import run_on_volume

        models = self.selected_models()
        if not models:
            self.notify.emit("Choose at least one AI model.")
            return
        todo = [
            k
            for k in indices
            if any((self._key(k), m.name, m.version) not in self.cache for m in models)
        ]
        if not todo:  # everything cached for these models/versions
            self.status.setText(f"{len(indices)} image(s) from cache. {DISCLAIMER}")
            self._show_current_rows()
            self.update_overlay()
            return
        self.run_task(
            run_on_volume,
            self.ctx.volume,
            todo,
            [m.name for m in models],
            device=self.device_box.currentText(),
            batch_size=16,
            heatmaps=True,
            on_result=self._on_result,
            on_partial=self._on_partial,
            name="ai-analyze",
        )
        self.status.setText(f"Running {len(models)} model(s) on {len(todo)} image(s)...")

    def cancel(self) -> None:
        """Cancel the running analysis (it stops after the current batch)."""
        if self.cancel_task():
            self.status.setText("Cancelled.")
        self.progress.setValue(0)
        self._update_buttons()

    def shutdown(self) -> None:
        """Cancel the task; nothing is delivered afterwards (the application quits)."""
        self.close_tasks()

    # -------------------------------------------------------------- signals
    def on_task_busy(self, on: bool, what: str = "") -> None:
        """Progress and buttons follow the task (the status line keeps its text)."""
        super().on_task_busy(on)
        self._update_buttons()

    def _on_partial(self, batch: list[Any]) -> None:
        for r in batch:
            self.cache[(r.key, r.model, r.version)] = r
        self._show_current_rows()
        self.update_overlay()
        self.results_changed.emit()

    def _on_result(self, results: list[Any]) -> None:
        for r in results:
            self.cache[(r.key, r.model, r.version)] = r
        dev = results[0].device if results else "-"
        n = len({r.key for r in results})
        self.status.setText(f"Done: {n} image(s) on {dev}. {DISCLAIMER}")
        self.progress.setValue(1000)
        self._show_current_rows()
        self.update_overlay()
        self.results_changed.emit()

    def on_task_error(self, message: str) -> None:
        self.status.setText(f"AI failed: {message}")
        self.notify.emit(f"AI: {message}")

    # -------------------------------------------------------------- display
    def _show_current_rows(self) -> None:
        """Table: results of the slice in view, or of the whole series when run."""
        rows = []
        n_current = 0
        if self.ctx.volume is not None:
            n = self._n_slices()
            current = self._results_for(int(self.ctx.index))
            seen = {id(r) for r in current}
            others = (
                []
                if n <= 1
                else [r for r in self.cache.values() if id(r) not in seen and self._belongs(r)]
            )
            rows = current + sorted(others, key=lambda r: (r.index, r.model))
            n_current = len(current)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            prob = ""
            label = r.predicted or ""
            if r.probabilities is not None:
                top = r.predicted if r.predicted in r.probabilities else max(r.probabilities)
                prob = f"{r.probabilities.get(top, 0.0):.3f}"
                pos = "pneumonia" if "pneumonia" in r.probabilities else None
                if pos:
                    prob = f"{r.probabilities[pos]:.3f} ({pos})"
            vals = [
                str(r.index + 1),  # 1-based, as the viewport
                f"{r.model} {r.version}",
                label,
                scope_text(r),
                prob,
                uncertainty_text(r),
                "" if r.threshold is None else f"{r.threshold:.3g}",
                "" if r.anomaly_score is None else f"{r.anomaly_score:.4f}",
                r.device,
                f"{r.elapsed_ms:.1f}",
            ]
            ood = getattr(r, "in_distribution", None) is False
            for col in ("Probability", "Anomaly"):  # the figure stays visible, greyed
                if ood and vals[COLUMNS.index(col)]:
                    vals[COLUMNS.index(col)] += " not for use"
            if r.warnings:
                vals[2] = f"{label} (!)"
            verdict = (
                "Inside the model's intended use"
                if r.in_scope
                else "OUTSIDE the model's intended use: output is not meaningful"
            )
            tip = "\n".join(
                [DISCLAIMER, verdict, *r.scope_reasons]
                + [w for w in r.warnings if w not in r.scope_reasons]
                + ([f"Not for use: {r.distribution_reason}"] if ood else [])
            )
            for j, v in enumerate(vals):
                item = QTableWidgetItem(v)
                item.setToolTip(tip)
                f = item.font()
                if not r.in_scope or ood:  # greyed, never bold, whatever slice it is
                    item.setForeground(QBrush(OUT_OF_SCOPE_GREY))
                    f.setItalic(True)
                elif i < n_current:
                    f.setBold(True)
                item.setFont(f)
                self.table.setItem(i, j, item)
        self._show_scope_line()
        self._update_buttons()
        self._send_report_result()

    def _send_report_result(self) -> None:
        """Tell the notes panel the latest classifier result of the image in view."""
        current = self._results_for(int(self.ctx.index)) if self.ctx.volume is not None else []
        latest = next((r for r in reversed(current) if r.probabilities), None)
        if latest is not self._report_result:
            self._report_result = latest
            self.report_result.emit(latest)

    def set_discordance(self, items: list[Any]) -> None:
        """Show (or hide) the flag: the report disagrees with the AI result in view."""
        text = "; ".join(d.message for d in items)
        self.discordance_label.setText(f"\u26a0 Report disagrees: {text}" if text else "")
        self.discordance_label.setVisible(bool(text))

    def _show_scope_line(self) -> None:
        """One line under the table: the intended-use verdict of the slice in view."""
        current = self._results_for(int(self.ctx.index)) if self.ctx.volume is not None else []
        out = [r for r in current if not r.in_scope]
        unlike = [r for r in current if getattr(r, "in_distribution", None) is False]
        ood_text = (
            f"Unlike the training data ({', '.join(sorted({r.model for r in unlike}))}): "
            f"{unlike[0].distribution_reason}. The figure is greyed out: not for use."
            if unlike
            else ""
        )
        if unlike and not out:
            self.scope_label.setText(ood_text)
            self.scope_label.setStyleSheet("color: #b36b00;")
        elif out:
            reasons: list[str] = []
            for r in out:
                reasons += [x for x in r.scope_reasons if "outside" in x and x not in reasons]
            self.scope_label.setText(
                f"Outside intended use ({', '.join(sorted({r.model for r in out}))}): "
                + "; ".join(reasons)
                + ". Output is not meaningful and cannot be sent to other panels."
                + (" " + ood_text if ood_text else "")
            )
            self.scope_label.setStyleSheet("color: #b36b00;")
        elif current:
            notes = sorted({x for r in current for x in r.scope_reasons})
            self.scope_label.setText(
                "In intended use" + (" (not verified: " + "; ".join(notes) + ")" if notes else "")
            )
            self.scope_label.setStyleSheet("")
        else:
            self.scope_label.setText("")

    def _belongs(self, r: Any) -> bool:
        vol = self.ctx.volume
        n = self._n_slices()
        return vol is not None and 0 <= r.index < n and r.key == self._key(r.index)

    def current_heatmap_result(self) -> Any | None:
        """The cached result for the slice in view with the chosen kind of heat map."""
        kind = self.kind_box.currentData()
        for r in self._results_for(int(self.ctx.index)):
            if r.heatmap is not None and r.heatmap_kind == kind:
                return r
        return None

    def update_overlay(self, *_: Any) -> None:
        """Emit the overlay for the slice in view (or None)."""
        r = self.current_heatmap_result() if self.overlay_check.isChecked() else None
        if r is None:
            self.heatmap_caption.setText("")
            self.overlay_changed.emit(None)
            return
        heat = r.overlay_heatmap()
        n = self._n_slices()
        label = overlay_label(r)
        self.heatmap_caption.setText(label)
        self.overlay_changed.emit(
            Overlay(
                heatmap=heat,
                opacity=self.opacity.value() / 100.0,
                colormap=self.cmap_box.currentText(),
                label=label,
                index=int(self.ctx.index) if n > 1 else None,
            )
        )

    def _current_positive(self, in_scope_only: bool = True) -> Any | None:
        """A positive pneumonia result for the slice in view (in intended use only)."""
        if self.ctx.volume is None:
            return None
        for r in self._results_for(int(self.ctx.index)):
            usable = r.in_scope and getattr(r, "in_distribution", None) is not False
            if r.probabilities and r.predicted == "pneumonia" and (usable or not in_scope_only):
                return r
        return None

    def _build_similar(self, lay: QVBoxLayout) -> None:
        """The similar-case button and the list of what it found."""
        self.similar_btn = QPushButton("Find similar analysed images", self)
        self.similar_btn.setToolTip("Stores this image's results and lists the nearest stored ones")
        self.similar_btn.clicked.connect(self.find_similar)
        lay.addWidget(self.similar_btn)
        self.similar_label = QLabel("", self)
        self.similar_label.setWordWrap(True)
        lay.addWidget(self.similar_label)

    def find_similar(self) -> None:
        """Store the results of the image in view; list the nearest stored images."""
        from medview.ai.similar import find_similar

        here = self._results_for(int(self.ctx.index)) if self.ctx.volume is not None else []
        self.run_task(find_similar, here, on_result=self._on_similar, name="ai-similar")

    def _on_similar(self, near: list[Any]) -> None:
        lines = [
            f"{n.distance:.2f}  {Path(n.path).name or n.key} [slice {n.index + 1}]: "
            + "; ".join(f"{m} {f.get('predicted')}" for m, f in n.findings.items())
            for n in near
        ]
        self.similar_label.setText(
            "Similar analysed images:\n" + "\n".join(lines) if lines else "No similar image stored."
        )

    def send_finding(self) -> None:
        """Send a positive pneumonia result as a working condition to suggestions."""
        if self._current_positive() is None:
            if self._current_positive(in_scope_only=False) is not None:
                self.notify.emit(
                    "Not sent: the pneumonia result is outside the model's intended use."
                )
            else:
                self.notify.emit("No positive pneumonia result on this image.")
            return
        self.finding.emit(*PNEUMONIA_SNOMED)
        self.notify.emit(f"Sent 'Pneumonia' to treatment suggestions ({DISCLAIMER}).")
