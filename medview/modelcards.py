"""The one model-card schema: ``models/<name>/metadata.json`` + safetensors weights.

Every bundled or user model (the imaging models of :mod:`medview.ai` and the glucose
forecaster of :mod:`medview.forecast`) is a folder holding ``metadata.json`` (the
model card) and its weights in safetensors format. This module parses and validates
a card into a :class:`ModelCard`, checks the weights' sha256 against the card before
anything is loaded, and loads the tensors (numpy or torch) without ever unpickling.

It sits below the feature packages (``ai`` and ``forecast`` are independent of each
other, so neither may own the schema the other loads) and imports neither torch nor
numpy at module level.

Card keys (JSON object):

* required: ``name``, ``version``, ``task`` (one of :data:`TASKS`), ``architecture``
  (``{"name": ..., "params": {...}}``), ``input`` (object), ``output`` (object, with
  ``labels`` where the model names classes), ``weights`` (``{"file", "format",
  "sha256", "bytes", "parameters"}``; the file must lie inside the model folder);
* optional, shown to users: ``description``, ``intended_use``, ``intended_use_scope``,
  ``limitations`` (list), ``modality``, ``body_part``, ``explain``, ``training``,
  ``training_data``, ``validation``, ``performance``, ``license``, ``authors``,
  ``citations``, ``disclaimer``, ``retrained_from``.

Tamper evidence: ``manifest`` (``{"sha256": ..., "covers": ...}``) is ONE hash over
the whole card (every key but ``manifest`` itself, canonical JSON) and, through the
``weights.sha256`` the card holds, the weights bytes. :func:`read_card` checks the
card part before anything else (so a swapped label, threshold or temperature is
refused, never used), :meth:`ModelCard.verify` the weights part before loading.
:func:`write_card` always writes a fresh manifest.

Validation refuses, with a one-line :class:`ModelError` naming the file: a card that
is not a JSON object, a missing or mismatching manifest, missing keys, an unknown task, a weights path outside the model
folder (absolute, with ``..`` or a link out), labels that do not match the number of
outputs, a normalisation ``std`` that is not positive, and an input size or channel
count that is not a sane positive whole number.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from medview.errors import MedviewError

METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHT_FORMATS = ("safetensors", "onnx")  # an ONNX graph is run by onnxruntime
REQUIRED_KEYS = ("name", "version", "task", "architecture", "input", "output", "weights")
MANIFEST_KEY = "manifest"
MANIFEST_COVERS = (
    "every key of metadata.json except manifest (canonical JSON: sorted keys, no spaces, "
    "ASCII) and the weights file through weights.sha256"
)
IMAGE_TASKS = ("classification", "anomaly")
FORECAST_TASKS = ("forecast",)
VOLUME_TASKS = ("segmentation",)  # 3D label maps: medview.ai.volume_inference
TASKS = IMAGE_TASKS + FORECAST_TASKS + VOLUME_TASKS


class ModelError(MedviewError):
    """A model folder that cannot be used (bad card, tampered or missing weights)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_hash(meta: dict[str, Any]) -> str:
    """The one manifest sha256 of a card: canonical JSON of every key but ``manifest``.

    The card holds ``weights.sha256``, so the hash covers the weights bytes too (checked
    against the file by :meth:`ModelCard.verify`).
    """
    body = {k: v for k, v in meta.items() if k != MANIFEST_KEY}
    try:
        text = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model card is not plain JSON ({exc})") from None
    return hashlib.sha256(b"medview-model-card-v1\n" + text.encode("ascii")).hexdigest()


