"""Image-quality metrics with every convention explicit.

All functions take 8-bit-valued images as float arrays on the [0, 255] scale, shape (H, W, 3) RGB
(channel order given explicitly where it matters) or (H, W) for single-channel Y, and compute in
float64. ``crop_border`` pixels are removed from every side before anything else. Dataset values are
the mean of per-image values (not a pooled MSE).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

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


def ssim(sr: np.ndarray, hr: np.ndarray, *, crop_border: int) -> float:
    """Wang et al. 2004 SSIM: 11x11 Gaussian window (sigma 1.5), valid region only, C1=(0.01*255)²,
    C2=(0.03*255)², on [0, 255] values; for (H, W, C) input the mean over channels."""
    sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    _check_pair(sr, hr)
    sr, hr = _crop(sr, crop_border), _crop(hr, crop_border)
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


HIGHER_IS_BETTER = {"psnr_y": True, "ssim_y": True, "psnr_rgb": True, "ssim_rgb": True, "lpips": False}
UNITS = {"psnr_y": "dB", "psnr_rgb": "dB", "ssim_y": "", "ssim_rgb": "", "lpips": ""}
