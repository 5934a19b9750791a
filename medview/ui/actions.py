"""The main window's actions, menus and toolbar, and the tables of its shortcuts.

Every action has an id (``win.actions_by_id[id]``); its key, if any, comes from
:data:`SHORTCUTS`, which is also what Help > Keyboard shortcuts lists. The
handlers that only ask the user something (file dialogs, a preset name) live
here too; everything else is a method of
:class:`~medview.ui.main_window.MainWindow`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QInputDialog,
    QMenu,
    QToolBar,
    QToolButton,
)

from medview.ui import hanging, linking, presentation, reading, results_actions
from medview.ui import presets as P
from medview.ui import settings as user_settings
from medview.ui.viewport import TOOL_LABELS

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow

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
    ("layout_3d", "3", "Layout 3D volume rendering (VTK)"),
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
    ("proj_mip", "Shift+M", "Slab: maximum intensity projection (MIP)"),
    ("proj_minip", "Shift+N", "Slab: minimum intensity projection (MinIP)"),
    ("proj_avg", "Shift+G", "Slab: average intensity"),
    ("proj_none", "Shift+X", "Slab off: the single slice"),
    ("copy_image", "Ctrl+Shift+C", "Copy the viewport image"),
    ("key_image", "K", "Flag / unflag the image as a key image"),
    ("compare_prior", "Ctrl+Shift+P", "Compare with the latest prior study (1x2)"),
    ("link_scroll", "Ctrl+Shift+L", "Link scrolling of the viewports (by patient position)"),
    ("link_view", "Ctrl+Shift+W", "Link window/level and zoom of the viewports"),
    ("gsps", "Ctrl+Shift+G", "Show / hide the presentation state (GSPS)"),
    ("net_query", "Ctrl+Shift+Q", "Query / Retrieve from a PACS or DICOMweb node"),
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
IMAGE_FILTER = (
    "Images (*.dcm *.dicom *.DCM *.ima *.png *.jpg *.jpeg *.tif *.tiff *.nii *.nii.gz *.mha "
    "*.mhd *.nrrd DICOMDIR);;All files (*)"
)
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def build_actions(win: MainWindow, layouts: tuple[str, ...]) -> dict[str, QAction]:
    """Create every action of ``win`` (added to the window, so their keys work anywhere)."""
    acts: dict[str, QAction] = {}

    def add(key: str, text: str, slot: Callable[..., Any], checkable: bool = False) -> QAction:
        a = QAction(text, win)
        sc = next((s for k, s, _ in SHORTCUTS if k == key), "")
        if sc:
            a.setShortcut(QKeySequence(sc))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        win.addAction(a)
        acts[key] = a
        return a

    add("open_file", f"Open file{ELLIPSIS}", lambda: open_file_dialog(win))
    add("open_folder", f"Open folder{ELLIPSIS}", lambda: open_folder_dialog(win))
    add("open_dicomdir", f"Open DICOMDIR{ELLIPSIS}", lambda: open_dicomdir_dialog(win))
    add("sample", "Open sample study", win.open_sample)
    add("import", f"Import into database{ELLIPSIS}", lambda: import_dialog(win))
    add("save_png", f"Save viewport image{ELLIPSIS}", lambda: reading.save_viewport_dialog(win))
    add(
        "save_bare",
        f"Save image without overlays{ELLIPSIS}",
        lambda: reading.save_viewport_dialog(win, overlays=False),
    )
    add("copy_image", "Copy viewport image", lambda: reading.copy_viewport(win))
    add("export_cine", f"Export cine (GIF/MP4){ELLIPSIS}", lambda: reading.export_cine_dialog(win))
    add("compare_prior", "Compare with prior", lambda: hanging.compare_with_prior(win))
    results_actions.install(win)
    add("key_image", "Key image", lambda: results_actions.toggle_key_image(win))
    add("export_results", f"Export{ELLIPSIS}", lambda: results_actions.export_dialog(win))
    add(
        "save_sr",
        f"Save measurements as DICOM SR{ELLIPSIS}",
        lambda: results_actions.save_sr_dialog(win),
    )
    add(
        "save_kos",
        f"Save key images as DICOM KOS{ELLIPSIS}",
        lambda: results_actions.save_kos_dialog(win),
    )
    add("report", f"Report (PDF){ELLIPSIS}", lambda: results_actions.report_dialog(win))
    add("link_scroll", "Link scrolling", lambda: linking.toggle_link(win), True)
    add("link_view", "Link window/level and zoom", lambda: linking.toggle_link(win), True)
    add("gsps", "Presentation state (GSPS)", lambda: presentation.toggle(win), True).setChecked(
        True
    )
    add(
        "save_protocol",
        f"Save current layout as protocol{ELLIPSIS}",
        lambda: hanging.save_protocol_dialog(win),
    )
    for proj, label in (("mip", "MIP"), ("minip", "MinIP"), ("avg", "Average"), ("none", "Off")):
        add(f"proj_{proj}", f"Slab {label}", lambda _=False, p=proj: _projection(win, p))
    add("quit", "Quit", win.close)
    win.layout_group = QActionGroup(win)
    for name in layouts:
        label = {"mpr": "MPR", "3d": "3D"}.get(name, name)
        a = add(f"layout_{name}", label, lambda _=False, n=name: win.set_layout(n), True)
        win.layout_group.addAction(a)
    win.tool_group = QActionGroup(win)
    for tool, label in TOOL_LABELS.items():
        a = add(f"tool_{tool}", label, lambda _=False, t=tool: win.set_tool(t), True)
        win.tool_group.addAction(a)
    acts["tool_wl"].setChecked(True)
    for name, (_c, _w, label) in P.BUILTIN_PRESETS.items():
        add(f"preset_{name}", label, lambda _=False, n=name: win.apply_preset(n))
    add("preset_file", "From file", lambda: win.apply_preset("file"))
    add("preset_auto", "Automatic", lambda: win.apply_preset("auto"))
    add("save_preset", f"Save current W/L as preset{ELLIPSIS}", lambda: save_preset(win))
    add("invert", "Invert", lambda: win.active.toggle_invert())
    add("fit", "Fit", lambda: win.active.fit())
    add("one_to_one", "1:1", lambda: win.active.one_to_one())
    add("rotate_cw", "Rotate right", lambda: win.active.rotate(1))
    add("rotate_ccw", "Rotate left", lambda: win.active.rotate(-1))
    add("flip_h", "Flip horizontal", lambda: win.active.flip(True))
    add("flip_v", "Flip vertical", lambda: win.active.flip(False))
    add("reset", "Reset view", lambda: reset_view(win))
    add("overlays", "Corner overlays", lambda: toggle_overlays(win), True).setChecked(True)
    add("cine", "Cine play/pause", lambda: toggle_cine(win), True)
    add("fps_down", "Cine slower", lambda: win.fps_spin.setValue(win.fps_spin.value() / 1.5))
    add("fps_up", "Cine faster", lambda: win.fps_spin.setValue(win.fps_spin.value() * 1.5))
    add("search", "Search studies", lambda: focus_search(win))
    add("shortcuts", "Keyboard shortcuts", lambda: show_shortcuts(win))
    add("about", "About medview", lambda: show_about(win))
    add("clear_measurements", "Delete measurements on this image", lambda: clear_measurements(win))
    add("net_query", f"Query / Retrieve{ELLIPSIS}", lambda: _net(win).dialog())
    add("net_nodes", f"Nodes{ELLIPSIS}", lambda: _net(win).edit_nodes())
    add("net_listener", f"Listener settings{ELLIPSIS}", lambda: _net(win).listener_dialog())
    return acts


def install_network(win: MainWindow) -> None:
    """Networking at start-up: the listener (when the settings enable it), "Send to..."."""
    from medview.ui import net

    net.install(win)


def _net(win: MainWindow) -> Any:
    """The window's networking controller (:mod:`medview.ui.net`, imported on first use)."""
    from medview.ui import net

    return net.controller(win)


