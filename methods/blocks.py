"""Building blocks shared by several networks (their submodule names are part of checkpoint layouts)."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

VGG19_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))  # (channels, convs)


def vgg19_layer_names() -> list[str]:
    """Names of torchvision VGG19 ``features`` in order: conv{b}_{c}, relu{b}_{c}, ..., pool{b}."""
    names: list[str] = []
    for block, (_, n_convs) in enumerate(VGG19_BLOCKS, start=1):
        for conv in range(1, n_convs + 1):
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
        names.append(f"pool{block}")
    return names


def named_vgg19_features(last_layer: str = "pool5") -> nn.Sequential:
    """torchvision VGG19 ``features`` up to and including ``last_layer``, with the layer names the official
    RefSR checkpoints use (``conv1_1``, ``relu1_1``, ...). VGG16 is identical up to ``conv3_3``."""
    names = vgg19_layer_names()
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    in_channels = 3
    for name in names[: names.index(last_layer) + 1]:
        if name.startswith("conv"):
            out_channels = VGG19_BLOCKS[int(name[4]) - 1][0]
            layers[name] = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            in_channels = out_channels
        else:
            layers[name] = nn.ReLU() if name.startswith("relu") else nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Sequential(layers)


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
