"""HRNet-W48 image encoder, laid out exactly as CLIFF's ``encoder`` (classification HRNet head).

The parameter names equal those of the published CLIFF HRNet-W48 checkpoint (after the
``encoder.`` prefix), so a real file loads with ``strict=True``:

- stem: ``conv1``/``bn1`` and ``conv2``/``bn2`` (3x3, stride 2 each: 1/4 resolution);
- ``layer1``: 4 bottlenecks 64 -> 256 channels (block 0 with ``downsample.0/1``);
- ``transition1..3``: ``ModuleList`` per branch; an existing branch whose width changes gets
  ``Sequential(conv3x3, BN, ReLU)`` (``transitionK.i.0/1``), a new branch gets a chain of stride-2
  ``Sequential(conv3x3, BN, ReLU)`` fed by the lowest-resolution branch (``transitionK.i.n.0/1``),
  an unchanged branch has no parameters;
- ``stage2..4``: 1, 4 and 3 multi-resolution modules, each with ``branches.b.k`` basic blocks
  (4 per branch) and ``fuse_layers.i.j``: for j > i a 1x1 conv + BN (then nearest upsampling),
  for j < i a chain of (i-j) stride-2 3x3 conv + BN (ReLU between, not after the last);
- classification head: ``incre_modules.i.0`` (one bottleneck lifting branch i to 128/256/512/1024
  channels), ``downsamp_modules.i`` (3x3 stride-2 conv with bias + BN + ReLU) and ``final_layer``
  (1x1 conv with bias 1024 -> 2048 + BN + ReLU), then global average pooling.

Input (B, 3, H, W) normalised RGB (CLIFF uses H=256, W=192); output (B, 2048) features.
Branch resolutions are 1/4, 1/8, 1/16 and 1/32 of the input; sizes that are not multiples
of 32 work too (upsampled maps are resized to the target branch's size).
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int, relu: bool, bias: bool = False) -> nn.Sequential:
    """``Sequential(conv, BN[, ReLU])`` whose parameters are named ``0.*`` and ``1.*``."""
    layers: List[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=bias),
        _bn(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN with a residual connection (HRNet branch block). (B,C,H,W) -> (B,C',H/s,W/s)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(channels)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here) -> 1x1 (x4 channels) with BN and a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = _bn(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = _bn(channels * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


def _residual_layer(block, in_channels: int, channels: int, count: int, stride: int = 1) -> nn.Sequential:
    """``count`` blocks; the first gets a 1x1 conv + BN ``downsample`` when the shape changes."""
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), _bn(out_channels))
    blocks = [block(in_channels, channels, stride, downsample)]
    blocks += [block(out_channels, channels) for _ in range(1, count)]
    return nn.Sequential(*blocks)


class HRModule(nn.Module):
    """One multi-resolution module: parallel branches, then every output sums all inputs.

    forward(list of n maps, branch i (B, C_i, H/2^i, W/2^i)) -> list of n fused maps, same shapes.
    """

    def __init__(self, channels: Sequence[int], blocks_per_branch: int = 4) -> None:
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            [_residual_layer(BasicBlock, c, c, blocks_per_branch) for c in channels]
        )
        fuse_layers = []
        for i, target in enumerate(channels):
            row = []
            for j, source in enumerate(channels):
                if j > i:  # lower resolution: 1x1 conv + BN, upsampled in forward
                    row.append(_conv_bn(source, target, 1, 1, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution: (i - j) stride-2 3x3 convs
                    steps = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(_conv_bn(source, target if last else source, 3, 2, relu=not last))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        x = [branch(t) for branch, t in zip(self.branches, inputs)]
        fused = []
        for i in range(self.num_branches):
            size = x[i].shape[-2:]
            total = x[i]
            for j in range(self.num_branches):
                if j == i:
                    continue
                y = self.fuse_layers[i][j](x[j])
                if j > i:
                    y = F.interpolate(y, size=size, mode="nearest")
                total = total + y
            fused.append(F.relu(total))
        return fused


class HRNetEncoder(nn.Module):
    """HRNet (classification head) feature encoder; defaults give CLIFF's HRNet-W48.

    forward(x (B, 3, H, W)) -> (B, 2048) globally average-pooled features.
    About 67 M parameters for width 48 (the encoder of the ~79 M-parameter CLIFF-HR48).
    """

    HEAD_CHANNELS = (32, 64, 128, 256)

    def __init__(self, width: int = 48, stage_modules: Sequence[int] = (1, 4, 3), blocks: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.layer1 = _residual_layer(Bottleneck, 64, 64, 4)

        widths = [width * 2 ** i for i in range(4)]  # 48, 96, 192, 384
        previous = [64 * Bottleneck.expansion]
        for stage, modules in zip((2, 3, 4), stage_modules):
            current = widths[:stage]
            setattr(self, f"transition{stage - 1}", self._transition(previous, current))
            setattr(self, f"stage{stage}", nn.ModuleList([HRModule(current, blocks) for _ in range(modules)]))
            previous = current

        head = self.HEAD_CHANNELS
        self.incre_modules = nn.ModuleList(
            [_residual_layer(Bottleneck, c, h, 1) for c, h in zip(widths, head)]
        )
        self.downsamp_modules = nn.ModuleList(
            [
                _conv_bn(head[i] * Bottleneck.expansion, head[i + 1] * Bottleneck.expansion, 3, 2, relu=True, bias=True)
                for i in range(len(head) - 1)
            ]
        )
        self.final_layer = _conv_bn(head[-1] * Bottleneck.expansion, 2048, 1, 1, relu=True, bias=True)
        self.feature_dim = 2048

    @staticmethod
    def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
        layers: List[nn.Module] = []
        for i, channels in enumerate(current):
            if i < len(previous):
                if channels != previous[i]:
                    layers.append(_conv_bn(previous[i], channels, 3, 1, relu=True))
                else:
                    layers.append(nn.Identity())
            else:
                source = previous[-1]
                steps = []
                for k in range(i + 1 - len(previous)):
                    out = channels if k == i - len(previous) else source
                    steps.append(_conv_bn(source, out, 3, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """Existing branches pass through their own layer; new ones grow from the last branch."""
        return [
            layer(features[i] if i < len(features) else features[-1]) for i, layer in enumerate(transition)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]
        for stage in (2, 3, 4):
            features = self._apply_transition(getattr(self, f"transition{stage - 1}"), features)
            for module in getattr(self, f"stage{stage}"):
                features = module(features)
        y = self.incre_modules[0](features[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](features[i + 1]) + down(y)
        y = self.final_layer(y)
        return y.mean(dim=(2, 3))
