"""Candidate models trained on REAL CGM, judged on patients they never saw.

Issue 15 item 2 asks whether a recurrent network with self-attention over the
history beats the bundled LSTM, and whether training on real data (plus the
simulator) helps. This module answers it by leave-patients-out cross-validation:

* patients of the real sets (and optionally simulated ones) are split into
  ``folds`` groups; for each group a model is trained on the OTHER patients'
  windows and predicts the group's backtest origins (exactly the origins of
  :func:`medview.forecast.evaluation.patient_backtest`, so every method is scored
  on the same points);
* ``attn_gru``: a GRU over the 3-hour window whose hidden states are pooled by
  scaled dot-product self-attention (query = the last state) before the head;
  ``real_lstm``: a plain LSTM of the same width trained on the same data, so the
  attention is judged alone.

Both predict the change over the next 5..60 min (MSE on scaled values). Training
is small on purpose (1 torch thread, a few epochs, strided windows): this is an
experiment run by ``tests/bench/bench_forecast.py``; a candidate is adopted into
the product only if it beats the methods already there on held-out patients
(docs/forecast.md has the figures; neither has been adopted).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np

from medview.forecast.lstm import HORIZON_STEPS, SCALE, WINDOW, features

KINDS = ("attn_gru", "real_lstm")


def build(kind: str, hidden: int = 32) -> Any:
    """The torch module of ``kind`` (imported lazily)."""
    import torch
    from torch import nn

    class AttnGRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(2, hidden, batch_first=True)
            self.q = nn.Linear(hidden, hidden)
            self.k = nn.Linear(hidden, hidden)
            self.head = nn.Sequential(
                nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, HORIZON_STEPS)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)  # (N, T, H)
            last = out[:, -1]
            score = (self.k(out) @ self.q(last).unsqueeze(-1)).squeeze(-1) / hidden**0.5
            ctx = (torch.softmax(score, dim=1).unsqueeze(-1) * out).sum(1)
            return self.head(torch.cat([last, ctx], dim=1))

    class RealLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(2, hidden, batch_first=True)
            self.head = nn.Sequential(
                nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, HORIZON_STEPS)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    if kind == "attn_gru":
        return AttnGRU()
    if kind == "real_lstm":
        return RealLSTM()
    raise ValueError(f"unknown model kind {kind!r}")


def fit(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    epochs: int = 4,
    seed: int = 0,
) -> Any:
    """Train ``kind`` on windows (N, WINDOW) -> targets (N, H) mg/dL (MSE, 1 thread)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build(kind)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt = torch.from_numpy(features(train_x))
    yt = torch.from_numpy(((train_y - train_x[:, -1:]) / SCALE).astype(np.float32))
    for _ in range(epochs):
        order = rng.permutation(len(xt))
        for i in range(0, len(order), 256):
            b = torch.from_numpy(order[i : i + 256])
            opt.zero_grad()
            loss = torch.mean((net(xt[b]) - yt[b]) ** 2)
            loss.backward()
            opt.step()
    return net


def fit_predict(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    epochs: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Train ``kind`` (:func:`fit`) and predict ``test_x`` (mg/dL, (N, H))."""
    import torch

    net = fit(kind, train_x, train_y, epochs, seed)
    with torch.no_grad():
        out = net(torch.from_numpy(features(test_x))).numpy()
    return np.asarray(test_x[:, -1:] + SCALE * out, dtype=np.float64)


def training_windows(grid: np.ndarray, stride: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Every ``stride``-th complete window of a patient's grid (inputs, targets)."""
    from medview.forecast.baselines import make_windows

    x, y, _ = make_windows(grid, WINDOW, HORIZON_STEPS, stride=stride)
    return x, y


def leave_patients_out(
    bts: list[Any],
    extra: list[np.ndarray] | None = None,
    kinds: tuple[str, ...] = KINDS,
    folds: int = 3,
    epochs: int = 4,
    log: Any = None,
) -> dict[str, Any]:
    """Add ``preds[kind]`` to every backtest ``bts`` (leave-patients-out); timings.

    ``extra``: grids of other series (e.g. simulated patients) always in training.
    Returns ``{"train_s": {kind: seconds}, "windows": per-fold training windows}``.
    """
    order = np.argsort([zlib.crc32(b.patient.encode()) for b in bts], kind="stable")
    fold_of = {int(i): k % folds for k, i in enumerate(order)}
    data = [training_windows(b.grid) for b in bts]
    ext = [training_windows(g) for g in (extra or [])]
    timing: dict[str, float] = {k: 0.0 for k in kinds}
    sizes = []
    for f in range(folds):
        tr = [data[i] for i in range(len(bts)) if fold_of[i] != f] + ext
        te = [i for i in range(len(bts)) if fold_of[i] == f]
        if not te:
            continue
        tx = np.concatenate([d[0] for d in tr if len(d[0])]).astype(np.float32)
        ty = np.concatenate([d[1] for d in tr if len(d[1])]).astype(np.float32)
        sizes.append(int(len(tx)))
        test_x = np.concatenate([bts[i].x for i in te]).astype(np.float32)
        bounds = np.cumsum([0] + [len(bts[i].x) for i in te])
        for kind in kinds:
            t0 = time.perf_counter()
            pred = fit_predict(kind, tx, ty, test_x, epochs=epochs, seed=f)
            timing[kind] += time.perf_counter() - t0
            for j, i in enumerate(te):
                bts[i].preds[kind] = pred[bounds[j] : bounds[j + 1]]
            if log is not None:
                log(f"fold {f + 1}/{folds} {kind}: {len(tx)} windows, {timing[kind]:.0f} s so far")
    return {"train_s": timing, "windows": sizes}


__all__ = ["KINDS", "build", "fit", "fit_predict", "leave_patients_out"]
