"""What the window shows, as plain data: the JSON written beside ``--screenshot FILE.png``.

:func:`describe_window` builds the document (``FILE.json``) from the layout and, per
visible viewport, its :class:`~medview.viewer.view_state.ViewState` and volume.
Field names (documented in docs/viewer.md, read by GUI tests and held-out checks):

* ``layout`` (``"1x1"``, ``"1x2"``, ``"2x2"``, ``"mpr"``), ``protocol`` (the hanging
  protocol that placed the study, or null), ``active`` (position of the active
  viewport), ``maximized`` (position of a maximised viewport, or null), ``viewports``;
* per viewport: ``position`` (0-based, reading order), ``series_uid``, ``study_uid``,
  ``modality``, ``description``, ``plane``, ``index`` (1-based, as the corner text
  shows it), ``index0`` (0-based, as ``medview render --index`` takes it), ``count``
  (slices in that plane), ``projection`` (null, ``"mip"``, ``"minip"``, ``"avg"``),
  ``slab`` (thickness in mm, null for a single slice or the whole volume),
  ``slab_first0``/``slab_last0`` (the slices the projection covers, 0-based),
  ``window_center``, ``window_width`` (null when the file's VOI LUT is applied),
  ``zoom`` (image pixels per screen pixel; 1.0 is the "Zoom: 100%" of the corner
  text), ``invert``, ``rotation`` (quarter turns clockwise), ``flip_h``, ``flip_v``,
  ``loading``, ``gsps`` (the label of the presentation state shown, or null).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medview.imaging.geometry import plane_count, plane_spacing
from medview.viewer.view_state import ViewState


@dataclass
class ViewportFacts:
    """What :func:`describe_window` needs of one viewport (the GUI fills it in)."""

    view: ViewState
    volume: Any | None = None  # medview.io.model.Volume
    pending: Any | None = None  # SeriesInfo still loading
    loading: bool = False
    gsps: str | None = None  # the label of the presentation state shown over it


def _series_fields(info: Any) -> dict[str, Any]:
    return {
        "series_uid": getattr(info, "series_uid", None) or None,
        "study_uid": getattr(info, "study_uid", None) or None,
        "modality": getattr(info, "modality", None) or None,
        "description": getattr(info, "description", None) or None,
    }


def viewport_record(position: int, facts: ViewportFacts) -> dict[str, Any]:
    """One viewport's entry of the screenshot JSON (see the module docstring)."""
    view, vol = facts.view, facts.volume
    info = getattr(vol, "series", None) if vol is not None else None
    rec: dict[str, Any] = {"position": position, **_series_fields(info or facts.pending)}
    count = plane_count(vol, view.plane) if vol is not None else 0
    window = view.window
    rec.update(
        plane=view.plane,
        index=view.index + 1 if vol is not None else None,
        index0=view.index if vol is not None else None,
        count=count,
        projection=view.projection,
        slab=view.slab_mm if view.projection else None,
        slab_first0=None,
        slab_last0=None,
        window_center=float(window[0]) if window else None,
        window_width=float(window[1]) if window else None,
        zoom=round(view.zoom_percent(plane_spacing(vol, view.plane)[1]) / 100.0, 4)
        if vol is not None
        else None,
        invert=bool(view.invert),
        rotation=int(view.rotation) % 4,
        flip_h=bool(view.flip_h),
        flip_v=bool(view.flip_v),
        loading=bool(facts.loading),
        gsps=facts.gsps,
    )
    if vol is not None and view.projection and not vol.is_color:
        from medview.imaging.projection import slab_range

        slab = slab_range(vol, view.plane, view.index, view.slab_mm)
        rec.update(slab_first0=slab.first, slab_last0=slab.last)
    return rec


def describe_window(
    layout: str,
    viewports: Sequence[ViewportFacts],
    active: int = 0,
    maximized: int | None = None,
    protocol: str | None = None,
) -> dict[str, Any]:
    """The screenshot JSON document: ``viewports`` are the visible ones, in reading order."""
    return {
        "layout": layout,
        "protocol": protocol,
        "active": active,
        "maximized": maximized,
        "viewports": [viewport_record(n, f) for n, f in enumerate(viewports)],
    }


__all__ = ["ViewportFacts", "describe_window", "viewport_record"]
