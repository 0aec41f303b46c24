"""CARN-M (Ahn et al., ECCV 2018), multi-scale network with the official key layout
(nmhkahn/CARN-pytorch ``carn_m.py``), reimplemented from ``shared/fixtures/carn_m/README.md``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from methods.base import check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.cards import builtin_card
from protocols.core import UserError

(CARN_M_WEIGHTS,) = builtin_card("carn_m").weights
RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean in [0, 1] units, stored in the checkpoint's shifters


class MeanShift(nn.Module):
    """1x1 conv with identity weight and bias ±mean (key ``shifter``), frozen."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(sign * torch.tensor(RGB_MEAN))
        for parameter in self.shifter.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class ConvReLU(nn.Module):
    """Key layout ``body.0`` = conv followed by an in-body ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EfficientResidualBlock(nn.Module):
    """Grouped 3x3 -> ReLU -> grouped 3x3 -> ReLU -> 1x1, plus identity, then ReLU."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, groups=groups),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class Block(nn.Module):
    """Local cascade: one residual block ``b1`` shared by the three stages (weight sharing is real)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.b1 = EfficientResidualBlock(channels, groups)
        self.c1 = ConvReLU(channels * 2, channels, 1)
        self.c2 = ConvReLU(channels * 3, channels, 1)
        self.c3 = ConvReLU(channels * 4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat1 = torch.cat([x, self.b1(x)], dim=1)
        p1 = self.c1(cat1)
        cat2 = torch.cat([cat1, self.b1(p1)], dim=1)
        p2 = self.c2(cat2)
        cat3 = torch.cat([cat2, self.b1(p2)], dim=1)
        return self.c3(cat3)


class UpsampleBranch(nn.Module):
    """Grouped conv -> ReLU -> PixelShuffle, repeated for x4 (two x2 steps)."""

    def __init__(self, channels: int, scale: int, groups: int) -> None:
        super().__init__()
        steps = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        for step in steps:
            layers += [
                nn.Conv2d(channels, channels * step * step, 3, padding=1, groups=groups),
                nn.ReLU(),
                nn.PixelShuffle(step),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleUpsampler(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.up2 = UpsampleBranch(channels, 2, groups)
        self.up3 = UpsampleBranch(channels, 3, groups)
        self.up4 = UpsampleBranch(channels, 4, groups)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        branches = {2: self.up2, 3: self.up3, 4: self.up4}
        if scale not in branches:
            raise UserError(f"CARN-M supports scales 2, 3, 4; got {scale}")
        return branches[scale](x)


class CARNM(nn.Module):
    """Official forward ``forward(x, scale)``: x (N, 3, H, W) RGB in [0, 1]; output (N, 3, sH, sW), not clamped."""

    def __init__(self, channels: int = 64, groups: int = 4) -> None:
        super().__init__()
        self.sub_mean = MeanShift(-1.0)
        self.add_mean = MeanShift(+1.0)
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = Block(channels, groups)
        self.b2 = Block(channels, groups)
        self.b3 = Block(channels, groups)
        self.c1 = ConvReLU(channels * 2, channels, 1)
        self.c2 = ConvReLU(channels * 3, channels, 1)
        self.c3 = ConvReLU(channels * 4, channels, 1)
        self.upsample = MultiScaleUpsampler(channels, groups)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        c0 = o0 = self.entry(self.sub_mean(x))
        cat1 = torch.cat([c0, self.b1(o0)], dim=1)
        o1 = self.c1(cat1)
        cat2 = torch.cat([cat1, self.b2(o1)], dim=1)
        o2 = self.c2(cat2)
        cat3 = torch.cat([cat2, self.b3(o2)], dim=1)
        o3 = self.c3(cat3)
        return self.add_mean(self.exit(self.upsample(o3, scale)))


class _FixedScale(nn.Module):
    """Cost-graph adapter: the official forward with the scale bound (fvcore traces tensors only)."""

    def __init__(self, network: CARNM, scale: int) -> None:
        super().__init__()
        self.network, self.scale = network, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.scale)


class CARNMMethod:
    def __init__(self, scale: int, device: str) -> None:
        self.info = info_from_card(
            builtin_card("carn_m"),
            scale=scale,
            choices={
                "mode": "multi-scale network, group size 4 (official README: --group 4)",
                "output": "not clamped; the protocol quantises",
            },
        )
        self.device = torch.device(device)
        self.module = CARNM().to(self.device).eval()
        self.weights_loaded = False

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(1, 3, h, w) RGB [0, 1] -> (1, 3, s*h, s*w) RGB, not clamped."""
        check_image_tensor("lr", lr)
        with torch.inference_mode():
            return self.module(lr.to(self.device), self.info.scale)

    def load_weights(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / CARN_M_WEIGHTS.file_name
        state = read_checkpoint(path, sha256=CARN_M_WEIGHTS.sha256)
        load_state_dict_strict(self.module, state, "CARN-M (multi-scale, group 4)")
        self.weights_loaded = True

    def cost_graph(self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        return _FixedScale(self.module, self.info.scale), (torch.zeros(1, 3, *lr_hw, device=self.device),)


def carn_m(*, scale: int = 4, device: str = "cpu") -> CARNMMethod:
    if scale not in (2, 3, 4):
        raise UserError(f"carn_m supports scales 2, 3, 4; got {scale}")
    return CARNMMethod(scale, device)
