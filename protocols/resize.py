"""Resampling backends used to make LR images and the bicubic baselines.

- ``pil_bicubic``: Pillow ``Image.resize(..., BICUBIC)`` on 8-bit images, as every official RefSR
  repository does for LR, LR↑, Ref↓ and Ref↓↑.
- ``matlab_imresize``: MATLAB-compatible ``imresize(..., 'bicubic')`` (Keys cubic a = -0.5,
  antialiased when down-scaling, symmetric boundary, height pass first), in float32 like the BasicSR
  port, or with MATLAB's uint8 semantics (each 1-D pass rounded half away from zero and saturated).

Never OpenCV: its INTER_CUBIC has no antialiasing and a = -0.75, a different degradation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


def to_uint8_array(image: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) float [0, 1] -> (H, W, C) uint8 by round-half-to-even after clamping."""
    array = image.detach().to("cpu", torch.float64)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def from_uint8_array(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) uint8 -> (1, C, H, W) float32 in [0, 1]."""
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)[None].float().div(255.0)


def pil_bicubic(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Pillow bicubic resize of an 8-bit image.

    ``image``: (1, C, H, W) float32 in [0, 1] holding 8-bit levels (it is rounded to uint8 first),
    C = 3 (RGB) or 1; ``size_hw``: output (height, width). Returns (1, C, h, w) float32 with 8-bit levels.
    """
    array = to_uint8_array(image)
    mode_array = array[:, :, 0] if array.shape[2] == 1 else array
    resized = Image.fromarray(mode_array).resize((size_hw[1], size_hw[0]), Image.Resampling.BICUBIC)
    return from_uint8_array(np.asarray(resized)).to(image.device)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``contributions``: per output index, the input indices (symmetric boundary) and weights."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of each output sample
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if antialias else _cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    indices, weights = indices[:, keep], weights[:, keep]
    # Symmetric ("mirror, edge repeated") boundary on 1-based indices, then 0-based.
    period = 2 * in_length
    mirrored = np.mod(indices - 1, period)
    mirrored = np.where(mirrored >= in_length, period - 1 - mirrored, mirrored)
    return mirrored.astype(np.int64), weights


def _resize_axis(array: np.ndarray, axis: int, out_length: int, scale: float, dtype: type) -> np.ndarray:
    indices, weights = _contributions(array.shape[axis], out_length, scale)
    moved: np.ndarray = np.moveaxis(array, axis, 0).astype(dtype, copy=False)
    gathered = moved[indices]  # (out, taps, ...)
    weights = weights.astype(dtype).reshape(weights.shape + (1,) * (moved.ndim - 1))
    return np.moveaxis((gathered * weights).sum(axis=1, dtype=dtype), 0, axis)


def matlab_imresize(image: np.ndarray, scale: float, *, uint8_passes: bool = False) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')`` with antialiasing, height pass then width pass.

    ``image``: (H, W) or (H, W, C). Float mode (default): float32 arithmetic as BasicSR's port, any
    range, output float32 and not rounded; the caller quantises. ``uint8_passes=True``: input uint8,
    each pass computed in float64 then rounded half away from zero and saturated to [0, 255], as MATLAB
    does for uint8 input; output uint8. Output size is ceil(H * scale) x ceil(W * scale).
    """
    out_h = int(math.ceil(image.shape[0] * scale))
    out_w = int(math.ceil(image.shape[1] * scale))
    if uint8_passes:
        result = image.astype(np.float64)
        for axis, length in ((0, out_h), (1, out_w)):
            result = _resize_axis(result, axis, length, scale, np.float64)
            result = np.clip(np.sign(result) * np.floor(np.abs(result) + 0.5), 0, 255)
        return result.astype(np.uint8)
    result = image.astype(np.float32)
    result = _resize_axis(result, 0, out_h, scale, np.float32)
    return _resize_axis(result, 1, out_w, scale, np.float32)