def with_manifest(meta: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``meta`` with a fresh ``manifest`` block (written last)."""
    out = {k: v for k, v in meta.items() if k != MANIFEST_KEY}
    out[MANIFEST_KEY] = {"sha256": manifest_hash(out), "covers": MANIFEST_COVERS}
    return out


def check_manifest(meta: dict[str, Any], where: Path) -> str:
    """Refuse a card whose manifest is missing or does not match its content."""
    block = meta.get(MANIFEST_KEY)
    stated = str(block.get("sha256", "")).lower() if isinstance(block, dict) else ""
    if not stated:
        raise ModelError(
            "model card has no manifest sha256 (card + weights); refusing to load an "
            "unverifiable model (re-import it with 'medview models import')",
            where,
        )
    try:
        actual = manifest_hash(meta)
    except ModelError as exc:
        raise ModelError(exc.reason, where) from None
    if actual != stated:
        raise ModelError(
            f"manifest sha256 {actual[:12]}... does not match the card ({stated[:12]}...): "
            "metadata.json was edited after the model was written (labels, threshold or "
            "other values may be wrong); refusing to load",
            where,
        )
    return actual


@dataclass(frozen=True)
class Weights:
    """The ``weights`` block of a card."""

    file: str = WEIGHTS_FILE
    sha256: str = ""
    format: str = "safetensors"
    bytes: int | None = None
    parameters: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Weights:
        """Parse the block (missing values keep their defaults)."""
        size = d.get("bytes")
        params = d.get("parameters")
        return cls(
            file=str(d.get("file", WEIGHTS_FILE)),
            sha256=str(d.get("sha256", "")).lower(),
            format=str(d.get("format", "safetensors")),
            bytes=None if size is None else int(size),
            parameters=None if params is None else int(params),
        )


@dataclass
class ModelCard:
    """A parsed, validated model card and the folder it came from.

    ``meta`` keeps the whole JSON object, so optional blocks (training, validation,
    intended-use scope, performance...) travel unchanged.
    """

    folder: Path
    meta: dict[str, Any]
    weights: Weights = field(default_factory=Weights)

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
    def is_image_model(self) -> bool:
        """True for models that analyse images (classification, anomaly)."""
        return self.task in IMAGE_TASKS

    @property
    def architecture(self) -> dict[str, Any]:
        return dict(self.meta["architecture"])

    @property
    def params(self) -> dict[str, Any]:
        """The architecture's parameters (``architecture.params``)."""
        return dict(self.meta["architecture"].get("params") or {})

    @property
    def input(self) -> dict[str, Any]:
        return dict(self.meta["input"])

    @property
    def output(self) -> dict[str, Any]:
        return dict(self.meta["output"])

    @property
    def labels(self) -> list[str]:
        return [str(x) for x in self.meta["output"].get("labels", [])]

    @property
    def weights_path(self) -> Path:
        return self.folder / self.weights.file

    @property
    def metadata_path(self) -> Path:
        return self.folder / METADATA_FILE

    @property
    def manifest_sha256(self) -> str:
        """The card's manifest hash (checked by :func:`validate`)."""
        block = self.meta.get(MANIFEST_KEY)
        return str(block.get("sha256", "")) if isinstance(block, dict) else ""

    def verify(self) -> str:
        """Check the manifest and that the weights' sha256 matches the card; return it."""
        check_manifest(self.meta, self.metadata_path)
        wp = self.weights_path
        if not wp.is_file():
            raise ModelError("weights file is missing", wp)
        expected = self.weights.sha256
        if not expected:
            raise ModelError("model card has no weights sha256; refusing to load", wp)
        actual = sha256_file(wp)
        if actual != expected:
            raise ModelError(
                f"weights sha256 {actual[:12]}... does not match the model card "
                f"({expected[:12]}...); refusing to load a modified or corrupt model",
                wp,
            )
        return actual

    def load_tensors(self, framework: str = "numpy") -> dict[str, Any]:
        """Verify the sha256, then read the safetensors weights (``numpy`` or ``pt``)."""
        self.verify()
        if self.weights.format != "safetensors":
            raise ModelError(f"{self.weights.format} weights hold no tensors", self.weights_path)
        try:
            if framework == "numpy":
                from safetensors.numpy import load_file as load_np

                return dict(load_np(str(self.weights_path)))
            from safetensors.torch import load_file as load_pt

            return dict(load_pt(str(self.weights_path), device="cpu"))
        except Exception as exc:  # noqa: BLE001 - any decode problem is a bad model
            raise ModelError(f"cannot read the weights ({exc})", self.weights_path) from None


def _weights_inside(folder: Path, file: str, where: Path) -> None:
    """Refuse a weights path that is absolute or leaves the model folder."""
    parts = set(PurePosixPath(file).parts) | set(PureWindowsPath(file).parts)
    if (
        not file
        or PurePosixPath(file).is_absolute()
        or PureWindowsPath(file).is_absolute()
        or PureWindowsPath(file).drive
        or ".." in parts
    ):
        raise ModelError(f"weights file {file!r} must be a name inside the model folder", where)
    target = (folder / file).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ModelError(f"weights file {file!r} points outside the model folder", where)


def _check_labels(meta: dict[str, Any], where: Path) -> None:
    """Labels must match the number of outputs (1 output = a binary sigmoid: 2 labels)."""
    labels = meta["output"].get("labels") or []
    if not isinstance(labels, list):
        raise ModelError("output.labels must be a list", where)
    params = meta["architecture"].get("params") or {}
    n_out = params.get("num_outputs") if isinstance(params, dict) else None
    if not labels or n_out is None:
        return
    expected = 2 if int(n_out) == 1 else int(n_out)
    if len(labels) != expected:
        raise ModelError(
            f"{len(labels)} labels for {n_out} model output(s) (expected {expected})", where
        )


def _check_std(meta: dict[str, Any], where: Path) -> None:
    std = meta["input"].get("std")
    if std is None:
        return
    values = std if isinstance(std, list) else [std]
    try:
        bad = [v for v in values if not (math.isfinite(float(v)) and float(v) > 0)]
    except (TypeError, ValueError):
        bad = values
    if bad:
        raise ModelError(f"input.std must be positive, not {std!r}", where)


MAX_SIDE = 8192  # pixels: a larger declared input is a broken (or hostile) card
MAX_CHANNELS = 16


def _check_sizes(meta: dict[str, Any], where: Path) -> None:
    """Declared input size and channels must be sane positive integers."""
    inp = meta["input"]
    if "size" in inp:
        size = inp["size"]
        sides = size if isinstance(size, list) else [size]
        ok = bool(sides) and len(sides) <= 3
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in sides)
        if not ok or not all(1 <= v <= MAX_SIDE for v in sides):
            raise ModelError(
                f"input.size must be 1 to 3 whole numbers from 1 to {MAX_SIDE}, not {size!r}",
                where,
            )
    if "channels" in inp:
        ch = inp["channels"]
        if not (isinstance(ch, int) and not isinstance(ch, bool) and 1 <= ch <= MAX_CHANNELS):
            raise ModelError(
                f"input.channels must be a whole number from 1 to {MAX_CHANNELS}, not {ch!r}",
                where,
            )


