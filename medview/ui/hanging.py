"""Hanging protocols and prior comparison in the main window.

The rules are Qt-free (:mod:`medview.viewer.protocols`, :mod:`medview.viewer.priors`);
this module applies them: a study opened with File > Open (or on the command line)
is hung by the first matching protocol (layout, which series where, plane, window
preset), so the layout of the previous study does not carry over. ``--layout`` pins
the layout (no protocol); a series dropped on a viewport goes there. Once the
patient's prior studies are found in the local database (on a worker), a protocol
that wants a prior (CR/DX: 1x2 beside the latest prior) is applied to them. The
patient's studies on the PACS nodes are searched at the same time and listed in the
browser (:mod:`medview.ui.pacs_priors`); they do not count as priors for a protocol
until one is retrieved. The user's protocols are plain data in the settings
(``hanging_protocols``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from medview.io.model import format_da
from medview.ui import settings as user_settings
from medview.viewer import mpr, priors, protocols, session

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.viewport import Viewport

log = logging.getLogger(__name__)

SETTINGS_KEY = "hanging_protocols"


def protocol_of(win: MainWindow) -> str | None:
    """The protocol that hung the study on screen (None: none, or ``--layout``)."""
    return getattr(win, "protocol_name", None)


def saved_protocols(win: MainWindow | None = None) -> list[protocols.Protocol]:
    """The user's protocols from the settings (entries that do not parse are reported)."""
    found, problems = protocols.user_protocols(user_settings.value(SETTINGS_KEY, []))
    told = getattr(win, "protocol_problems_told", None) if win is not None else None
    if win is not None and told is None:
        told = win.protocol_problems_told = set()
    for p in problems:
        if win is not None and told is not None and p not in told:
            told.add(p)  # once per window, not at every study
            win.notify(f"settings: {p}", "warning")
    return found


def hang(win: MainWindow, series: list[Any]) -> bool:
    """Hang a freshly scanned study by its protocol; False when no protocol applies
    (a pinned layout, or no rule for this kind of volume). Of several studies opened
    at once the one with the largest series is hung (a CT opened with radiographs:
    the CT's protocol); the others are listed in the browser."""
    study, others = protocols.main_study(series)
    if not study or getattr(win, "pinned_layout", None):
        return False
    facts = protocols.StudyFacts.of(study)
    proto = protocols.choose(facts, saved_protocols(win))
    if proto is None:
        if facts.slices > 1 or len(study) > 1 or others:
            return False  # the layout on screen, filled in scan order
        proto = protocols.Protocol(
            protocols.FALLBACK, protocols.Rule(), "1x1", (protocols.Placement(),)
        )
    keys = win.browser.add_opened(study, shown=len(study))
    if others:
        win.browser.add_opened(others)
        n = len({getattr(s, "study_uid", "") for s in others})
        win.notify(f"{n} more stud{'y' if n == 1 else 'ies'} opened: in the browser", "info")
    win.protocol_name = proto.name
    win.hung_keys = keys
    layout, assigns = protocols.plan(proto, len(study), 0)
    _apply(win, layout, assigns, keys, study, [])
    if keys:
        win.browser.select_key(keys[_main(study)])
    _look_for_priors(win, study[_main(study)], proto)
    return True


def _main(series: list[Any]) -> int:
    return max(range(len(series)), key=lambda n: int(getattr(series[n], "slices", 0) or 0))


def _apply(
    win: MainWindow,
    layout: str,
    assigns: list[protocols.Assignment],
    keys: list[str],
    study: list[Any],
    prior_keys: list[str],
) -> None:
    area = win.area
    for vp in area.viewports:  # the previous study leaves every viewport
        win.slots[vp].cancel()
        win.series_of.pop(vp, None)
        vp.set_projection(None)
        vp.clear()
    win.set_layout(layout)
    win.set_active(area.viewports[0])
    followers: dict[str, list[tuple[Viewport, protocols.Assignment]]] = {}
    for a in assigns:
        vp = area.viewports[a.position]
        if a.prior is not None:
            key = prior_keys[a.prior]
        else:
            key = keys[_main(study) if a.series is None else a.series]
        if key in followers:  # the same series again: from the cache once it is loaded
            followers[key].append((vp, a))
            continue
        followers[key] = []
        place(win, vp, key, a)
    win.hang_followers = {k: v for k, v in followers.items() if v}


def place(win: MainWindow, vp: Viewport, key: str, a: protocols.Assignment) -> None:
    """Load ``key`` into ``vp`` with the assignment's plane and window."""
    if win.area.layout_name != mpr.MPR_LAYOUT:
        vp.plane = a.plane
    pending = getattr(win, "hang_pending", None)
    if pending is None:
        pending = win.hang_pending = {}
    pending[vp] = (a.preset, a.window)
    win.load_into(vp, key)


def after_show(win: MainWindow, targets: list[Viewport], key: str) -> None:
    """Called when series ``key`` is shown in ``targets``: the protocol's window there,
    then the other viewports the protocol gave the same series (from the cache)."""
    for vp, a in (getattr(win, "hang_followers", None) or {}).pop(key, []):
        place(win, vp, key, a)
    from medview.ui import presentation

    presentation.look_for(win, targets[0].volume)  # a GSPS that came with the study
    asked = getattr(win, "requested_projection", None)  # `--projection P [--slab MM]`
    if asked and targets[0].volume is not None and not targets[0].volume.is_color:
        for t in targets:
            t.set_projection(*asked)
        from medview.ui.reading import sync_projection_controls

        sync_projection_controls(win, win.active)
    pending = getattr(win, "hang_pending", None) or {}
    preset, window = pending.pop(targets[0], (None, None))
    if window is not None:
        for t in targets:
            t.set_window(*window)
    elif preset:
        from medview.ui import presets as P

        value = P.resolve_preset(preset)
        if value is not None and not win._hu_preset_refused(targets[0], preset):  # noqa: SLF001
            for t in targets:
                t.apply_preset(value)


