"""Control characters and escape sequences from a file never reach the GUI's text as such
(issue 18 item 5): the study browser, the viewport's corner text and the tag browser show
them written out (``\\x1b``), like the CLI does."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file

pytest.importorskip("pytestqt")

TIMEOUT = 30000
NASTY = "x\x1b]0;pwned\x07\x1b[2Jy"


def _all_texts(tree) -> list[str]:
    out: list[str] = []

    def visit(item) -> None:
        out.extend(item.text(c) for c in range(tree.columnCount()))
        for i in range(item.childCount()):
            visit(item.child(i))

    for i in range(tree.topLevelItemCount()):
        visit(tree.topLevelItem(i))
    return out


def test_escape_sequences_are_written_out_in_the_gui(make_window, qtbot, tmp_path):
    src = get_testdata_file("CT_small.dcm")
    if src is None:
        pytest.skip("pydicom test file CT_small.dcm not available")
    ds = pydicom.dcmread(src)
    ds.SeriesDescription = NASTY
    ds.PatientName = "DOE^" + NASTY
    path = tmp_path / "esc.dcm"
    ds.save_as(path, enforce_file_format=False)

    win = make_window()
    win.open_paths([str(path)])
    vp = win.active
    qtbot.waitUntil(lambda: vp.volume is not None and not vp.loading, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: win.tags.dataset is not None, timeout=TIMEOUT)

    texts = _all_texts(win.browser.tree) + _all_texts(win.tags.tree)
    corners = [line for lines in vp.overlay_lines().values() for line in lines]
    for text in texts + corners:
        assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert any("x\\x1b]0;pwned\\x07\\x1b[2Jy" in t for t in texts if "CT" in t or "pwned" in t)
    assert any("\\x1b" in line for line in corners)  # the patient name, written out
    assert any("\\x1b" in t for t in _all_texts(win.tags.tree))
