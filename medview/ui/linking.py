"""Linked viewports: scrolling by patient position, window/level and zoom (View > Link).

The visible viewports (not in MPR, which has its own sync) follow the one the user
moves. Slices are matched by :mod:`medview.viewer.priors`: by patient position when
the volumes share a Frame of Reference, else by the slice offset they had when the
link was made (scroll one side with the link off to set it). Window/level and zoom
are linked separately and can be unlinked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QTimer

from medview.viewer import mpr
from medview.viewer.priors import Link, same_frame

if TYPE_CHECKING:
    from medview.ui.main_window import MainWindow
    from medview.ui.viewport import Viewport

#: events after which a linked viewport's zoom and pan are copied to the others
_CAMERA_EVENTS = (QEvent.Type.Wheel, QEvent.Type.MouseButtonRelease, QEvent.Type.KeyRelease)


class ViewLinker(QObject):
    """Keeps the visible viewports of ``win`` in step while :attr:`scrolling` (slices) and
    :attr:`view` (window/level and zoom) are on."""

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.win = win
        self.scrolling = False
        self.view = False
        self.links: dict[Viewport, Link] = {}  # viewport -> its link to the first member
        self._busy = False
        self.slots: dict[Viewport, Any] = {}  # registration workers, one per follower
        self.shown: dict[Viewport, object] = {}  # viewport -> the volume it was linked with
        for vp in win.area.viewports:
            vp.index_changed.connect(lambda _i, v=vp: self._scrolled(v))
            vp.window_changed.connect(lambda c, w, v=vp: self._windowed(v, c, w))
            vp.image_changed.connect(lambda v=vp: self._arrived(v))
            vp.installEventFilter(self)

    def members(self) -> list[Viewport]:
        """The linked viewports: the visible ones with an image, not in MPR."""
        if self.win.area.layout_name == mpr.MPR_LAYOUT:
            return []
        return [v for v in self.win.area.visible_viewports() if v.volume is not None]

    def set_linked(self, scrolling: bool, view: bool | None = None) -> None:
        """Link (or unlink) scrolling and, when given, window/level and zoom. Volumes that
        share a frame of reference are matched by position (the others move to the first
        one's position now); others keep the slices shown when they are first linked."""
        self.scrolling = bool(scrolling)
        if view is not None:
            self.view = bool(view)
        self.links.clear()
        vps = self.members()
        self.shown = {v: v.volume for v in vps}
        if not vps:
            return
        self._scrolled(vps[0])
        if self.view and vps[0].window:
            self._windowed(vps[0], *vps[0].window)
        self.sync_camera(vps[0])

    def _arrived(self, vp: Viewport) -> None:
        """A volume that reaches a linked viewport after linking (a prior still loading or
        retrieved from PACS when Compare linked the views) joins the link: the first
        member's position, window/level and zoom, as if it had been there when linked."""
        vps = self.members()
        if not (self.scrolling or self.view) or vp not in vps or self.shown.get(vp) is vp.volume:
            return
        self.shown[vp] = vp.volume
        if vp is vps[0]:
            return
        self.links.pop(vp, None)
        if self.scrolling:
            self._scrolled(vps[0])
        if self.view and vps[0].window and vps[0].volume.unit == vp.volume.unit:
            vp.set_window(*vps[0].window, emit=False)
        self.sync_camera(vps[0])

    def _offset(self, vp: Viewport) -> int:
        """``vp``'s slice offset from the first member (made when first needed)."""
        vps = self.members()
        if not vps or vp is vps[0]:
            return 0
        a = vps[0]
        key = (id(a.volume), id(vp.volume), a.plane)
        link = self.links.get(vp)
        if link is None or getattr(link, "key", None) != key:
            link = Link(by_position=True)
            if not same_frame(a.volume, vp.volume):
                link.relink(a.volume, a.plane, a.index, vp.volume, vp.index)
                self._register(a, vp, link)
            link.key = key  # type: ignore[attr-defined]
            self.links[vp] = link
        return link.offset

    def _register(self, a: Viewport, vp: Viewport, link: Link) -> None:
        """Different frames of reference: the manual offset now, a rigid registration
        (SimpleITK, on a worker) when it is done."""
        if a.volume.shape[0] < 2 or vp.volume.shape[0] < 2 or a.volume.is_color:
            return
        from medview.ui.workers import TaskSlot
        from medview.viewer.priors import register_rigid

        slot = self.slots.get(vp)
        if slot is None:
            slot = self.slots[vp] = TaskSlot(self)
            self.win.side_slots.append(slot)
        h = slot.run(
            register_rigid,
            a.volume,
            vp.volume,
            name="registration",
            on_result=lambda t, v=vp, k=link: self._registered(v, k, t),
            on_error=lambda msg: self.win.notify(f"registration failed: {msg}", "warning"),
        )
        self.win.progress.track(h, "Registering")

    def _registered(self, vp: Viewport, link: Link, transform: object) -> None:
        if self.links.get(vp) is not link:
            return  # relinked or another volume since
        link.transform, link.offset = transform, 0  # type: ignore[assignment]
        shift = ", ".join(f"{v:+.1f}" for v in link.transform[:3, 3])  # type: ignore[index]
        self.win.notify(f"viewports registered (rigid): shift {shift} mm", "info")
        vps = self.members()
        if vps:
            self._scrolled(vps[0])

    def _scrolled(self, src: Viewport) -> None:
        if not self.scrolling or self._busy or src not in self.members():
            return
        self._busy = True
        try:
            offsets = {v: self._offset(v) for v in self.members()}
            for dst in self.members():
                if dst is src or dst.plane != src.plane:
                    continue
                dst.set_index(self._follow(src, dst, offsets))
        finally:
            self._busy = False

    def _follow(self, src: Viewport, dst: Viewport, offsets: dict[Viewport, int]) -> int:
        """``dst``'s slice for ``src``'s: through the first member when a registration
        links either of them to it."""
        vps = self.members()
        first = vps[0]
        s_link, d_link = self.links.get(src), self.links.get(dst)
        if src is first and d_link is not None and d_link.transform is not None:
            return d_link.follow(src.volume, src.plane, src.index, dst.volume)
        if dst is first and s_link is not None and s_link.transform is not None:
            inverse = Link(transform=np.linalg.inv(s_link.transform))
            return inverse.follow(src.volume, src.plane, src.index, dst.volume)
        link = Link(offset=offsets[dst] - offsets[src])
        return link.follow(src.volume, src.plane, src.index, dst.volume)

    def _windowed(self, src: Viewport, c: float, w: float) -> None:
        if not self.view or self._busy or src not in self.members():
            return
        for dst in self.members():
            if dst is not src and src.volume.unit == dst.volume.unit:
                dst.set_window(c, w, emit=False)

    def sync_camera(self, src: Viewport) -> None:
        """Copy ``src``'s zoom (mm scale, so images of other pixel sizes match) and pan."""
        if not self.view or src not in self.members():
            return
        for dst in self.members():
            if dst is not src:
                dst.view.zoom, dst.view.pan = src.view.zoom, src.view.pan
                dst.view.fit_mode = src.view.fit_mode
                dst.update()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if self.view and event.type() in _CAMERA_EVENTS:
            # after the viewport has handled the event (its zoom is then the new one)
            QTimer.singleShot(0, lambda o=obj: self.sync_camera(o))  # type: ignore[arg-type]
        return False


def linker(win: MainWindow) -> ViewLinker:
    """The window's linker (made on first use)."""
    found = getattr(win, "view_linker", None)
    if found is None:
        found = win.view_linker = ViewLinker(win)
    return found


def toggle_link(win: MainWindow) -> None:
    """View > Link scrolling / Link window and zoom: follow the two checkable actions."""
    acts = win.actions_by_id
    link = linker(win)
    link.set_linked(acts["link_scroll"].isChecked(), acts["link_view"].isChecked())
    if acts["link_scroll"].isChecked() and not link.members()[1:]:
        win.notify("linking needs two viewports with images (not in MPR)", "info")


def link_all(win: MainWindow) -> None:
    """Turn scrolling, window/level and zoom links on (after Compare with prior)."""
    for key in ("link_scroll", "link_view"):
        act = win.actions_by_id.get(key)
        if act is not None:
            act.setChecked(True)
    linker(win).set_linked(True, True)
