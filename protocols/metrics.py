"""Image-quality metrics with every convention explicit.

All functions take 8-bit-valued images as float arrays on the [0, 255] scale, shape (H, W, 3) RGB
(channel order given explicitly where it matters) or (H, W) for single-channel Y, and compute in
float64. ``crop_border`` pixels are removed from every side before anything else. Dataset values are
the mean of per-image values (not a pooled MSE).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from protocols.core import UserError
from protocols.registry import CardRegistry

# MATLAB rgb2ycbcr (BT.601 studio swing) luma weights for R, G, B on 8-bit values, for parity with the
# published SR tables (BasicSR, MASA-SR, C²-Matching use the /255 form).
Y_WEIGHTS_255 = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
# EDSR-PyTorch / researchmm-TTSR form: the /255 weights rescaled by 256/255 and rounded.
Y_WEIGHTS_256 = (65.738 / 256.0, 129.057 / 256.0, 25.064 / 256.0)


def rgb_to_y(
    rgb: np.ndarray, *, weights: tuple[float, float, float] = Y_WEIGHTS_255, offset: float = 16.0
) -> np.ndarray:
    """BT.601 luma of an RGB image.

    ``rgb``: (H, W, 3), RGB order, values on [0, 255] (float or uint8). Returns float64 (H, W),
    16 + 65.481/255 R + 128.553/255 G + 24.966/255 B by default -- not rounded.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects (H, W, 3); got {rgb.shape}")
    return offset + rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2]


def _crop(image: np.ndarray, crop_border: int) -> np.ndarray:
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0; got {crop_border}")
    if crop_border == 0:
        return image
    return image[crop_border:-crop_border, crop_border:-crop_border, ...]


def _check_pair(sr: np.ndarray, hr: np.ndarray) -> None:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")


def psnr(sr: np.ndarray, hr: np.ndarray, *, crop_border: int, peak: float = 255.0) -> float:
    """PSNR in dB of two same-shape arrays on the [0, peak] scale; +inf when identical."""
    sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    _check_pair(sr, hr)
    mse = float(np.mean((_crop(sr, crop_border) - _crop(hr, crop_border)) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak**2 / mse))


# The one SSIM definition and the one aggregation of the suite: every preset of protocols.md §4 uses them (SRNTT's
# kornia SSIM appears only in its training log), so they are facts printed in each protocol sentence, not knobs.
SSIM_DEFINITION = "wang_valid_gaussian11_sigma1.5"  # what ``ssim`` below computes
AGGREGATION = "mean_of_per_image"  # a dataset value = the mean of the per-image records (reports, golden gate)


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
    """Wang et al. 2004 SSIM: 11x11 Gaussian window (sigma 1.5), valid region only, C1=(0.01*255)²,
    C2=(0.03*255)², on [0, 255] values; for (H, W, C) input the mean over channels."""
    sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    _check_pair(sr, hr)
    sr, hr = _crop(sr, crop_border), _crop(hr, crop_border)
    from skimage.metrics import structural_similarity  # imported on use: reading the metric cards stays light

    channel_axis = -1 if sr.ndim == 3 else None
    return float(
        structural_similarity(
            sr,
            hr,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255.0,
            channel_axis=channel_axis,
        )
    )


