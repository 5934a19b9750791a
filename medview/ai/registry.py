"""Model registry: model folders holding ``metadata.json`` + safetensors weights.

Models are discovered in the bundled ``models/`` folder and in the per-user models
folder (``medview.paths.user_models_dir()``, ``MEDVIEW_MODELS``), where a clinic
drops its own; a user model with the same name overrides the bundled one.

``metadata.json`` is the model card (name, version, task, description, intended
use, limitations, modality, body part, architecture, input spec, outputs with
labels and thresholds, training data, validation metrics, weights sha256,
license, authors, citations). Before any weights are loaded their sha256 is
compared with the card; a mismatch is refused with a one-line
:class:`ModelError`. Weights are read with ``safetensors`` only: nothing is ever
unpickled.

This module is torch-free at import time; :meth:`ModelInfo.load_module` imports
torch when a model is actually loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.ai.preprocess import InputSpec
from medview.errors import MedviewError

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
REQUIRED_KEYS = ("name", "version", "task", "architecture", "input", "output", "weights")
TASKS = ("classification", "anomaly")


class ModelError(MedviewError):
    """A model folder that cannot be used (bad card, tampered or missing weights)."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelInfo:
    """A registered model: its folder and parsed card."""

    folder: Path
    meta: dict[str, Any]
    source: str = "bundled"  # "bundled" | "user" | "path"
    _verified: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.meta["input"])

    @property
    def output(self) -> dict[str, Any]:
        return dict(self.meta["output"])

    @property
    def labels(self) -> list[str]:
        return list(self.meta["output"].get("labels", []))

    @property
    def threshold(self) -> float | None:
        t = self.meta["output"].get("threshold")
        return None if t is None else float(t)

    @property
    def weights_path(self) -> Path:
        return self.folder / str(self.meta["weights"].get("file", WEIGHTS_FILE))

    def summary(self) -> dict[str, Any]:
        """A short dict for listings (CLI, GUI)."""
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "source": self.source,
            "folder": str(self.folder),
            "input": self.meta["input"],
            "labels": self.labels,
            "threshold": self.threshold,
            "description": self.meta.get("description", ""),
        }

    def verify(self) -> None:
        """Check the weights file exists and its sha256 matches the card."""
        wp = self.weights_path
        if not wp.is_file():
            raise ModelError("weights file is missing", wp)
        expected = str(self.meta["weights"].get("sha256", "")).lower()
        if not expected:
            raise ModelError("model card has no weights sha256; refusing to load", wp)
        actual = sha256_file(wp)
        if actual != expected:
            raise ModelError(
                f"weights sha256 {actual[:12]}... does not match the model card "
                f"({expected[:12]}...); refusing to load a modified or corrupt model",
                wp,
            )
        self._verified = True

    def load_module(self, device: str = "cpu") -> Any:
        """Build the architecture and load the verified safetensors weights (eval mode)."""
        self.verify()
        from safetensors.torch import load_file

        from medview.ai import nets

        arch = self.meta["architecture"]
        try:
            module = nets.build(arch["name"], arch.get("params"))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot build architecture: {exc}", self.folder) from None
        try:
            state = load_file(str(self.weights_path), device="cpu")
            module.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - any decode/shape problem is a bad model
            raise ModelError(
                f"weights do not fit the architecture: {exc}", self.weights_path
            ) from None
        module.eval()
        return module.to(device)


def read_model_folder(folder: str | Path, source: str = "path") -> ModelInfo:
    """Parse and validate ``folder/metadata.json`` (does not load the weights)."""
    folder = Path(folder)
    mpath = folder / METADATA_FILE
    if not mpath.is_file():
        raise ModelError("no metadata.json in model folder", folder)
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model card ({exc})", mpath) from None
    if not isinstance(meta, dict):
        raise ModelError("model card is not a JSON object", mpath)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"model card lacks {', '.join(missing)}", mpath)
    if meta["task"] not in TASKS:
        raise ModelError(f"unknown task {meta['task']!r} (known: {', '.join(TASKS)})", mpath)
    try:
        InputSpec.from_dict(meta["input"])
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(f"bad input spec ({exc})", mpath) from None
    return ModelInfo(folder=folder, meta=meta, source=source)


def _is_image_model_card(path: Path) -> bool:
    """False for readable cards of non-imaging models (their task is not ours).

    Unreadable or malformed cards count as image models, so they are reported.
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not (isinstance(meta, dict) and meta.get("task") not in TASKS and "input" not in meta)


def model_dirs() -> list[tuple[str, Path]]:
    """Search path: bundled models first, then the per-user folder (which overrides)."""
    from medview import paths

    return [("bundled", paths.bundled_models_dir()), ("user", paths.user_models_dir())]


def discover(errors: list[str] | None = None) -> dict[str, ModelInfo]:
    """All usable model cards by name; broken folders are reported in ``errors``."""
    found: dict[str, ModelInfo] = {}
    for source, root in model_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if not (folder / METADATA_FILE).exists():
                continue
            if not _is_image_model_card(folder / METADATA_FILE):
                continue  # another subsystem's model (e.g. the glucose forecaster)
            try:
                info = read_model_folder(folder, source)
            except ModelError as exc:
                if errors is not None:
                    errors.append(str(exc))
                continue
            found[info.name] = info
    return found


def get_model(name_or_path: str) -> ModelInfo:
    """A model by registry name, or by the path of a model folder."""
    p = Path(name_or_path)
    if p.is_dir() and (p / METADATA_FILE).exists():
        return read_model_folder(p, "path")
    models = discover()
    if name_or_path not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ModelError(f"unknown model {name_or_path!r} (available: {known})")
    return models[name_or_path]


def default_models() -> list[ModelInfo]:
    """The models run when none is chosen: every discovered model, sorted by name."""
    return [m for _, m in sorted(discover().items())]


def write_model(folder: str | Path, module: Any, meta: dict[str, Any]) -> ModelInfo:
    """Save ``module``'s weights as safetensors and the card with their sha256."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wpath = folder / WEIGHTS_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    # one header key only: safetensors does not keep the order of several, and the file
    # must be byte-reproducible (same training run -> same sha256)
    save_file(state, str(wpath), metadata={"format": "pt"})
    meta = dict(meta)
    meta["weights"] = {
        **dict(meta.get("weights", {})),
        "file": WEIGHTS_FILE,
        "format": "safetensors",
        "sha256": sha256_file(wpath),
        "bytes": wpath.stat().st_size,
        "parameters": int(
            sum(
                v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k
            )
        ),
    }
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return read_model_folder(folder)
