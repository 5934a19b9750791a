"""The user-facing disclaimers, in one place.

Every front end (CLI text and JSON, PNG overlays, the viewer's captions and panels,
model cards) takes its wording from here, so a change is made once.
"""

from __future__ import annotations

#: on every AI result, heat-map overlay and AI panel
AI = "AI output, not for diagnostic use"

#: the ``disclaimer`` field of the bundled imaging model cards
AI_MODEL_CARD = "Research use, not a diagnostic device. AI output, not for diagnostic use."

#: on every forecast (CLI and panel)
FORECAST = (
    "Forecast: a statistical projection of past values, not for diagnostic use "
    "or treatment decisions."
)

#: the forecast model card's disclaimer
FORECAST_MODEL_CARD = "Not a medical device; not for dosing or diagnostic decisions."

#: the About box / start-up notice
APP = "Not a medical device; AI output is not for diagnostic use."

#: the name most callers import (the AI one)
DISCLAIMER = AI
