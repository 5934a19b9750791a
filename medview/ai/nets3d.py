"""3D network architectures for volume models (CT/MR segmentation).

A volume model's card names its architecture (``"architecture": {"name": "unet3d",
"params": {...}}``); :func:`build3d` turns that into an ``nn.Module`` whose weights are
then loaded from safetensors (never unpickled). Imports torch at module level: import
this module only inside functions that run or train a model.

* ``unet3d`` (:class:`TinyUNet3D`): a small 3D U-Net (two 3x3x3 conv + norm + LeakyReLU
  per level; ``norm`` "batch" (running statistics at inference, so a window of pure air
  is not rescaled as instance norm would) or "instance"), max-pool down, transposed conv up, skip concatenation). With
  ``levels`` = 3 the input sides must be multiples of 4 (the sliding window's patch).
* ``pointwise3d`` (:class:`Pointwise3D`): one 1x1x1 convolution, a model whose output
  at each voxel depends on that voxel only. The tests use it to check that the sliding
  window stitches patches exactly (any overlap gives the whole-volume result).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NORMS = ("batch", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    raise ValueError(f"unknown norm {kind!r} (known: {', '.join(NORMS)})")


def _conv_block(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        _norm(norm, cout),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        _norm(norm, cout),
        nn.LeakyReLU(0.01, inplace=True),
    )


class TinyUNet3D(nn.Module):
    """A small 3D U-Net: ``base`` channels at full resolution, doubled per level."""

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 4,
        base: int = 8,
        levels: int = 3,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError("levels must be at least 1")
        widths = [base * 2**i for i in range(levels)]
        self.levels = levels
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_conv_block(cin, w, norm))
            cin = w
        self.pool = nn.MaxPool3d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_hi, w_lo in zip(widths[-2::-1], widths[:0:-1], strict=True):
            self.up.append(nn.ConvTranspose3d(w_lo, w_hi, 2, stride=2))
            self.merge.append(_conv_block(2 * w_hi, w_hi, norm))
        self.head = nn.Conv3d(widths[0], num_outputs, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be a multiple of this (2 ** (levels - 1))."""
        return int(2 ** (self.levels - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1], strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class Pointwise3D(nn.Module):
    """One 1x1x1 convolution: each voxel's output depends on that voxel only."""

    def __init__(self, in_channels: int = 1, num_outputs: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_outputs, 1)

    @property
    def multiple(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


ARCHITECTURES_3D: dict[str, type[nn.Module]] = {
    "unet3d": TinyUNet3D,
    "pointwise3d": Pointwise3D,
}


def build3d(name: str, params: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate 3D architecture ``name`` with ``params`` (from the card)."""
    try:
        cls = ARCHITECTURES_3D[name]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES_3D))
        raise ValueError(f"unknown 3D architecture {name!r} (known: {known})") from None
    return cls(**(params or {}))
