"""Running registered models on images: batches, devices, timings, explanations.

* :class:`LoadedModel` wraps a verified model on a device (CUDA with fp16
  autocast, Apple MPS, or CPU with channels_last and ``inference_mode``).
* :func:`analyze_images` runs models over 2-D display images in batches (CT series
  slice by slice, so memory stays bounded by one batch), reporting progress,
  partial results and honouring cancellation through a :class:`~medview.tasks.TaskState`.
* :func:`analyze_path` does the same for a file or folder (anything
  :mod:`medview.io` opens), collecting one-line problems instead of failing.

Every :class:`AIResult` names the device that ran it and the elapsed time.
torch is imported lazily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medview.ai import reliability
from medview.ai.preprocess import InputSpec, SourceImage, center_crop, prepare
from medview.ai.registry import ModelError, ModelInfo, get_model
from medview.disclaimers import AI as DISCLAIMER
from medview.tasks import TaskState, ensure_state


@dataclass(eq=False)
class AIResult:
    """One model's output for one 2-D image (compared by identity: it holds arrays)."""

    path: str
    model: str
    version: str
    task: str
    device: str
    elapsed_ms: float
    index: int = 0
    key: str = ""
    probabilities: dict[str, float] | None = None
    predicted: str | None = None
    threshold: float | None = None
    anomaly_score: float | None = None
    heatmap: np.ndarray | None = None  # float32 [0, 1] at the model's input size
    heatmap_kind: str | None = None  # "grad-cam" | "anomaly"
    latent: np.ndarray | None = None  # embedding: AE latent / classifier pooled features
    source_shape: tuple[int, int] | None = None  # (H, W) of the display image
    disclaimer: str = DISCLAIMER
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # intended-use verdict (medview.ai.scope.check_scope): False when a known image
    # property is outside the model card's criteria; reasons also state unknowns
    in_scope: bool = True
    scope_reasons: list[str] = field(default_factory=list)
    heatmap_label: str | None = None  # e.g. "Grad-CAM for class 'pneumonia'"
    # in-distribution verdict (medview.ai.ood: calibrated on the training split); None
    # when the card declares no check. The raw figure is still reported.
    in_distribution: bool | None = None
    distribution_reason: str = ""
    # test-time-augmentation spread (std over shifted views) per probability / score
    uncertainty: dict[str, float] | None = None

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON line (keys that do not apply are null)."""
        return {
            "path": self.path,
            "index": self.index,
            "slice": self.index + 1,  # 1-based, as the viewer and the AI table number slices
            "model": self.model,
            "version": self.version,
            "device": self.device,
            "probabilities": _rounded(self.probabilities),
            "predicted": self.predicted,
            "threshold": self.threshold,
            "anomaly_score": None if self.anomaly_score is None else round(self.anomaly_score, 6),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "disclaimer": self.disclaimer,
            "warnings": list(self.warnings),
            "in_scope": bool(self.in_scope),
            "scope_reasons": list(self.scope_reasons),
            "heatmap_label": self.heatmap_label,
            "in_distribution": self.in_distribution,
            "in_distribution_reason": self.distribution_reason,
            "uncertainty": _rounded(self.uncertainty),
        }

    def overlay_heatmap(self) -> np.ndarray | None:
        """The heat map placed over the full display image (zeros outside the crop)."""
        if self.heatmap is None or self.source_shape is None:
            return None
        return heatmap_to_source(self.heatmap, self.source_shape)


def _rounded(values: dict[str, float] | None) -> dict[str, float] | None:
    """A figure per label rounded to 6 decimals for JSON (None stays None)."""
    return None if values is None else {k: round(float(v), 6) for k, v in values.items()}


def heatmap_to_source(hm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo the centre crop + resize: model-size map -> float32 map of ``shape``."""
    from PIL import Image

    h, w = shape
    aspect = hm.shape[1] / hm.shape[0]
    probe = center_crop(np.zeros((h, w), np.uint8), aspect)
    ch, cw = probe.shape
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    if w / h > aspect:
        y0 = 0
    else:
        x0 = 0
    im = Image.fromarray(np.asarray(hm, np.float32), mode="F").resize(
        (cw, ch), Image.Resampling.BILINEAR
    )
    out = np.zeros((h, w), np.float32)
    out[y0 : y0 + ch, x0 : x0 + cw] = np.clip(np.asarray(im), 0.0, 1.0)
    return out


