"""What the main window tells its side panels, and what panels hand back.

Every dock panel is a ``QWidget`` subclass with:

* ``set_study_context(ctx: StudyContext)`` - called by the main window whenever the
  image in the active viewport (or its slice) changes;
* a ``notify = Signal(str)`` for one-line non-modal notifications;
* ``shutdown()`` - cancel its task (called on quit; must not block long).

The forecast and treatment-suggestion panels also take ``patients=`` - one
:class:`~medview.records.patient_context.PatientRecords` the main window shares
between them, so both show the same record patient (each makes its own when
none is given). They name that patient in a header, from the same snapshot
their data was computed for.

The AI panel additionally emits ``overlay_changed(object)`` with an
:class:`Overlay` (or ``None``) for the viewport, and ``finding(str, str)``
(SNOMED code, display) when the user sends a positive AI finding to the
treatment suggestions panel (``add_working_condition(code, display)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from medview import disclaimers


@dataclass
class StudyContext:
    volume: Any | None = None  # medview.io.Volume
    index: int = 0  # slice index in the volume (axial)
    patient_id: str = ""
    patient_name: str = ""
    birth_date: date | None = None
    image_key: str = ""  # stable id of the current image (SOPInstanceUID or path#frame)


@dataclass
class Overlay:
    """A heat map over the current slice: values in [0, 1], same shape as the slice."""

    heatmap: np.ndarray
    opacity: float = 0.4
    colormap: str = "jet"  # "jet" | "hot" | "viridis"
    label: str = disclaimers.AI
    index: int | None = None  # slice it belongs to (None: the current 2D image)


def context_for(volume: Any | None, plane: str, index: int, image_key: str) -> StudyContext:
    """What the panels get for the image in view (an empty context when nothing is).

    An axial view hands over its slice and image key; another plane hands over
    slice 0 and no key (the panels work on acquired images, not reformats).
    """
    if volume is None:
        return StudyContext()
    from medview.records.patient_context import parse_dicom_date

    info = volume.series or (volume.instances[0] if volume.instances else None)
    axial = plane == "axial"
    return StudyContext(
        volume=volume,
        index=index if axial else 0,
        patient_id=str(getattr(info, "patient_id", "") or ""),
        patient_name=str(getattr(info, "patient_name", "") or ""),
        birth_date=parse_dicom_date(getattr(info, "patient_birth_date", "")),
        image_key=image_key if axial else "",
    )
