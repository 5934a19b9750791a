"""Model registry: model folders holding ``metadata.json`` + safetensors weights.

:func:`discover_cards` lists every card (imaging and the glucose forecaster);
:func:`discover`, :func:`get_model` and :func:`default_models` only the models that
analyse images. Models are discovered in the bundled ``models/`` folder and in the per-user models
folder (``medview.paths.user_models_dir()``, ``MEDVIEW_MODELS``), where a clinic
drops its own; a user model with the same name overrides the bundled one, and a
user model that fails validation is refused under its name (never replaced by the
bundled model of that name).

``metadata.json`` is the model card in the one schema of :mod:`medview.modelcards`
(name, version, task, description, intended
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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medview.ai.preprocess import InputSpec
from medview.modelcards import (
    FORECAST_TASKS,
    IMAGE_TASKS,
    METADATA_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelError,
    read_card,
    sha256_file,
    write_card,
)

__all__ = [
    "IMAGE_TASKS",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "ModelError",
    "ModelInfo",
    "default_models",
    "discover",
    "discover_cards",
    "get_model",
    "kind_label",
    "model_use",
    "read_model_folder",
    "scan_models",
    "sha256_file",
    "torch_device_for",
    "write_model",
]


@dataclass
class ModelInfo(ModelCard):
    """A registered model: its validated card, folder and where it was found."""

    source: str = "bundled"  # "bundled" | "user" | "path"

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.meta["input"])

    @property
    def threshold(self) -> float | None:
        t = self.meta["output"].get("threshold")
        return None if t is None else float(t)

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

    def load_module(self, device: str = "cpu") -> Any:
        """Build the architecture and load the verified safetensors weights (eval mode)."""
        from medview.ai import nets

        if not self.is_image_model:
            raise ModelError(f"a {self.task} model does not analyse images", self.folder)
        if self.weights.format == "onnx":
            return _onnx_module(self, device)
        state = self.load_tensors("pt")  # verifies the sha256 first
        arch = self.meta["architecture"]
        try:
            module = nets.build(arch["name"], arch.get("params"))
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"cannot build architecture: {exc}", self.folder) from None
        try:
            module.load_state_dict(state, strict=True)
        except Exception as exc:  # noqa: BLE001 - any shape problem is a bad model
            raise ModelError(
                f"weights do not fit the architecture: {exc}", self.weights_path
            ) from None
        module.eval()
        return module.to(device)


def _onnx_module(info: ModelInfo, device: str) -> Any:
    """The verified ONNX graph behind a module (onnxruntime: ``pip install medview[onnx]``)."""
    info.verify()  # manifest + sha256 of the .onnx file before onnxruntime reads it
    try:
        from medview.ai.zoo import OnnxModule

        return OnnxModule(info.weights_path, device).eval()
    except ImportError:
        raise ModelError(
            "ONNX models need onnxruntime (pip install 'medview[onnx]')", info.weights_path
        ) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime refuses a bad graph
        raise ModelError(f"onnxruntime cannot load the model ({exc})", info.weights_path) from None


def _info(card: ModelCard, source: str) -> ModelInfo:
    """An image-model card checked for its input spec, as a :class:`ModelInfo`."""
    if card.is_image_model:
        try:
            InputSpec.from_dict(card.meta["input"])
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(f"bad input spec ({exc})", card.metadata_path) from None
    return ModelInfo(folder=card.folder, meta=card.meta, weights=card.weights, source=source)


def read_model_folder(folder: str | Path, source: str = "path") -> ModelInfo:
    """Parse and validate ``folder/metadata.json`` (does not load the weights)."""
    return _info(read_card(folder), source)


def model_dirs() -> list[tuple[str, Path]]:
    """Search path: bundled models first, then the per-user folder (which overrides)."""
    from medview import paths

    return [("bundled", paths.bundled_models_dir()), ("user", paths.user_models_dir())]


def _names_of_broken(folder: Path) -> set[str]:
    """Names a broken model folder claims: its folder name and, if readable, its card name."""
    import json

    names = {folder.name}
    try:
        meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return names
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        names.add(meta["name"])
    return names


def scan_models() -> tuple[dict[str, ModelInfo], dict[str, ModelError]]:
    """Every usable card by name, and every name whose user model is broken.

    A broken user model takes its name with it: the bundled model of the same name is
    NOT used in its place (the clinic meant its own model; falling back silently would
    give results from a different model). Its error is kept under that name.
    """
    found: dict[str, ModelInfo] = {}
    broken: dict[str, ModelError] = {}
    for source, root in model_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if not (folder / METADATA_FILE).exists():
                continue
            try:
                info = read_model_folder(folder, source)
            except ModelError as exc:
                for name in _names_of_broken(folder):
                    broken[name] = exc
                    if source != "bundled":
                        found.pop(name, None)
                continue
            broken.pop(info.name, None)
            found[info.name] = info
    return found, broken


def discover_cards(errors: list[str] | None = None) -> dict[str, ModelInfo]:
    """Every usable model card by name (imaging and forecast); broken ones go to ``errors``."""
    found, broken = scan_models()
    if errors is not None:
        seen: set[str] = set()
        for exc in broken.values():
            if str(exc) not in seen:
                seen.add(str(exc))
                errors.append(str(exc))
    return found


def discover(errors: list[str] | None = None) -> dict[str, ModelInfo]:
    """The models that analyse images (classification, anomaly) by name.

    Cards of other tasks (the glucose forecaster) are listed by :func:`discover_cards`.
    """
    return {n: m for n, m in discover_cards(errors).items() if m.task in IMAGE_TASKS}


def lookup_card(
    name_or_path: str,
    accept: Callable[[ModelInfo], bool],
    what: str = "model",
    hide_rejected: bool = True,
) -> ModelInfo:
    """A card by the path of a model folder, or by registry name.

    An unknown name is refused with the names ``accept`` takes; so is a known card that
    ``accept`` refuses when ``hide_rejected`` (otherwise the caller says why it is refused,
    as it must for a folder's card anyway)."""
    p = Path(name_or_path)
    if p.is_dir() and (p / METADATA_FILE).exists():
        return read_model_folder(p, "path")
    cards, broken = scan_models()
    if name_or_path in broken and name_or_path not in cards:
        raise broken[name_or_path]
    found = cards.get(name_or_path)
    if found is None or (hide_rejected and not accept(found)):
        known = ", ".join(sorted(n for n, m in cards.items() if accept(m))) or "none"
        raise ModelError(f"unknown {what} {name_or_path!r} (available: {known})")
    return found


def get_model(name_or_path: str) -> ModelInfo:
    """An image model by registry name, or by the path of a model folder."""
    info = lookup_card(name_or_path, lambda m: m.is_image_model, hide_rejected=False)
    if not info.is_image_model:
        use = model_use(info)
        what = f"{use['kind']} ({use['dims']}D)" if use["dims"] else str(use["kind"])
        how = f"; run it on its own: {use['command']}" if use["command"] else ""
        raise ModelError(
            f"{info.name} is a {what} model, not a 2D image model: it does not analyse "
            f"images one by one{how}",
            info.folder,
        )
    return info


def default_models(errors: list[str] | None = None) -> list[ModelInfo]:
    """The models run when none is chosen: every usable image model, sorted by name.

    Broken models (a user model failing validation takes its name with it) go to ``errors``.
    """
    return [m for _, m in sorted(discover(errors).items())]


def torch_device_for(cards: Iterable[ModelCard]) -> str:
    """Where a default (``--device auto``) torch run of ``cards`` goes on this machine:
    ``cpu`` without asking torch when none of them runs on torch (forecasters)."""
    if not any(c.task not in FORECAST_TASKS for c in cards):
        return "cpu"
    from medview.ai.devices import resolve_device

    return str(resolve_device("auto"))


def kind_label(use: dict[str, Any]) -> str:
    """``image 2D``, ``volume 3D``, ``forecast``: a :func:`model_use` kind for a table."""
    return f"{use['kind']} {use['dims']}D" if use["dims"] in (2, 3) else str(use["kind"])


def model_use(card: ModelCard, device: str = "cpu") -> dict[str, Any]:
    """What a model does and how it is run, for listings (``device``: where torch runs).

    ``kind``: ``image`` (2D: one picture or each slice), ``volume`` (3D: a whole CT/MR
    series), ``forecast`` (a time series) or the card's task; ``dims`` 2, 3, 1 or None;
    ``runs_on``: the device a default (``--device auto``) run uses; ``command``: the
    command that runs it.
    """
    name = card.name
    fmt = card.weights.format
    runs_on = f"onnxruntime ({device})" if fmt == "onnx" else device
    if card.is_image_model:
        kind, dims, cmd = "image", 2, f"medview analyze IMAGE_OR_FOLDER --model {name}"
    elif card.task == "segmentation" and str(card.input.get("dims", "")) == "3":
        kind, dims, cmd = "volume", 3, f"medview analyze SERIES_FOLDER --model {name}"
    elif card.task in FORECAST_TASKS:
        kind, dims, runs_on = "forecast", 1, "cpu"
        cmd = "medview forecast --cgm FILE.csv"  # the forecaster picks its network
    else:
        kind, dims, cmd = card.task, None, None
    return {"kind": kind, "dims": dims, "runs_on": runs_on, "command": cmd}


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
    write_card(folder, meta)
    return read_model_folder(folder)
