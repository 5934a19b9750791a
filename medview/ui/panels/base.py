"""What every side panel offers the main window, and how panels are created.

The main window talks to its dock panels only through these types (no ``hasattr``
checks):

* :class:`SidePanel` - every panel: ``notify(str)`` for one-line notifications,
  ``set_study_context(ctx)`` whenever the image (or slice) in view changes, and
  ``shutdown()`` on quit (cancel its task; must not block long).
* :class:`OverlaySource` - a panel that draws on the viewport
  (``overlay_changed(Overlay | None)``); the AI panel.
* :class:`FindingSource` / :class:`FindingSink` - a panel that sends a finding
  ``(SNOMED code, display)`` and one that takes it as a working condition (AI ->
  treatment suggestions).
* :class:`PanelSpec` / :data:`PANEL_SPECS` / :func:`create_panel` - which panels
  exist, in which order, and which of them share the one
  :class:`~medview.records.patient_context.PatientRecords` (records follow the patient
  once: loaded once, linked once, for the forecast and the suggestion panels).

The protocols are ``runtime_checkable``: ``isinstance(panel, OverlaySource)`` says
whether a panel has that part of the contract.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from medview.records.patient_context import PatientRecords
    from medview.ui.context import StudyContext


@runtime_checkable
class SidePanel(Protocol):
    """A dock panel of the main window (a ``QWidget``)."""

    #: ``Signal(str)``: a one-line, non-modal notification for the user
    notify: SignalInstance

    def set_study_context(self, ctx: StudyContext) -> None:
        """The image or slice in the active viewport changed (cheap when only the slice did)."""
        ...

    def shutdown(self) -> None:
        """Cancel the panel's task; nothing is delivered or started afterwards."""
        ...


@runtime_checkable
class OverlaySource(Protocol):
    """A panel that shows a heat map on the viewport."""

    #: ``Signal(object)``: an :class:`~medview.ui.context.Overlay` or ``None``
    overlay_changed: SignalInstance


@runtime_checkable
class FindingSource(Protocol):
    """A panel that sends a finding to other panels."""

    #: ``Signal(str, str)``: (SNOMED CT code, display)
    finding: SignalInstance


@runtime_checkable
class FindingSink(Protocol):
    """A panel that takes a finding as a working condition."""

    def add_working_condition(self, code: str, display: str = "") -> None:
        """Add ``code`` (SNOMED CT) as a working condition and refresh."""
        ...


@dataclass(frozen=True)
class PanelSpec:
    """One dock panel: ``key`` in ``MainWindow.panels``, where its class lives, its title."""

    key: str
    module: str
    class_name: str
    title: str
    #: constructed with ``patients=`` (the one shared PatientRecords)
    shares_records: bool = False


#: the side panels, in docking order
PANEL_SPECS: tuple[PanelSpec, ...] = (
    PanelSpec("ai", "medview.ui.panels.ai_panel", "AIPanel", "AI"),
    PanelSpec("forecast", "medview.ui.panels.forecast_panel", "ForecastPanel", "Forecast", True),
    PanelSpec(
        "suggest",
        "medview.ui.panels.suggest_panel",
        "SuggestionsPanel",
        "Treatment suggestions",
        True,
    ),
)


def create_panel(spec: PanelSpec, parent: QWidget, patients: PatientRecords) -> SidePanel:
    """Import and construct the panel of ``spec`` (imports are lazy: pyqtgraph, torch).

    Raises whatever the import or the constructor raises (the caller leaves the dock
    out with a warning); ``TypeError`` when the class does not meet :class:`SidePanel`.
    """
    cls = getattr(importlib.import_module(spec.module), spec.class_name)
    panel = cls(parent, patients=patients) if spec.shares_records else cls(parent)
    if not isinstance(panel, SidePanel):
        raise TypeError(f"{spec.module}.{spec.class_name} is not a side panel")
    return panel
