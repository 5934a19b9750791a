"""The red AI disclaimer banner that tops every AI panel (the image and the CT label
map panels), in one place so neither panel module depends on the other."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from medview.disclaimers import AI as DISCLAIMER


def disclaimer_banner(parent: QWidget | None = None, wrap: bool = False) -> QLabel:
    """The red banner with the AI disclaimer that tops every AI panel."""
    warn = QLabel(f"<b>{DISCLAIMER}</b>", parent)
    warn.setStyleSheet("color: white; background: #a00000; padding: 3px;")
    warn.setAlignment(Qt.AlignmentFlag.AlignCenter)
    warn.setWordWrap(wrap)
    return warn
