"""The image viewport widget, split by job.

* :mod:`.canvas` - :class:`Viewport`, the thin ``QWidget``: loading, rendering cache,
  paint and events over a Qt-free :class:`~medview.viewer.view_state.ViewState`;
* :mod:`.items` - the painters (image + AI heat map, measurements, crosshair, AI
  caption and legend, corner texts, orientation letters);
* :mod:`.info` - what is written in the corners and under the mouse;
* :mod:`.tools` - the mouse/keyboard tool state machine and cine playback.

Plane geometry lives in :mod:`medview.imaging.geometry`, colour maps in
:mod:`medview.imaging.colormap`; their names are re-exported here for the callers
that imported them from ``medview.ui.viewport``.
"""

from __future__ import annotations

from medview.imaging.geometry import (
    PLANE_AXIS,
    orientation_letters,
    pixel_to_voxel,
    plane_axes_lps,
    plane_count,
    plane_flipped,
    voxel_to_pixel,
)
from medview.ui.viewport.canvas import Viewport
from medview.ui.viewport.items import heatmap_image, measure_name
from medview.ui.viewport.tools import TOOL_LABELS, TOOLS

__all__ = [
    "PLANE_AXIS",
    "TOOLS",
    "TOOL_LABELS",
    "Viewport",
    "heatmap_image",
    "measure_name",
    "orientation_letters",
    "pixel_to_voxel",
    "plane_axes_lps",
    "plane_count",
    "plane_flipped",
    "voxel_to_pixel",
]
