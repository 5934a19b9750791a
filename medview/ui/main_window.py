"""The workstation main window: study browser, viewport layouts, docks, menus.

Everything slow (scanning folders, decoding, thumbnails, database queries, tag
reading) runs through :mod:`medview.ui.workers`, one :class:`TaskSlot` per
viewport or panel, with progress and a cancel button in the status bar. Opening
another study cancels what the viewport was loading; closing cancels
everything and waits for the workers (no thread outlives the window).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import QMimeData, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from medview.ui import presets as P
from medview.ui.background import lower_thread_priority
from medview.ui.measure import Measurement
from medview.ui.notifications import MessageLog, Notifier
from medview.ui.viewport import TOOL_LABELS, Viewport
from medview.ui.workers import TaskHandle, TaskSlot

log = logging.getLogger(__name__)

LAYOUTS = ("1x1", "1x2", "2x2", "mpr")
MIME_SERIES = "application/x-medview-series"

#: (action id, shortcut, description) -- shown under Help > Keyboard shortcuts
SHORTCUTS: list[tuple[str, str, str]] = [
    ("open_file", "Ctrl+O", "Open file(s)"),
    ("open_folder", "Ctrl+Shift+O", "Open folder"),
    ("open_dicomdir", "Ctrl+D", "Open DICOMDIR"),
    ("sample", "Ctrl+Shift+S", "Open the sample study"),
    ("quit", "Ctrl+Q", "Quit"),
    ("layout_1x1", "1", "Layout 1x1"),
    ("layout_1x2", "2", "Layout 1x2"),
    ("layout_2x2", "4", "Layout 2x2"),
    ("layout_mpr", "M", "Layout MPR (axial, coronal, sagittal)"),
    ("tool_wl", "W", "Tool: window/level (left drag)"),
    ("tool_pan", "P", "Tool: pan"),
    ("tool_zoom", "Z", "Tool: zoom"),
    ("tool_scroll", "S", "Tool: scroll slices by dragging"),
    ("tool_ruler", "R", "Tool: ruler (mm)"),
    ("tool_angle", "A", "Tool: angle (drag the first arm, click the third point)"),
    ("tool_rect", "B", "Tool: rectangle ROI"),
    ("tool_ellipse", "E", "Tool: ellipse ROI"),
    ("tool_crosshair", "C", "Tool: MPR crosshair"),
    ("preset_lung", "F2", "Window: lung"),
    ("preset_mediastinum", "F3", "Window: mediastinum / soft tissue"),
    ("preset_bone", "F4", "Window: bone"),
    ("preset_brain", "F5", "Window: brain"),
    ("preset_abdomen", "F6", "Window: abdomen"),
    ("preset_liver", "F7", "Window: liver"),
    ("preset_file", "F8", "Window: from the file"),
    ("preset_auto", "F9", "Window: automatic"),
    ("invert", "I", "Invert grey scale"),
    ("fit", "F", "Zoom to fit"),
    ("one_to_one", "Ctrl+0", "Zoom 1:1 (one image pixel per screen pixel)"),
    ("rotate_cw", "Ctrl+R", "Rotate 90\N{DEGREE SIGN} clockwise"),
    ("rotate_ccw", "Ctrl+L", "Rotate 90\N{DEGREE SIGN} counter-clockwise"),
    ("flip_h", "H", "Flip horizontally"),
    ("flip_v", "V", "Flip vertically"),
    ("reset", "Ctrl+Shift+R", "Reset view (zoom, pan, rotation, flips, window)"),
    ("overlays", "O", "Show / hide the corner overlays"),
    ("cine", "Space", "Cine play / pause"),
    ("fps_down", "[", "Cine slower"),
    ("fps_up", "]", "Cine faster"),
    ("search", "Ctrl+F", "Search studies"),
    ("shortcuts", "F1", "This list"),
]
MOUSE_HELP: list[tuple[str, str]] = [
    ("Wheel / Up, Down, PgUp, PgDn, Home, End", "Scroll slices / frames"),
    ("Ctrl + wheel", "Zoom at the cursor"),
    ("Right drag", "Window/level: horizontal = width, vertical = level"),
    ("Middle drag", "Pan"),
    ("Left drag", "The active tool"),
    ("Double click", "Maximise / restore the viewport"),
    ("Delete", "Delete the selected measurement"),
    ("Right click on a measurement", "Delete it"),
    ("Ctrl+C (tag browser)", "Copy the selected tags"),
]


def scan_paths(paths: list[str], state=None):
    """Worker: scan several paths (headers only) into one ScanResult."""
    from medview.io import scan

    lower_thread_priority()
    return scan(paths, state=state)


def load_db_series(files: list[str], series_uid: str, state=None):
    """Worker: a database series: scan its files, then load the volume."""
    from medview.errors import ReadError
    from medview.io import load_series, scan

    lower_thread_priority()
    res = scan(files)
    series = res.find(series_uid) if series_uid else None
    if series is None and res.series:
        series = res.series[0]
    if series is None:
        if res.errors:
            raise ReadError(res.errors[0].reason, res.errors[0].path)
        raise ReadError("the files of this series are gone", files[0] if files else series_uid)
    if state is not None:
        state.partial(("series", series))
    return load_series(series, state=state)


def warm_up(state=None) -> bool:
    """Worker, after the first paint: import the readers and start a decoder process,
    so the first study opens without those seconds. Returns True when a pool is up."""
    lower_thread_priority()
    import pydicom  # noqa: F401 - its data dictionary alone compiles for ~0.1 s without .pyc
    import pydicom.pixels  # noqa: F401

    import medview.imaging.display  # noqa: F401
    import medview.io  # noqa: F401
    import medview.io.database  # noqa: F401

    if state is not None:
        state.check()
    from medview.io.decoders import decoder_pool

    pool = decoder_pool()
    if pool is None:
        return False
    try:
        pool.submit(int, 0).result(timeout=60)  # forks the server and one worker
    except Exception:
        return False
    return True


def read_measurements(keys: list[str], state=None) -> dict[str, list[dict]]:
    """Worker: stored measurements of the given SOP instance UIDs."""
    from medview.io.database import StudyDatabase

    db = StudyDatabase()
    out = {}
    try:
        for key in keys:
            if state is not None:
                state.check()
            rows = db.measurements(key)
            if rows:
                out[key] = rows
    finally:
        close = getattr(db, "close", None)
        if close is not None:
            close()
    return out


def import_into_db(path: str, state=None):
    from medview.io.database import StudyDatabase

    db = StudyDatabase()
    try:
        return db.import_path(path, state=state)
    finally:
        close = getattr(db, "close", None)
        if close is not None:
            close()


def sample_studies() -> list[tuple[str, str]]:
    """(label, path) of sample images shipped with pydicom / pydicom-data."""
    try:
        from pydicom.data import get_testdata_file
    except ImportError:
        return []
    wanted = [
        ("CT head, 512x512 (pydicom-data 693_UNCR)", "693_UNCR.dcm"),
        ("CT small, 128x128 (pydicom CT_small)", "CT_small.dcm"),
        ("MR small (pydicom MR_small)", "MR_small.dcm"),
        ("MR multi-frame, 10 frames (emri_small)", "emri_small.dcm"),
        ("CR chest X-ray (pydicom-data RG1_UNCR)", "RG1_UNCR.dcm"),
        ("Ultrasound, colour (pydicom-data US1_UNCR)", "US1_UNCR.dcm"),
    ]
    out = []
    for label, name in wanted:
        try:
            path = get_testdata_file(name, download=False)
        except Exception:
            path = None
        if path and os.path.exists(str(path)):
            out.append((label, str(path)))
    return out


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

    def track(self, handle: TaskHandle, title: str) -> None:
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
        for h, _ in self.handles:
            h.cancel()
        self.label.setText("cancelled")
        self._refresh()

    @property
    def busy(self) -> bool:
        return any(h.running for h, _ in self.handles)


class ViewportArea(QWidget):
    """Holds four viewports and arranges them for the current layout."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.viewports = [Viewport(self) for _ in range(4)]
        self.layout_name = "1x1"
        self.maximized: Viewport | None = None

    def visible_viewports(self) -> list[Viewport]:
        if self.maximized is not None:
            return [self.maximized]
        n = {"1x1": 1, "1x2": 2, "2x2": 4, "mpr": 3}[self.layout_name]
        return self.viewports[:n]

    def arrange(self, name: str) -> None:
        self.layout_name = name
        self.maximized = None
        self._place()

    def toggle_maximize(self, vp: Viewport) -> None:
        self.maximized = None if self.maximized is vp else vp
        self._place()

    def _place(self) -> None:
        for vp in self.viewports:
            self.grid.removeWidget(vp)
            vp.hide()
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


