"""Dockable side panels (AI, forecast, suggestions, tags)."""
