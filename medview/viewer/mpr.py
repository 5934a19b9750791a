"""MPR synchronisation rules, without Qt.

In the MPR layout the first three viewports show one volume as axial, coronal and
sagittal planes. They share one crosshair (a voxel ``(i, j, k)``: column, row,
slice) and one window. These functions decide who follows whom; the window
(:mod:`medview.ui.main_window`) applies their answers to the viewports.

Viewports are numbered by their place in the layout (0: axial, 1: coronal,
2: sagittal); ``volumes`` lists what each of the three shows (``None``: empty),
compared by identity: only viewports showing the *same* loaded volume follow.
"""

from __future__ import annotations

from collections.abc import Sequence

MPR_LAYOUT = "mpr"
#: the planes of the three MPR viewports, in layout order
MPR_PLANES: tuple[str, str, str] = ("axial", "coronal", "sagittal")
#: which crosshair coordinate a plane's slice index is: i (x) for sagittal, j (y)
#: for coronal, k (z) for axial
PLANE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}

Crosshair = tuple[float, float, float]


def in_mpr(layout: str, position: int | None) -> bool:
    """True when the viewport at ``position`` is one of the MPR trio of ``layout``."""
    return layout == MPR_LAYOUT and position is not None and 0 <= position < len(MPR_PLANES)


def center_crosshair(shape: tuple[int, int, int]) -> Crosshair:
    """The crosshair a volume of ``shape`` (z, y, x) starts with: its middle voxel."""
    z, y, x = shape
    return float(x // 2), float(y // 2), float(z // 2)


def crosshair_after_scroll(plane: str, crosshair: Crosshair, index: int) -> Crosshair | None:
    """The crosshair after a viewport of ``plane`` moved to slice ``index``.

    None when the crosshair already lies on that slice: an index set *from* the
    crosshair must not move it again (only a scroll moves the crosshair).
    """
    axis = PLANE_AXIS[plane]
    if int(round(crosshair[axis])) == index:
        return None
    moved = list(crosshair)
    moved[axis] = float(index)
    return moved[0], moved[1], moved[2]


def crosshair_targets(
    layout: str,
    source: int | None,
    source_volume: object,
    volumes: Sequence[object | None],
    include_source: bool = False,
) -> list[int]:
    """The MPR viewports that take a crosshair moved in viewport ``source``.

    ``source`` is the mover's MPR position (None if it is not one of the trio).
    Every MPR viewport showing ``source_volume`` follows; the source itself only
    when ``include_source`` (its crosshair moved because it scrolled). Nothing
    follows outside the MPR layout.
    """
    if layout != MPR_LAYOUT:
        return []
    return [
        n
        for n, vol in enumerate(volumes[: len(MPR_PLANES)])
        if vol is source_volume and (include_source or n != source)
    ]


def window_targets(layout: str, source: int | None, volumes: Sequence[object | None]) -> list[int]:
    """The MPR viewports that take a window (centre, width) set in viewport ``source``.

    One window for the three planes of a volume: the other MPR viewports showing
    the same volume follow. A viewport outside the trio, or any viewport outside
    the MPR layout, is followed by none.
    """
    if source is None or not in_mpr(layout, source):
        return []
    mine = volumes[source]
    return [n for n, vol in enumerate(volumes[: len(MPR_PLANES)]) if n != source and vol is mine]


def scroll_moves_crosshair(layout: str, position: int | None, has_volume: bool) -> bool:
    """True when a slice change in the viewport at ``position`` moves the shared crosshair."""
    return in_mpr(layout, position) and has_volume