def build_menus(win: MainWindow, layouts: tuple[str, ...]) -> None:
    """The menu bar; sets ``win.sample_menu``, ``recent_menu``, ``panels_menu``, ``window_menu``."""
    a = win.actions_by_id
    mb = win.menuBar()
    f = mb.addMenu("&File")
    for k in ("open_file", "open_folder", "open_dicomdir"):
        f.addAction(a[k])
    win.sample_menu = f.addMenu("Open sample study")
    # filled when first shown: finding pydicom's files imports pydicom (slow start-up)
    win.sample_menu.aboutToShow.connect(lambda: fill_samples(win))
    win.recent_menu = f.addMenu("Open recent")
    fill_recent(win)
    f.addSeparator()
    f.addAction(a["import"])
    for k in ("save_png", "save_bare", "copy_image", "export_cine"):
        f.addAction(a[k])
    f.addSeparator()
    for k in ("export_results", "save_sr", "save_kos", "report"):
        f.addAction(a[k])
    f.addSeparator()
    f.addAction(a["quit"])
    v = mb.addMenu("&View")
    lay = v.addMenu("Layout")
    for name in layouts:
        lay.addAction(a[f"layout_{name}"])
    lay.addSeparator()
    lay.addAction(a["save_protocol"])
    for k in ("compare_prior", "link_scroll", "link_view", "gsps"):
        v.addAction(a[k])
    view_ids = ("fit", "one_to_one", "rotate_cw", "rotate_ccw", "flip_h", "flip_v")
    for k in (*view_ids, "invert", "reset", "overlays", "cine"):
        v.addAction(a[k])
    proj = v.addMenu("Slab projection")
    for k in ("proj_mip", "proj_minip", "proj_avg", "proj_none"):
        proj.addAction(a[k])
    v.addSeparator()
    win.panels_menu = v.addMenu("Panels")
    for dock in (win.browser_dock, win.tags_dock, win.messages_dock):
        win.panels_menu.addAction(dock.toggleViewAction())
    t = mb.addMenu("&Tools")
    for tool in TOOL_LABELS:
        t.addAction(a[f"tool_{tool}"])
    t.addSeparator()
    t.addAction(a["clear_measurements"])
    t.addAction(a["key_image"])
    win.window_menu = mb.addMenu("&Window/level")
    fill_window_menu(win)
    net = mb.addMenu("&Network")
    for k in ("net_query", "net_nodes", "net_listener"):
        net.addAction(a[k])
    h = mb.addMenu("&Help")
    h.addAction(a["shortcuts"])
    h.addAction(a["about"])


