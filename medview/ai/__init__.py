"""Local AI: model registry, preprocessing, inference, explanations and training.

Qt-free and torch-free at import time (torch is imported inside the functions that
run or train a model). Main entry points, loaded on first use:

* :func:`discover`, :func:`get_model`, :func:`discover_cards` (registry of ``models/<name>/metadata.json`` +
  ``model.safetensors``, sha256-verified, never unpickled);
* :func:`analyze_path`, :func:`analyze_images`, :func:`load_model`, :class:`AIResult`;
* :func:`resolve_device` ("auto" -> cuda, else mps, else cpu).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "discover": "medview.ai.registry",
    "get_model": "medview.ai.registry",
    "default_models": "medview.ai.registry",
    "ModelInfo": "medview.ai.registry",
    "discover_cards": "medview.ai.registry",
    "ModelError": "medview.modelcards",
    "ModelCard": "medview.modelcards",
    "analyze_path": "medview.ai.inference",
    "analyze_images": "medview.ai.inference",
    "load_model": "medview.ai.inference",
    "AIResult": "medview.ai.inference",
    "DISCLAIMER": "medview.disclaimers",
    "resolve_device": "medview.ai.devices",
    "InputSpec": "medview.ai.preprocess",
    "prepare": "medview.ai.preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'medview.ai' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
