"""The glucose network trained on REAL CGM: numpy inference, safe loading, fingerprints.

``models/glucose_real`` holds a small recurrent network (the winner of the
leave-patients-out comparison of :mod:`medview.forecast.attention`: a GRU with
scaled dot-product self-attention over the 3-hour history, or a plain LSTM of the
same width) trained on every patient of the public real sets (Hall 2018, D1NAMO)
plus simulated type 1 patients, by :mod:`medview.forecast.realtrain`
(``medview train glucose``). It predicts the change of glucose over the next
5..60 minutes (point forecast; the 80 % interval comes from the split-conformal
table in its card, computed on out-of-fold predictions of patients each fold never
saw).

Inference is plain numpy (no torch import in the GUI); the card is validated and
the weights' sha256 checked before loading (never ``torch.load``).

Patients the shipped weights were trained on are recognised by
:func:`fingerprints` (short hashes of the readings that start each day); the card
lists them, and a backtest leaves this model out for such a patient (its figures
would be on training data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medview.forecast.lstm import (
    HORIZON_STEPS,
    SCALE,
    WINDOW,
    features,
    lstm_layer,
    sigmoid,
)
from medview.forecast.lstm import default_model_dir as lstm_model_dir
from medview.modelcards import METADATA_FILE, ModelError, read_card, sha256_file

MODEL_NAME = "glucose_real"
KINDS = ("attn_gru", "real_lstm")
FINGERPRINT_BLOCK = 12  # readings hashed from each day's first reading


def _gru(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """One-layer GRU (torch gate order r, z, n) over (N, T, F) -> states (N, T, H)."""
    whh = w["rnn.weight_hh_l0"]
    hid = whh.shape[1]
    xs = x @ w["rnn.weight_ih_l0"].T + w["rnn.bias_ih_l0"]
    h = np.zeros((x.shape[0], hid), dtype=np.float32)
    out = np.empty((x.shape[0], x.shape[1], hid), dtype=np.float32)
    for t in range(x.shape[1]):
        hh = h @ whh.T + w["rnn.bias_hh_l0"]
        r = sigmoid(xs[:, t, :hid] + hh[:, :hid])
        z = sigmoid(xs[:, t, hid : 2 * hid] + hh[:, hid : 2 * hid])
        n = np.tanh(xs[:, t, 2 * hid :] + r * hh[:, 2 * hid :])
        h = (1.0 - z) * n + z * h
        out[:, t] = h
    return out


def _head(z: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    z = np.maximum(z @ w["head.0.weight"].T + w["head.0.bias"], 0.0)
    return np.asarray(z @ w["head.2.weight"].T + w["head.2.bias"], dtype=np.float32)


def forward(kind: str, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Network output (N, HORIZON_STEPS): scaled change from the last value."""
    if kind == "attn_gru":
        out = _gru(x, w)
        last = out[:, -1]
        hid = last.shape[1]
        keys = out @ w["k.weight"].T + w["k.bias"]
        query = last @ w["q.weight"].T + w["q.bias"]
        score = np.einsum("nth,nh->nt", keys, query) / np.float32(hid**0.5)
        score = np.exp(score - score.max(axis=1, keepdims=True))
        att = score / score.sum(axis=1, keepdims=True)
        ctx = np.einsum("nt,nth->nh", att, out)
        return _head(np.concatenate([last, ctx], axis=1), w)
    if kind == "real_lstm":
        return _head(lstm_layer(x, w, "rnn.{}_l0")[:, -1], w)
    raise ModelError(f"unknown network kind {kind!r} (known: {', '.join(KINDS)})")


