"""The suggestions panel shows the safety flags and the removed suggestions (the checks
themselves: tests/core/test_suggest_safety.py)."""

from __future__ import annotations

import pytest

from tests.core.test_suggest_safety import _synthetic
from tests.helpers.panel_helpers import add_panel


# ----------------------------------------------------------------------------- panel
def test_panel_shows_flags_and_removed(qtbot) -> None:
    pytest.importorskip("PySide6")
    from medview.ui.panels.suggest_panel import SuggestionsPanel

    panel = add_panel(qtbot, SuggestionsPanel(records=_synthetic()))
    with qtbot.waitSignal(panel.suggestions_ready, timeout=30000) as blocker:
        panel.select_patient("p0")
    res = blocker.args[0]
    assert res.patient == "p0" and res.removed
    assert panel.tree.topLevelItemCount() == len(res.suggestions)
    texts = [panel.tree.topLevelItem(i).text(0) for i in range(len(res.suggestions))]
    flagged = [t for t in texts if "Captopril" in t]
    assert flagged and flagged[0].startswith("! ")
    assert f"{len(res.removed)} removed" in panel.status.text()
    panel.tree.setCurrentItem(panel.tree.topLevelItem(texts.index(flagged[0])))
    ev = panel.evidence.toPlainText()
    assert "flagged (same-class)" in ev and "ACE inhibitors" in ev
    assert "Not suggested" in ev and "withdrawn" in ev and "Terfenadine" in ev
    assert "opioid-substance-misuse" in ev and "below the minimum support" in ev
