"""Presentation states (GSPS) in the window: found on a worker when a series is shown,
applied (window, annotations, shutter) and switched off or on with
*View > Presentation state* (:mod:`medview.viewer.gsps` reads them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medview.viewer import gsps

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.viewport import Viewport


def problems(errors: list[Any]) -> list[Any]:
    """Scan problems worth a notification: a presentation state (modality PR) has no
    image data by design and is shown with the images it references."""
    return [e for e in errors if not str(getattr(e, "reason", e)).endswith("(PR object)")]


def look_for(win: MainWindow, vol: Any) -> None:
    """Search the folders of ``vol``'s files for presentation states referencing it."""
    insts = [i for i in getattr(vol, "instances", None) or [] if i.sop_uid and i.path]
    if not insts or getattr(vol, "_gsps_searched", False):
        _apply(win, vol, getattr(vol, "_gsps_found", []))
        return
    from medview.ui.workers import TaskSlot

    slot = getattr(win, "gsps_slot", None)
    if slot is None:
        slot = win.gsps_slot = TaskSlot(win)
        win.side_slots.append(slot)
    slot.run(
        gsps.find_presentation_states,
        [i.path for i in insts],  # their folders are worked out on the worker
        {i.sop_uid for i in insts},
        name="gsps",
        on_result=lambda found, v=vol: _found(win, v, found),
        on_error=lambda msg: None,
    )


def _found(win: MainWindow, vol: Any, found: list[gsps.PresentationState]) -> None:
    try:
        vol._gsps_searched, vol._gsps_found = True, found  # noqa: SLF001 - a cache per volume
    except AttributeError:
        pass
    if found:
        names = ", ".join(p.label for p in found[:3])
        win.notify(f"presentation state {names} applied (View > Presentation state)", "info")
    _apply(win, vol, found)


def _apply(win: MainWindow, vol: Any, found: list[gsps.PresentationState]) -> None:
    if not found:
        return
    on = _shown(win)
    for vp in win.area.viewports:
        if vp.volume is vol and vp.gsps is None:
            vp.gsps = found[0]
            _window(vp, on)
            vp.update()


def _shown(win: MainWindow) -> bool:
    act = win.actions_by_id.get("gsps")
    return True if act is None else act.isChecked()


def _window(vp: Viewport, on: bool) -> None:
    """The presentation state's window while shown; the viewer's own when off."""
    pr = vp.gsps
    if pr is None or vp.volume is None:
        return
    w = pr.window_for(vp.image_key()[0])
    if w is None:
        return
    if on:
        vp.pre_gsps_window = vp.window
        vp.set_window(*w, emit=False)
    elif getattr(vp, "pre_gsps_window", None):
        vp.set_window(*vp.pre_gsps_window, emit=False)


def toggle(win: MainWindow) -> None:
    """View > Presentation state: show or hide every viewport's GSPS (and its window)."""
    on = _shown(win)
    for vp in win.area.viewports:
        if vp.gsps is not None and vp.gsps_visible != on:
            vp.gsps_visible = on
            _window(vp, on)
            vp.update()