def psnr_y(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """PSNR (dB) on BT.601 Y (/255 form, float). Inputs (H, W, 3) RGB on [0, 255]."""
    return psnr(rgb_to_y(sr_rgb), rgb_to_y(hr_rgb), crop_border=crop_border)


def ssim_y(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """Wang SSIM on BT.601 Y (/255 form, float). Inputs (H, W, 3) RGB on [0, 255]."""
    return ssim(rgb_to_y(sr_rgb), rgb_to_y(hr_rgb), crop_border=crop_border)


def psnr_rgb(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """PSNR (dB) over all three RGB channels. Inputs (H, W, 3) on [0, 255]."""
    return psnr(sr_rgb, hr_rgb, crop_border=crop_border)


def ssim_rgb(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """Wang SSIM averaged over the RGB channels. Inputs (H, W, 3) on [0, 255]."""
    return ssim(sr_rgb, hr_rgb, crop_border=crop_border)


def psnr_rgb_uint8wrap_c2m(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """C²-Matching's official RGB "PSNR" (``mmsr/utils/metrics.py: psnr`` on the uint8 images of ``tensor2img``):
    ``(img1 - img2)**2`` evaluated in uint8 arithmetic, so the difference and its square wrap modulo 256 and
    errors of 16 levels or more are under-counted (the value is too high). Reproduced by name, beside the correct
    ``psnr_rgb``, to explain numbers scored with that script. Inputs (H, W, 3) on [0, 255] (rounded to uint8
    here, as ``tensor2img`` does); dB, +inf when the wrapped error is 0."""
    sr8 = np.clip(np.round(np.asarray(sr_rgb, np.float64)), 0, 255).astype(np.uint8)
    hr8 = np.clip(np.round(np.asarray(hr_rgb, np.float64)), 0, 255).astype(np.uint8)
    _check_pair(sr8, hr8)
    difference = _crop(sr8, crop_border) - _crop(hr8, crop_border)  # uint8: wraps modulo 256
    mse = float(np.mean(difference * difference))  # uint8 product: wraps again, as numpy's ** 2 does
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def lpips(sr_rgb: np.ndarray, hr_rgb: np.ndarray, *, crop_border: int) -> float:
    """LPIPS distance (protocols.perceptual; needs its network weights). Inputs (H, W, 3) RGB on [0, 255]."""
    from protocols.perceptual import lpips_distance

    return lpips_distance(sr_rgb, hr_rgb, crop_border=crop_border)


# --- metric cards --------------------------------------------------------------------------------

CHANNELS = ("y", "rgb")


@dataclass(frozen=True)
class MetricCard:
    """One quality metric, as data; ``protocols.scoring.score``, preset validation and the report tables read it.

    ``function(sr, hr, *, crop_border) -> float`` takes float64 arrays on [0, 255] of the card's ``channels``:
    ``y`` = the luma plane (H, W) in the preset's Y form (or a Y-only preset's grey plane), ``rgb`` = the
    quantised SR/HR levels (H, W, 3) RGB. ``decimals`` = digits printed in tables; ``unit`` e.g. ``dB``.
    A plugin file adds a metric with ``register_metric(card)``.
    """

    name: str
    label: str
    function: Callable[..., float]
    channels: str
    higher_is_better: bool
    decimals: int
    unit: str = ""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise UserError(f"metric card name {self.name!r}: use lower-case letters, digits and _")
        if self.channels not in CHANNELS:
            raise UserError(f"metric card {self.name!r}: channels {self.channels!r} is not one of {CHANNELS}")


BUILTIN_METRICS: tuple[MetricCard, ...] = (
    MetricCard("psnr_y", "PSNR-Y", psnr, "y", higher_is_better=True, decimals=2, unit="dB"),
    MetricCard("ssim_y", "SSIM-Y", ssim, "y", higher_is_better=True, decimals=3),
    MetricCard("psnr_rgb", "PSNR-RGB", psnr_rgb, "rgb", higher_is_better=True, decimals=2, unit="dB"),
    MetricCard("ssim_rgb", "SSIM-RGB", ssim_rgb, "rgb", higher_is_better=True, decimals=3),
    MetricCard("lpips", "LPIPS", lpips, "rgb", higher_is_better=False, decimals=4),
    MetricCard("psnr_rgb_uint8wrap_c2m", "PSNR-RGB (C² script, uint8 wrap)", psnr_rgb_uint8wrap_c2m, "rgb",
               higher_is_better=True, decimals=2, unit="dB"),
)
# The registry: built-in cards in table order, then plugins (``register_metric``).
METRICS: CardRegistry[MetricCard] = CardRegistry("metric", BUILTIN_METRICS)


def register_metric(card: MetricCard) -> None:
    """Add a plugin's metric card (``refsr-bench --plugin FILE``); it must not shadow a built-in metric."""
    METRICS.register(card)


def get_metric(name: str) -> MetricCard:
    """The metric card called ``name``; an unknown name is a UserError listing the valid ones."""
    return METRICS.lookup(name)
