"""The CT label-map panel: a 3D model run in the panel's worker on the CT in view, its
label map drawn over all three MPR planes with a legend (colour, name, mL), toggled off
and on. Offscreen; needs ../shared/data (the CT series) and the bundled models/ct_seg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120000


def _grab(vp) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = vp.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    buf = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h)
    return buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def test_label_map_over_every_mpr_plane_with_legend_and_toggle(make_window, qtbot, ct_dir):
    if not (REPO / "models" / "ct_seg" / "metadata.json").exists():
        pytest.skip("models/ct_seg not in this checkout")
    from medview.ui.panels.volume_ai_panel import legend_rows

    win = make_window(load_panels=True)
    qtbot.waitUntil(lambda: "labelmap" in win.panels, timeout=30000)
    panel = win.panels["labelmap"]
    assert panel.model_box.count() >= 1 and panel.model_box.currentData() == "ct_seg"
    win.open_paths([str(ct_dir)])
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    win.set_layout("mpr")
    qtbot.waitUntil(
        lambda: all(vp.volume is not None for vp in win.area.viewports[:3]), timeout=TIMEOUT
    )
    qtbot.waitUntil(lambda: panel.ctx.volume is not None, timeout=TIMEOUT)
    before = [_grab(vp) for vp in win.area.viewports[:3]]

    with qtbot.waitSignal(panel.labelmap_changed, timeout=TIMEOUT) as got:
        panel.run_btn.click()
    result = got.args[0]
    assert result is not None and result.volume is win.area.viewports[0].volume
    assert [r[1] for r in legend_rows(result)] == ["body", "lungs", "bone"]
    assert panel.legend.rowCount() == 3 and panel.legend.item(0, 1).text() == "body"
    assert float(panel.legend.item(0, 2).text()) > 1000  # mL of body in 20 x 2 mm slices
    assert panel.scope_label.text().startswith("in intended use")  # a CT series

    shown = win.label_maps.shown_on()
    assert set(map(id, shown)) >= {id(vp) for vp in win.area.viewports[:3]}
    qtbot.wait(50)
    after = [_grab(vp) for vp in win.area.viewports[:3]]
    for plane, a, b in zip(("axial", "coronal", "sagittal"), before, after, strict=True):
        changed = np.any(a != b, axis=2).mean()
        assert changed > 0.02, f"no label colours drawn on the {plane} plane"
    body = QColor_rgb(result.colors[1])
    tinted = np.abs(after[0].astype(int) - body).sum(axis=2) < 120
    assert tinted.mean() > 0.01, "the body colour is visible on the axial plane"

    panel.show_check.setChecked(False)  # toggle off: the planes look as before
    qtbot.wait(50)
    assert win.label_maps.shown_on() == []
    off = [_grab(vp) for vp in win.area.viewports[:3]]
    for a, b in zip(before, off, strict=True):
        assert np.any(a != b, axis=2).mean() < 0.005
    panel.show_check.setChecked(True)
    assert len(win.label_maps.shown_on()) >= 3


def QColor_rgb(name: str) -> np.ndarray:  # noqa: N802 - mirrors QColor
    from PySide6.QtGui import QColor

    c = QColor(name)
    return np.array([c.red(), c.green(), c.blue()])


def test_panel_without_a_volume_says_so(qtbot):
    from medview.ui.panels.volume_ai_panel import VolumeAIPanel

    panel = VolumeAIPanel()
    qtbot.addWidget(panel)
    panel.run_volume()
    assert "No volume" in panel.status.text()
    panel.shutdown()


def test_slice_scores_are_plotted_per_slice(qtbot):
    if not (REPO / "models" / "pneumonia_cnn" / "metadata.json").exists():
        pytest.skip("models/pneumonia_cnn not in this checkout")
    from medview.io.model import Volume
    from medview.ui.context import StudyContext
    from medview.ui.panels.volume_ai_panel import VolumeAIPanel

    panel = VolumeAIPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 600)
    arr = np.random.default_rng(0).integers(0, 255, size=(5, 64, 64)).astype(np.uint8)
    panel.set_study_context(StudyContext(volume=Volume(arr, modality="CT"), index=2))
    i = panel.slice_model_box.findData("pneumonia_cnn")
    assert i >= 0
    panel.slice_model_box.setCurrentIndex(i)
    panel.slice_btn.click()
    qtbot.waitUntil(lambda: len(panel.plot.scores) == 5, timeout=TIMEOUT)
    assert [s["slice"] for s in panel.plot.scores] == [1, 2, 3, 4, 5]
    assert len(panel.plot.points()) == 5 and panel.plot.current == 2
    assert "5 slices scored" in panel.status.text()
    assert "outside intended use" in panel.status.text()  # CT slices, a chest X-ray model
    panel.shutdown()
