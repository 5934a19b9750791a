"""Known outside architectures a clinic may bring checkpoints of, and the ONNX runner.

* :class:`ResNet18`: the 18-layer ResNet (basic blocks 2-2-2-2, 64-512 channels) with
  the usual parameter names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
  ``layer2.0.downsample.0``, ``fc``), so a state dict saved from the common reference
  implementation loads strictly; ``in_channels`` and ``num_outputs`` are parameters.
* :class:`DenseNet121`: DenseNet-121 (growth 32, blocks 6-12-24-16, bottleneck 4,
  64 initial features) with the usual names (``features.conv0``,
  ``features.denseblock1.denselayer1.norm1``, ``features.transition1.conv``,
  ``features.norm5``, ``classifier``): the layout of torchxrayvision's chest X-ray
  DenseNets (1 channel, 224 px, 18 labels, independent sigmoids).
* :class:`OnnxModule`: an ONNX file run by onnxruntime (CPU; CUDA when present),
  wrapped as a module so the inference path is the same for every model.

Written for medview from the published layer tables; imports torch at module level
(import it only where a model is built).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Basic residual block (two 3x3 convolutions, each with batch norm) with a 1x1
    projection shortcut when the shape changes.

    ``shortcut`` names the projection's attribute (the state-dict prefix): ``downsample``
    as in the reference ResNet-18, ``short`` in medview's own :class:`SmallResNet`.
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str = "downsample") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = shortcut
        proj = None
        if stride != 1 or cin != cout:
            proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        setattr(self, shortcut, proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        proj = getattr(self, self.shortcut)
        return F.relu(y + (x if proj is None else proj(x)))


class ResNet18(nn.Module):
    """ResNet-18 classifier; ``forward_features`` is the last stage (Grad-CAM target)."""

    def __init__(self, in_channels: int = 3, num_outputs: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, w in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            setattr(
                self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1))
            )
            cin = w
        self.fc = nn.Linear(512, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(f.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (4 x growth) - BN-ReLU-3x3 conv (growth), concatenated to the input."""

    def __init__(self, cin: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bottleneck * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck * growth)
        self.conv2 = nn.Conv2d(bottleneck * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat([x, y], dim=1)


class _Transition(nn.Sequential):
    """BN-ReLU-1x1 conv halving the channels, then 2x2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet121(nn.Module):
    """DenseNet-121; ``features`` ends with ``norm5`` (ReLU and pooling in the head)."""

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 18,
        growth: int = 32,
        blocks: tuple[int, ...] | list[int] = (6, 12, 24, 16),
        init_features: int = 64,
        bottleneck: int = 4,
    ) -> None:
        super().__init__()
        feats = nn.Sequential()
        feats.add_module("conv0", nn.Conv2d(in_channels, init_features, 7, 2, 3, bias=False))
        feats.add_module("norm0", nn.BatchNorm2d(init_features))
        feats.add_module("relu0", nn.ReLU())
        feats.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        c = init_features
        for i, n in enumerate(blocks, start=1):
            block = nn.Sequential()
            for j in range(n):
                block.add_module(
                    f"denselayer{j + 1}", _DenseLayer(c + j * growth, growth, bottleneck)
                )
            feats.add_module(f"denseblock{i}", block)
            c += n * growth
            if i < len(blocks):
                feats.add_module(f"transition{i}", _Transition(c, c // 2))
                c //= 2
        feats.add_module("norm5", nn.BatchNorm2d(c))
        self.features = feats
        self.classifier = nn.Linear(c, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        return self.classifier(f.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class OnnxModule(nn.Module):
    """An ONNX graph run by onnxruntime behind a module's ``forward`` (no autograd)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        super().__init__()
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, torch.get_num_threads())
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().float().contiguous().cpu().numpy()
        (out,) = self.session.run(None, {self.input_name: arr})[:1]
        return torch.from_numpy(out).to(x.device)

    def _apply(self, fn: Any, recurse: bool = True) -> OnnxModule:  # no tensors to move
        return self
