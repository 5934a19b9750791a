"""Evaluation and calibration helpers (numpy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, balanced accuracy at ``threshold``."""
    y = np.asarray(y).astype(bool).ravel()
    pred = np.asarray(p).ravel() >= threshold
    tp = int((pred & y).sum())
    tn = int((~pred & ~y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    sens = tp / max(tp + fn, 1)
    spec = tn / max(tn + fp, 1)
    return {
        "accuracy": (tp + tn) / max(len(y), 1),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2.0,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE of the positive-class probability with equal-width bins."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(ece)


def nll(y: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits / temperature)``."""
    y = np.asarray(y, dtype=np.float64).ravel()
    z = np.asarray(logits, dtype=np.float64).ravel() / temperature
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_temperature(y: np.ndarray, logits: np.ndarray) -> float:
    """Temperature minimising the NLL (golden-section search on log T in [-3, 3])."""
    lo, hi = -3.0, 3.0
    g = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(y, logits, np.exp(a)), nll(y, logits, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(y, logits, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(y, logits, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


def balanced_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising balanced accuracy (Youden's J); prior-independent.

    Among thresholds reaching the maximum, the middle of the widest such interval
    of probabilities is taken, so the choice is not pinned to one val image.
    """
    y = np.asarray(y).astype(bool).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    cands = np.unique(np.concatenate([[0.0, 1.0], p]))
    best, best_t = -1.0, 0.5
    js = []
    for t in cands:
        m = binary_metrics(y, p, t)
        js.append(m["balanced_accuracy"])
    js_arr = np.asarray(js)
    best = js_arr.max()
    # the first maximal run of candidate thresholds -> midpoint between its bounds
    idx = np.flatnonzero(np.isclose(js_arr, best))
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    run = max(runs, key=lambda r: cands[r[-1]] - cands[max(r[0] - 1, 0)])
    lo = cands[max(run[0] - 1, 0)]  # thresholds in (lo, hi] give the same predictions
    hi = cands[run[-1]]
    best_t = float((lo + hi) / 2.0) if hi > lo else float(hi)
    return best_t
