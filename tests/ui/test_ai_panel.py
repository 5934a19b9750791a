"""The AI side panel with pytest-qt: run, cache, overlay, cancel, errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")


def _tiny_model(folder, seed=0):
    import torch

    from medview.ai import nets
    from medview.ai.registry import write_model

    torch.manual_seed(seed)
    arch = {"name": "small_resnet", "params": {"widths": [8, 16], "blocks": [1, 1]}}
    write_model(
        folder,
        nets.build(arch["name"], arch["params"]).eval(),
        {
            "name": folder.name,
            "version": "0.0.1",
            "task": "classification",
            "architecture": arch,
            "input": {"channels": 1, "size": [28, 28], "mean": 0.5, "std": 0.25},
            "output": {"labels": ["normal", "pneumonia"], "threshold": 0.5},
            "weights": {},
        },
    )
    return folder


@pytest.fixture()
def user_models(tmp_path, monkeypatch):
    root = tmp_path / "user_models"
    monkeypatch.setenv("MEDVIEW_MODELS", str(root))
    _tiny_model(root / "tiny_cls")
    return root


def _volume(n=300, size=64):
    from medview.io.model import Volume

    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(n, size, size)).astype(np.int16)
    return Volume(array=arr, modality="CT", unit="HU", window=(40.0, 400.0))


def _panel(qtbot, model: str = "tiny_cls"):
    """An AI panel owned by pytest-qt with ``model`` selected."""
    from medview.ui.panels.ai_panel import AIPanel

    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.set_selected([model])
    return panel


def _run(qtbot, panel, run) -> None:
    """``run()`` (run_current/run_series): wait for its results and for the panel's worker."""
    with qtbot.waitSignal(panel.results_changed, timeout=60000):
        run()
    qtbot.waitUntil(lambda: not panel.slot.busy, timeout=30000)


def test_panel_runs_on_current_image_and_overlays(qtbot, user_models):
    from medview.ui.context import Overlay, StudyContext

    panel = _panel(qtbot)
    vol = _volume(n=5)
    overlays = []
    panel.overlay_changed.connect(overlays.append)
    panel.set_study_context(StudyContext(volume=vol, index=2, image_key="k2"))
    assert panel.run_image_btn.isEnabled()
    _run(qtbot, panel, panel.run_current)
    assert panel.table.rowCount() == 1
    row = [panel.table.item(0, j).text() for j in range(panel.table.columnCount())]
    # slice numbers are 1-based, as in the viewport (index 2 is the third slice)
    assert row[0] == "3" and row[1].startswith("tiny_cls") and row[8] == "cpu"
    assert float(row[9]) > 0
    assert row[5].startswith("\u00b1")  # TTA spread next to the probability
    # a card without intended-use criteria: in scope, and the table says it is unchecked
    assert row[3] == "in scope (model card states no intended-use criteria)"
    assert panel.table.item(0, 0).font().bold()
    ov = overlays[-1]
    assert isinstance(ov, Overlay)
    assert ov.heatmap.shape == (64, 64) and 0.0 <= ov.heatmap.min() and ov.heatmap.max() <= 1.0
    assert ov.index == 2 and "not for diagnostic use" in ov.label
    # opacity / colour map / kind controls re-emit the overlay
    panel.opacity.setValue(70)
    assert overlays[-1].opacity == pytest.approx(0.7)
    panel.cmap_box.setCurrentText("hot")
    assert overlays[-1].colormap == "hot"
    panel.overlay_check.setChecked(False)
    assert overlays[-1] is None
    panel.overlay_check.setChecked(True)
    # another slice has no result: no overlay; back to slice 2: cached, no new task
    panel.set_study_context(StudyContext(volume=vol, index=3))
    assert overlays[-1] is None
    panel.set_study_context(StudyContext(volume=vol, index=2))
    assert overlays[-1] is not None
    panel.run_current()
    assert not panel.slot.busy and "cache" in panel.status.text()


def test_panel_series_run_keeps_gui_responsive_and_cancels(qtbot, user_models):
    from PySide6.QtCore import QTimer

    from medview.ui.context import StudyContext

    panel = _panel(qtbot)
    # 1) a whole 300-slice series: the GUI thread keeps ticking throughout
    vol = _volume(n=300, size=384)
    panel.set_study_context(StudyContext(volume=vol, index=0))
    ticks = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    panel.run_series()
    assert panel.slot.busy and panel.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not panel.slot.busy, timeout=120000)
    elapsed = time.perf_counter() - t0
    timer.stop()
    assert len(panel.cache) == 300
    assert panel.table.rowCount() == 300
    gaps = np.diff([t0, *ticks])
    assert len(ticks) >= 0.25 * elapsed / 0.02 - 2, (len(ticks), elapsed)
    assert gaps.max() < 0.5, f"GUI thread blocked {gaps.max():.2f}s"

    # 2) a second series, cancelled after its first batch: nothing is accepted later
    vol2 = _volume(n=300, size=384)
    panel.set_study_context(StudyContext(volume=vol2, index=0))
    panel.run_series()
    prefix = panel._key(0).split("#")[0]
    qtbot.waitUntil(
        lambda: sum(1 for k in panel.cache if k[0].startswith(prefix + "#")) >= 16,
        timeout=120000,
    )
    panel.cancel()
    assert "Cancelled" in panel.status.text()
    at_cancel = len(panel.cache)
    qtbot.waitUntil(lambda: not any(h.running for h in _active()), timeout=30000)
    qtbot.wait(100)
    assert len(panel.cache) == at_cancel
    assert panel.run_series_btn.isEnabled() and not panel.cancel_btn.isEnabled()


