"""Device choice for inference and training: CUDA, Apple MPS or CPU."""

from __future__ import annotations

import os
from typing import Any

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailable(ValueError):
    """An explicitly requested accelerator (cuda, mps) that this machine does not have."""


def resolve_device(name: str | None = "auto") -> Any:
    """``auto`` -> cuda if available, else mps, else cpu. Returns a ``torch.device``.

    An explicit ``cuda``/``cuda:N``/``mps`` that is not available raises
    :class:`DeviceUnavailable` with a one-line reason (it used to fall back to the
    CPU silently); only ``auto`` falls back.
    """
    import torch

    want = (name or "auto").lower()
    if want not in DEVICE_CHOICES and not want.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r} (choose from {', '.join(DEVICE_CHOICES)})")
    cuda_ok = bool(torch.cuda.is_available())
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if want.startswith("cuda"):
        if not cuda_ok:
            why = (
                f"this torch {torch.__version__} has no CUDA support"
                if getattr(torch.version, "cuda", None) is None
                else "no CUDA GPU was found"
            )
            raise DeviceUnavailable(
                f"CUDA requested but not available ({why}); use --device auto or cpu"
            )
        if want.startswith("cuda:"):
            idx = int(want.split(":", 1)[1]) if want.split(":", 1)[1].isdigit() else -1
            if not 0 <= idx < torch.cuda.device_count():
                raise DeviceUnavailable(
                    f"CUDA device {want} requested but only "
                    f"{torch.cuda.device_count()} GPU(s) found; use --device auto or cuda"
                )
            return torch.device(want)
        return torch.device("cuda")
    if want == "mps":
        if not mps_ok:
            raise DeviceUnavailable(
                "MPS requested but not available (Apple-silicon GPU only); use --device auto or cpu"
            )
        return torch.device("mps")
    if want == "auto":
        if cuda_ok:
            return torch.device("cuda")
        if mps_ok:
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