def fill_window_menu(win: MainWindow) -> None:
    """Built-in presets, the user's presets, file/automatic, save."""
    a = win.actions_by_id
    w = win.window_menu
    w.clear()
    for name in P.BUILTIN_PRESETS:
        w.addAction(a[f"preset_{name}"])
    user = P.user_presets()
    if user:
        w.addSeparator()
        for name in user:
            w.addAction(name, lambda n=name: win.apply_preset(n))
    w.addSeparator()
    w.addAction(a["preset_file"])
    w.addAction(a["preset_auto"])
    w.addSeparator()
    w.addAction(a["save_preset"])


def fill_samples(win: MainWindow) -> None:
    """File > Open sample study: pydicom's test files (listed once, when first shown)."""
    from medview.viewer.session import sample_studies

    menu = win.sample_menu
    if menu.actions():
        return
    samples = sample_studies()
    menu.addAction(win.actions_by_id["sample"])
    menu.addSeparator()
    for label, path in samples:
        menu.addAction(label, lambda p=path: win.open_paths([p]))
    if not samples:
        menu.addAction("(pydicom's test files are not installed)").setEnabled(False)


def fill_recent(win: MainWindow) -> None:
    """File > Open recent."""
    win.recent_menu.clear()
    items = user_settings.recent_paths()
    for path in items:
        win.recent_menu.addAction(path, lambda p=path: win.open_paths([p]))
    win.recent_menu.setEnabled(bool(items))


def build_toolbar(win: MainWindow, layouts: tuple[str, ...]) -> QDoubleSpinBox:
    """The main toolbar; returns its cine frame-rate box."""
    a = win.actions_by_id
    tb = QToolBar("Main", win)
    tb.setObjectName("toolbar_main")
    tb.setMovable(False)
    win.addToolBar(tb)
    open_btn = QToolButton(win)
    open_btn.setText("Open")
    open_btn.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
    m = QMenu(open_btn)
    for k in ("open_file", "open_folder", "open_dicomdir", "sample"):
        m.addAction(a[k])
    open_btn.setMenu(m)
    open_btn.clicked.connect(lambda: open_file_dialog(win))
    tb.addWidget(open_btn)
    tb.addSeparator()
    for name in layouts:
        tb.addAction(a[f"layout_{name}"])
    tb.addSeparator()
    short = {"wl": "W/L", "rect": "Rect", "ellipse": "Ellipse", "crosshair": "Cross"}
    for tool in TOOL_LABELS:
        act = a[f"tool_{tool}"]
        act.setIconText(short.get(tool, TOOL_LABELS[tool]))
        tb.addAction(act)
    tb.addSeparator()
    wl = QToolButton(win)
    wl.setText("Presets")
    wl.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    wl.setMenu(win.window_menu)
    tb.addWidget(wl)
    # short toolbar texts (the menus keep the long ones): the slab controls stay on screen
    brief = {"rotate_cw": "Rotate", "flip_h": "Flip H", "flip_v": "Flip V", "reset": "Reset"}
    for k in ("invert", "fit", "one_to_one", "rotate_cw", "flip_h", "flip_v", "reset", "key_image"):
        if k in brief:
            a[k].setIconText(brief[k])
        tb.addAction(a[k])
    tb.addSeparator()
    a["cine"].setIconText("Cine")
    tb.addAction(a["cine"])
    fps = QDoubleSpinBox(win)
    fps.setRange(1.0, 60.0)
    fps.setDecimals(0)
    fps.setSuffix(" fps")
    fps.setValue(10.0)
    fps.setToolTip("Cine frame rate")
    fps.valueChanged.connect(lambda v: win.active.cine.set_fps(v))
    tb.addWidget(fps)
    tb.addSeparator()
    reading.build_projection_controls(win, tb)
    return fps


