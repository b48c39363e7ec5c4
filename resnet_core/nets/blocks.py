"""Building blocks of Fig. 2 and Fig. 5, their plain twins, and the shortcut options of §3.3.

Every operation is its own module, used once (no shared ReLU, no functional calls): Captum's layer
methods, torchinfo's per-layer counts, forward hooks and pickling all rely on that.
Parameter names follow torchvision (`conv1`, `bn1`, `downsample.0`, …) so its weights load.
"""
from __future__ import annotations

import torch
from torch import nn

from .specs import Shortcut, Variant


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: BN follows every conv (§3.4) and its shift makes a bias redundant.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A (§3.3): identity with extra channels filled by zeros; no parameters.

    Spatial subsampling takes every `stride`-th pixel, as the paper's "stride of 2" shortcut does.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, H/s, W/s)
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class ResidualAdd(nn.Module):
    """The element-wise addition F(x) + x (Eq. 1), a module so it can be hooked and counted."""

    def forward(self, residual: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return residual + shortcut


def make_shortcut(option: Shortcut, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity where shapes match (options A and B); zero-pad (A) or 1x1 projection + BN (B, and C always)."""
    changes_shape = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes_shape):
        # torchvision's `downsample` is Sequential(conv, bn): same indices, so its weights load.
        return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    if option == "A" and changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 5 left); `residual=False` gives the plain twin, without shortcut and addition."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, *, residual: bool, shortcut: Shortcut,
                 variant: Variant) -> None:
        super().__init__()
        del variant  # only bottlenecks differ between variants
        out_channels = width * self.expansion
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        if residual:
            self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
            self.add = ResidualAdd()
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = self.add(out, self.downsample(x))
        return self.relu_out(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right).

    `variant="paper"` strides the first 1x1 conv, as the paper's released models do (Table 1's FLOPs);
    `variant="torchvision"` strides the 3x3 conv, as torchvision's ResNet v1.5 does.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, *, residual: bool, shortcut: Shortcut,
                 variant: Variant) -> None:
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if variant == "paper" else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.residual = residual
        if residual:
            self.downsample = make_shortcut(shortcut, in_channels, out_channels, stride)
            self.add = ResidualAdd()
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = self.add(out, self.downsample(x))
        return self.relu_out(out)


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
