"""Device choice for inference and training: CUDA, Apple MPS or CPU."""

from __future__ import annotations

import os
from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto") -> Any:
    """``auto`` -> cuda if available, else mps, else cpu. Returns a ``torch.device``.

    An explicit ``cuda``/``mps`` that is not available falls back to the CPU
    (the result's ``device`` field then says ``cpu``).
    """
    import torch

    want = (name or "auto").lower()
    if want not in DEVICE_CHOICES and not want.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)})")
    if want.startswith("cuda") or want == "auto":
        if torch.cuda.is_available():
            return torch.device(want if want.startswith("cuda:") else "cuda")
    if want in ("mps", "auto"):
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
    return torch.device("cpu")


_threads_set = False


def configure_cpu_threads() -> int:
    """A sensible CPU thread count for inference (``MEDVIEW_AI_THREADS`` overrides).

    Small models gain little from many threads at batch 1, and the GUI and the
    image decoders need cores too: half the cores, at least 1 and at most 4 (on the
    2-core build machine 1 thread was faster than 2 at batch 1 and batch 64, see
    tests/bench/bench_ai.py).
    """
    global _threads_set
    import torch

    if not _threads_set:
        env = os.environ.get("MEDVIEW_AI_THREADS")
        n = int(env) if env else min(4, max(1, (os.cpu_count() or 1) // 2))
        torch.set_num_threads(max(1, n))
        _threads_set = True
    return torch.get_num_threads()
