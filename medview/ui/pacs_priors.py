"""Priors on PACS nodes in the main window: listed in the browser, opened side by side.

When a study is hung (:func:`medview.ui.hanging.hang`) and nodes are configured
(Network > Nodes), :func:`look_on_pacs` asks them on a worker for the patient's other
studies (:func:`medview.viewer.remote_priors.find_remote_priors`); the browser lists
them under "Priors on PACS", marked with their node. Opening one (double-click, Enter,
or the row's menu) retrieves it on a worker with progress and cancel in the status bar
(:func:`medview.viewer.remote_priors.retrieve_prior`); it is then a local prior and is
shown exactly like one (:func:`medview.ui.hanging.compare_with_prior`: 1x2, linked
scrolling, window/level and zoom). The hanging protocols' "presence of priors" counts
the local ones only (a protocol does not wait for, or pull from, the PACS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from medview.net.common import DEFAULT_CALLING_AET, NetError
from medview.viewer import remote_priors

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.workers import TaskSlot

log = logging.getLogger(__name__)

ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"


def _slot(win: MainWindow, name: str) -> TaskSlot:
    from medview.ui.workers import TaskSlot

    slot = getattr(win, name, None)
    if slot is None:
        slot = TaskSlot(win)
        setattr(win, name, slot)
        win.side_slots.append(slot)  # the window is busy (and --screenshot waits) meanwhile
    return slot


def _calling_aet(win: MainWindow) -> str:
    net = getattr(win, "net", None)  # the networking controller: the listener's AE title
    try:
        return str(net.calling_aet()) if net is not None else DEFAULT_CALLING_AET
    except Exception:
        return DEFAULT_CALLING_AET


def _wire(win: MainWindow) -> None:
    if not getattr(win, "pacs_priors_wired", False):
        win.browser.remote_prior_activated.connect(lambda key: open_remote_prior(win, key))
        win.pacs_priors_wired = True


def look_on_pacs(win: MainWindow, current: Any) -> None:
    """Search the configured nodes for ``current``'s patient's priors (on a worker); no
    query when no node is configured or the study has no Patient ID."""
    _wire(win)
    slot = _slot(win, "pacs_search_slot")
    slot.cancel()
    win.browser.show_remote_priors([])
    win.pacs_priors_of = current  # the study whose priors are listed
    if not str(getattr(current, "patient_id", "") or ""):
        return
    from medview.net.nodes import load_nodes

    try:
        nodes = load_nodes()
    except NetError as exc:
        win.notify(f"priors on PACS not searched: {exc}", "warning")
        return
    if not nodes:
        return
    names = ", ".join(n.name for n in nodes)
    win.browser.show_remote_priors([], f"(searching {names}{ELLIPSIS})")
    slot.run(
        remote_priors.find_remote_priors,
        current,
        nodes,
        calling_aet=_calling_aet(win),
        name="priors on PACS",
        on_partial=lambda res: _found(win, res),  # a node answered, others still asked
        on_result=lambda res: _found(win, res),
        on_error=lambda msg: _search_failed(win, msg),
    )


def _search_failed(win: MainWindow, msg: str) -> None:
    win.browser.show_remote_priors([], f"(PACS not searched: {msg})")
    win.notify(f"priors on PACS not searched: {msg}", "warning")


def _found(win: MainWindow, res: remote_priors.RemoteSearch) -> None:
    """Show what the nodes said (so far: ``res.answered < res.asked``)."""
    waiting = res.asked - res.answered
    if waiting > 0:
        note = f"(waiting for {waiting} more node(s){ELLIPSIS})"
        win.browser.show_remote_priors(res.priors, note)
        return
    for problem in res.problems:
        win.notify(f"priors on PACS: {problem}", "warning")
    note = ""
    if not res.priors:
        note = (
            f"(no answer from {res.failed} of {res.asked} node(s))"
            if res.failed
            else "(no other study of this patient on PACS)"
        )
    win.browser.show_remote_priors(res.priors, note)
    if res.priors:
        from medview.ui.hanging import session_date

        n = len(res.priors)
        dates = ", ".join(f"{session_date(p)} ({p.node})" for p in res.priors[:3])
        win.notify(f"{n} prior stud{'y' if n == 1 else 'ies'} on PACS: {dates}", "info")


def open_remote_prior(win: MainWindow, key: str) -> None:
    """Retrieve the PACS prior ``key`` (progress and cancel in the status bar), then
    compare it side by side with the study in view."""
    prior = win.browser.remote.get(key)
    if prior is None:
        win.notify(f"unknown PACS prior {key}")
        return
    slot = _slot(win, "pacs_retrieve_slot")
    h = slot.run(
        remote_priors.retrieve_prior,
        prior,
        calling_aet=_calling_aet(win),
        name="retrieve prior",
        on_result=lambda series, k=key: _retrieved(win, k, series),
        on_error=lambda msg: win.notify(f"prior not retrieved: {msg}"),
    )
    win.progress.track(h, f"Retrieving {prior.label()}")


def _retrieved(win: MainWindow, key: str, series: Any) -> None:
    from medview.ui import hanging
    from medview.viewer.session import DATABASE_PREFIX

    db_key = f"{DATABASE_PREFIX}{series.series_uid}"
    win.browser.series[db_key] = series
    win.browser.drop_remote_prior(key)
    win.browser.refresh_database()
    shown = getattr(win, "pacs_priors_of", None)
    if str(getattr(shown, "patient_id", "") or "") != series.patient_id:
        # another patient was opened meanwhile: the prior stays in the database only
        win.notify(f"prior of {hanging.session_date(series)} retrieved into the database", "info")
        return
    keys = [k for k in (getattr(win, "priors", None) or []) if k != db_key] + [db_key]
    keys.sort(key=lambda k: str(getattr(win.browser.series.get(k), "study_date", "")), reverse=True)
    win.priors = keys
    win.notify(f"prior of {hanging.session_date(series)} retrieved: now in the database", "info")
    hanging.compare_with_prior(win, db_key)
