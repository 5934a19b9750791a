"""Layout helpers of the main window: the viewport grid (with its MPR and
measurement sync), the docks, the status-bar progress and the shortcuts dialog."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.imaging.measure import Measurement
from medview.ui.actions import MOUSE_HELP, SHORTCUTS
from medview.ui.viewport import Viewport
from medview.ui.workers import TaskHandle
from medview.viewer import mpr

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow

log = logging.getLogger(__name__)

#: the viewport layouts, in menu order ("3d": the first viewport's series rendered in 3D)
LAYOUTS = ("1x1", "1x2", "2x2", "mpr", "3d")
#: how many viewports each layout shows (3d: the first, hidden behind the 3D view)
VISIBLE = {"1x1": 1, "1x2": 2, "2x2": 4, "mpr": 3, "3d": 1}


class ProgressArea(QWidget):
    """Status-bar progress of the running loads, with one cancel button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("", self)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setFixedWidth(160)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Cancel loading")
        self.cancel_button.clicked.connect(self.cancel_all)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.cancel_button)
        self.handles: list[tuple[TaskHandle, str]] = []
        self.setVisible(False)

    def track(self, handle: TaskHandle | None, title: str) -> None:
        """Show ``handle``'s progress under ``title`` until it ends (None: nothing started)."""
        if handle is None:
            return
        self.handles.append((handle, title))
        handle.progress.connect(lambda f, m, h=handle: self._progress(h, f, m))
        handle.finished.connect(self._refresh)
        self.label.setText(title)
        self.bar.setValue(0)
        self.setVisible(True)

    def _progress(self, handle: TaskHandle, f: float, m: str) -> None:
        for h, title in reversed(self.handles):
            if h.running and not h.cancelled:
                if h is handle:
                    self.label.setText(f"{title}: {m}" if m else title)
                    self.bar.setValue(int(f * 1000))
                break

    def _refresh(self) -> None:
        self.handles = [(h, t) for h, t in self.handles if h.running]
        if not self.handles:
            self.setVisible(False)
        else:
            self.label.setText(self.handles[-1][1])

    def cancel_all(self) -> None:
        """Cancel every tracked task."""
        for h, _ in self.handles:
            h.cancel()
        self.label.setText("cancelled")
        self._refresh()

    @property
    def busy(self) -> bool:
        """A tracked task is running."""
        return any(h.running for h, _ in self.handles)