# -- loaded models -----------------------------------------------------------------


_cache_lock = threading.Lock()
_loaded: dict[tuple[str, str, str, str], LoadedModel] = {}


class LoadedModel:
    """A verified model on a device, ready for batched inference."""

    def __init__(self, info: ModelInfo, device: str = "auto", optimize: bool = True) -> None:
        import torch

        from medview.ai.devices import configure_cpu_threads, resolve_device

        self.info = info
        self.spec: InputSpec = info.input_spec
        self.device = resolve_device(device)
        if self.device.type == "cpu":
            configure_cpu_threads()
        self.module = info.load_module(str(self.device))
        self.channels_last = optimize and self.device.type == "cpu"
        if self.channels_last:  # conv + batch norm as one convolution (our own nets)
            from medview.ai.nets import FOLDABLE, fold_batchnorm

            if info.meta["architecture"].get("name") in FOLDABLE:
                self.module = fold_batchnorm(self.module.eval())
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self.amp = optimize and self.device.type == "cuda"
        out = info.output
        self.temperature = float(out.get("temperature", 1.0))
        self.labels = list(out.get("labels", []))
        self.threshold = info.threshold
        self.map_scale = float(out.get("map_scale", 1.0))
        self.score_method = str(out.get("score_method", "mse"))
        self.multilabel = str(out.get("type", "")) in ("sigmoid", "multilabel")
        self.lock = threading.Lock()  # one batch at a time per loaded model
        from medview.ai.ood import load_check

        self.ood = load_check(info)  # verifies the calibration file's sha256
        self.shifts = reliability.tta_shifts(out)
        tta = out.get("tta")
        self.tta_average = bool(isinstance(tta, dict) and tta.get("average")) and bool(self.shifts)
        self.helpers: dict[str, LoadedModel] = {}  # e.g. the autoencoder the check uses
        self._warm_up()

    def _warm_up(self) -> None:
        """One dummy forward pass, so lazy initialisation is not billed to an image."""
        x = np.zeros((1, self.spec.channels, self.spec.height, self.spec.width), np.float32)
        if self.info.task == "classification":
            self.probabilities(x)
        else:
            self.anomaly(x)

    @property
    def device_name(self) -> str:
        return str(self.device)

    def _tensor(self, x: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- classification ---------------------------------------------------------
    def probabilities(self, x: np.ndarray, average: bool = True) -> np.ndarray:
        """(N, C, H, W) model input -> (N, K) calibrated class probabilities.

        A card with ``output.tta.average`` gives the probability of the mean logit over
        the original and shifted views (as every result reports it) unless ``average``
        is False (one view).
        """
        import torch

        if average and self.tta_average:
            return reliability.view_probabilities(self, reliability.views(x, self.shifts), len(x))[
                0
            ]
        with self.lock, torch.inference_mode(), self._autocast():
            z = self.module(self._tensor(x)).float() / self.temperature
            return self._to_probs(z).cpu().numpy().astype(np.float64)

    def _to_probs(self, z: Any) -> Any:
        """Logits -> probabilities: 1 output = binary sigmoid (2 columns); K outputs =
        softmax, or K independent sigmoids for a multi-label card (``output.type``
        ``sigmoid``/``multilabel`` with K > 1, e.g. chest X-ray DenseNets' 18 findings)."""
        import torch

        if z.shape[1] == 1:
            p1 = torch.sigmoid(z[:, 0])
            return torch.stack([1.0 - p1, p1], dim=1)
        if self.multilabel:
            return torch.sigmoid(z)
        return torch.softmax(z, dim=1)

    def classify(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities as :meth:`probabilities`, plus the pooled last-stage features.

        Features are None for modules without ``forward_features``/``forward_head``.
        """
        import torch

        m = self.module
        if not (hasattr(m, "forward_features") and hasattr(m, "forward_head")):
            return self.probabilities(x), None
        with self.lock, torch.inference_mode(), self._autocast():
            f = m.forward_features(self._tensor(x))
            z = m.forward_head(f).float() / self.temperature
            p = self._to_probs(z)
            feats = f.float().mean(dim=(2, 3))
            return p.cpu().numpy().astype(np.float64), feats.cpu().numpy().astype(np.float64)

    @property
    def is_ensemble(self) -> bool:
        """Whether the module is an ensemble (``member_logits``: spread over members)."""
        return hasattr(self.module, "member_logits") and hasattr(self.module, "forward_features")

    def predicted(self, p: np.ndarray) -> str:
        """Label decided by the card's threshold on the positive class (binary)."""
        if len(self.labels) == 2 and self.threshold is not None:
            return self.labels[1] if p[1] >= self.threshold else self.labels[0]
        return self.labels[int(np.argmax(p))] if self.labels else str(int(np.argmax(p)))

    def gradcam(self, x: np.ndarray, target: int | None = None) -> np.ndarray:
        """Grad-CAM for one image (1, C, H, W) -> float32 (H, W) in [0, 1].

        ``target`` is the class index to explain (default: the predicted one). The
        model must expose ``forward_features``/``forward_head`` (the last conv stage).
        """
        import torch
        from torch.nn import functional as F

        m = self.module
        if not hasattr(m, "forward_features"):
            raise ModelError("model does not support Grad-CAM", self.info.folder)
        with self.lock, torch.enable_grad():
            inp = self._tensor(x[:1])
            feats = m.forward_features(inp).float().detach().requires_grad_(True)
            z = m.forward_head(feats).float()
            if z.shape[1] == 1:
                if target is None:
                    p1 = float(torch.sigmoid(z[0, 0].detach() / self.temperature))
                    thr = self.threshold if self.threshold is not None else 0.5
                    target = 1 if p1 >= thr else 0
                score = z[0, 0] if target == 1 else -z[0, 0]
            else:
                target = int(z[0].argmax()) if target is None else target
                score = z[0, target]
            (grad,) = torch.autograd.grad(score, feats)
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * feats).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=inp.shape[-2:], mode="bilinear", align_corners=False)
            cam = cam[0, 0]
            cam = cam.detach()
            peak = float(cam.max())
            cam = cam / peak if peak > 0 else cam
            return cam.detach().cpu().numpy().astype(np.float32)

    # -- anomaly -----------------------------------------------------------------
    def anomaly(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, C, H, W) -> (scores (N,), maps (N, H, W) in [0, 1], latents (N, D))."""
        scores, maps, z, _ = self.anomaly_full(x)
        return scores, maps, z

    def anomaly_full(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`anomaly` plus the mean squared reconstruction error (N,)."""
        import torch

        m = self.module
        with self.lock, torch.inference_mode(), self._autocast():
            scores, err, z = m.analyse(self._tensor(x), self.score_method)
            maps = (err / self.map_scale).clamp(0.0, 1.0)
            return (
                scores.float().cpu().numpy().astype(np.float64),
                maps.float().cpu().numpy().astype(np.float32),
                z.float().cpu().numpy().astype(np.float32),
                err.float().flatten(1).mean(dim=1).cpu().numpy().astype(np.float64),
            )


