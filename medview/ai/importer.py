"""Bring your own model: import ONNX files and PyTorch checkpoints into the user models folder.

:func:`import_model` takes a model file and a model card (JSON, the one schema of
:mod:`medview.modelcards` without the ``weights`` block, which is computed here):

* ``.onnx``: copied as ``model.onnx``; onnxruntime must open it and give, for a zero
  image of the card's input size, one output row per image whose length fits the
  card's labels. Run by onnxruntime at analysis time (CPU; CUDA when present).
* ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin``: read ONLY with
  ``torch.load(weights_only=True)`` (a tensor-only unpickler: a pickle that carries
  code is refused by it, and nothing of it runs); the tensors (a state dict, or one
  under ``state_dict`` / ``model`` / ``model_state_dict``; ``module.`` prefixes
  dropped) must fit the card's architecture, one of :data:`medview.ai.nets.ARCHITECTURES`
  (``resnet18``, ``densenet121``, ``small_resnet``, ``conv_autoencoder``) exactly.
  They are converted once to ``model.safetensors``.
* ``.safetensors``: the same, without any unpickling at all.

The card is written with its weights sha256 and manifest (:func:`write_card`); the
folder is built aside and moved into place only when the model loads and runs.
Nothing here prints: errors are one-line :class:`ModelError`.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from pathlib import Path
from typing import Any

from medview.modelcards import IMAGE_TASKS, METADATA_FILE, ModelError, sha256_file, write_card

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_BYTES = 4 << 30  # 4 GiB: a larger file is not a model we can hold anyway
_NESTED = ("state_dict", "model_state_dict", "model")


def _read_card(card_path: str | Path) -> dict[str, Any]:
    path = Path(card_path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model card ({exc})", path) from None
    if not isinstance(meta, dict):
        raise ModelError("model card is not a JSON object", path)
    return meta


def _source(file: str | Path) -> tuple[Path, str]:
    """The model file and its format, refusing what cannot be a model file."""
    src = Path(file)
    if not src.is_file():
        raise ModelError("no such model file (a regular file is needed)", src)
    if src.stat().st_size > MAX_BYTES:
        raise ModelError("model file is larger than 4 GiB", src)
    suffix = src.suffix.lower()
    if suffix == ".onnx":
        return src, "onnx"
    if suffix in TORCH_SUFFIXES:
        return src, "torch"
    if suffix == ".safetensors":
        return src, "safetensors"
    raise ModelError(
        f"unknown model file type {suffix or '(none)'!r} (.onnx, .safetensors, "
        f"{', '.join(TORCH_SUFFIXES)})",
        src,
    )


def load_checkpoint(src: Path) -> dict[str, Any]:
    """Tensors of a PyTorch checkpoint, read with the tensor-only unpickler."""
    import torch

    try:
        obj = torch.load(str(src), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, bad zip, truncated file...
        raise ModelError(
            "not a plain tensor checkpoint: the tensor-only loader (weights_only=True) "
            f"refused it, nothing in it was run ({type(exc).__name__}: {exc})",
            src,
        ) from None
    if isinstance(obj, dict):
        for key in _NESTED:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ModelError("checkpoint holds no state dict (a dict of tensors)", src)
    state = {
        (k[len("module.") :] if k.startswith("module.") else k): v
        for k, v in obj.items()
        if isinstance(v, torch.Tensor)
    }
    if not state:
        raise ModelError("checkpoint holds no tensors", src)
    return state


def _module_from_state(meta: dict[str, Any], state: dict[str, Any], src: Path) -> Any:
    """The card's architecture with ``state`` loaded strictly (eval mode)."""
    from medview.ai import nets

    arch = meta.get("architecture") or {}
    name = str(arch.get("name", "")) if isinstance(arch, dict) else ""
    if name not in nets.ARCHITECTURES:
        raise ModelError(
            f"architecture {name or '(none)'!r} is not a known one "
            f"({', '.join(sorted(nets.ARCHITECTURES))}); use ONNX for others",
            src,
        )
    try:
        module = nets.build(name, arch.get("params"))
        module.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - shapes or names that do not fit
        raise ModelError(f"weights do not fit architecture {name}: {exc}", src) from None
    return module.eval()


def _onnx_outputs(path: Path, meta: dict[str, Any]) -> int:
    """Run the ONNX graph once on a zero image; the number of outputs per image."""
    import numpy as np

    from medview.ai.preprocess import InputSpec

    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError(
            "ONNX models need onnxruntime (pip install 'medview[onnx]')", path
        ) from None
    spec = InputSpec.from_dict(meta.get("input") or {})
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = np.zeros((1, spec.channels, spec.height, spec.width), np.float32)
        out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own refusal
        raise ModelError(f"onnxruntime cannot run the model ({exc})", path) from None
    if out.ndim != 2 or out.shape[0] != 1:
        raise ModelError(f"ONNX output shape {list(out.shape)}: expected [N, K] logits", path)
    return int(out.shape[1])


