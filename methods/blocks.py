"""Building blocks shared by several networks (their submodule names are part of checkpoint layouts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class ResidualBlock(nn.Module):
    """EDSR residual block without batch norm: conv3x3 (``conv1``) - ReLU - conv3x3 (``conv2``), plus the
    identity, res_scale 1. (N, C, H, W) -> same shape."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))
