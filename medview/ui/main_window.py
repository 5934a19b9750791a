"""The workstation main window: wires the widgets to the Qt-free viewer core.

:mod:`medview.viewer.session` holds the workers, the volume cache and the measurement
store, :mod:`medview.viewer.mpr` the MPR rules; :mod:`medview.ui.actions` builds the
actions, menus and toolbar, :mod:`medview.ui.layout` the viewport grid and the docks.

Everything slow runs through :meth:`medview.ui.workers.TaskSlot.run`, one slot per
viewport or job, with progress and a cancel button in the status bar. Opening
another study cancels what the viewport was loading; closing cancels everything
and waits for the workers (no thread outlives the window).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QMimeData, Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from medview.ui import actions, hanging, presentation, reading
from medview.ui import layout as layout_helpers
from medview.ui import pixel_cache as pixel_cache_ui
from medview.ui import presets as P
from medview.ui import settings as user_settings
from medview.ui.layout import LAYOUTS, ViewportArea
from medview.ui.notifications import Notifier
from medview.ui.viewport import Viewport
from medview.ui.workers import TaskHandle, TaskSlot
from medview.viewer import mpr, session

log = logging.getLogger(__name__)

MIME_SERIES = "application/x-medview-series"


class MainWindow(QMainWindow):
    """The medview workstation window."""

    def __init__(self, load_panels: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("medview")
        self.setAcceptDrops(True)
        self.resize(1400, 880)
        self.cache = session.VolumeCache(session.cache_limit_from_env())  # series key -> Volume
        self.series_of: dict[Viewport, str] = {}
        self.notifier = Notifier(self)
        self.errors: list[str] = []
        self.measurements = session.MeasurementStore(warn=lambda msg: self.notify(msg, "warning"))
        self.panels: dict[str, QWidget] = {}
        self.panel_docks: dict[str, QDockWidget] = {}
        self.requested_preset: str | None = None
        # work started only once the window has been painted (fast first paint)
        self._deferred: list[Callable[[], Any]] = []
        self._ctx_viewport: Viewport | None = None  # the viewport the panels last saw
        self._docks_sized = False

        self.area = ViewportArea(self)
        self.setCentralWidget(self.area)
        self.slots: dict[Viewport, TaskSlot] = {vp: TaskSlot(self) for vp in self.area.viewports}
        self.meas_slot = TaskSlot(self)
        self.scan_slot = TaskSlot(self)
        self.import_slot = TaskSlot(self)
        self.warm_slot = TaskSlot(self)
        self.side_slots: list[TaskSlot] = []  # priors, registration, export (made on use)
        self.active: Viewport = self.area.viewports[0]
        for vp in self.area.viewports:
            self._wire_viewport(vp)

        layout_helpers.build_docks(self)
        layout_helpers.build_status(self)
        self.actions_by_id = actions.build_actions(self, LAYOUTS)
        actions.build_menus(self, LAYOUTS)
        self.fps_spin = actions.build_toolbar(self, LAYOUTS)

        self._ctx_timer = self._timer(150, self.push_context)
        self._tags_timer = self._timer(120, self._show_tags_now)
        self.set_layout("1x1")  # not restored: each study's protocol picks it (ui.hanging)
        self.set_active(self.area.viewports[0])
        if load_panels:
            self._deferred.append(lambda: layout_helpers.dock_side_panels(self))
        self._deferred.append(self.browser.refresh_database)
        self._deferred.append(lambda: actions.install_network(self))
        self._deferred.append(lambda: self.warm_slot.run(session.warm_up, name="warm-up"))

    # ================================================================ building
    def _timer(self, ms: int, slot: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(ms)
        timer.timeout.connect(slot)
        return timer

    def _wire_viewport(self, vp: Viewport) -> None:
        # the area (made first) keeps MPR planes and shared measurements in step
        vp.activated.connect(lambda v=vp: self.set_active(v))
        vp.index_changed.connect(lambda _i, v=vp: self._image_changed(v, title=False))
        vp.measurement_added.connect(self.measurements.add)
        vp.measurement_changed.connect(self.measurements.change)
        vp.measurement_deleted.connect(self.measurements.delete)
        vp.image_changed.connect(lambda v=vp: self._image_changed(v))
        vp.notify.connect(lambda m: self.notify(m, "info"))

    # ================================================================ panels
    def set_ai_overlay(self, overlay: Any | None) -> None:
        """Show the AI panel's heat map on the viewport whose image it was given."""
        vp = self._ctx_viewport if self._ctx_viewport is not None else self.active
        vp.set_ai_overlay(overlay)

    def push_context(self) -> None:
        if not self.panels:
            return
        from medview.ui.context import context_for

        vp = self._ctx_viewport = self.active
        key = vp.image_key()[0] if vp.plane == "axial" else ""
        ctx = context_for(vp.volume if not vp.loading else None, vp.plane, vp.index, key)
        for name, panel in self.panels.items():
            try:
                panel.set_study_context(ctx)
            except Exception as exc:
                log.warning("panel %s failed on context: %s", name, exc)

    # ================================================================ view state
    def _update_title(self) -> None:
        vol = self.active.volume
        info = (vol.series if vol is not None else None) or self.active.pending
        self.setWindowTitle(session.window_title(info))

    def set_active(self, vp: Viewport) -> None:
        """Make ``vp`` the viewport that actions, tags and panels follow."""
        if self.active is not vp:
            self.active.active = False
            self.active.update()
        self.active = vp
        vp.active = True
        vp.update()
        self.fps_spin.setValue(vp.cine.fps)
        reading.sync_projection_controls(self, vp)
        self.update_tags()
        self._update_title()
        self._ctx_timer.start()

    def set_tool(self, tool: str) -> None:
        """The left-drag tool of every viewport."""
        for vp in self.area.viewports:
            vp.tool = tool
        act = self.actions_by_id.get(f"tool_{tool}")
        if act is not None and not act.isChecked():
            act.setChecked(True)

    def set_layout(self, name: str) -> None:
        """Switch to layout ``name``; MPR shows the active series in three planes."""
        if name not in LAYOUTS:
            return
        old = self.area.layout_name
        vps = self.area.viewports
        if old == mpr.MPR_LAYOUT and name != mpr.MPR_LAYOUT:
            for vp in vps[1:3]:
                self.slots[vp].cancel()
                self.series_of.pop(vp, None)
            self.area.leave_mpr()
        self.area.arrange(name)
        act = self.actions_by_id.get(f"layout_{name}")
        if act is not None and not act.isChecked():
            act.setChecked(True)
        if name == mpr.MPR_LAYOUT and old != mpr.MPR_LAYOUT:
            key = self.series_of.get(self.active) or self.series_of.get(vps[0])
            if self.active is not vps[0] and key:
                vps[0].clear()
            self.set_active(vps[0])
            self.area.enter_mpr()
            if key:
                self.load_into(vps[0], key)
        if self.active not in self.area.visible_viewports():
            self.set_active(vps[0])

    def apply_preset(self, name: str | tuple[float, float]) -> bool:
        """Apply a preset to the active viewport (and MPR siblings). False if unknown."""
        preset = name if isinstance(name, tuple) else P.resolve_preset(name)
        if preset is None:
            self.notify(f"unknown window preset: {name}", "warning")
            return False
        in_mpr = self.area.layout_name == mpr.MPR_LAYOUT
        for vp in self.area.visible_viewports()[:3] if in_mpr else [self.active]:
            if not self._hu_preset_refused(vp, name):
                vp.apply_preset(preset)
        return True

    def _hu_preset_refused(self, vp: Viewport, name: object) -> bool:
        """A built-in CT preset (Hounsfield units) on an image that is not CT: notify, refuse."""
        refused, warning = session.hu_preset_verdict(vp.volume, name)
        if warning:
            self.notify(warning, "warning")
        return refused

    def notify(self, text: str, level: str = "error") -> None:
        """A one-line notification; errors are also kept in :attr:`errors`."""
        if level == "error":
            self.errors.append(text)
        self.notifier.notify(text, level)

    # ================================================================ opening
    def open_sample(self) -> None:
        samples = session.sample_studies()
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
            user_settings.add_recent(os.path.abspath(p))
        actions.fill_recent(self)
        hang = target is None  # opened as a study: its hanging protocol decides
        target = target or self.active
        title = os.path.basename(paths[0].rstrip("/")) or paths[0]
        if target.volume is None and not target.loading:
            target.message = f"Reading {title}\N{HORIZONTAL ELLIPSIS}"
            target.update()
        if self.area.layout_name == mpr.MPR_LAYOUT:
            target = self.area.viewports[0]
        h = self.scan_slot.run(
            session.scan_paths,
            paths,
            name="scan",
            on_result=lambda res, t=target, h=hang: self._scanned(res, t, h),
            on_error=lambda msg, t=target: self._scan_failed(msg, t),
            on_finished=lambda h, t=target: self._scan_ended(h, t),
        )
        self.progress.track(h, f"Reading {title}")
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

    def _scanned(self, res: Any, target: Viewport, hang: bool = False) -> None:
        for problem in presentation.problems(res.errors):  # a GSPS is shown, not an error
            self.notify(str(problem))
        if target.volume is None and not target.loading:
            target.message = ""
            target.update()
        if not res.series:
            if not res.errors:
                self.notify("nothing to open: no images found")
            return
        if hang and hanging.hang(self, res.series):
            return
        vis = self.area.visible_viewports()
        start = vis.index(target) if target in vis else 0
        in_mpr = self.area.layout_name == mpr.MPR_LAYOUT
        plan = session.plan_open([s.slices for s in res.series], len(vis), in_mpr, start)
        keys = self.browser.add_opened(res.series, shown=plan.shown)
        self.browser.select_key(keys[plan.best])
        for place, n in plan.loads:
            self.load_into(self.area.viewports[0] if in_mpr else vis[place], keys[n])

    def handle_drop(self, mime: QMimeData, vp: Viewport | None = None) -> None:
        """Files dropped open there; a series dragged from the browser loads there."""
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

    def dragEnterEvent(self, e: Any) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e: Any) -> None:  # noqa: N802
        self.handle_drop(e.mimeData())
        e.acceptProposedAction()

    # ================================================================ loading
    def load_into(self, vp: Viewport, key: str) -> None:
        """Show series ``key`` in ``vp`` (from the cache, else load on vp's slot)."""
        series = self.browser.series.get(key)
        if series is None:
            self.notify(f"unknown series {key}")
            return
        targets = self.area.viewports[:3] if self.area.layout_name == mpr.MPR_LAYOUT else [vp]
        vp = targets[0]
        for t in targets:
            self.slots[t].cancel()
            self.series_of[t] = key
        pixel_cache_ui.before_open(self, series)  # priors prefetch of another study stops
        vol = self.cache.get(key)
        if vol is not None:
            self._show_volume(targets, key, vol)
            return
        from_db = session.is_database_key(key)  # its files are scanned on the worker first
        for t in targets:
            t.begin_loading(None if from_db else series)
            if from_db:
                t.message = "Loading\N{HORIZONTAL ELLIPSIS}"
        h = self.slots[vp].run(
            session.load_db_series if from_db else session.load_opened_series,
            series,
            name="load",
            on_partial=lambda v, t=targets: self._partial(t, v),
            on_progress=lambda f, m, t=targets: self._load_progress(t),
            on_result=lambda vol, k=key, t=targets: self._loaded(t, k, vol),
            on_error=lambda msg, t=targets: self._load_failed(t, msg),
            on_finished=lambda h, v=vp, t=targets: self._load_ended(h, v, t),
        )
        self.progress.track(h, f"Loading {series.description or series.modality or 'series'}")

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
            self.update_tags()

    def _load_progress(self, targets: list[Viewport]) -> None:
        vp = targets[0]
        if vp.volume is not None and vp.loaded is not None:
            vp.loading_progress(vp.volume.loaded_prefix)

    def _load_failed(self, targets: list[Viewport], msg: str) -> None:
        self.notify(msg)
        for t in targets:
            t.clear("Could not load this series (see Messages)")

    def _loaded(self, targets: list[Viewport], key: str, vol: Any) -> None:
        self.cache.put(key, vol, in_use=set(self.series_of.values()))
        self.browser.set_thumbnail(key, vol)
        pixel_cache_ui.after_load(self, vol.series)  # then its priors go to the pixel cache
        info = vol.series
        what = (getattr(info, "modality", ""), getattr(info, "description", ""))
        name = " ".join(x for x in what if x)
        for w in vol.warnings:
            self.notify(f"{name or 'series'}: {w}", "warning")
        self._show_volume(targets, key, vol)

    def _show_volume(self, targets: list[Viewport], key: str, vol: Any) -> None:
        if len(targets) == 3 and self.area.layout_name == mpr.MPR_LAYOUT:
            if vol.shape[0] < 2:
                self.notify("MPR needs a volume: this series has a single image", "info")
            center = mpr.center_crosshair(vol.shape)
            for t in targets:
                t.set_volume(vol, keep_view=False)
                t.set_crosshair(center)
        else:
            for t in targets:
                t.set_volume(vol, keep_view=False)
        hanging.after_show(self, targets, key)
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
            self.update_tags()
            self._ctx_timer.start()

    @property
    def busy(self) -> bool:
        """True while anything is scanning, loading or rendering thumbnails."""
        slots = (self.warm_slot, self.scan_slot, self.meas_slot, *self.slots.values())
        slots += tuple(self.side_slots)
        working = any(s.busy for s in slots) or any(vp.loading for vp in self.area.viewports)
        return bool(self._deferred) or working or self.browser.busy

    # ================================================================ following the image
    def _image_changed(self, vp: Viewport, title: bool = True) -> None:
        if vp is self.active:
            if title:
                self._update_title()
            self.update_tags()
            self._ctx_timer.start()

    def update_tags(self) -> None:
        """Show the active image's tags soon (debounced: scrolling reads no headers)."""
        self._tags_timer.start()

    def _show_tags_now(self) -> None:
        if not self.tags_dock.isVisible():
            return
        vp = self.active
        path = session.shown_file(vp.volume, vp.plane, vp.index, vp.pending)
        if path:
            self.tags.show_file(path)

    # ================================================================ measurements
    def _restore_measurements(self, vp: Viewport, vol: Any) -> None:
        keys = self.measurements.keys_to_restore(vol)
        if keys:
            self.meas_slot.run(
                session.read_measurements,
                keys,
                name="measurements",
                on_result=lambda rows, v=vp, vol=vol: self._measurements_loaded(v, vol, rows),
                on_error=lambda msg: log.info("measurements not restored: %s", msg),
            )

    def _measurements_loaded(self, vp: Viewport, vol: Any, rows: dict[str, list[dict]]) -> None:
        if vp.volume is not vol or not rows:
            return
        shown = [v for v in self.area.viewports if v.volume is vol]
        known = {m.db_id for v in shown for m in v.measurements}
        for m in session.measurements_to_restore(vol, rows, known):
            for v in [vp] if m.plane == "axial" else [v for v in shown if v.plane == m.plane]:
                v.add_measurement(m, emit=False)  # a reformat's: in each viewport of its plane

    # ================================================================ misc
    def import_path(self, path: str) -> TaskHandle | None:
        """Index ``path`` into the local database on a worker; the browser refreshes after."""
        h = self.import_slot.run(
            session.import_into_db,
            path,
            cache=pixel_cache_ui.cache_on_import(),
            name="import",
            on_result=self._imported,
            on_error=self.notify,
        )
        self.progress.track(h, f"Importing {os.path.basename(path)}")
        return h

    def _imported(self, report: Any) -> None:
        for e in list(report.errors)[:20]:
            self.notify(str(e))
        self.notify("import finished", "info")
        self.browser.refresh_database()

    def shutdown(self) -> None:
        """Cancel everything and wait for the workers (called on close)."""
        from medview.ui import workers

        self.area.shutdown()  # cine timers, the 3D view's VTK thread
        for slot in (*self.slots.values(), self.meas_slot, self.scan_slot, *self.side_slots):
            slot.cancel()
        self.import_slot.cancel()
        self.warm_slot.cancel()
        self.browser.shutdown()
        self.tags.shutdown()
        for name, panel in self.panels.items():
            try:
                panel.shutdown()
            except Exception as exc:
                log.warning("panel %s shutdown failed: %s", name, exc)
        workers.shutdown_all(10000)
        self.measurements.close()

    def showEvent(self, event: Any) -> None:  # noqa: N802
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
        # What start-up made lives as long as the window: out of the garbage collector's
        # reach, a full collection no longer walks ~80,000 objects while holding the GIL
        # (35 to 57 ms, during which the GUI thread waited: the ticks over 50 ms late
        # while a study arrived, docs/net.md). gc.freeze() only moves a list.
        gc.freeze()

    def _size_docks(self) -> None:
        self.resizeDocks([self.browser_dock, self.tags_dock], [290, 400], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
