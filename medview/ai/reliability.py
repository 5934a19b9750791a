"""How far to trust one output: test-time-augmentation spread and the in-distribution check.

* **Uncertainty** (:func:`classify`, :func:`anomaly`): an ensemble classifier
  (:class:`medview.ai.nets.Ensemble`) reports the standard deviation of each calibrated
  probability over its members (one forward pass of the original image each; no
  shifted views). Other models also run on two
  copies of the input shifted by one pixel diagonally, one each way (three views in
  one batch of 3: at batch 5 the 28x28 nets cost 3-10x batch 1 on this CPU, at 3 about
  2x; tests/bench/bench_ai.py). Edges are replicated; no flips: a mirrored
  chest film is not a plausible input, and the bundled nets have no dropout to
  sample). The reported figure is the standard deviation of each probability (or
  of the anomaly score) over the original and the shifted views. The reported
  probability is the original view's, or, when the card says ``output.tta.average``
  (the bundled classifier), that of the mean calibrated logit over all views (the
  temperature was fitted on that mean). All views run in one batch. A card may set
  its own shifts in ``output.tta.shifts`` (``[[dy, dx], ...]``; ``[]`` turns the
  spread off).
* **In distribution** (:func:`distribution`): the card's calibrated check
  (:mod:`medview.ai.ood`), fed with the classifier's pooled features and the
  autoencoder's reconstruction error and latent vector.

numpy here; the models run through :class:`medview.ai.inference.LoadedModel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from medview.ai.inference import LoadedModel

DEFAULT_SHIFTS: tuple[tuple[int, int], ...] = ((1, 1), (-1, -1))
Verdict = tuple[bool | None, str]


def tta_shifts(output: dict[str, Any]) -> list[tuple[int, int]]:
    """The card's TTA shifts (``output.tta.shifts``), else :data:`DEFAULT_SHIFTS`."""
    tta = output.get("tta")
    if isinstance(tta, dict) and isinstance(tta.get("shifts"), list):
        return [(int(a), int(b)) for a, b in tta["shifts"]][:8]
    return list(DEFAULT_SHIFTS)


def shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(N, C, H, W) shifted by (dy, dx) pixels, edges replicated."""
    h, w = x.shape[-2:]
    py, px = abs(dy), abs(dx)
    pad = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px)), mode="edge")
    y0, x0 = py - dy, px - dx
    return np.ascontiguousarray(pad[:, :, y0 : y0 + h, x0 : x0 + w])


def views(x: np.ndarray, shifts: list[tuple[int, int]]) -> np.ndarray:
    """The input followed by each shifted copy, as one batch (N * (1 + S), C, H, W)."""
    return np.concatenate([x] + [shifted(x, dy, dx) for dy, dx in shifts], axis=0)


def classify(lm: LoadedModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(probabilities (N, K), spread (N, K) or None, pooled features (N, F) or None).

    The spread is the std over the members of an ensemble (one view each), else over
    the TTA views.
    """
    n = len(x)
    if lm.is_ensemble:
        p_ens, f_ens, per_member = member_probabilities(lm, x)
        return p_ens, per_member.std(axis=0), f_ens
    if lm.tta_average:  # the probability of the mean logit over the views
        p_avg, f_avg, per_view = view_probabilities(lm, views(x, lm.shifts), n)
        return p_avg, per_view.std(axis=0), f_avg
    p_all, feats = lm.classify(views(x, lm.shifts) if lm.shifts else x)
    p = p_all[:n]
    spread = p_all.reshape(-1, n, p.shape[1]).std(axis=0) if lm.shifts else None
    return p, spread, (None if feats is None else feats[:n])


def member_probabilities(
    lm: LoadedModel, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ensemble's (probabilities (N, K), pooled features (N, F), each member's
    probabilities (M, N, K)) in one pass, calibrated with the card's temperature."""
    import torch

    m = lm.module
    with lm.lock, torch.inference_mode(), lm._autocast():
        f = m.forward_features(lm._tensor(x))
        zk = m.member_logits(f).float() / lm.temperature
        p = lm._to_probs(zk.mean(dim=0))
        pk = torch.stack([lm._to_probs(z) for z in zk])
        feats = f.float().mean(dim=(2, 3))
        return _np(p), _np(feats), _np(pk)


def view_probabilities(
    lm: LoadedModel, xv: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``n`` images as V views in one batch (:func:`views`) -> (probabilities of the mean
    calibrated logit (n, K), pooled features of the first view (n, F) or None, each
    view's probabilities (V, n, K))."""
    import torch

    m = lm.module
    split = hasattr(m, "forward_features") and hasattr(m, "forward_head")
    with lm.lock, torch.inference_mode(), lm._autocast():
        t = lm._tensor(xv)
        f = m.forward_features(t) if split else None
        z = (m.forward_head(f) if split else m(t)).float() / lm.temperature
        zv = z.reshape(-1, n, z.shape[1])
        p = lm._to_probs(zv.mean(dim=0))
        pv = torch.stack([lm._to_probs(v) for v in zv])
        feats = None if f is None else _np(f[:n].float().mean(dim=(2, 3)))
        return _np(p), feats, _np(pv)


def _np(t: Any) -> np.ndarray:
    """A torch tensor as float64 numpy on the CPU."""
    return np.asarray(t.cpu().numpy(), dtype=np.float64)


def anomaly(
    lm: LoadedModel, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(scores, maps, latents, reconstruction mse, TTA std of the score or None)."""
    n = len(x)
    scores, maps, z, mse = lm.anomaly_full(views(x, lm.shifts) if lm.shifts else x)
    spread = scores.reshape(-1, n).std(axis=0) if lm.shifts else None
    return scores[:n], maps[:n], z[:n], mse[:n], spread


def distribution(
    lm: LoadedModel,
    x: np.ndarray,
    features: np.ndarray | None = None,
    ae: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Verdict]:
    """Per image (in_distribution, reason); (None, why) when the card has no check.

    ``ae`` = (reconstruction mse, latents) when ``lm`` is the autoencoder itself.
    """
    from medview.ai.ood import Scores
    from medview.errors import MedviewError

    check = lm.ood
    if check is None:
        return [(None, "model card declares no in-distribution check")] * len(x)
    try:
        if check.needs_ae and ae is None:
            ae = _ae_outputs(lm, check.uses_model, x)
        scores = Scores(
            x=x,
            ae_mse=None if ae is None else ae[0],
            ae_latent=None if ae is None else ae[1],
            features=features,
        )
        return [(ok, why) for ok, why, _ in check.verdicts(scores)]
    except (MedviewError, ValueError) as exc:
        return [(None, f"in-distribution check unavailable: {exc}")] * len(x)


def _ae_outputs(lm: LoadedModel, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction mse and latents of ``x`` from the autoencoder the check uses."""
    from medview.ai.inference import load_model

    if not name or name == lm.info.name:
        ae = lm
    else:  # resolved once per loaded model: the registry reads every card from disk
        ae = lm.helpers.get(name) or lm.helpers.setdefault(name, load_model(name, str(lm.device)))
    _, _, z, mse = ae.anomaly_full(x)
    return mse, z
