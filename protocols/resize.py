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
from typing import Any

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


def _cubic(x: Any) -> Any:
    """Keys cubic kernel with a = -0.5 (MATLAB's ``cubic``), on a NumPy array or a torch tensor (its dtype kept)."""
    absx = abs(x)
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def _raw_contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``contributions`` before the boundary rule: per output sample, 0-based input indices (may
    fall outside [0, in_length)) and normalised Keys-cubic weights; all-zero tap columns removed."""
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
    return (indices[:, keep] - 1).astype(np.int64), weights[:, keep]


def _float32_contributions(in_length: int, out_length: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``_contributions`` with the weights computed in float32 torch arithmetic, as BasicSR's port does (the
    float64 weights rounded to float32 differ from these in the last bit for some taps). Returns the 0-based
    input indices before the boundary rule (out_length, taps) int64 and the weights (out_length, taps) float32."""
    kernel_width = 4.0 / scale if scale < 1 else 4.0
    u = torch.arange(1, out_length + 1, dtype=torch.float32) / scale + 0.5 * (1 - 1 / scale)
    taps = int(math.ceil(kernel_width)) + 2
    indices = torch.floor(u - kernel_width / 2)[:, None] + torch.arange(taps, dtype=torch.float32)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights = weights / weights.sum(dim=1, keepdim=True)
    used = torch.nonzero((weights != 0).any(dim=0)).flatten().tolist()
    # outer all-zero tap columns dropped; inner ones kept (0 * x adds exactly 0) so each row's taps are contiguous
    keep = slice(used[0], used[-1] + 1)
    return (indices[:, keep] - 1).long(), weights[:, keep].contiguous()


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices with MATLAB's symmetric boundary (mirror, edge sample repeated) applied, and weights."""
    return _mirror(*_raw_contributions(in_length, out_length, scale), in_length)


def _mirror(indices: np.ndarray, weights: np.ndarray, in_length: int) -> tuple[np.ndarray, np.ndarray]:
    period = 2 * in_length
    mirrored = np.mod(indices, period)
    mirrored = np.where(mirrored >= in_length, period - 1 - mirrored, mirrored)
    return mirrored, weights


def _phase_period(indices: np.ndarray, weights: np.ndarray) -> int | None:
    """Smallest p such that output i + p uses the taps of output i shifted by a constant: then a pass is
    p strided slices per tap (rational scales such as ×4 and ÷4), not a gather."""
    n = len(weights)
    for p in range(1, min(n, 64) + 1):
        if p == n:
            return p
        shift = indices[p:, 0] - indices[:-p, 0]
        if np.all(shift == shift[0]) and np.allclose(weights[p:], weights[:-p], rtol=0, atol=1e-12):
            return p
    return None


def _resize_axis(array: np.ndarray, axis: int, out_length: int, scale: float, dtype: type) -> np.ndarray:
    in_length = array.shape[axis]
    moved: np.ndarray = np.moveaxis(array, axis, 0).astype(dtype, copy=False)
    indices, weights = _raw_contributions(in_length, out_length, scale)
    period = _phase_period(indices, weights)
    if period is None:  # irregular ratio: gather the mirrored taps
        mirrored, weights = _contributions(in_length, out_length, scale)
        taps = moved[mirrored] * weights.astype(dtype).reshape(weights.shape + (1,) * (moved.ndim - 1))
        return np.moveaxis(taps.sum(axis=1, dtype=dtype), 0, axis)
    before = max(0, -int(indices.min()))
    after = max(0, int(indices.max()) - (in_length - 1))
    padded = np.pad(moved, [(before, after)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
    result: np.ndarray = np.zeros((out_length,) + moved.shape[1:], dtype=dtype)
    for phase in range(period):
        outputs = range(phase, out_length, period)
        count = len(outputs)
        if count == 0:
            continue
        step = int(indices[phase + period, 0] - indices[phase, 0]) if count > 1 else 1
        for tap in range(indices.shape[1]):
            first = int(indices[phase, tap]) + before
            source = padded[first : first + step * (count - 1) + 1 : step]
            result[phase::period] += dtype(weights[phase, tap]) * source
    return np.moveaxis(result, 0, axis)


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
    return _float32_passes(image, out_h, out_w, scale)


def _float32_passes(image: np.ndarray, out_h: int, out_w: int, scale: float) -> np.ndarray:
    """Float mode of ``matlab_imresize``: (H, W[, C]) -> (out_h, out_w[, C]) float32, not rounded.

    Each output sample of each channel is one float32 matrix-vector product (``torch.mv``, BLAS sgemv) of its
    taps with its float32 weights: the height pass on a (W, taps) column-major slice of the mirror-padded
    plane, the width pass on an (out_h, taps) row-major one, which is how BasicSR's float32 port evaluates
    them. Summing the same taps one at a time in NumPy, or batching channels into one product, differs in the
    last bit (fused multiply-add, summation order), and that flipped the 8-bit rounding of 1 LR pixel in Set14
    and 20 in Urban100 (shared golden protocol S): CARN-M on Set14 ``coastguard`` moved by 1.1e-5 SSIM."""
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    planes = source[None] if source.dim() == 2 else source.permute(2, 0, 1)
    row_starts, row_weights, padded = _padded_taps(planes.contiguous(), 1, out_h, scale)
    tall = torch.empty((planes.shape[0], out_h, planes.shape[2]), dtype=torch.float32)
    for channel in range(planes.shape[0]):
        for i, start in enumerate(row_starts):
            tall[channel, i] = padded[channel, start : start + row_weights.shape[1]].t().mv(row_weights[i])
    col_starts, col_weights, padded = _padded_taps(tall, 2, out_w, scale)
    result = torch.empty((planes.shape[0], out_h, out_w), dtype=torch.float32)
    for channel in range(planes.shape[0]):
        for j, start in enumerate(col_starts):
            result[channel, :, j] = padded[channel, :, start : start + col_weights.shape[1]].mv(col_weights[j])
    return result[0].numpy() if source.dim() == 2 else result.permute(1, 2, 0).contiguous().numpy()


def _padded_taps(
    planes: torch.Tensor, dim: int, out_length: int, scale: float
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """For a pass along ``dim`` of (C, H, W) planes: each output's first tap in the mirror-padded planes
    (MATLAB symmetric boundary: the edge sample repeated), the float32 weights, and the padded planes."""
    in_length = planes.shape[dim]
    indices, weights = _float32_contributions(in_length, out_length, scale)
    before = max(0, -int(indices.min()))
    after = max(0, int(indices.max()) - (in_length - 1))
    if max(before, after) > in_length:  # mirror of a mirror: gather through the folded indices instead
        mirrored, _ = _mirror(indices.numpy(), weights.numpy(), in_length)
        flat = planes.index_select(dim, torch.from_numpy(mirrored).reshape(-1))
        return [i * mirrored.shape[1] for i in range(out_length)], weights, flat
    parts = [planes.narrow(dim, 0, before).flip(dim), planes, planes.narrow(dim, in_length - after, after).flip(dim)]
    return (indices[:, 0] + before).tolist(), weights, torch.cat(parts, dim).contiguous()
