"""Results out of the viewer: the Key image action (``K``), File > Export..., File > Save
measurements as DICOM SR..., File > Save key images as DICOM KOS..., File > Report (PDF)...,
and the audit events of what the window opens and analyses.

Widgets and handlers only: the work is :mod:`medview.results.jobs` (Qt-free worker functions
that write the object and its audit event), run through one :class:`~medview.ui.workers.TaskSlot`
with progress and cancel in the status bar. Key images are kept by
:class:`medview.results.key_images.KeyImageStore` (per SOPInstanceUID in the study database).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from medview.tasks import TaskState, ensure_state
from medview.ui import settings as user_settings
from medview.ui.panels.base import ResultsSource
from medview.ui.workers import TaskHandle, TaskSlot

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.viewport import Viewport

#: warnings shown one by one after an export (the rest summed up)
MAX_WARNINGS = 10


# ---------------------------------------------------------------- set-up
class _Warnings(QObject):
    """Carries the key-image store's warnings to the GUI thread (the store also reads in a
    worker: :func:`series_opened`)."""

    message = Signal(str)

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.win = win
        self.message.connect(self._show)  # queued when emitted from a worker thread

    def _show(self, text: str) -> None:
        self.win.notify(text, "warning")


def install(win: MainWindow) -> None:
    """Give ``win`` its key-image store, the results task slot and the audit hooks."""
    from medview.results.key_images import KeyImageStore

    warnings = _Warnings(win)
    win.key_images = KeyImageStore(warn=warnings.message.emit)
    win.results_slot = TaskSlot(win)
    win.side_slots.append(win.results_slot)  # busy while it runs; cancelled on close
    # a new series' key flags and open event, in a worker (one series after another)
    win.open_slot = TaskSlot(win)
    win.side_slots.append(win.open_slot)
    win.open_queue = []
    win.audited_series = set()
    win.ai_audit_timer = QTimer(win)
    win.ai_audit_timer.setSingleShot(True)
    win.ai_audit_timer.setInterval(1000)  # one event per run, not one per batch
    win.ai_audit_timer.timeout.connect(lambda: _audit_analysis(win))
    win.ai_audited = set()
    for vp in win.area.viewports:
        vp.key_image_check = lambda key, frame: _is_key(win, key, frame)
        vp.image_changed.connect(lambda v=vp: _image_shown(win, v))
    win.destroyed.connect(win.key_images.close)


def _is_key(win: MainWindow, key: str, frame: int) -> bool:
    # asked while painting: only the flags read so far (series_opened reads them in a worker)
    return bool(key) and win.key_images.known(key, frame)


def _image_shown(win: MainWindow, vp: Viewport) -> None:
    """A new series in a viewport: its open event (once per series) and its key flags,
    both read or written by :func:`series_opened` in a worker (the GUI thread does not
    touch the database or the audit log here)."""
    vol = vp.volume
    if vol is None or vp.loading:
        return
    _hook_ai_panel(win)
    uid = str(getattr(getattr(vol, "series", None), "series_uid", "") or "")
    if not uid or uid in win.audited_series:
        return
    win.audited_series.add(uid)
    win.open_queue.append(vol)
    _next_open(win)


def series_opened(store: Any, volume: Any, state: TaskState | None = None) -> str:
    """Worker: read the key flags of ``volume``'s images into ``store`` and write its
    ``open`` audit event; "" or why the event was not written."""
    from medview.results.jobs import audit_open

    state = ensure_state(state)
    store.load([i.sop_uid for i in volume.instances if i.sop_uid])
    state.check()
    return audit_open(volume)


def _next_open(win: MainWindow) -> None:
    """Start :func:`series_opened` for the next queued series (one at a time: a second
    series must not cancel the first one's audit event)."""
    if win.open_slot.busy or not win.open_queue:
        return
    vol = win.open_queue.pop(0)
    win.open_slot.run(
        series_opened,
        win.key_images,
        vol,
        name="series-open",
        on_result=lambda note: _opened(win, note),
        on_error=lambda msg: win.notify(f"open event not recorded: {msg}", "warning"),
        on_finished=lambda _h: _next_open(win),
    )


def _opened(win: MainWindow, note: str) -> None:
    if note:
        win.notify(note, "warning")
    for v in win.area.viewports:  # key markers of the flags just read
        v.update()


def _hook_ai_panel(win: MainWindow) -> None:
    panel = win.panels.get("ai")
    if isinstance(panel, ResultsSource) and not getattr(panel, "_audit_hooked", False):
        panel._audit_hooked = True
        panel.results_changed.connect(win.ai_audit_timer.start)


def _audit_analysis(win: MainWindow) -> None:
    """``analyze`` events for the AI results not audited yet (per series and model)."""
    panel = win.panels.get("ai")
    vol = getattr(getattr(panel, "ctx", None), "volume", None)
    if panel is None or vol is None:
        return
    info = getattr(vol, "series", None)
    series = str(getattr(info, "series_uid", "") or "")
    new = {(series, r.model, r.version) for r in panel.cache.values()} - win.ai_audited
    if not new:
        return
    win.ai_audited |= new
    from medview.results.jobs import audit_analyze

    models = sorted({(m, v) for _s, m, v in new})
    note = audit_analyze(str(getattr(info, "study_uid", "") or ""), series, models)
    if note:
        win.notify(note, "warning")


# ---------------------------------------------------------------- key image
def toggle_key_image(win: MainWindow) -> bool | None:
    """Flag or unflag the active viewport's image as a key image; its new state (None when
    the image cannot be flagged)."""
    from medview.results.key_images import KeyImage

    vp = win.active
    vol = vp.volume
    key, frame = vp.image_key()
    if vol is None or vp.plane != "axial" or not key or "#" in key:
        win.notify("Key image: only an original (axial) image with a SOP Instance UID", "info")
        return None
    info = getattr(vol, "series", None)
    state = win.key_images.toggle(
        KeyImage(
            key,
            int(frame),
            str(getattr(info, "series_uid", "") or ""),
            str(getattr(info, "study_uid", "") or ""),
        )
    )
    win.notify(f"image {vp.index + 1} {'flagged as' if state else 'no longer'} a key image", "info")
    for v in win.area.viewports:
        v.update()
    return state


# ---------------------------------------------------------------- export
def study_paths(win: MainWindow, whole_study: bool) -> list[str]:
    """The files of the active series, or of every opened series of its study."""
    vol = win.active.volume
    if vol is None:
        return []
    paths = {str(i.path) for i in vol.instances if getattr(i, "path", "")}
    study = str(getattr(getattr(vol, "series", None), "study_uid", "") or "")
    if whole_study and study:
        for s in win.browser.series.values():
            if getattr(s, "study_uid", "") == study:
                paths.update(str(i.path) for i in s.instances if getattr(i, "path", ""))
    return sorted(p for p in paths if "#" not in p)


class ExportDialog(QDialog):
    """File > Export...: what, where (folder or zip) and the de-identification options."""

    def __init__(self, parent: QWidget, out: str) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        form = QFormLayout(self)
        self.scope = QComboBox(self)
        self.scope.addItem("This series", False)
        self.scope.addItem("All opened series of this study", True)
        form.addRow("Export", self.scope)
        row = QHBoxLayout()
        self.out_edit = QLineEdit(out, self)
        browse = QPushButton("Browse\N{HORIZONTAL ELLIPSIS}", self)
        browse.clicked.connect(self._browse)
        row.addWidget(self.out_edit)
        row.addWidget(browse)
        form.addRow("To folder", row)
        self.zip_box = QCheckBox("as one zip file (export.zip in that folder, or a .zip name)")
        form.addRow("", self.zip_box)
        self.anonymize = QCheckBox("Anonymise (DICOM PS3.15 Annex E, basic profile)")
        self.anonymize.setChecked(True)
        form.addRow("", self.anonymize)
        self.shift_box = QCheckBox("Keep dates, shifted by")
        self.shift_days = QSpinBox(self)
        self.shift_days.setRange(-36500, 36500)
        self.shift_days.setSuffix(" days")
        self.shift_days.setValue(-100)
        srow = QHBoxLayout()
        srow.addWidget(self.shift_box)
        srow.addWidget(self.shift_days)
        form.addRow("", srow)
        self.keep_chars = QCheckBox("Keep patient characteristics (sex, age, size, weight)")
        form.addRow("", self.keep_chars)
        note = QLabel(
            "Pixel data are copied unchanged: text burned into images is not removed "
            "(such images are named in a warning)."
        )
        note.setWordWrap(True)
        form.addRow(note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.anonymize.toggled.connect(self._options_enabled)
        self._options_enabled(True)

    def _options_enabled(self, on: bool) -> None:
        for w in (self.shift_box, self.shift_days, self.keep_chars):
            w.setEnabled(on)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    def request(self) -> dict[str, Any]:
        """The :func:`medview.results.jobs.export_job` keyword arguments chosen."""
        anon = self.anonymize.isChecked()
        return {
            "out": self.out_edit.text().strip(),
            "anonymize": anon,
            "shift_days": self.shift_days.value() if anon and self.shift_box.isChecked() else None,
            "keep_patient_characteristics": anon and self.keep_chars.isChecked(),
            "zip_output": self.zip_box.isChecked(),
        }


def export_dialog(win: MainWindow) -> ExportDialog | None:
    """File > Export...: a window-modal dialog; OK starts the export."""
    if win.active.volume is None:
        win.notify("Export: open a series first", "info")
        return None
    default = os.path.join(_last_folder(), "medview-export")
    dlg = ExportDialog(win, default)
    dlg.accepted.connect(
        lambda: start_export(win, study_paths(win, dlg.scope.currentData()), **dlg.request())
    )
    win.export_dialog = dlg
    dlg.open()
    return dlg


def start_export(win: MainWindow, paths: list[str], **request: Any) -> TaskHandle | None:
    """Run the export on the results slot (progress and cancel in the status bar)."""
    from medview.results.jobs import export_job

    out = str(request.pop("out", "") or "")
    if not paths or not out:
        win.notify("Export: nothing to export or no destination", "warning")
        return None
    if os.path.isfile(out) and not (request.get("zip_output") and out.lower().endswith(".zip")):
        win.notify(f"{out}: is a file; choose a folder", "error")
        return None
    h = win.results_slot.run(
        export_job,
        paths,
        out,
        name="export",
        on_result=lambda res: _exported(win, res),
        on_error=lambda msg: win.notify(f"Export: {msg}"),
        **request,
    )
    win.progress.track(h, "Exporting")
    return h


def _exported(win: MainWindow, res: dict[str, Any]) -> None:
    win.last_results = res
    for w in res["warnings"][:MAX_WARNINGS]:
        win.notify(w, "warning")
    if len(res["warnings"]) > MAX_WARNINGS:
        win.notify(f"{len(res['warnings']) - MAX_WARNINGS} more burned-in text warnings", "warning")
    for p in res["skipped"][:MAX_WARNINGS]:
        win.notify(f"skipped {p['path']}: {p['reason']}", "warning")
    if res["audit"]:
        win.notify(res["audit"], "warning")
    what = "anonymised " if res["anonymized"] else ""
    dest = res["zip"] or res["out"]
    if res["files"]:
        win.notify(f"{res['files']} files {what}exported to {dest}", "info")
    else:
        win.notify(f"{dest}: nothing exported")


# ---------------------------------------------------------------- SR, KOS, report
def _last_folder() -> str:
    return str(user_settings.value("last_folder", os.path.expanduser("~")))


def _save_name(win: MainWindow, title: str, suffix: str, filt: str) -> str:
    vol = win.active.volume
    base = str(getattr(getattr(vol, "series", None), "description", "") or "series")
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base)[:40] or "series"
    start = os.path.join(_last_folder(), f"{base}_{suffix}")
    path, _ = QFileDialog.getSaveFileName(win, title, start, filt)
    return path


def save_sr_dialog(win: MainWindow) -> None:
    """File > Save measurements as DICOM SR..."""
    if _need_volume(win, "DICOM SR"):
        path = _save_name(win, "Save measurements as DICOM SR", "sr.dcm", "DICOM (*.dcm)")
        if path:
            save_sr(win, path)


def save_kos_dialog(win: MainWindow) -> None:
    """File > Save key images as DICOM KOS..."""
    if _need_volume(win, "Key images"):
        path = _save_name(win, "Save key images as DICOM KOS", "kos.dcm", "DICOM (*.dcm)")
        if path:
            save_kos(win, path)


def report_dialog(win: MainWindow) -> None:
    """File > Report (PDF)..."""
    if _need_volume(win, "Report"):
        path = _save_name(win, "Save report as PDF", "report.pdf", "PDF (*.pdf)")
        if path:
            save_report(win, path)


def _need_volume(win: MainWindow, what: str) -> bool:
    vol = win.active.volume
    if vol is None or win.active.loading or not vol.instances:
        win.notify(f"{what}: open a DICOM series first (and let it finish loading)", "info")
        return False
    return True


def _run_job(win: MainWindow, fn: Any, title: str, done: str, *args: Any, **kw: Any) -> Any:
    user_settings.set_value("last_folder", os.path.dirname(os.path.abspath(args[1])))
    h = win.results_slot.run(
        fn,
        *args,
        name=title,
        on_result=lambda res: _written(win, res, done),
        on_error=lambda msg: win.notify(f"{title}: {msg}"),
        **kw,
    )
    win.progress.track(h, title)
    return h


def _written(win: MainWindow, res: dict[str, Any], done: str) -> None:
    win.last_results = res
    if res.get("audit"):
        win.notify(res["audit"], "warning")
    win.notify(f"{res['out']}: {done.format(**res)}", "info")


def save_sr(win: MainWindow, path: str) -> TaskHandle | None:
    """Write the active series' measurements as a TID 1500 SR to ``path`` (worker)."""
    from medview.results.jobs import sr_job

    done = "SR with {measurements} measurements written"
    return _run_job(win, sr_job, "DICOM SR", done, win.active.volume, path)


def save_kos(win: MainWindow, path: str) -> TaskHandle | None:
    """Write the active series' key images as a Key Object Selection document (worker)."""
    from medview.results.jobs import kos_job

    done = "Key Object Selection with {key_images} key images written"
    return _run_job(win, kos_job, "Key images", done, win.active.volume, path)


def save_report(win: MainWindow, path: str) -> TaskHandle | None:
    """Write the PDF report of the active series (with the AI panel's results for it and the
    linked records' forecast and suggestions when records are loaded) (worker)."""
    from medview.results.jobs import report_job

    panel = win.panels.get("ai")
    ai = []
    if panel is not None and getattr(panel.ctx, "volume", None) is win.active.volume:
        ai = [r for r in panel.cache.values() if panel._belongs(r)]
    shared = getattr(win, "patient_records", None)
    records = getattr(shared, "records", None)
    done = "report written (key images {key_images})"
    return _run_job(
        win, report_job, "Report", done, win.active.volume, path, ai_results=ai, records=records
    )
