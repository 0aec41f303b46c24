"""Scoring: an SR output against the sample's HR exactly as the preset says -- crop, quantise, Y conversion,
metrics (``protocols.metrics`` cards). Building the samples is ``protocols.pipeline``."""

from __future__ import annotations

import numpy as np
import torch

from protocols import metrics
from protocols.core import Sample, UserError
from protocols.spec import ProtocolSpec


def luma(rgb: np.ndarray, spec: ProtocolSpec) -> np.ndarray:
    """Y of (H, W, 3) RGB levels (float, [0, 255]) per the preset's Y form -> (H, W) float64."""
    if spec.y_swap_rb:
        rgb = rgb[..., ::-1]
    if spec.y_form == "bt601_256":
        return metrics.rgb_to_y(rgb, weights=metrics.Y_WEIGHTS_256)
    if spec.y_form == "luma":
        return metrics.rgb_to_y(rgb, weights=(0.299, 0.587, 0.114), offset=0.0)
    return metrics.rgb_to_y(rgb)


def min_scored_side(spec: ProtocolSpec) -> int:
    """Smallest scored region side (after the border and left crops): SSIM's 7x7 window, else 1 px."""
    return 7 if any(m.startswith("ssim") for m in spec.metrics) else 1


def check_scored_size(
    where: str, file_hw: tuple[int, ...], hr_hw: tuple[int, ...], degraded_hw: tuple[int, ...], spec: ProtocolSpec
) -> None:
    """A UserError giving the file's real size when the preset leaves too little to degrade or to score."""
    scored_h = hr_hw[0] - 2 * spec.crop_border
    scored_w = hr_hw[1] - spec.crop_left - 2 * spec.crop_border
    need = min_scored_side(spec)
    if min(degraded_hw) >= spec.scale and min(hr_hw) > 0 and min(scored_h, scored_w) >= need:
        return
    raise UserError(
        f"{where}: image is {file_hw[1]}x{file_hw[0]} px; preset {spec.name} scores a "
        f"{max(scored_w, 0)}x{max(scored_h, 0)} region of it (x{spec.scale}, {spec.hr_recipe} to "
        f"{hr_hw[1]}x{hr_hw[0]}, border crop {spec.crop_border}), at least {need}x{need} is needed; use larger images"
    )


def quantise_sr(sr: np.ndarray, spec: ProtocolSpec) -> np.ndarray:
    """SR on [0, 1] -> [0, 255] float64 per the preset (clamp/round as the reference code does)."""
    # float32 like the reference code (BasicSR tensor2img, MATLAB single): float64 here would flip a few
    # pixels at the .5 rounding boundary and move SSIM by ~1e-5.
    levels = (sr.astype(np.float32) * np.float32(255.0)).astype(np.float64)
    low, high = spec.sr_clip_levels
    if spec.sr_quantisation in ("clamp_round", "clamp"):
        levels = np.clip(levels, low, high)
    if spec.sr_quantisation in ("clamp_round", "round"):
        levels = np.round(levels)
    return levels


def scored_levels(sr: torch.Tensor, sample: Sample, spec: ProtocolSpec) -> np.ndarray:
    """The SR image exactly as the metrics see it: ``sr`` (1, C, H', W') float [0, 1] RGB cropped by
    ``sample.sr_crop``, averaged to one channel for Y-only presets, then clamped/rounded per the preset.
    Returns (H, W, C) float64 levels on [0, 255] (integers for rounding presets); C = 3, or 1 for Y-only."""
    top, bottom, left, right = sample.sr_crop
    sr = sr[:, :, top : sr.shape[2] - bottom, left : sr.shape[3] - right]
    if sr.shape[2:] != sample.hr.shape[2:]:
        raise UserError(f"{sample.name}: SR size {tuple(sr.shape[2:])} != HR size {tuple(sample.hr.shape[2:])}")
    return output_levels(sr, spec, grey=sample.hr.shape[1] == 1)


def output_levels(sr: torch.Tensor, spec: ProtocolSpec, *, grey: bool = False) -> np.ndarray:
    """A method's output as the preset quantises it (the part of ``scored_levels`` after the crop; ``predict``
    uses it alone): ``sr`` (1, 3, H, W) float [0, 1] RGB -> (H, W, C) float64 levels on [0, 255], C = 3, or 1
    with ``grey`` (Y-only presets: the mean of the channels)."""
    sr_array = sr[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()
    if grey:
        sr_array = sr_array.mean(axis=2, keepdims=True)
    return quantise_sr(sr_array, spec)


def score(sr: torch.Tensor, sample: Sample, spec: ProtocolSpec) -> dict[str, float]:
    """Metric values of one SR output against ``sample.hr``.

    ``sr``: (1, C, H', W') float [0, 1] RGB (C = 3) as returned by a method; it is cropped by
    ``sample.sr_crop`` and must then equal the HR size. Y-only presets average the channels (the
    methods received the Y image replicated into three channels).
    """
    return score_levels(scored_levels(sr, sample, spec), sample, spec)


def score_levels(sr_levels: np.ndarray, sample: Sample, spec: ProtocolSpec) -> dict[str, float]:
    """Metric values of ``scored_levels``' output (H, W, C) float64 levels against ``sample.hr``."""
    hr_levels = np.round(sample.hr[0].to(torch.float64).permute(1, 2, 0).numpy() * 255.0)
    if spec.crop_left:
        sr_levels, hr_levels = sr_levels[:, spec.crop_left :], hr_levels[:, spec.crop_left :]
    cards = [metrics.get_metric(name) for name in spec.metrics]
    planes: dict[str, tuple[np.ndarray, np.ndarray]] = {"rgb": (sr_levels, hr_levels)}
    if any(card.channels == "y" for card in cards):
        if sample.hr.shape[1] == 1:
            planes["y"] = (sr_levels[..., 0], hr_levels[..., 0])
        else:
            sr_y, hr_y = luma(sr_levels, spec), luma(hr_levels, spec)
            if spec.y_round:
                sr_y, hr_y = np.round(sr_y), np.round(hr_y)
            planes["y"] = (sr_y, hr_y)
    values = {card.name: float(card.function(*planes[card.channels], crop_border=spec.crop_border)) for card in cards}
    return values
