"""The bundled glucose LSTM: definition, safe loading and numpy inference.

The network reads the last 3 hours of CGM on a 5-minute grid (36 steps; per step
the scaled glucose and its 5-minute change) and outputs, for each of the next 12
steps (5 to 60 minutes), the 10 %, 50 % and 90 % quantiles of the change from the
last reading. The 80 % interval is then widened (or narrowed) per horizon by a
split-conformal correction computed at training time on calibration days of the
training patients (never on the held-out patients).

Training uses torch (:mod:`medview.forecast.train`); inference here is plain
numpy, so a forecast in the GUI does not pay for importing torch. Weights are
safetensors; the card (``metadata.json``, the one schema of :mod:`medview.modelcards`)
is validated and the weights' sha256 checked against it before loading.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medview.modelcards import METADATA_FILE, ModelError, read_card, sha256_file

MODEL_NAME = "glucose_lstm"
WINDOW = 36  # input steps (3 h at 5 min)
HORIZON_STEPS = 12  # output steps (5..60 min)

#: The ``input`` block of the glucose model cards: both networks (this LSTM and the
#: real-data network of ``realnet``) take the same window and features.
CARD_INPUT: dict[str, Any] = {
    "description": "last 3 h of CGM glucose in mg/dL on a 5-minute grid (36 values; "
    "gaps up to 30 min interpolated); no insulin, carbohydrate or time-of-day inputs",
    "window": WINDOW,
    "step_min": 5,
    "unit": "mg/dL",
    "features": ["(glucose - 140) / 50", "5-min change of that x 5"],
}
QUANTILES = (0.1, 0.5, 0.9)
CENTER = 140.0  # mg/dL
SCALE = 50.0  # mg/dL
DIFF_SCALE = 5.0  # the 5-minute change is multiplied by this after scaling


def features(windows: np.ndarray) -> np.ndarray:
    """(N, WINDOW) mg/dL -> (N, WINDOW, 2) network input."""
    x = (np.asarray(windows, dtype=np.float32) - CENTER) / SCALE
    dx = np.zeros_like(x)
    dx[:, 1:] = (x[:, 1:] - x[:, :-1]) * DIFF_SCALE
    return np.stack([x, dx], axis=-1)


def build_torch_model(hidden: int = 64, layers: int = 2) -> Any:
    """The torch module (training only). Imported lazily."""
    import torch
    from torch import nn

    class GlucoseLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(2, hidden, num_layers=layers, batch_first=True)
            self.head1 = nn.Linear(hidden, hidden)
            self.head2 = nn.Linear(hidden, HORIZON_STEPS * 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            z = torch.relu(self.head1(out[:, -1]))
            raw = self.head2(z).view(-1, HORIZON_STEPS, 3)
            med = raw[..., 1]
            lo = med - nn.functional.softplus(raw[..., 0])
            hi = med + nn.functional.softplus(raw[..., 2])
            return torch.stack([lo, med, hi], dim=-1)  # scaled change from last value

    return GlucoseLSTM()


def _single_thread_blas() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, "blas")
    except Exception:  # threadpoolctl missing: run as is
        return contextlib.nullcontext()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lstm_layer(x: np.ndarray, w: dict[str, np.ndarray], names: str) -> np.ndarray:
    """One torch-style LSTM layer (gate order i, f, g, o) over (N, T, F) -> states (N, T, H).

    ``names`` formats a weight name, e.g. ``"lstm.{}_l0"`` -> ``lstm.weight_ih_l0``."""
    whh = w[names.format("weight_hh")]
    hidden = whh.shape[1]
    b = w[names.format("bias_ih")] + w[names.format("bias_hh")]
    n, steps = x.shape[:2]
    xs = (x.reshape(n * steps, -1) @ w[names.format("weight_ih")].T + b).reshape(n, steps, -1)
    h = np.zeros((n, hidden), dtype=np.float32)
    c = np.zeros((n, hidden), dtype=np.float32)
    out = np.empty((n, steps, hidden), dtype=np.float32)
    for t in range(steps):
        gates = xs[:, t] + h @ whh.T
        i = sigmoid(gates[:, :hidden])
        f = sigmoid(gates[:, hidden : 2 * hidden])
        g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
        o = sigmoid(gates[:, 3 * hidden :])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[:, t] = h
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


@dataclass
class GlucoseLSTM:
    """Numpy inference of the trained network plus its conformal correction."""

    weights: dict[str, np.ndarray]
    layers: int
    conformal_mgdl: np.ndarray = field(default_factory=lambda: np.zeros(HORIZON_STEPS))
    metadata: dict[str, Any] = field(default_factory=dict)

    def raw(self, windows: np.ndarray, batch: int = 4096) -> np.ndarray:
        """(N, WINDOW) mg/dL -> (N, HORIZON_STEPS, 3) quantiles in mg/dL (uncorrected)."""
        windows = np.asarray(windows, dtype=np.float32)
        with _single_thread_blas():  # small matmuls: BLAS threads only add overhead
            outs = [self._forward(windows[i : i + batch]) for i in range(0, len(windows), batch)]
        if not outs:
            return np.zeros((0, HORIZON_STEPS, 3), dtype=np.float32)
        out = np.concatenate(outs)
        return windows[:, -1, None, None] + SCALE * out

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Quantiles (10 %, 50 %, 90 %) in mg/dL with the calibrated 80 % interval."""
        q = self.raw(windows)
        c = self.conformal_mgdl[None, :]
        q[..., 0] -= c
        q[..., 2] += c
        q[..., 0] = np.minimum(q[..., 0], q[..., 1])
        q[..., 2] = np.maximum(q[..., 2], q[..., 1])
        return q

    def _forward(self, windows: np.ndarray) -> np.ndarray:
        w = self.weights
        h_seq = features(windows)
        n = len(windows)
        for layer in range(self.layers):
            h_seq = lstm_layer(h_seq, w, f"lstm.{{}}_l{layer}")
        z = np.maximum(h_seq[:, -1] @ w["head1.weight"].T + w["head1.bias"], 0.0)
        raw = (z @ w["head2.weight"].T + w["head2.bias"]).reshape(n, HORIZON_STEPS, 3)
        med = raw[..., 1]
        lo = med - _softplus(raw[..., 0])
        hi = med + _softplus(raw[..., 2])
        return np.stack([lo, med, hi], axis=-1).astype(np.float32)