# ---------------------------------------------------------------- view handlers
def reset_view(win: MainWindow) -> None:
    """Zoom, pan, rotation, flips and window of the active viewport back to the start."""
    vp = win.active
    vp.reset_view()
    vp.user_invert = False
    if vp.volume is not None:
        vp.window = None
        vp.set_volume(vp.volume, index=vp.index, keep_view=True)
    vp.update()


def _projection(win: MainWindow, proj: str) -> None:
    """View > Slab projection: the chosen one over the toolbar's slab thickness."""
    slab = win.slab_box.value() if hasattr(win, "slab_box") else reading.DEFAULT_SLAB_MM
    reading.apply_projection(win, None if proj == "none" else proj, slab)


def toggle_overlays(win: MainWindow) -> None:
    """Show or hide the corner text of every viewport."""
    on = win.actions_by_id["overlays"].isChecked()
    for vp in win.area.viewports:
        vp.overlays_visible = on
        vp.update()


def toggle_cine(win: MainWindow) -> None:
    """Play or pause the active viewport's cine at the toolbar's frame rate."""
    vp = win.active
    vp.cine.set_fps(win.fps_spin.value())
    win.actions_by_id["cine"].setChecked(vp.cine.toggle())


def clear_measurements(win: MainWindow) -> None:
    """Delete the measurements on the active viewport's image."""
    for m in list(win.active.measurements_here()):
        win.active.delete_measurement(m)


def focus_search(win: MainWindow) -> None:
    """Show the study browser with its search box focused."""
    win.browser_dock.show()
    win.browser.search.setFocus()
    win.browser.search.selectAll()


def show_shortcuts(win: MainWindow) -> None:
    """Help > Keyboard shortcuts (non-modal)."""
    from medview.ui.layout import ShortcutsDialog

    dlg = ShortcutsDialog(win)
    dlg.setModal(False)
    dlg.show()
    win.shortcuts_dialog = dlg


def show_about(win: MainWindow) -> None:
    """Help > About: the version and what medview is not."""
    from medview import __version__
    from medview.disclaimers import APP

    win.notify(f"medview {__version__}: offline imaging workstation. {APP}", "info")


# ---------------------------------------------------------------- dialogs
def _last_folder() -> str:
    return str(user_settings.value("last_folder", os.path.expanduser("~")))


def open_file_dialog(win: MainWindow) -> None:
    """File > Open file(s)."""
    files, _ = QFileDialog.getOpenFileNames(win, "Open images", _last_folder(), IMAGE_FILTER)
    if files:
        user_settings.set_value("last_folder", os.path.dirname(files[0]))
        win.open_paths(files)


def open_folder_dialog(win: MainWindow) -> None:
    """File > Open folder."""
    folder = QFileDialog.getExistingDirectory(win, "Open folder", _last_folder())
    if folder:
        user_settings.set_value("last_folder", folder)
        win.open_paths([folder])


def open_dicomdir_dialog(win: MainWindow) -> None:
    """File > Open DICOMDIR."""
    path, _ = QFileDialog.getOpenFileName(
        win, "Open DICOMDIR", _last_folder(), "DICOMDIR (DICOMDIR dicomdir *.dir);;All files (*)"
    )
    if path:
        user_settings.set_value("last_folder", os.path.dirname(path))
        win.open_paths([path])


def import_dialog(win: MainWindow) -> None:
    """File > Import into database."""
    title = "Import folder into the database"
    folder = QFileDialog.getExistingDirectory(win, title, _last_folder())
    if folder:
        win.import_path(folder)


def save_preset(win: MainWindow) -> None:
    """Window/level > Save current W/L as preset."""
    vp = win.active
    if vp.window is None:
        return
    name, ok = QInputDialog.getText(win, "Save window preset", "Name:")
    if ok and name.strip():
        P.save_user_preset(name.strip(), *vp.window)
        fill_window_menu(win)
