"""Metric oracles: closed-form PSNR, an independent Wang-SSIM written with scipy, luma constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import correlate

from protocols import metrics


def wang_ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 ssim_index written out: 11x11 Gaussian (sigma 1.5), valid window only."""
    radius = np.arange(-5, 6)
    g = np.exp(-(radius**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def valid_filter(image: np.ndarray) -> np.ndarray:
        return correlate(image, window, mode="constant")[5:-5, 5:-5]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = valid_filter(x), valid_filter(y)
    var_x = valid_filter(x * x) - mu_x**2
    var_y = valid_filter(y * y) - mu_y**2
    cov = valid_filter(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


@pytest.fixture()
def image_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, size=(40, 52, 3)).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 12, size=hr.shape).round(), 0, 255)
    return sr, hr


def test_psnr_closed_form_constant_offset() -> None:
    hr = np.full((16, 16, 3), 100.0)
    for offset in (1.0, 5.0, 17.0):
        assert metrics.psnr_rgb(hr + offset, hr, crop_border=0) == pytest.approx(
            20 * math.log10(255 / offset), abs=1e-12
        )


def test_psnr_identical_is_inf_and_border_crop_excludes_border() -> None:
    hr = np.zeros((20, 20, 3))
    assert metrics.psnr_rgb(hr, hr, crop_border=0) == math.inf
    sr = hr.copy()
    sr[:4] = 255.0  # damage only the 4-pixel border
    assert metrics.psnr_rgb(sr, hr, crop_border=4) == math.inf
    assert metrics.psnr_rgb(sr, hr, crop_border=0) < 10


def test_ssim_equals_independent_wang_implementation(image_pair: tuple[np.ndarray, np.ndarray]) -> None:
    sr, hr = image_pair
    y_sr, y_hr = metrics.rgb_to_y(sr), metrics.rgb_to_y(hr)
    assert metrics.ssim(y_sr, y_hr, crop_border=0) == pytest.approx(wang_ssim_reference(y_sr, y_hr), abs=1e-10)
    assert metrics.ssim_y(sr, hr, crop_border=4) == pytest.approx(
        wang_ssim_reference(y_sr[4:-4, 4:-4], y_hr[4:-4, 4:-4]), abs=1e-10
    )
    per_channel = np.mean([wang_ssim_reference(sr[..., c], hr[..., c]) for c in range(3)])
    assert metrics.ssim_rgb(sr, hr, crop_border=0) == pytest.approx(per_channel, abs=1e-10)


def test_luma_constants_and_channel_order() -> None:
    white, black = np.full((1, 1, 3), 255.0), np.zeros((1, 1, 3))
    assert metrics.rgb_to_y(white)[0, 0] == pytest.approx(235.0, abs=1e-9)
    assert metrics.rgb_to_y(black)[0, 0] == pytest.approx(16.0, abs=1e-12)
    red = np.array([[[200.0, 30.0, 10.0]]])
    expected = 16 + (65.481 * 200 + 128.553 * 30 + 24.966 * 10) / 255
    assert metrics.rgb_to_y(red)[0, 0] == pytest.approx(expected, abs=1e-12)
    assert abs(metrics.rgb_to_y(red[..., ::-1])[0, 0] - expected) > 1.0  # R/B swap is a different luma


def test_psnr_of_luma_without_offset_is_lower_by_constant(image_pair: tuple[np.ndarray, np.ndarray]) -> None:
    sr, hr = image_pair
    studio = metrics.psnr_y(sr, hr, crop_border=0)
    luma = metrics.psnr(
        metrics.rgb_to_y(sr, weights=(0.299, 0.587, 0.114), offset=0.0),
        metrics.rgb_to_y(hr, weights=(0.299, 0.587, 0.114), offset=0.0),
        crop_border=0,
    )
    # Y - 16 = (219/255)·Y' up to the 3-decimal rounding of the MATLAB weights.
    assert studio - luma == pytest.approx(20 * math.log10(255 / 219), abs=2e-4)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 5)), crop_border=0)


def test_lpips_without_backbone_weights_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import torch

    from protocols import perceptual
    from protocols.core import UserError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    perceptual._model.cache_clear()
    with pytest.raises(UserError, match="alexnet-owt-7be5be79.pth"):
        perceptual.lpips_distance(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), crop_border=0)
    perceptual._model.cache_clear()