class MainWindow(QMainWindow):
    """The medview workstation window."""

    loading_finished = Signal()

    def __init__(self, load_panels: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("medview")
        self.setAcceptDrops(True)
        self.resize(1400, 880)
        self.cache: OrderedDict[str, Any] = OrderedDict()  # series key -> Volume
        self.cache_bytes = int(os.environ.get("MEDVIEW_CACHE_MB", "2048")) * 1024 * 1024
        self.series_of: dict[Viewport, str] = {}
        self.notifier = Notifier(self)
        self.errors: list[str] = []
        self._db: Any | None = None
        self._db_failed = False
        self.panels: dict[str, QWidget] = {}
        self.panel_docks: dict[str, QDockWidget] = {}
        self._mpr_key: str | None = None
        self.requested_preset: str | None = None
        # work started only once the window has been painted (fast first paint)
        self._deferred: list = []
        self._ctx_viewport: Viewport | None = None  # the viewport the panels last saw

        self.area = ViewportArea(self)
        self.setCentralWidget(self.area)
        self.slots: dict[Viewport, TaskSlot] = {vp: TaskSlot(self) for vp in self.area.viewports}
        self.meas_slot = TaskSlot(self)
        self.scan_slot = TaskSlot(self)
        self.import_slot = TaskSlot(self)
        self.warm_slot = TaskSlot(self)
        self.active: Viewport = self.area.viewports[0]
        for vp in self.area.viewports:
            self._wire_viewport(vp)

        self._build_docks()
        self._build_status()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()

        self._ctx_timer = QTimer(self)
        self._ctx_timer.setSingleShot(True)
        self._ctx_timer.setInterval(150)
        self._ctx_timer.timeout.connect(self._push_context)

        s = P.settings()
        layout = str(s.value("layout", "1x1"))
        self.set_layout(layout if layout in LAYOUTS else "1x1")
        self.set_active(self.area.viewports[0])
        if load_panels:
            self._deferred.append(self._load_side_panels)
        self._deferred.append(self.browser.refresh_database)
        self._deferred.append(lambda: self.warm_slot.start(warm_up, name="warm-up"))

    # ================================================================ building
    def _wire_viewport(self, vp: Viewport) -> None:
        vp.activated.connect(lambda v=vp: self.set_active(v))
        vp.index_changed.connect(lambda i, v=vp: self._index_changed(v, i))
        vp.window_changed.connect(lambda c, w, v=vp: self._window_changed(v, c, w))
        vp.crosshair_moved.connect(lambda i, j, k, v=vp: self._crosshair_moved(v, (i, j, k)))
        vp.measurement_added.connect(self._measurement_added)
        vp.measurement_changed.connect(self._measurement_changed)
        vp.measurement_deleted.connect(self._measurement_deleted)
        vp.maximize_requested.connect(lambda v=vp: self.area.toggle_maximize(v))
        vp.image_changed.connect(lambda v=vp: self._image_changed(v))
        vp.notify.connect(lambda m: self.notify(m, "info"))

    def _build_docks(self) -> None:
        from medview.ui.panels.tags import TagBrowser
        from medview.ui.study_browser import StudyBrowser

        self.browser = StudyBrowser(self)
        self.browser.series_activated.connect(lambda key: self.load_into(self.active, key))
        self.browser.import_requested.connect(self.import_dialog)
        self.browser_dock = self._dock(
            "Studies", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea
        )
        self.tags = TagBrowser(self)
        self.tags_dock = self._dock("DICOM tags", self.tags, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tags_dock.visibilityChanged.connect(lambda vis: vis and self._update_tags())
        self.messages = MessageLog(self)
        self.notifier.posted.connect(self.messages.add)
        self.messages_dock = self._dock(
            "Messages", self.messages, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.messages_dock.hide()
        self._docks_sized = False

    def _dock(self, title: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.replace(' ', '_').lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.cursor_label = QLabel("", self)
        self.cursor_label.setMinimumWidth(380)
        sb.addWidget(self.cursor_label, 1)
        self.progress = ProgressArea(self)
        sb.addPermanentWidget(self.progress)
        for vp in self.area.viewports:
            vp.cursor_info.connect(self.cursor_label.setText)

    def _act(self, key: str, text: str, slot, checkable: bool = False) -> QAction:
        a = QAction(text, self)
        sc = next((s for k, s, _ in SHORTCUTS if k == key), "")
        if sc:
            a.setShortcut(QKeySequence(sc))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)
        self.actions_by_id[key] = a
        return a

    def _build_actions(self) -> None:
        self.actions_by_id: dict[str, QAction] = {}
        A = self._act  # noqa: N806
        A("open_file", "Open file\N{HORIZONTAL ELLIPSIS}", self.open_file_dialog)
        A("open_folder", "Open folder\N{HORIZONTAL ELLIPSIS}", self.open_folder_dialog)
        A("open_dicomdir", "Open DICOMDIR\N{HORIZONTAL ELLIPSIS}", self.open_dicomdir_dialog)
        A("sample", "Open sample study", self.open_sample)
        A("import", "Import into database\N{HORIZONTAL ELLIPSIS}", self.import_dialog)
        A("save_png", "Save viewport as PNG\N{HORIZONTAL ELLIPSIS}", self.save_viewport_png)
        A("quit", "Quit", self.close)
        self.layout_group = QActionGroup(self)
        for name in LAYOUTS:
            a = A(
                f"layout_{name}",
                "MPR" if name == "mpr" else name,
                lambda _=False, n=name: self.set_layout(n),
                True,
            )
            self.layout_group.addAction(a)
        self.tool_group = QActionGroup(self)
        for tool, label in TOOL_LABELS.items():
            a = A(f"tool_{tool}", label, lambda _=False, t=tool: self.set_tool(t), True)
            self.tool_group.addAction(a)
        self.actions_by_id["tool_wl"].setChecked(True)
        for name, (_c, _w, label) in P.BUILTIN_PRESETS.items():
            A(f"preset_{name}", label, lambda _=False, n=name: self.apply_preset(n))
        A("preset_file", "From file", lambda: self.apply_preset("file"))
        A("preset_auto", "Automatic", lambda: self.apply_preset("auto"))
        A("save_preset", "Save current W/L as preset\N{HORIZONTAL ELLIPSIS}", self.save_preset)
        A("invert", "Invert", lambda: self._each(lambda v: v.toggle_invert()))
        A("fit", "Fit", lambda: self._each(lambda v: v.fit()))
        A("one_to_one", "1:1", lambda: self._each(lambda v: v.one_to_one()))
        A("rotate_cw", "Rotate right", lambda: self._each(lambda v: v.rotate(1)))
        A("rotate_ccw", "Rotate left", lambda: self._each(lambda v: v.rotate(-1)))
        A("flip_h", "Flip horizontal", lambda: self._each(lambda v: v.flip(True)))
        A("flip_v", "Flip vertical", lambda: self._each(lambda v: v.flip(False)))
        A("reset", "Reset view", self.reset_view)
        a = A("overlays", "Corner overlays", self.toggle_overlays, True)
        a.setChecked(True)
        A("cine", "Cine play/pause", self.toggle_cine, True)
        A("fps_down", "Cine slower", lambda: self.fps_spin.setValue(self.fps_spin.value() / 1.5))
        A("fps_up", "Cine faster", lambda: self.fps_spin.setValue(self.fps_spin.value() * 1.5))
        A("search", "Search studies", self._focus_search)
        A("shortcuts", "Keyboard shortcuts", self.show_shortcuts)
        A("about", "About medview", self.show_about)
        A("clear_measurements", "Delete measurements on this image", self.clear_measurements)

    def _build_menus(self) -> None:
        a = self.actions_by_id
        mb = self.menuBar()
        f = mb.addMenu("&File")
        for k in ("open_file", "open_folder", "open_dicomdir"):
            f.addAction(a[k])
        self.sample_menu = f.addMenu("Open sample study")
        # filled when first shown: finding pydicom's files imports pydicom (slow start-up)
        self.sample_menu.aboutToShow.connect(self._fill_samples)
        self.recent_menu = f.addMenu("Open recent")
        self._fill_recent()
        f.addSeparator()
        f.addAction(a["import"])
        f.addAction(a["save_png"])
        f.addSeparator()
        f.addAction(a["quit"])
        v = mb.addMenu("&View")
        lay = v.addMenu("Layout")
        for name in LAYOUTS:
            lay.addAction(a[f"layout_{name}"])
        for k in (
            "fit",
            "one_to_one",
            "rotate_cw",
            "rotate_ccw",
            "flip_h",
            "flip_v",
            "invert",
            "reset",
            "overlays",
            "cine",
        ):
            v.addAction(a[k])
        v.addSeparator()
        self.panels_menu = v.addMenu("Panels")
        for dock in (self.browser_dock, self.tags_dock, self.messages_dock):
            self.panels_menu.addAction(dock.toggleViewAction())
        t = mb.addMenu("&Tools")
        for tool in TOOL_LABELS:
            t.addAction(a[f"tool_{tool}"])
        t.addSeparator()
        t.addAction(a["clear_measurements"])
        w = mb.addMenu("&Window/level")
        self.window_menu = w
        self._fill_window_menu()
        h = mb.addMenu("&Help")
        h.addAction(a["shortcuts"])
        h.addAction(a["about"])

    def _fill_window_menu(self) -> None:
        a = self.actions_by_id
        w = self.window_menu
        w.clear()
        for name in P.BUILTIN_PRESETS:
            w.addAction(a[f"preset_{name}"])
        user = P.user_presets()
        if user:
            w.addSeparator()
            for name in user:
                w.addAction(name, lambda n=name: self.apply_preset(n))
        w.addSeparator()
        w.addAction(a["preset_file"])
        w.addAction(a["preset_auto"])
        w.addSeparator()
        w.addAction(a["save_preset"])

    def _fill_samples(self) -> None:
        if self.sample_menu.actions():
            return
        samples = sample_studies()
        self.sample_menu.addAction(self.actions_by_id["sample"])
        self.sample_menu.addSeparator()
        for label, path in samples:
            self.sample_menu.addAction(label, lambda p=path: self.open_paths([p]))
        if not samples:
            self.sample_menu.addAction("(pydicom's test files are not installed)").setEnabled(False)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = P.recent_paths()
        for path in items:
            self.recent_menu.addAction(path, lambda p=path: self.open_paths([p]))
        self.recent_menu.setEnabled(bool(items))

    def _build_toolbar(self) -> None:
        a = self.actions_by_id
        tb = QToolBar("Main", self)
        tb.setObjectName("toolbar_main")
        tb.setMovable(False)
        self.addToolBar(tb)
        open_btn = QToolButton(self)
        open_btn.setText("Open")
        open_btn.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        m = QMenu(open_btn)
        for k in ("open_file", "open_folder", "open_dicomdir", "sample"):
            m.addAction(a[k])
        open_btn.setMenu(m)
        open_btn.clicked.connect(self.open_file_dialog)
        tb.addWidget(open_btn)
        tb.addSeparator()
        for name in LAYOUTS:
            tb.addAction(a[f"layout_{name}"])
        tb.addSeparator()
        for tool in TOOL_LABELS:
            act = a[f"tool_{tool}"]
            act.setIconText(
                {"wl": "W/L", "rect": "Rect", "ellipse": "Ellipse", "crosshair": "Cross"}.get(
                    tool, TOOL_LABELS[tool]
                )
            )
            tb.addAction(act)
        tb.addSeparator()
        wl = QToolButton(self)
        wl.setText("Presets")
        wl.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        wl.setMenu(self.window_menu)
        tb.addWidget(wl)
        for k in ("invert", "fit", "one_to_one", "rotate_cw", "flip_h", "flip_v", "reset"):
            tb.addAction(a[k])
        tb.addSeparator()
        tb.addAction(a["cine"])
        self.fps_spin = QDoubleSpinBox(self)
        self.fps_spin.setRange(1.0, 60.0)
        self.fps_spin.setDecimals(0)
        self.fps_spin.setSuffix(" fps")
        self.fps_spin.setValue(10.0)
        self.fps_spin.setToolTip("Cine frame rate")
        self.fps_spin.valueChanged.connect(lambda v: self._each(lambda vp: vp.set_fps(v)))
        tb.addWidget(self.fps_spin)

    # ================================================================ panels
    def _load_side_panels(self) -> None:
        """Dock the AI / forecast / suggestions panels that import (lazily)."""
        specs = [
            ("ai", "medview.ui.panels.ai_panel", "AIPanel", "AI"),
            ("forecast", "medview.ui.panels.forecast_panel", "ForecastPanel", "Forecast"),
            (
                "suggest",
                "medview.ui.panels.suggest_panel",
                "SuggestionsPanel",
                "Treatment suggestions",
            ),
        ]
        import importlib
        import inspect

        from medview.records.patient_context import PatientRecords

        # one records context: the forecast and suggestion panels show the same patient
        self.patient_records = PatientRecords()
        shared = {"forecast", "suggest"}
        for key, module, cls_name, title in specs:
            try:
                cls = getattr(importlib.import_module(module), cls_name)
                if key in shared and "patients" in inspect.signature(cls).parameters:
                    panel = cls(self, patients=self.patient_records)
                else:
                    panel = cls(self)
            except Exception as exc:  # a missing or broken panel leaves its dock out
                log.warning("panel %s not docked: %s", module, exc)
                continue
            self.panels[key] = panel
            dock = self._dock(title, panel, Qt.DockWidgetArea.RightDockWidgetArea)
            self.tabifyDockWidget(self.tags_dock, dock)
            self.panel_docks[key] = dock
            self.panels_menu.addAction(dock.toggleViewAction())
            if hasattr(panel, "notify"):
                panel.notify.connect(lambda msg: self.notify(msg, "info"))
        self.tags_dock.raise_()
        ai, sug = self.panels.get("ai"), self.panels.get("suggest")
        if ai is not None and hasattr(ai, "overlay_changed"):
            ai.overlay_changed.connect(self.set_ai_overlay)
        if ai is not None and sug is not None and hasattr(ai, "finding"):
            ai.finding.connect(sug.add_working_condition)
        self._push_context()

    def set_ai_overlay(self, overlay: Any | None) -> None:
        """Show the AI panel's heat map on the viewport whose image it was given."""
        vp = self._ctx_viewport if self._ctx_viewport is not None else self.active
        vp.set_ai_overlay(overlay)

    def _push_context(self) -> None:
        if not self.panels:
            return
        from medview.records.patient_context import parse_dicom_date
        from medview.ui.context import StudyContext

        vp = self.active
        self._ctx_viewport = vp
        vol = vp.volume if not vp.loading else None
        ctx = StudyContext()
        if vol is not None:
            info = vol.series or (vol.instances[0] if vol.instances else None)
            key, _frame = vp.image_key() if vp.plane == "axial" else ("", 0)
            ctx = StudyContext(
                volume=vol,
                index=vp.index if vp.plane == "axial" else 0,
                patient_id=str(getattr(info, "patient_id", "") or ""),
                patient_name=str(getattr(info, "patient_name", "") or ""),
                birth_date=parse_dicom_date(getattr(info, "patient_birth_date", "")),
                image_key=key,
            )
        for name, panel in self.panels.items():
            try:
                panel.set_study_context(ctx)
            except Exception as exc:
                log.warning("panel %s failed on context: %s", name, exc)

    # ================================================================ state
    def _update_title(self) -> None:
        vol = self.active.volume
        info = (vol.series if vol is not None else None) or self.active.pending
        name = str(getattr(info, "patient_name", "") or "").replace("^", " ").strip()
        desc = " ".join(
            x
            for x in (
                str(getattr(info, "modality", "") or ""),
                str(getattr(info, "description", "") or ""),
            )
            if x
        )
        parts = [p for p in (name, desc) if p]
        self.setWindowTitle("medview" + (" \N{EM DASH} " + ", ".join(parts) if parts else ""))

    def set_active(self, vp: Viewport) -> None:
        if self.active is not vp:
            self.active.active = False
            self.active.update()
        self.active = vp
        vp.active = True
        vp.update()
        if hasattr(self, "fps_spin"):
            self.fps_spin.setValue(vp.fps)
        self._update_tags()
        self._update_title()
        self._ctx_timer.start()

    def _each(self, fn) -> None:
        """Apply to the active viewport (and its MPR siblings for view-wide actions)."""
        fn(self.active)

    def set_tool(self, tool: str) -> None:
        for vp in self.area.viewports:
            vp.tool = tool
        act = self.actions_by_id.get(f"tool_{tool}")
        if act is not None and not act.isChecked():
            act.setChecked(True)

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            return
        old = self.area.layout_name
        vps = self.area.viewports
        if old == "mpr" and name != "mpr":
            for vp in vps[1:3]:
                self.slots[vp].cancel()
                vp.plane = "axial"
                vp.title = ""
                vp.clear()
                self.series_of.pop(vp, None)
            vps[0].crosshair = None
            vps[0].title = ""
            vps[0].update()
        self.area.arrange(name)
        act = self.actions_by_id.get(f"layout_{name}")
        if act is not None and not act.isChecked():
            act.setChecked(True)
        P.settings().setValue("layout", name)
        if name == "mpr" and old != "mpr":
            key = self.series_of.get(self.active) or self.series_of.get(vps[0])
            if self.active is not vps[0] and key:
                vps[0].clear()
            self.set_active(vps[0])
            for vp, plane in zip(vps[:3], ("axial", "coronal", "sagittal"), strict=True):
                vp.plane = plane
                vp.title = plane.capitalize()
            if key:
                self.load_into(vps[0], key)
        if self.active not in self.area.visible_viewports():
            self.set_active(vps[0])

    def reset_view(self) -> None:
        vp = self.active
        vp.reset_view()
        vp.user_invert = False
        if vp.volume is not None:
            vp.window = None
            vp.set_volume(vp.volume, index=vp.index, keep_view=True)
        vp.update()

    def toggle_overlays(self) -> None:
        on = self.actions_by_id["overlays"].isChecked()
        for vp in self.area.viewports:
            vp.overlays_visible = on
            vp.update()

    def toggle_cine(self) -> None:
        vp = self.active
        vp.set_fps(self.fps_spin.value())
        playing = vp.toggle_cine()
        self.actions_by_id["cine"].setChecked(playing)

    def apply_preset(self, name: str | tuple[float, float]) -> bool:
        """Apply a preset to the active viewport (and MPR siblings). False if unknown."""
        preset = name if isinstance(name, tuple) else P.resolve_preset(name)
        if preset is None:
            self.notify(f"unknown window preset: {name}", "warning")
            return False
        targets = (
            self.area.visible_viewports()[:3] if self.area.layout_name == "mpr" else [self.active]
        )
        for vp in targets:
            if self._hu_preset_refused(vp, name):
                continue
            vp.apply_preset(preset)
        return True

    def _hu_preset_refused(self, vp: Viewport, name: object) -> bool:
        """A built-in CT preset (Hounsfield units) on an image that is not CT: notify, refuse."""
        if not isinstance(name, str) or vp.volume is None:
            return False
        from medview.imaging.display import ct_preset, hu_preset_problem

        if ct_preset(name.replace("_", " ")) is None and ct_preset(name) is None:
            return False  # "file", "auto" or a preset the user saved: any image
        applies, note = hu_preset_problem(vp.volume)
        if not applies or note:
            series = getattr(vp.volume, "series", None)
            what = getattr(series, "description", "") or "this image"
            verdict = "not applied" if not applies else "applied"
            self.notify(
                f"{what}: {name} is a CT window in Hounsfield units; {note} ({verdict})", "warning"
            )
        return not applies

    def save_preset(self) -> None:
        vp = self.active
        if vp.window is None:
            return
        name, ok = QInputDialog.getText(self, "Save window preset", "Name:")
        if ok and name.strip():
            P.save_user_preset(name.strip(), *vp.window)
            self._fill_window_menu()

    def clear_measurements(self) -> None:
        for m in list(self.active.measurements_here()):
            self.active.delete_measurement(m)

    def _focus_search(self) -> None:
        self.browser_dock.show()
        self.browser.search.setFocus()
        self.browser.search.selectAll()

    def notify(self, text: str, level: str = "error") -> None:
        if level == "error":
            self.errors.append(text)
        self.notifier.notify(text, level)

    # ================================================================ opening
    def open_file_dialog(self) -> None:
        start = str(P.settings().value("last_folder", os.path.expanduser("~")))
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open images",
            start,
            "Images (*.dcm *.dicom *.DCM *.ima *.png *.jpg *.jpeg *.tif *.tiff *.nii *.nii.gz *.mha *.mhd *.nrrd DICOMDIR);;All files (*)",
        )
        if files:
            P.settings().setValue("last_folder", os.path.dirname(files[0]))
            self.open_paths(files)

    def open_folder_dialog(self) -> None:
        start = str(P.settings().value("last_folder", os.path.expanduser("~")))
        folder = QFileDialog.getExistingDirectory(self, "Open folder", start)
        if folder:
            P.settings().setValue("last_folder", folder)
            self.open_paths([folder])

    def open_dicomdir_dialog(self) -> None:
        start = str(P.settings().value("last_folder", os.path.expanduser("~")))
        path, _ = QFileDialog.getOpenFileName(
            self, "Open DICOMDIR", start, "DICOMDIR (DICOMDIR dicomdir *.dir);;All files (*)"
        )
        if path:
            P.settings().setValue("last_folder", os.path.dirname(path))
            self.open_paths([path])

    def open_sample(self) -> None:
        samples = sample_studies()
        if not samples:
            self.notify("no sample images found: pydicom's test files are missing", "warning")
            return
        self.open_paths([samples[0][1]])

    def open_paths(self, paths: list[str], target: Viewport | None = None) -> TaskHandle | None:
        """Scan ``paths`` on a worker, list the series, show the first one(s)."""
        paths = [os.fspath(p) for p in paths if p]
        if not paths:
            return None
        for p in paths:
            P.add_recent(os.path.abspath(p))
        self._fill_recent()
        target = target or self.active
        title = os.path.basename(paths[0].rstrip("/")) or paths[0]
        if target.volume is None and not target.loading:
            target.message = f"Reading {title}\N{HORIZONTAL ELLIPSIS}"
            target.update()
        if self.area.layout_name == "mpr":
            target = self.area.viewports[0]
        h = self.scan_slot.start(scan_paths, paths, name="scan")
        self.progress.track(h, f"Reading {title}")
        h.result.connect(lambda res, t=target: self._scanned(res, t))
        h.error.connect(lambda msg, t=target: self._scan_failed(msg, t))
        h.finished.connect(lambda h=h, t=target: self._scan_ended(h, t))
        return h

    def _scan_ended(self, h: TaskHandle, target: Viewport) -> None:
        if h.cancelled and target.volume is None and not target.loading:
            target.message = ""
            target.update()

    def _scan_failed(self, msg: str, target: Viewport) -> None:
        self.notify(msg)
        if target.volume is None:
            target.message = ""
            target.update()

    def _scanned(self, res: Any, target: Viewport) -> None:
        for problem in res.errors:
            self.notify(str(problem))
        if target.volume is None and not target.loading:
            target.message = ""
            target.update()
        if not res.series:
            if not res.errors:
                self.notify("nothing to open: no images found")
            return
        vis = self.area.visible_viewports()
        mpr = self.area.layout_name == "mpr"
        # volumetric series first in MPR; otherwise in file order
        best = max(range(len(res.series)), key=lambda n: res.series[n].slices) if mpr else 0
        shown = (1 if best == 0 else 0) if mpr else len(vis)
        keys = self.browser.add_opened(res.series, shown=shown)
        self.browser.select_key(keys[best])
        if mpr:
            self.load_into(self.area.viewports[0], keys[best])
            return
        start = vis.index(target) if target in vis else 0
        for n, key in enumerate(keys[: len(vis)]):
            self.load_into(vis[(start + n) % len(vis)], key)

    def handle_drop(self, mime: QMimeData, vp: Viewport | None = None) -> None:
        vp = vp or self.active
        self.set_active(vp)
        if mime.hasFormat(MIME_SERIES):
            keys = bytes(mime.data(MIME_SERIES)).decode().split("\n")
            if keys and keys[0]:
                self.load_into(vp, keys[0])
            return
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if paths:
            self.open_paths(paths, target=vp)

    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        self.handle_drop(e.mimeData())
        e.acceptProposedAction()

    # ================================================================ loading
    def load_into(self, vp: Viewport, key: str) -> None:
        """Show series ``key`` in ``vp`` (from the cache, else load on vp's slot)."""
        series = self.browser.series.get(key)
        if series is None:
            self.notify(f"unknown series {key}")
            return
        mpr = self.area.layout_name == "mpr"
        targets = self.area.viewports[:3] if mpr else [vp]
        if mpr:
            vp = self.area.viewports[0]
        for t in targets:
            self.slots[t].cancel()
            self.series_of[t] = key
        vol = self.cache.get(key)
        if vol is not None:
            self.cache.move_to_end(key)
            self._show_volume(targets, key, vol)
            return
        if isinstance(series, dict):  # database series: scan its files on the worker
            files = list(series.get("files") or [])
            h = self.slots[vp].start(
                load_db_series, files, series.get("series_uid", ""), name="load"
            )
            for t in targets:
                t.begin_loading(None)
                t.message = "Loading\N{HORIZONTAL ELLIPSIS}"
            title = series.get("description") or series.get("modality") or "series"
        else:
            h = self.slots[vp].start(_load_series, series, name="load")
            for t in targets:
                t.begin_loading(series)
            title = series.description or series.modality or "series"
        self.progress.track(h, f"Loading {title}")
        h.partial.connect(lambda v, t=targets: self._partial(t, v))
        h.progress.connect(lambda f, m, t=targets: self._load_progress(t, f))
        h.result.connect(lambda vol, k=key, t=targets: self._loaded(t, k, vol))
        h.error.connect(lambda msg, t=targets: self._load_failed(t, msg))
        h.finished.connect(lambda h=h, v=vp, t=targets: self._load_ended(h, v, t))

    def _load_ended(self, h: TaskHandle, vp: Viewport, targets: list[Viewport]) -> None:
        """A cancelled load keeps the slices that arrived (or clears the viewport)."""
        if not h.cancelled or self.slots[vp].current not in (None, h):
            return
        for t in targets:
            if t.loading:
                t.loading_cancelled()

    def _partial(self, targets: list[Viewport], value: Any) -> None:
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "series":
            for t in targets:
                t.pending = value[1]
                t.update()
            return
        vol, k = value
        targets[0].show_partial(vol, k)
        if targets[0] is self.active:
            self._update_tags()

    def _load_progress(self, targets: list[Viewport], f: float) -> None:
        vp = targets[0]
        if vp.volume is not None and vp.loaded is not None:
            vp.loading_progress(vp.volume.loaded_prefix)

    def _load_failed(self, targets: list[Viewport], msg: str) -> None:
        self.notify(msg)
        for t in targets:
            t.clear("Could not load this series (see Messages)")

    def _loaded(self, targets: list[Viewport], key: str, vol: Any) -> None:
        self._cache_put(key, vol)
        self.browser.set_thumbnail(key, vol)
        info = vol.series
        name = " ".join(
            x for x in (getattr(info, "modality", ""), getattr(info, "description", "")) if x
        )
        for w in vol.warnings:
            self.notify(f"{name or 'series'}: {w}", "warning")
        self._show_volume(targets, key, vol)

    def _show_volume(self, targets: list[Viewport], key: str, vol: Any) -> None:
        mpr = len(targets) == 3 and self.area.layout_name == "mpr"
        if mpr:
            z, y, x = vol.shape
            if z < 2:
                self.notify("MPR needs a volume: this series has a single image", "info")
            center = (float(x // 2), float(y // 2), float(z // 2))
            for t in targets:
                t.set_volume(vol, keep_view=False)
                t.set_crosshair(center)
        else:
            for t in targets:
                t.set_volume(vol, keep_view=False)
        if self.requested_preset:
            # `--preset` applies to every viewport it loaded into; HU windows only to CT
            preset = P.resolve_preset(self.requested_preset)
            if preset is not None and not self._hu_preset_refused(
                targets[0], self.requested_preset
            ):
                for t in targets:
                    t.apply_preset(preset)
        self._restore_measurements(targets[0], vol)
        if targets[0] is self.active or self.active in targets:
            self._update_tags()
            self._ctx_timer.start()

    def _cache_put(self, key: str, vol: Any) -> None:
        self.cache[key] = vol
        self.cache.move_to_end(key)
        in_use = set(self.series_of.values())
        total = sum(v.array.nbytes for v in self.cache.values())
        for k in list(self.cache):
            if total <= self.cache_bytes or len(self.cache) <= 1:
                break
            if k in in_use:
                continue
            total -= self.cache.pop(k).array.nbytes

    @property
    def busy(self) -> bool:
        """True while anything is scanning, loading or rendering thumbnails."""
        return (
            bool(self._deferred)
            or self.warm_slot.busy
            or self.scan_slot.busy
            or any(s.busy for s in self.slots.values())
            or self.meas_slot.busy
            or self.browser.busy
            or any(vp.loading for vp in self.area.viewports)
        )

    # ================================================================ sync
    def _index_changed(self, vp: Viewport, index: int) -> None:
        if (
            self.area.layout_name == "mpr"
            and vp in self.area.viewports[:3]
            and vp.volume is not None
        ):
            ch = vp.crosshair
            if ch is not None:
                ijk = list(ch)
                axis = {"axial": 2, "coronal": 1, "sagittal": 0}[vp.plane]
                # only a scroll moves the crosshair; an index set from the crosshair does not
                if int(round(ijk[axis])) != index:
                    ijk[axis] = float(index)
                    self._crosshair_moved(vp, tuple(ijk), source_update=True)
        if vp is self.active:
            self._update_tags()
            self._ctx_timer.start()

    def _crosshair_moved(self, source: Viewport, ijk, source_update: bool = False) -> None:
        if self.area.layout_name != "mpr":
            return
        for vp in self.area.viewports[:3]:
            if vp.volume is source.volume:
                if vp is source and not source_update:
                    continue
                if vp is source:
                    vp.crosshair = tuple(ijk)
                    vp.update()
                else:
                    vp.set_crosshair(tuple(ijk))

    def _window_changed(self, vp: Viewport, c: float, w: float) -> None:
        if self.area.layout_name == "mpr" and vp in self.area.viewports[:3]:
            for other in self.area.viewports[:3]:
                if other is not vp and other.volume is vp.volume:
                    other.set_window(c, w, emit=False)

    def _image_changed(self, vp: Viewport) -> None:
        if vp is self.active:
            self._update_title()
            self._update_tags()
            self._ctx_timer.start()

    def _update_tags(self) -> None:
        """Show the active image's tags soon (debounced: scrolling reads no headers)."""
        timer = getattr(self, "_tags_timer", None)
        if timer is None:
            timer = self._tags_timer = QTimer(self)
            timer.setSingleShot(True)
            timer.setInterval(120)
            timer.timeout.connect(self._show_tags_now)
        timer.start()

    def _show_tags_now(self) -> None:
        if not hasattr(self, "tags") or not self.tags_dock.isVisible():
            return
        vp = self.active
        vol = vp.volume
        path = ""
        if vol is not None and vol.instances:
            k = vp.index if vp.plane == "axial" else vol.shape[0] // 2
            inst = vol.instance_at(min(k, vol.shape[0] - 1))
            path = inst.path if inst is not None else ""
        elif vp.pending is not None and getattr(vp.pending, "instances", None):
            path = vp.pending.instances[0].path
        if path:
            self.tags.show_file(path)

    # ================================================================ measurements
    def database(self) -> Any | None:
        if self._db is None and not self._db_failed:
            try:
                from medview.io.database import StudyDatabase

                self._db = StudyDatabase()
            except Exception as exc:
                self._db_failed = True
                self.notify(f"measurements are not stored: database unavailable ({exc})", "warning")
        return self._db

    def _siblings(self, m: Measurement) -> list[Viewport]:
        """Other viewports showing the image a measurement was drawn on."""
        src = self.sender()
        vol = getattr(src, "volume", None)
        return [
            v
            for v in self.area.viewports
            if v is not src and vol is not None and v.volume is vol and v.plane == m.plane
        ]

    def _measurement_added(self, m: Measurement) -> None:
        for v in self._siblings(m):  # the same object: edits and deletes stay in sync
            if m not in v.measurements:
                v.measurements.append(m)
                v.update()
        if not m.image_key:
            return
        db = self.database()
        if db is None:
            return
        try:
            m.db_id = int(db.save_measurement(m.image_key, m.kind, m.data()))
        except Exception as exc:
            self.notify(f"measurement not stored: {exc}", "warning")

    def _measurement_changed(self, m: Measurement) -> None:
        for v in self._siblings(m):
            v.update()
        db = self.database()
        if db is None or not m.image_key:
            return
        try:
            if m.db_id is not None:
                db.delete_measurement(m.db_id)
            m.db_id = int(db.save_measurement(m.image_key, m.kind, m.data()))
        except Exception as exc:
            self.notify(f"measurement not stored: {exc}", "warning")

    def _measurement_deleted(self, m: Measurement) -> None:
        for v in self._siblings(m):
            if m in v.measurements:
                v.measurements.remove(m)
                if v.selected is m:
                    v.selected = None
                v.update()
        db = self.database()
        if db is None or m.db_id is None:
            return
        try:
            db.delete_measurement(m.db_id)
        except Exception as exc:
            self.notify(f"measurement not deleted from the database: {exc}", "warning")

    def _restore_measurements(self, vp: Viewport, vol: Any) -> None:
        if not vol.instances or self._db_failed:
            return
        keys = sorted({i.sop_uid for i in vol.instances if i.sop_uid})
        if not keys:
            return
        h = self.meas_slot.start(read_measurements, keys, name="measurements")
        h.result.connect(lambda rows, v=vp, vol=vol: self._measurements_loaded(v, vol, rows))
        h.error.connect(lambda msg: log.info("measurements not restored: %s", msg))

    def _measurements_loaded(self, vp: Viewport, vol: Any, rows: dict[str, list[dict]]) -> None:
        if vp.volume is not vol or not rows:
            return
        multi = len(vol.instances) != vol.shape[0]
        index_of = {inst.sop_uid: n for n, inst in enumerate(vol.instances)}
        existing = {m.db_id for m in vp.measurements}
        for key, items in rows.items():
            for row in items:
                if row.get("id") in existing:
                    continue
                data = row.get("data") or {}
                frame = int(data.get("frame", 0) or 0)
                k = frame if multi else index_of.get(key)
                if k is None or not 0 <= k < vol.shape[0]:
                    continue
                pts = [(float(x), float(y)) for x, y in data.get("points", [])]
                m = Measurement(
                    kind=row.get("kind", "ruler"),
                    points=pts,
                    index=k,
                    plane="axial",
                    image_key=key,
                    frame=frame,
                    db_id=row.get("id"),
                )
                vp.add_measurement(m, emit=False)

    # ================================================================ misc
    def import_dialog(self) -> None:
        start = str(P.settings().value("last_folder", os.path.expanduser("~")))
        folder = QFileDialog.getExistingDirectory(self, "Import folder into the database", start)
        if folder:
            self.import_path(folder)

    def import_path(self, path: str) -> TaskHandle:
        h = self.import_slot.start(import_into_db, path, name="import")
        self.progress.track(h, f"Importing {os.path.basename(path)}")
        h.result.connect(self._imported)
        h.error.connect(self.notify)
        return h

    def _imported(self, report: Any) -> None:
        errors = (
            getattr(report, "errors", None)
            or (report.get("errors") if isinstance(report, dict) else None)
            or []
        )
        for e in errors[:20]:
            self.notify(
                str(e.get("path", "") + ": " + e.get("reason", ""))
                if isinstance(e, dict)
                else str(e)
            )
        self.notify("import finished", "info")
        self.browser.refresh_database()

    def save_viewport_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save viewport", "viewport.png", "PNG (*.png)")
        if path:
            self.active.grab().save(path, "PNG")

    def show_shortcuts(self) -> None:
        dlg = ShortcutsDialog(self)
        dlg.setModal(False)
        dlg.show()
        self._shortcuts_dialog = dlg

    def show_about(self) -> None:
        from medview import __version__

        self.notify(
            f"medview {__version__}: offline imaging workstation. Not a medical device; AI output is not for diagnostic use.",
            "info",
        )

    def shutdown(self) -> None:
        """Cancel everything and wait for the workers (called on close)."""
        from medview.ui import workers

        for vp in self.area.viewports:
            vp.stop_cine()
        for slot in [
            *self.slots.values(),
            self.meas_slot,
            self.scan_slot,
            self.import_slot,
            self.warm_slot,
        ]:
            slot.cancel()
        self.browser.shutdown()
        self.tags.shutdown()
        for name, panel in self.panels.items():
            try:
                panel.shutdown()
            except Exception as exc:
                log.warning("panel %s shutdown failed: %s", name, exc)
        workers.shutdown_all(10000)
        if self._db is not None:
            close = getattr(self._db, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
            self._db = None

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_sized:
            self._docks_sized = True
            QTimer.singleShot(0, self._size_docks)
            QTimer.singleShot(150, self._run_deferred)

    def _run_deferred(self) -> None:
        """Dock the side panels and query the database after the first paint."""
        jobs, self._deferred = self._deferred, []
        for job in jobs:
            job()

    def _size_docks(self) -> None:
        self.resizeDocks([self.browser_dock, self.tags_dock], [290, 400], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        P.settings().setValue("layout", self.area.layout_name)
        self.shutdown()
        super().closeEvent(event)


def _load_series(series: Any, state=None):
    """Worker: load a scanned series (decoder processes inherit the low priority)."""
    from medview.io import load_series

    lower_thread_priority()
    # compressed files always go to the decoder processes: a decoder holds the GIL
    return load_series(series, state=state, processes=True)