class ViewportArea(QWidget):
    """Holds four viewports, arranges them for the current layout and keeps them in step.

    In MPR the first three follow each other's crosshair and window
    (:mod:`medview.viewer.mpr` decides who follows); in any layout, viewports showing
    the same image share its measurements (the same objects, so edits stay in sync).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.viewports = [Viewport(self) for _ in range(4)]
        self.layout_name = "1x1"
        self.maximized: Viewport | None = None
        self.view3d: QWidget | None = None  # medview.ui.view3d.View3DWidget, made on first use
        self.viewports[0].image_changed.connect(self._follow_3d)
        for vp in self.viewports:
            vp.index_changed.connect(lambda i, v=vp: self._index_changed(v, i))
            vp.window_changed.connect(lambda c, w, v=vp: self._window_changed(v, c, w))
            vp.crosshair_moved.connect(lambda i, j, k, v=vp: self.crosshair_moved(v, (i, j, k)))
            vp.maximize_requested.connect(lambda v=vp: self.toggle_maximize(v))
            vp.measurement_added.connect(lambda m, v=vp: self._measurement_added(v, m))
            vp.measurement_changed.connect(lambda m, v=vp: self._measurement_changed(v, m))
            vp.measurement_deleted.connect(lambda m, v=vp: self._measurement_deleted(v, m))

    def visible_viewports(self) -> list[Viewport]:
        """The viewports on screen (the maximised one alone)."""
        if self.maximized is not None:
            return [self.maximized]
        return self.viewports[: VISIBLE[self.layout_name]]

    # ------------------------------------------------------------ MPR sync
    def enter_mpr(self) -> None:
        """Give the first three viewports the axial, coronal and sagittal planes."""
        for vp, plane in zip(self.viewports, mpr.MPR_PLANES, strict=False):
            vp.plane = plane
            vp.title = plane.capitalize()

    def leave_mpr(self) -> None:
        """Back to plain axial viewports: the reformatted two are cleared, no crosshair."""
        for vp in self.viewports[1:3]:
            vp.plane = "axial"
            vp.title = ""
            vp.clear()
        self.viewports[0].crosshair = None
        self.viewports[0].title = ""
        self.viewports[0].update()

    def _mpr_place(self, vp: Viewport) -> int | None:
        n = self.viewports.index(vp)
        return n if n < len(mpr.MPR_PLANES) else None

    def _mpr_volumes(self) -> list[object]:
        return [v.volume for v in self.viewports[: len(mpr.MPR_PLANES)]]

    def _index_changed(self, vp: Viewport, index: int) -> None:
        """A scroll in an MPR plane moves the shared crosshair."""
        place = self._mpr_place(vp)
        if mpr.scroll_moves_crosshair(self.layout_name, place, vp.volume is not None):
            if vp.crosshair is not None:
                moved = mpr.crosshair_after_scroll(vp.plane, vp.crosshair, index)
                if moved is not None:
                    self.crosshair_moved(vp, moved, source_update=True)

    def crosshair_moved(
        self, source: Viewport, ijk: tuple[float, float, float], source_update: bool = False
    ) -> None:
        """Move the crosshair of the MPR viewports that show ``source``'s volume."""
        for n in mpr.crosshair_targets(
            self.layout_name,
            self._mpr_place(source),
            source.volume,
            self._mpr_volumes(),
            include_source=source_update,
        ):
            vp = self.viewports[n]
            if vp is source:
                vp.crosshair = tuple(ijk)
                vp.update()
            else:
                vp.set_crosshair(tuple(ijk))

    def _window_changed(self, vp: Viewport, c: float, w: float) -> None:
        for n in mpr.window_targets(self.layout_name, self._mpr_place(vp), self._mpr_volumes()):
            self.viewports[n].set_window(c, w, emit=False)

    # ------------------------------------------------------------ measurements
    def _siblings(self, src: Viewport, m: Measurement) -> list[Viewport]:
        """Other viewports showing the image a measurement was drawn on."""
        vol = src.volume
        return [
            v
            for v in self.viewports
            if v is not src and vol is not None and v.volume is vol and v.plane == m.plane
        ]

    def _measurement_added(self, src: Viewport, m: Measurement) -> None:
        for v in self._siblings(src, m):  # the same object: edits and deletes stay in sync
            if m not in v.measurements:
                v.measurements.append(m)
                v.update()

    def _measurement_changed(self, src: Viewport, m: Measurement) -> None:
        for v in self._siblings(src, m):
            v.update()

    def _measurement_deleted(self, src: Viewport, m: Measurement) -> None:
        for v in self._siblings(src, m):
            if m in v.measurements:
                v.measurements.remove(m)
                if v.selected is m:
                    v.selected = None
                v.update()

    def arrange(self, name: str) -> None:
        """Lay the viewports out as ``name`` (one of :data:`LAYOUTS`)."""
        self.layout_name = name
        self.maximized = None
        self._place()

    def toggle_maximize(self, vp: Viewport) -> None:
        """Show ``vp`` alone, or restore the layout."""
        self.maximized = None if self.maximized is vp else vp
        self._place()

    def shutdown(self) -> None:
        """Stop every cine and the 3D view (its VTK thread) on close."""
        for vp in self.viewports:
            vp.stop_cine()
        if self.view3d is not None:
            self.view3d.shutdown()  # type: ignore[attr-defined]

    def _follow_3d(self) -> None:
        """The 3D view renders the first viewport's series once it is loaded."""
        vp = self.viewports[0]
        if self.view3d is not None and self.layout_name == "3d":
            self.view3d.set_volume(None if vp.loading else vp.volume)  # type: ignore[attr-defined]

    def _place_3d(self) -> None:
        if self.view3d is None:
            from medview.ui.view3d import View3DWidget

            self.view3d = View3DWidget(self, host=self.parent())
        self.grid.addWidget(self.view3d, 0, 0)
        self.grid.setRowStretch(0, 1)
        self.grid.setColumnStretch(0, 1)
        self.view3d.show()
        self._follow_3d()

    def _place(self) -> None:
        for vp in self.viewports:
            self.grid.removeWidget(vp)
            vp.hide()
        if self.view3d is not None:
            self.grid.removeWidget(self.view3d)
            self.view3d.hide()
        if self.layout_name == "3d" and self.maximized is None:
            self._place_3d()
            return
        for r in range(3):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        if self.maximized is not None:
            self.grid.addWidget(self.maximized, 0, 0)
            self.grid.setRowStretch(0, 1)
            self.grid.setColumnStretch(0, 1)
            self.maximized.show()
            return
        v = self.viewports
        if self.layout_name == "1x1":
            self.grid.addWidget(v[0], 0, 0)
        elif self.layout_name == "1x2":
            self.grid.addWidget(v[0], 0, 0)
            self.grid.addWidget(v[1], 0, 1)
        elif self.layout_name == "2x2":
            for n in range(4):
                self.grid.addWidget(v[n], n // 2, n % 2)
        else:  # mpr: axial large on the left, coronal and sagittal stacked on the right
            self.grid.addWidget(v[0], 0, 0, 2, 1)
            self.grid.addWidget(v[1], 0, 1)
            self.grid.addWidget(v[2], 1, 1)
            self.grid.setColumnStretch(0, 3)
            self.grid.setColumnStretch(1, 2)
        rows = 2 if self.layout_name in ("2x2", "mpr") else 1
        cols = 1 if self.layout_name == "1x1" else 2
        for r in range(rows):
            self.grid.setRowStretch(r, 1)
        if self.layout_name != "mpr":
            for c in range(cols):
                self.grid.setColumnStretch(c, 1)
        for vp in self.visible_viewports():
            vp.show()


class ShortcutsDialog(QDialog):
    """Help > Keyboard shortcuts: every key of :data:`SHORTCUTS` and the mouse."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard and mouse shortcuts")
        lay = QVBoxLayout(self)
        rows = [(k, d) for _, k, d in SHORTCUTS] + MOUSE_HELP
        table = QTableWidget(len(rows), 2, self)
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        for r, (k, d) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(k))
            table.setItem(r, 1, QTableWidgetItem(d))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        lay.addWidget(table)
        close = QPushButton("Close", self)
        close.clicked.connect(self.accept)
        lay.addWidget(close)
        self.resize(620, 640)


# ---------------------------------------------------------------- docks
def make_dock(win: MainWindow, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
    """Dock ``widget`` in ``win`` under ``title`` (its object name keeps the saved state)."""
    dock = QDockWidget(title, win)
    dock.setObjectName(f"dock_{title.replace(' ', '_').lower()}")
    dock.setWidget(widget)
    win.addDockWidget(area, dock)
    return dock


def build_docks(win: MainWindow) -> None:
    """The study browser (left), the tag browser (right) and the hidden message log."""
    from medview.ui.actions import import_dialog
    from medview.ui.notifications import MessageLog
    from medview.ui.panels.tags import TagBrowser
    from medview.ui.study_browser import StudyBrowser

    area = Qt.DockWidgetArea
    win.browser = StudyBrowser(win)
    win.browser.series_activated.connect(lambda key: win.load_into(win.active, key))
    win.browser.import_requested.connect(lambda: import_dialog(win))
    win.browser_dock = make_dock(win, "Studies", win.browser, area.LeftDockWidgetArea)
    win.tags = TagBrowser(win)
    win.tags_dock = make_dock(win, "DICOM tags", win.tags, area.RightDockWidgetArea)
    win.tags_dock.visibilityChanged.connect(lambda vis: vis and win.update_tags())
    win.messages = MessageLog(win)
    win.notifier.posted.connect(win.messages.add)
    win.messages_dock = make_dock(win, "Messages", win.messages, area.BottomDockWidgetArea)
    win.messages_dock.hide()


def build_status(win: MainWindow) -> None:
    """The status bar: the cursor read-out and the :class:`ProgressArea`."""
    sb = win.statusBar()
    win.cursor_label = QLabel("", win)
    win.cursor_label.setMinimumWidth(380)
    sb.addWidget(win.cursor_label, 1)
    win.progress = ProgressArea(win)
    sb.addPermanentWidget(win.progress)
    for vp in win.area.viewports:
        vp.cursor_info.connect(win.cursor_label.setText)


def open_database_series(win: MainWindow, series: Any) -> None:
    """Show a local-database series (a SeriesInfo) in the active viewport."""
    from medview.viewer.session import DATABASE_PREFIX

    key = f"{DATABASE_PREFIX}{series.series_uid}"
    win.browser.series.setdefault(key, series)
    win.load_into(win.active, key)


def _label_maps(win: MainWindow) -> None:
    """A label-map panel's results drawn over every viewport (medview.ui.labelmap_overlay)."""
    from medview.ui.labelmap_overlay import LabelMapOverlays, LabelMapSource

    source = win.panels.get("labelmap")
    if isinstance(source, LabelMapSource):
        win.label_maps = LabelMapOverlays(win.area.viewports, win)
        win.label_maps.connect_source(source)


def dock_side_panels(win: MainWindow) -> None:
    """Dock the AI / forecast / suggestion panels that import (lazily), tabbed with the tags.

    A panel that cannot be imported or built is left out with a log warning. The
    forecast and suggestion panels share one records context (the same patient).
    """
    from medview.records.patient_context import PatientRecords
    from medview.ui.panels import base

    win.patient_records = PatientRecords()
    for spec in base.PANEL_SPECS:
        try:
            panel = base.create_panel(spec, win, win.patient_records)
        except Exception as exc:  # a missing or broken panel leaves its dock out
            log.warning("panel %s not docked: %s", spec.module, exc)
            continue
        win.panels[spec.key] = panel
        dock = make_dock(win, spec.title, panel, Qt.DockWidgetArea.RightDockWidgetArea)
        win.tabifyDockWidget(win.tags_dock, dock)
        win.panel_docks[spec.key] = dock
        win.panels_menu.addAction(dock.toggleViewAction())
        panel.notify.connect(lambda msg: win.notify(msg, "info"))
    win.tags_dock.raise_()
    ai, sug = win.panels.get("ai"), win.panels.get("suggest")
    if isinstance(ai, base.OverlaySource):
        ai.overlay_changed.connect(win.set_ai_overlay)
    if isinstance(ai, base.FindingSource) and isinstance(sug, base.FindingSink):
        ai.finding.connect(sug.add_working_condition)
    _label_maps(win)
    notes = win.panels.get("notes")
    if isinstance(notes, base.ReportHolder):  # AI vs report, flagged on both panels
        if isinstance(ai, base.AIResultSource):
            ai.report_result.connect(notes.set_ai_result)
            notes.discordance_changed.connect(ai.set_discordance)
        notes.open_series.connect(lambda s: open_database_series(win, s))
    win.push_context()