@dataclass
class RealNet:
    """Numpy inference of the network trained on real CGM."""

    kind: str
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    trained_on: frozenset[str] = frozenset()

    @property
    def method(self) -> str:
        """The method name in backtests (``attn_gru`` or ``real_lstm``)."""
        return self.kind

    def predict(self, windows: np.ndarray, batch: int = 4096) -> np.ndarray:
        """(N, WINDOW) mg/dL -> (N, HORIZON_STEPS) point forecasts in mg/dL."""
        windows = np.asarray(windows, dtype=np.float32)
        if len(windows) == 0:
            return np.zeros((0, HORIZON_STEPS))
        outs = [
            forward(self.kind, self.weights, features(windows[i : i + batch]))
            for i in range(0, len(windows), batch)
        ]
        return np.asarray(windows[:, -1:] + SCALE * np.concatenate(outs), dtype=np.float64)

    def saw(self, seconds: np.ndarray, values: np.ndarray) -> bool:
        """True when this patient's readings were in the shipped weights' training data."""
        return bool(self.trained_on & set(fingerprints(seconds, values)))


def fingerprints(seconds: np.ndarray, values: np.ndarray) -> list[str]:
    """Short hashes of the 12 readings from each UTC day's first reading.

    Two recordings share a fingerprint only if they share a whole hour of identical
    readings (time to the second and value to 0.1 mg/dL) starting a day, so a file
    cut at any day still matches the patient it came from."""
    s = np.asarray(seconds, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(s) < FINGERPRINT_BLOCK:
        return []
    day = np.floor(s / 86400.0)
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    out = []
    for i in starts:
        if i + FINGERPRINT_BLOCK > len(s):
            continue
        block = ";".join(
            f"{int(round(t))}:{x:.1f}"
            for t, x in zip(s[i : i + FINGERPRINT_BLOCK], v[i : i + FINGERPRINT_BLOCK], strict=True)
        )
        out.append(hashlib.sha256(block.encode("ascii")).hexdigest()[:16])
    return out


def default_model_dir() -> Path:
    """The user's model folder wins over the bundled one when it holds this model."""
    return lstm_model_dir(MODEL_NAME)


_CACHE: dict[str, RealNet] = {}


def load_real_model(model_dir: str | Path | None = None) -> RealNet:
    """Load the card + weights after validating it and checking the sha256."""
    folder = Path(model_dir) if model_dir else default_model_dir()
    if not (folder / METADATA_FILE).exists():
        raise ModelError(
            "glucose network (real data) not found (run 'medview train glucose')", folder
        )
    card = read_card(folder)
    kind = str(card.architecture.get("name", ""))
    if card.task != "forecast" or kind not in KINDS:
        raise ModelError(
            f"not a real-data glucose network (task {card.task!r}, architecture {kind!r})",
            card.metadata_path,
        )
    if int(card.input.get("window", WINDOW)) != WINDOW:
        raise ModelError(f"input.window must be {WINDOW}", card.metadata_path)
    if not card.weights_path.is_file():
        raise ModelError("weights not found (run 'medview train glucose')", card.weights_path)
    key = f"{folder.resolve()}:{sha256_file(card.weights_path)}:{card.manifest_sha256}"
    if key in _CACHE:
        return _CACHE[key]
    weights = {k: v.astype(np.float32) for k, v in card.load_tensors("numpy").items()}
    seen = card.meta.get("training_data", {}).get("fingerprints", [])
    model = RealNet(kind, weights, card.meta, frozenset(str(f) for f in seen))
    _CACHE[key] = model
    return model


def installed_real_model() -> RealNet | None:
    """The installed network (user folder, else bundled); None when there is none.

    A card or weights that fail their checks raise :class:`ModelError` (never skipped)."""
    if not (default_model_dir() / METADATA_FILE).exists():
        return None
    return load_real_model()


def conformal_methods(real: RealNet | None) -> dict[str, Any]:
    """The interval table rows of the network's methods (``output.conformal_real``)."""
    if real is None:
        return {}
    return dict(real.metadata.get("output", {}).get("conformal_real", {}).get("methods", {}))


__all__ = [
    "KINDS",
    "MODEL_NAME",
    "RealNet",
    "conformal_methods",
    "fingerprints",
    "forward",
    "installed_real_model",
    "load_real_model",
]
