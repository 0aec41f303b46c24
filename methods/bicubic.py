"""Bicubic up-sampling baselines (no reference): Pillow (the RefSR repositories' choice) and
MATLAB-style (the SISR tables' choice), the latter in float or with MATLAB's uint8 per-pass rounding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from methods.base import MethodInfo, check_image_tensor, info_from_card
from methods.cards import builtin_card
from protocols.core import UserError
from protocols.resize import from_uint8_array, matlab_imresize, pil_bicubic, to_uint8_array


class _NoParameters(torch.nn.Module):
    """Placeholder module: interpolation has no network (cost tools report zero parameters)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)


@dataclass
class Bicubic:
    info: MethodInfo
    backend: str
    weights_loaded: bool = True

    def __post_init__(self) -> None:
        self.module = _NoParameters(self.info.scale)

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(1, 3, h, w) RGB [0, 1] -> (1, 3, s*h, s*w). The Pillow and uint8 paths work on 8-bit levels
        (the input is rounded to uint8 first); the float MATLAB path is not rounded."""
        check_image_tensor("lr", lr)
        scale = self.info.scale
        size = (lr.shape[2] * scale, lr.shape[3] * scale)
        if self.backend == "pil":
            return pil_bicubic(lr, size)
        if self.backend == "matlab_u8":
            return from_uint8_array(matlab_imresize(to_uint8_array(lr), scale, uint8_passes=True)).to(lr.device)
        array = lr[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
        up = matlab_imresize(array, scale)
        return torch.from_numpy(np.ascontiguousarray(up)).permute(2, 0, 1)[None].to(lr.device)

    def load_weights(self, path: str | Path) -> None:
        raise UserError(f"{self.info.name} has no weights")

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        return self.module, (torch.zeros(1, 3, *lr_hw),)


def _info(name: str, scale: int, backend: str) -> MethodInfo:
    return info_from_card(
        builtin_card(name),
        scale=scale,
        choices={
            "backend": {
                "pil": "Pillow Image.resize BICUBIC on uint8 (RefSR repositories)",
                "matlab": "MATLAB-compatible imresize, float32, not rounded (SISR tables)",
                "matlab_u8": "MATLAB imresize with uint8 per-pass rounding",
            }[backend]
        },
    )


def _check_scale(scale: int) -> None:
    if scale < 2:
        raise UserError(f"bicubic needs an integer scale >= 2; got {scale}")


def bicubic(*, scale: int = 4, device: str = "cpu") -> Bicubic:
    _check_scale(scale)
    return Bicubic(_info("bicubic", scale, "pil"), "pil")


def bicubic_matlab(*, scale: int = 4, device: str = "cpu") -> Bicubic:
    _check_scale(scale)
    return Bicubic(_info("bicubic_matlab", scale, "matlab"), "matlab")


def bicubic_matlab_u8(*, scale: int = 4, device: str = "cpu") -> Bicubic:
    _check_scale(scale)
    return Bicubic(_info("bicubic_matlab_u8", scale, "matlab_u8"), "matlab_u8")