def _active():
    from medview.ui import workers

    return workers.active_tasks()


def test_panel_reports_tampered_model_as_notification(qtbot, user_models):
    from medview.ui.context import StudyContext

    w = user_models / "tiny_cls" / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x10
    w.write_bytes(bytes(data))
    panel = _panel(qtbot)
    messages = []
    panel.notify.connect(messages.append)
    panel.set_study_context(StudyContext(volume=_volume(n=2), index=0))
    panel.run_current()
    qtbot.waitUntil(lambda: bool(messages), timeout=30000)
    qtbot.waitUntil(lambda: not panel.slot.busy, timeout=30000)
    assert "sha256" in messages[-1] and "\n" not in messages[-1]
    assert panel.table.rowCount() == 0


def test_panel_finding_signal_for_positive_result(qtbot, user_models):
    from medview.ui.context import StudyContext

    folder = user_models / "tiny_cls"
    meta = json.loads((folder / "metadata.json").read_text())
    meta["output"]["threshold"] = 0.0  # every image is "pneumonia" for this test model
    from medview.modelcards import write_card

    write_card(folder, meta)  # re-hashed: a hand edit would be refused (manifest)
    panel = _panel(qtbot)
    panel.set_study_context(StudyContext(volume=_volume(n=1), index=0))
    assert not panel.finding_btn.isEnabled()
    _run(qtbot, panel, panel.run_current)
    assert panel.finding_btn.isEnabled()
    with qtbot.waitSignal(panel.finding) as sig:
        panel.send_finding()
    assert sig.args == ["233604007", "Pneumonia"]
    panel.shutdown()


def test_out_of_distribution_probability_is_greyed_and_explained(qtbot):
    """The bundled classifier on a noise 'CT': the figure is shown greyed, with the reason."""
    from medview.ui.context import StudyContext
    from medview.ui.panels.ai_panel import COLUMNS, OUT_OF_SCOPE_GREY
    from tests.conftest import REPO

    if not (REPO / "models" / "pneumonia_cnn" / "ood.safetensors").exists():
        pytest.skip("the bundled classifier has no in-distribution check in this checkout")
    panel = _panel(qtbot, "pneumonia_cnn")
    panel.set_study_context(StudyContext(volume=_volume(n=1), index=0))
    _run(qtbot, panel, panel.run_current)
    (res,) = panel._results_for(0)
    assert res.in_distribution is False
    prob = panel.table.item(0, COLUMNS.index("Probability"))
    assert "not for use" in prob.text() and f"{res.probabilities['pneumonia']:.3f}" in prob.text()
    assert prob.foreground().color() == OUT_OF_SCOPE_GREY and prob.font().italic()
    assert "outside the training data" in prob.toolTip()
    unc = panel.table.item(0, COLUMNS.index("Uncertainty")).text()
    assert unc == f"\u00b1{res.uncertainty['pneumonia']:.3f}"
    assert "Unlike the training data" in panel.scope_label.text()
    assert panel._current_positive(in_scope_only=True) is None  # never sent on
    panel.shutdown()


def test_find_similar_lists_stored_slices(qtbot, user_models, medview_home):
    """Results are stored when asked; the nearest other slices are listed with findings."""
    from medview.ui.context import StudyContext

    panel = _panel(qtbot)
    panel.set_study_context(StudyContext(volume=_volume(n=3), index=0))
    assert not panel.similar_btn.isEnabled()
    _run(qtbot, panel, panel.run_series)
    for k in (1, 2, 0):  # store slices 2 and 3 first, then ask from slice 1
        panel.set_study_context(StudyContext(volume=panel.ctx.volume, index=k))
        assert panel.similar_btn.isEnabled()
        panel.find_similar()
        qtbot.waitUntil(lambda: not panel.slot.busy, timeout=30000)
    text = panel.similar_label.text()
    assert "[slice 2]" in text and "[slice 3]" in text and "[slice 1]" not in text
    assert "tiny_cls" in text and (medview_home / "medview.sqlite").is_file()
    panel.shutdown()
