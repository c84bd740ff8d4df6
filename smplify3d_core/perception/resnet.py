"""ResNet-50 image encoder with torchvision-style parameter names (CLIFF-Res50's ``encoder``).

Names: ``conv1`` (7x7 stride 2), ``bn1``, ``layer1..4`` of bottlenecks ``conv1/bn1, conv2/bn2,
conv3/bn3`` with ``downsample.0`` (1x1 conv) / ``downsample.1`` (BN) on the first block of each
layer; the stride sits on the 3x3 conv (ResNet v1.5, as torchvision and CLIFF). There is no
``fc``: the encoder ends with global average pooling (CLIFF pools the 8x6 map of a 256x192 crop).
torchvision is not needed (and not installable here).

forward(x (B, 3, H, W) normalised RGB) -> (B, 2048) features.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from smplify3d_core.perception.hrnet import Bottleneck, _residual_layer


class ResNetEncoder(nn.Module):
    """ResNet with bottleneck blocks; ``layers=(3, 4, 6, 3)`` is ResNet-50 (~23.5 M parameters)."""

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        for index, (count, channels) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", _residual_layer(Bottleneck, in_channels, channels, count, stride))
            in_channels = channels * Bottleneck.expansion
        self.feature_dim = in_channels  # 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))