def load_model(model: str | ModelInfo, device: str = "auto") -> LoadedModel:
    """A cached :class:`LoadedModel` (keyed by folder, version, weights hash, device)."""
    info = model if isinstance(model, ModelInfo) else get_model(model)
    from medview.ai.devices import resolve_device

    dev = str(resolve_device(device))
    key = (str(info.folder), info.version, info.manifest_sha256, dev)  # card + weights
    with _cache_lock:
        lm = _loaded.get(key)
    if lm is None:
        lm = LoadedModel(info, dev)  # verifies the sha256
        with _cache_lock:
            _loaded[key] = lm
    return lm


# -- running over images -------------------------------------------------------------


def image_warnings(info: ModelInfo, src: SourceImage) -> list[str]:
    """Warnings about this image: intended-use violations, polarity inversion."""
    from medview.ai.preprocess import looks_negative, to_gray_u8

    in_scope, reasons = image_scope(info, src)
    out = [] if in_scope else [r for r in reasons if "outside intended use" in r]
    if info.input_spec.polarity == "chest-auto" and looks_negative(to_gray_u8(src.image)):
        out.append("image looked like a negative and was inverted (polarity guard)")
    return out


def image_scope(info: ModelInfo, src: SourceImage) -> tuple[bool, list[str]]:
    """The intended-use verdict of ``src`` for ``info`` (see :mod:`medview.ai.scope`)."""
    from medview.ai.scope import check_scope

    return check_scope(info.meta, src.meta)