def _stage(src: Path, fmt: str, meta: dict[str, Any], tmp: Path) -> None:
    """Write the weights and the card into ``tmp``."""
    from medview.ai.registry import write_model

    if fmt == "onnx":
        k = _onnx_outputs(src, meta)
        shutil.copyfile(src, tmp / "model.onnx")
        meta["architecture"] = {"name": "onnx", "params": {"num_outputs": k}}
        wp = tmp / "model.onnx"
        meta["weights"] = {
            "file": wp.name,
            "format": "onnx",
            "sha256": sha256_file(wp),
            "bytes": wp.stat().st_size,
        }
        write_card(tmp, meta)
        return
    if fmt == "torch":
        state = load_checkpoint(src)
    else:
        try:
            from safetensors.torch import load_file

            state = dict(load_file(str(src), device="cpu"))
        except Exception as exc:  # noqa: BLE001 - not a safetensors file
            raise ModelError(f"cannot read the safetensors file ({exc})", src) from None
    write_model(tmp, _module_from_state(meta, state, src), meta)


def import_model(
    file: str | Path,
    card_path: str | Path,
    root: str | Path | None = None,
    name: str | None = None,
    force: bool = False,
) -> Any:
    """Import ``file`` with the card ``card_path`` into ``root`` (the user models folder).

    Returns the registered :class:`~medview.ai.registry.ModelInfo` (weights verified,
    the model loaded once and run on a zero image).
    """
    from medview.ai.registry import read_model_folder
    from medview.paths import user_models_dir

    src, fmt = _source(file)
    meta = _read_card(card_path)
    meta.pop("manifest", None)
    if name:
        meta["name"] = name
    model_name = str(meta.get("name") or "")
    if not model_name or Path(model_name).name != model_name or model_name.startswith("."):
        raise ModelError(f"model name {model_name!r} must be a plain folder name", card_path)
    if meta.get("task") not in IMAGE_TASKS:
        raise ModelError(f"task must be one of {', '.join(IMAGE_TASKS)}", card_path)
    meta.setdefault("version", "1.0.0")
    meta["weights"] = {}
    meta["imported"] = {
        "from": src.name,
        "format": fmt,
        "source_sha256": sha256_file(src),
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loader": "onnxruntime"
        if fmt == "onnx"
        else "torch.load(weights_only=True)"
        if fmt == "torch"
        else "safetensors",
    }
    base = Path(root) if root is not None else user_models_dir()
    dest = base / model_name
    if (dest / METADATA_FILE).exists() and not force:
        raise ModelError("a model of this name is already imported (--force replaces it)", dest)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".import-{model_name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _stage(src, fmt, meta, tmp)
        info = read_model_folder(tmp, "user")
        _smoke(info)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return read_model_folder(dest, "user")


def _smoke(info: Any) -> None:
    """Load the staged model and run it on one zero image (labels must fit the outputs)."""
    from medview.ai.inference import LoadedModel

    lm = LoadedModel(info, "cpu")  # runs a warm-up forward pass
    if info.task == "classification" and info.labels:
        import numpy as np

        spec = lm.spec
        p = lm.probabilities(np.zeros((1, spec.channels, spec.height, spec.width), np.float32))
        if p.shape[1] != len(info.labels):
            raise ModelError(
                f"{p.shape[1]} outputs but {len(info.labels)} labels", info.metadata_path
            )


def remove_model(name: str, root: str | Path | None = None) -> Path:
    """Delete the user model ``name`` (by card name or folder name); bundled ones stay."""
    from medview.ai.registry import scan_models
    from medview.paths import user_models_dir

    base = (Path(root) if root is not None else user_models_dir()).resolve()
    found, broken = scan_models()
    folder: Path | None = None
    if name in found and found[name].source == "user":
        folder = found[name].folder
    elif (base / name / METADATA_FILE).exists():
        folder = base / name
    if folder is None:
        if name in found:
            raise ModelError(f"{name!r} is a bundled model; only user models can be removed")
        known = sorted(n for n, m in found.items() if m.source == "user")
        raise ModelError(f"no user model {name!r} (user models: {', '.join(known) or 'none'})")
    if not folder.resolve().is_relative_to(base):
        raise ModelError("model folder is outside the user models folder", folder)
    shutil.rmtree(folder)
    return folder
