"""Network architectures known to the model registry.

A model folder names its architecture in ``metadata.json``
(``"architecture": {"name": ..., "params": {...}}``); :func:`build` turns that into
an ``nn.Module``. Weights are then loaded from safetensors, never unpickled.

This module imports torch at module level: import it only inside functions that
run a model (``medview.ai.registry`` does so lazily).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from medview.ai import zoo


class SmallResNet(nn.Module):
    """A small ResNet for single-channel images of any size.

    ``widths`` gives the channels of each stage; every stage after the first halves
    the resolution. ``stem_stride`` > 1 downsamples at the stem (for large inputs,
    e.g. 224 px). The output is ``num_outputs`` logits (1 = binary, sigmoid).
    The last stage's feature map (``self.features_out``) is the Grad-CAM target.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 1,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        blocks: tuple[int, ...] | list[int] = (1, 1, 1),
        stem_stride: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        w0 = widths[0]
        stem: list[nn.Module] = [
            nn.Conv2d(in_channels, w0, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
        ]
        if stem_stride > 1:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        layers: list[nn.Module] = []
        cin = w0
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(zoo.BasicBlock(cin, w, stride, shortcut="short"))
                cin = w
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(cin, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(f.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _bn_act(conv: nn.Module, channels: int) -> list[nn.Module]:
    """``conv`` followed by batch norm and a leaky ReLU (0.1): the autoencoder's unit."""
    return [conv, nn.BatchNorm2d(channels), nn.LeakyReLU(0.1, inplace=True)]


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for 1-channel images whose side is divisible by 4.

    ``encode`` returns the latent vector (``latent_dim``), ``decode`` the
    reconstruction in the normalised input space. The latent vector is meant for
    similar-image search; the per-pixel reconstruction error is the anomaly map.
    """

    latent_mean: torch.Tensor  # buffers (register_buffer), typed for the checker
    latent_precision: torch.Tensor

    def __init__(
        self,
        in_channels: int = 1,
        size: int = 28,
        widths: tuple[int, ...] | list[int] = (32, 64),
        latent_dim: int = 64,
    ) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"autoencoder input size must be divisible by 4, got {size}")
        w1, w2 = widths
        self.size = size
        self.s4 = size // 4
        self.w2 = w2
        self.enc = nn.Sequential(
            *_bn_act(nn.Conv2d(in_channels, w1, 3, 1, 1), w1),
            *_bn_act(nn.Conv2d(w1, w1, 3, 2, 1), w1),
            *_bn_act(nn.Conv2d(w1, w2, 3, 1, 1), w2),
            *_bn_act(nn.Conv2d(w2, w2, 3, 2, 1), w2),
        )
        self.to_latent = nn.Linear(w2 * self.s4 * self.s4, latent_dim)
        self.from_latent = nn.Linear(latent_dim, w2 * self.s4 * self.s4)
        self.dec = nn.Sequential(
            *_bn_act(nn.ConvTranspose2d(w2, w2, 4, 2, 1), w2),
            *_bn_act(nn.Conv2d(w2, w1, 3, 1, 1), w1),
            *_bn_act(nn.ConvTranspose2d(w1, w1, 4, 2, 1), w1),
            nn.Conv2d(w1, in_channels, 3, 1, 1),
        )
        # Gaussian model of the normal training latents (filled after training) for
        # the latent-distance anomaly score; saved with the weights.
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_precision", torch.eye(latent_dim))

    def latent_distance(self, z: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance of latents to the normal training latents."""
        d = z - self.latent_mean
        return ((d @ self.latent_precision) * d).sum(dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.enc(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.w2, self.s4, self.s4)
        return self.dec(F.leaky_relu(h, 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def analyse(
        self, x: torch.Tensor, method: str = "mse"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image-level score (N,), per-pixel squared error (N, H, W), latent (N, D)).

        ``method``: ``mse`` (mean squared reconstruction error), ``pos_residual``
        (mean of the positive part of input - reconstruction: added opacity) or
        ``latent`` (Mahalanobis distance of the latent to normal training latents).
        """
        z = self.encode(x)
        rec = self.decode(z).float()
        xf = x.float()
        err = ((rec - xf) ** 2).mean(dim=1)
        if method == "mse":
            score = err.flatten(1).mean(dim=1)
        elif method == "pos_residual":
            score = F.relu(xf - rec).mean(dim=(1, 2, 3))
        elif method == "latent":
            score = self.latent_distance(z.float())
        else:
            raise ValueError(f"unknown anomaly score {method!r}")
        return score, err, z


def _call(module: nn.Module, method: str, x: torch.Tensor) -> torch.Tensor:
    """``module.method(x)`` for a method the architecture table does not type."""
    out: torch.Tensor = getattr(module, method)(x)
    return out


class Ensemble(nn.Module):
    """``members`` networks of one architecture (``member``: ``{name, params}``) run side
    by side; the logits are averaged.

    ``forward_features`` concatenates the members' last-stage feature maps along the
    channels (the Grad-CAM target and, pooled, the embedding), ``member_logits`` gives
    each member's logits (K, N, outputs): their spread is the ensemble's uncertainty.
    Members must have ``forward_features``/``forward_head`` and equal feature widths.
    """

    def __init__(self, members: int, member: dict[str, Any]) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members = nn.ModuleList(
            [build(str(member["name"]), dict(member.get("params") or {})) for _ in range(members)]
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_call(m, "forward_features", x) for m in self.members], dim=1)

    def member_logits(self, f: torch.Tensor) -> torch.Tensor:
        parts = torch.chunk(f, len(self.members), dim=1)
        heads = zip(self.members, parts, strict=True)
        return torch.stack([_call(m, "forward_head", p) for m, p in heads])

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.member_logits(f).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "small_resnet": SmallResNet,
    "conv_autoencoder": ConvAutoencoder,
    "ensemble": Ensemble,
    # outside architectures a clinic brings checkpoints of (medview models import)
    "resnet18": zoo.ResNet18,
    "densenet121": zoo.DenseNet121,
}


#: architectures whose batch norms directly follow a convolution in registration order
#: (``conv, bn`` in a Sequential or a block), so :func:`fold_batchnorm` is exact for them
FOLDABLE = frozenset({"small_resnet", "conv_autoencoder", "ensemble"})


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode batch norm into the convolution before it (in place).

    For inference only: ``conv`` then ``bn`` becomes one convolution with scaled weights
    and a bias, ``bn`` an identity (outputs equal within float rounding, about 1e-6; one
    op less per layer: the 28x28 nets' forward pass is 8-10 % faster on this CPU). Only
    for the :data:`FOLDABLE` architectures, whose children are registered in data-flow
    order.
    """
    with torch.no_grad():
        for parent in list(module.modules()):
            kids = list(parent.named_children())
            for (_, conv), (bn_name, bn) in zip(kids, kids[1:], strict=False):
                if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                    continue
                if bn.running_var is None or bn.running_mean is None:
                    continue
                scale = torch.rsqrt(bn.running_var + bn.eps)
                if bn.weight is not None:
                    scale = scale * bn.weight
                bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
                shift = (bias - bn.running_mean) * scale
                conv.bias = nn.Parameter(shift + (bn.bias if bn.bias is not None else 0.0))
                conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
                setattr(parent, bn_name, nn.Identity())
    return module


def build(name: str, params: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate architecture ``name`` with ``params`` (from metadata.json)."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(
            f"unknown architecture {name!r} (known: {', '.join(sorted(ARCHITECTURES))})"
        ) from None
    return cls(**(params or {}))