def heatmap_label(info: ModelInfo, kind: str | None, target: str | None = None) -> str | None:
    """What a heat map shows, for the viewer and PNG captions (from the model card)."""
    if kind is None:
        return None
    explain = dict(info.meta.get("explain") or {})
    if kind == "grad-cam":
        return f"Grad-CAM for class '{target}'" if target else "Grad-CAM"
    text = str(explain.get("map_label") or "Anomaly map (autoencoder reconstruction error)")
    nv = explain.get("not_validated_for")
    return f"{text}; not validated for {nv}" if nv else text


def run_batch(
    lm: LoadedModel, images: Sequence[SourceImage], heatmaps: bool = False
) -> list[AIResult]:
    """One model on a batch of display images; elapsed_ms is per image (batch / N)."""
    t0 = time.perf_counter()
    x = np.stack([prepare(s.image, lm.spec) for s in images])
    info = lm.info

    def result(s: SourceImage, per_ms: float, verdict: Any, **task_fields: Any) -> AIResult:
        """The fields every task shares (intended-use verdict included), plus the task's own."""
        in_scope, reasons = image_scope(info, s)
        return AIResult(
            in_distribution=verdict[0],
            distribution_reason=verdict[1],
            path=s.path,
            index=s.index,
            key=s.key,
            model=info.name,
            version=info.version,
            task=info.task,
            device=lm.device_name,
            elapsed_ms=per_ms,
            threshold=lm.threshold,
            source_shape=tuple(s.image.shape[:2]),
            warnings=image_warnings(info, s),
            in_scope=in_scope,
            scope_reasons=reasons,
            **task_fields,
        )

    if info.task == "classification":
        probs, spread, feats = reliability.classify(lm, x)
        verdicts = reliability.distribution(lm, x, features=feats)
        labels = lm.labels
        predicted = [lm.predicted(p) for p in probs]
        cams: list[np.ndarray | None] = [None] * len(images)
        if heatmaps and hasattr(lm.module, "forward_features"):  # explain the predicted class
            cams = [
                lm.gradcam(x[i : i + 1], target=_class_index(labels, predicted[i]))
                for i in range(len(images))
            ]
        lm._sync()
        per = (time.perf_counter() - t0) * 1000.0 / len(images)
        names = labels or [str(i) for i in range(probs.shape[1])]
        return [
            result(
                s,
                per,
                verdicts[i],
                probabilities={lab: float(v) for lab, v in zip(names, p, strict=True)},
                uncertainty=(
                    None
                    if spread is None
                    else {lab: float(v) for lab, v in zip(names, spread[i], strict=True)}
                ),
                predicted=pred,
                heatmap=cam,
                heatmap_kind="grad-cam" if cam is not None else None,
                heatmap_label=heatmap_label(info, "grad-cam", pred) if cam is not None else None,
                latent=None if feats is None else feats[i].astype(np.float32),  # similar search
            )
            for i, (s, p, pred, cam) in enumerate(zip(images, probs, predicted, cams, strict=True))
        ]
    scores, maps, latents, mse, spread = reliability.anomaly(lm, x)
    verdicts = reliability.distribution(lm, x, ae=(mse, latents))
    lm._sync()
    per = (time.perf_counter() - t0) * 1000.0 / len(images)
    thr = lm.threshold
    return [
        result(
            s,
            per,
            verdicts[i],
            predicted=None if thr is None else ("anomalous" if sc >= thr else "typical"),
            anomaly_score=float(sc),
            uncertainty=None if spread is None else {"anomaly_score": float(spread[i])},
            heatmap=mp if heatmaps else None,
            heatmap_kind="anomaly" if heatmaps else None,
            heatmap_label=heatmap_label(info, "anomaly") if heatmaps else None,
            latent=lat,
        )
        for i, (s, sc, mp, lat) in enumerate(zip(images, scores, maps, latents, strict=True))
    ]