def default_model_dir(name: str = MODEL_NAME) -> Path:
    """The folder of model ``name``: the user's one wins over the bundled one when it
    holds that model."""
    from medview.paths import bundled_models_dir, user_models_dir

    user = user_models_dir() / name
    if (user / METADATA_FILE).exists():
        return user
    return bundled_models_dir() / name


_CACHE: dict[str, GlucoseLSTM] = {}


def load_model(model_dir: str | Path | None = None) -> GlucoseLSTM:
    """Load the card + ``model.safetensors`` after validating it and checking the sha256."""
    folder = Path(model_dir) if model_dir else default_model_dir()
    if not (folder / METADATA_FILE).exists():
        raise ModelError("glucose LSTM not found (run 'medview train glucose-lstm')", folder)
    card = read_card(folder)
    if card.task != "forecast":
        raise ModelError(f"not a forecast model (task {card.task!r})", card.metadata_path)
    if not card.weights_path.is_file():
        raise ModelError(
            "glucose LSTM weights not found (run 'medview train glucose-lstm')", card.weights_path
        )
    key = f"{folder.resolve()}:{sha256_file(card.weights_path)}"
    if key in _CACHE:
        return _CACHE[key]
    conformal = np.asarray(
        card.output.get("conformal_mgdl", [0.0] * HORIZON_STEPS), dtype=np.float32
    )
    if conformal.shape != (HORIZON_STEPS,):
        raise ModelError(
            f"output.conformal_mgdl must have {HORIZON_STEPS} values", card.metadata_path
        )
    weights = {k: v.astype(np.float32) for k, v in card.load_tensors("numpy").items()}
    model = GlucoseLSTM(weights, int(card.params.get("layers", 2)), conformal, card.meta)
    _CACHE[key] = model
    return model
