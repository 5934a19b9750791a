"""Intended use in the AI panel (issue 10 items 3 and 5): out-of-scope images greyed out,
a missing CUDA device reported (the Qt-free checks are in tests/core/test_ai_scope.py)."""

from __future__ import annotations

import pytest

from tests.core import test_ai_scope as core
from tests.core.test_ai_scope import BOTH, need_models

pmnist_png = core.pmnist_png  # the core file's fixture, shared


def test_gui_panel_greys_out_of_scope_and_blocks_sending(qtbot, ct_dir):
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")
    from medview.io import load_path
    from medview.ui.context import StudyContext
    from medview.ui.panels.ai_panel import COLUMNS, SCOPE_COLUMN, AIPanel

    need_models()
    vol = load_path(ct_dir)
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.set_selected(BOTH)
    overlays = []
    panel.overlay_changed.connect(overlays.append)
    panel.set_study_context(StudyContext(volume=vol, index=4))
    panel.run_series()
    qtbot.waitUntil(lambda: not panel.slot.busy, timeout=120000)
    assert len(panel.cache) == 40
    n = panel.table.rowCount()
    assert n == 40
    slices = set()
    for i in range(n):
        scope_item = panel.table.item(i, SCOPE_COLUMN)
        assert scope_item.text().startswith("OUTSIDE: modality CT outside intended use")
        for j in range(len(COLUMNS)):
            item = panel.table.item(i, j)
            assert not item.font().bold() and item.font().italic()
            assert item.foreground().color().getRgb()[:3] == (140, 140, 140)
            assert "OUTSIDE the model's intended use" in item.toolTip()
        slices.add(int(panel.table.item(i, 0).text()))
    assert slices == set(range(1, 21))  # 1-based, as the viewport
    assert "Outside intended use" in panel.scope_label.text()
    # at least one CT slice is called "pneumonia" (issue 10), but it cannot be sent
    assert any(r.predicted == "pneumonia" for r in panel.cache.values())
    for k in range(20):
        panel.set_study_context(StudyContext(volume=vol, index=k))
        assert not panel.finding_btn.isEnabled()
    ov = overlays[-1]
    assert ov is not None and "OUTSIDE INTENDED USE" in ov.label
    assert "Grad-CAM for class '" in ov.label
    panel.shutdown()


def test_gui_device_cuda_missing_is_reported(qtbot, pmnist_png):
    pytest.importorskip("PySide6")
    import torch

    from medview.io import load_path
    from medview.ui.context import StudyContext
    from medview.ui.panels.ai_panel import AIPanel

    need_models()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    panel = AIPanel()
    qtbot.addWidget(panel)
    panel.set_selected(["pneumonia_cnn"])
    panel.set_study_context(StudyContext(volume=load_path(pmnist_png), index=0))
    panel.device_box.blockSignals(True)  # do not save "cuda" in the user's QSettings
    panel.device_box.setCurrentText("cuda")
    try:
        with qtbot.waitSignal(panel.notify, timeout=60000) as sig:
            panel.run_current()
        qtbot.waitUntil(lambda: not panel.slot.busy, timeout=30000)
    finally:
        panel.shutdown()
    assert "CUDA requested but not available" in sig.args[0]
    assert "CUDA requested but not available" in panel.status.text()
    assert not panel.cache