# ---------------------------------------------------------------- priors
def _look_for_priors(win: MainWindow, current: Any, proto: protocols.Protocol) -> None:
    from medview.ui.workers import TaskSlot

    slot = getattr(win, "priors_slot", None)
    if slot is None:
        slot = win.priors_slot = TaskSlot(win)
        win.side_slots.append(slot)  # the window is busy (and --screenshot waits) meanwhile
    win.priors = []
    from medview.ui import pacs_priors

    pacs_priors.look_on_pacs(win, current)  # listed in the browser; not for the protocol
    if not getattr(current, "patient_id", ""):
        return
    slot.run(
        priors.find_priors,
        current,
        name="priors",
        on_result=lambda found, c=current: _priors_found(win, c, found),
        on_error=lambda msg: log.info("priors not searched: %s", msg),
    )


def _register(win: MainWindow, found: list[Any]) -> list[str]:
    keys = []
    for s in found:
        key = f"{session.DATABASE_PREFIX}{s.series_uid}"
        win.browser.series.setdefault(key, s)
        keys.append(key)
    return keys


def _priors_found(win: MainWindow, current: Any, found: list[Any]) -> None:
    if getattr(win, "hung_keys", None) is None or not found:
        return
    win.priors = _register(win, found)
    dates = ", ".join(session_date(s) for s in found[:3])
    win.notify(f"{len(found)} prior stud{'y' if len(found) == 1 else 'ies'}: {dates}", "info")
    facts = protocols.StudyFacts.of([current], priors=len(found))
    proto = protocols.choose(facts, saved_protocols())
    if proto is None or not any(p.prior for p in proto.placements):
        return
    layout, assigns = protocols.plan(proto, 1, len(found))
    win.protocol_name = proto.name
    if layout != win.area.layout_name:
        win.set_layout(layout)
    for a in assigns:
        if a.prior is not None:
            place(win, win.area.viewports[a.position], win.priors[a.prior], a)


def session_date(s: Any) -> str:
    """``YYYY-MM-DD`` of a study date (as stored), or ``?``."""
    return format_da(getattr(s, "study_date", "")) or "?"


def compare_with_prior(win: MainWindow, prior: str | None = None) -> None:
    """View > Compare with prior: 1x2, the active study left, its latest prior (or the
    series ``prior``, e.g. one just retrieved from a PACS node) right. With no local
    prior, the latest one listed on PACS is retrieved first."""
    if not prior and not getattr(win, "priors", None):
        on_pacs = list(getattr(win.browser, "remote", None) or {})
        if on_pacs:  # none here: retrieve the latest from the PACS, then compare
            from medview.ui.pacs_priors import open_remote_prior

            open_remote_prior(win, on_pacs[0])
            return
        win.notify("no prior study of this patient in the local database or on PACS", "info")
        return
    known = {*(getattr(win, "priors", None) or []), prior}
    shown = [win.series_of.get(win.active), win.series_of.get(win.area.viewports[0])]
    study = [*shown, *(getattr(win, "hung_keys", None) or [])]
    key = next((k for k in study if k and k not in known), None)  # not a prior on the left
    win.set_layout("1x2")
    left, right = win.area.viewports[:2]
    if key and win.series_of.get(left) != key:
        win.load_into(left, key)
    win.load_into(right, prior or win.priors[0])
    from medview.ui.linking import link_all

    link_all(win)  # scrolling by position, W/L and zoom (View > Link... to unlink)


def save_current_as_protocol(win: MainWindow, name: str) -> protocols.Protocol | None:
    """ "Save current layout as protocol": the active study's kind hangs like the screen
    now (layout; per viewport the series, plane and window). Saved first in the list."""
    vol = win.active.volume or win.area.viewports[0].volume
    if vol is None:
        win.notify("open a study before saving its layout as a protocol", "info")
        return None
    study_keys = list(getattr(win, "hung_keys", None) or [])
    views = []
    for vp in win.area.visible_viewports():
        key = win.series_of.get(vp, "")
        prior = key in (getattr(win, "priors", None) or [])[:1]
        series = study_keys.index(key) if key in study_keys else None
        window = tuple(vp.window) if vp.window else None
        views.append(protocols.Placement(series, prior, vp.plane, None, window))
    layout = win.area.layout_name
    if layout == mpr.MPR_LAYOUT:
        views = views[:1]
    study = [vol.series] if vol.series is not None else []
    proto = protocols.protocol_from_view(name, protocols.StudyFacts.of(study), layout, views)
    mine = [p for p in saved_protocols(win) if p.name != proto.name]
    user_settings.set_value(SETTINGS_KEY, [proto.to_dict(), *(p.to_dict() for p in mine)])
    win.notify(f"hanging protocol saved: {proto.name}", "info")
    return proto


def save_protocol_dialog(win: MainWindow) -> None:
    """View > Save current layout as protocol (asks for a name)."""
    from PySide6.QtWidgets import QInputDialog

    name, ok = QInputDialog.getText(win, "Save hanging protocol", "Protocol name:")
    if ok and name.strip():
        save_current_as_protocol(win, name.strip())
