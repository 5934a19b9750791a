"""Priors on a PACS node in the main window, against a real Orthanc on loopback
(tests/helpers/prior_studies.py): hanging a CT lists the patient's earlier studies that
are on the PACS (not the other patient's, not the later one) under "Priors on PACS",
marked with their node; opening one retrieves it (C-GET) and ends in the side-by-side
comparison with the retrieved series, scrolling linked by position.

With ``MEDVIEW_SHOT_DIR`` set the test also saves the window (the list, then the
comparison) there, e.g. under Xvfb (docs/viewer.md)::

    MEDVIEW_SHOT_DIR=/tmp/shots QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \
        python3 -m pytest tests/ui/test_remote_priors_gui.py -k listed
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")

from tests.helpers import prior_studies as ps  # noqa: E402
from tests.helpers.net_fixtures import free_port  # noqa: E402

TIMEOUT = 60_000


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return ps.studies_in(tmp_path_factory, "priors-gui")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, studies):
    keys = ("prior", "local_prior", "later", "other")
    with ps.orthanc_holding(tmp_path_factory, "orthanc-priors-gui", studies, keys) as server:
        yield server


def idle(qtbot, win) -> None:
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)


def _shot(win, name: str) -> None:
    """The window as a PNG in ``MEDVIEW_SHOT_DIR`` (when set), to look at."""
    folder = os.environ.get("MEDVIEW_SHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        assert win.grab().save(str(Path(folder) / name), "PNG")


def test_pacs_prior_listed_then_retrieved_side_by_side(make_window, qtbot, pacs, studies):
    from medview.net.nodes import Node, add_node
    from medview.viewer.session import DATABASE_PREFIX, import_into_db

    add_node(Node(name="orthanc", host="127.0.0.1", port=pacs.dicom_port, aet=pacs.aet))
    add_node(Node(name="gone", host="127.0.0.1", port=free_port(), aet="GONE"))
    import_into_db(str(studies["local_prior"][0]))  # this one is local already
    win = make_window()
    win.open_paths([str(studies["current"][0])])
    idle(qtbot, win)
    browser = win.browser
    assert not browser.pacs_root.isHidden()
    assert list(browser.remote) == [f"pacs:orthanc|{studies['prior'][1]}"]
    row = browser.items[f"pacs:orthanc|{studies['prior'][1]}"]
    group = row.parent()
    assert group.parent() is browser.pacs_root and group.text(0) == "on PACS: orthanc"
    assert row.text(0) == "2023-01-15  CT prior (CT)" and row.text(1) == "20"
    assert any(
        lvl == "warning" and "priors on PACS: gone: " in t for _, lvl, t in win.notifier.history
    )
    assert any(
        "1 prior study on PACS: 2023-01-15 (orthanc)" in t for _, _, t in win.notifier.history
    )
    assert len(win.priors) == 1  # the local prior; the PACS one is not local yet
    browser.tree.scrollToItem(row)
    _shot(win, "pacs_priors_listed.png")

    browser._activated(row)  # noqa: SLF001 - a double-click on the row
    assert any("Retrieving 2023-01-15" in t for _, t in win.progress.handles)
    idle(qtbot, win)
    left, right = win.area.viewports[:2]
    qtbot.waitUntil(lambda: right.volume is not None and left.volume is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.area.layout_name == "1x2"
    assert left.volume.series.study_uid == studies["current"][1]
    assert right.volume.series.study_uid == studies["prior"][1]
    assert win.series_of[right].startswith(DATABASE_PREFIX)  # retrieved into the database
    assert right.volume.shape == left.volume.shape
    assert win.actions_by_id["link_scroll"].isChecked()
    assert browser.remote == {} and f"pacs:orthanc|{studies['prior'][1]}" not in browser.items
    assert win.priors[0] == win.series_of[right]  # a local prior now, the latest
    # linked scrolling by position (same Frame of Reference): the prior follows
    left.set_index(3)
    qtbot.waitUntil(lambda: right.index == 3, timeout=5000)
    left.set_index(12)
    qtbot.waitUntil(lambda: right.index == 12, timeout=5000)
    _shot(win, "pacs_prior_compared.png")


def test_compare_with_prior_retrieves_the_latest_pacs_prior(make_window, qtbot, pacs, studies):
    """Ctrl+Shift+P with no local prior: the newest PACS prior is retrieved and shown."""
    from medview.net.nodes import Node, add_node
    from medview.ui import hanging

    add_node(Node(name="orthanc-web", url=f"{pacs.url}/dicom-web"))  # WADO-RS this time
    win = make_window()
    win.open_paths([str(studies["current"][0])])
    idle(qtbot, win)
    assert win.priors == [] and len(win.browser.remote) == 2  # 2023 and 2022, none local
    hanging.compare_with_prior(win)
    idle(qtbot, win)
    left, right = win.area.viewports[:2]
    qtbot.waitUntil(lambda: right.volume is not None, timeout=TIMEOUT)
    assert win.area.layout_name == "1x2"
    assert left.volume.series.study_uid == studies["current"][1]
    assert right.volume.series.study_uid == studies["prior"][1]  # the newest one
    assert [p.study_date for p in win.browser.remote.values()] == [ps.LOCAL_PRIOR_DATE]


def test_no_nodes_no_pacs_query(make_window, qtbot, studies):
    win = make_window()
    win.open_paths([str(studies["current"][0])])
    idle(qtbot, win)
    assert win.browser.pacs_root.isHidden() and win.browser.remote == {}
    assert getattr(win, "pacs_search_slot", None) is not None
    assert win.pacs_search_slot.current is None  # nothing was started


def test_unreachable_node_is_a_warning_and_a_note(make_window, qtbot, studies):
    from medview.net.nodes import Node, add_node

    add_node(Node(name="gone", host="127.0.0.1", port=free_port(), aet="GONE"))
    win = make_window()
    win.open_paths([str(studies["current"][0])])
    idle(qtbot, win)
    root = win.browser.pacs_root
    assert not root.isHidden() and win.browser.remote == {}
    assert [root.child(i).text(0) for i in range(root.childCount())] == [
        "(no answer from 1 of 1 node(s))"
    ]
    warnings = [t for _, lvl, t in win.notifier.history if lvl == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("priors on PACS: gone: ")
    assert win.errors == []  # a warning, not an error
    win.area.viewports[0].scroll(1)  # the window still works