def validate(meta: Any, folder: str | Path, check: bool = True) -> ModelCard:
    """Check a card's structure and manifest (not the weights: :meth:`ModelCard.verify`).

    ``check=False`` skips the manifest, for a card being built (import, training).
    """
    folder = Path(folder)
    where = folder / METADATA_FILE
    if not isinstance(meta, dict):
        raise ModelError("model card is not a JSON object", where)
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"model card lacks {', '.join(missing)}", where)
    if meta["task"] not in TASKS:
        raise ModelError(f"unknown task {meta['task']!r} (known: {', '.join(TASKS)})", where)
    for key in ("architecture", "input", "output", "weights"):
        if not isinstance(meta[key], dict):
            raise ModelError(f"{key} must be a JSON object", where)
    weights = Weights.from_dict(meta["weights"])
    if weights.format not in WEIGHT_FORMATS:
        raise ModelError(
            f"weights format {weights.format!r} not supported ({', '.join(WEIGHT_FORMATS)}); "
            "nothing is ever unpickled",
            where,
        )
    _weights_inside(folder, weights.file, where)
    _check_labels(meta, where)
    _check_std(meta, where)
    _check_sizes(meta, where)
    if check:
        check_manifest(meta, where)
    return ModelCard(folder=folder, meta=meta, weights=weights)


def read_card(folder: str | Path) -> ModelCard:
    """Parse and validate ``folder/metadata.json`` (does not read the weights)."""
    folder = Path(folder)
    mpath = folder / METADATA_FILE
    if not mpath.is_file():
        raise ModelError("no metadata.json in model folder", folder)
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model card ({exc})", mpath) from None
    return validate(meta, folder)


def write_card(folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``meta`` with a fresh manifest as ``folder/metadata.json`` (indented)."""
    path = Path(folder) / METADATA_FILE
    path.write_text(json.dumps(with_manifest(meta), indent=2) + "\n", encoding="utf-8")
    return path


def weights_block(path: Path, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``weights`` block for a freshly written safetensors file.

    ``parameters`` counts the trainable tensors' elements (batch-norm running
    statistics excluded).
    """
    return {
        "file": path.name,
        "format": "safetensors",
        **extra,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "parameters": int(
            sum(
                int(math.prod(getattr(v, "shape", ())))
                for k, v in state.items()
                if "running" not in k and "num_batches" not in k
            )
        ),
    }