def _class_index(labels: Sequence[str], label: str) -> int | None:
    """Index of ``label`` in ``labels`` (None: let Grad-CAM pick the predicted class)."""
    try:
        return list(labels).index(label)
    except ValueError:
        return None


def analyze_images(
    images: Iterable[SourceImage],
    models: Sequence[str | ModelInfo],
    device: str = "auto",
    batch_size: int = 32,
    heatmaps: bool = False,
    total: int | None = None,
    state: TaskState | None = None,
) -> list[AIResult]:
    """Run ``models`` over ``images`` in batches; progress/partial/cancel via ``state``.

    Each finished batch is handed to ``state.partial`` as a list of results, so a
    GUI can fill its table while a long series runs; cancellation takes effect
    between batches.
    """
    st = ensure_state(state)
    loaded = [load_model(m, device) for m in models]
    if total is None and isinstance(images, Sequence):
        total = len(images)
    out: list[AIResult] = []
    done = 0
    buf: list[SourceImage] = []

    def flush() -> None:
        nonlocal done
        st.check()
        batch_results: list[AIResult] = []
        for lm in loaded:
            batch_results.extend(run_batch(lm, buf, heatmaps=heatmaps))
        out.extend(batch_results)
        done += len(buf)
        buf.clear()
        st.partial(batch_results)
        frac = done / total if total else 0.0
        st.progress(frac, f"{done}/{total} images" if total else f"{done} images")

    for img in images:
        buf.append(img)
        if len(buf) >= batch_size:
            flush()
    if buf:
        flush()
    return out


def analyze_path(
    path: str | Path,
    models: Sequence[str | ModelInfo],
    device: str = "auto",
    batch_size: int = 32,
    heatmaps: bool = False,
    state: TaskState | None = None,
) -> tuple[list[AIResult], list[str]]:
    """Analyse every image of a file or folder; returns (results, one-line errors)."""
    from medview.ai.preprocess import iter_path_images

    errors: list[str] = []

    def images() -> Iterable[SourceImage]:
        for item in iter_path_images(path):
            if isinstance(item, Exception):
                errors.append(str(item))
            else:
                yield item

    results = analyze_images(
        images(), models, device=device, batch_size=batch_size, heatmaps=heatmaps, state=state
    )
    return results, errors


def slice_key(vol: Any, k: int) -> str:
    """A stable id of slice ``k`` of a volume for result caching.

    The SOP Instance UID for one-file-per-slice series, ``uid#frame`` for
    multi-frame files, else the file path (and frame).
    """
    n = int(vol.array.shape[0])
    instances = list(getattr(vol, "instances", None) or [])
    if instances:
        inst = instances[k] if len(instances) == n else instances[0]
        ident = getattr(inst, "sop_uid", "") or str(getattr(inst, "path", ""))
        return ident if len(instances) == n else f"{ident}#{k}"
    return f"volume-{id(vol)}#{k}"


def run_on_volume(
    vol: Any,
    indices: Sequence[int],
    models: Sequence[str | ModelInfo],
    device: str = "auto",
    batch_size: int = 16,
    heatmaps: bool = True,
    state: TaskState | None = None,
) -> list[AIResult]:
    """Run ``models`` on slices ``indices`` of a volume (the GUI's worker function).

    Slices are converted to display images one batch at a time, so memory stays
    bounded for long CT series; results have ``key`` = :func:`slice_key`.
    """
    from medview.ai.preprocess import display_image_from_volume
    from medview.ai.scope import volume_scope_meta

    meta = volume_scope_meta(vol)  # modality, body part, projection, age: the verdict's input
    name = ""
    instances = list(getattr(vol, "instances", None) or [])
    if instances:
        name = str(getattr(instances[0], "path", ""))

    def images() -> Iterable[SourceImage]:
        for k in indices:
            inst_path = name
            if len(instances) == vol.array.shape[0]:
                inst_path = str(getattr(instances[k], "path", name))
            yield SourceImage(
                path=inst_path,
                index=k,
                image=display_image_from_volume(vol, k),
                key=slice_key(vol, k),
                meta=dict(meta),
            )

    return analyze_images(
        images(),
        models,
        device=device,
        batch_size=batch_size,
        heatmaps=heatmaps,
        total=len(indices),
        state=state,
    )
