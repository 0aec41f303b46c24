"""pytest-benchmark: the resize and metric paths (1024x768 RGB, ÷4), so regressions in the data pipeline show.

    pytest benchmarks/test_bench_resize_metrics.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from protocols import metrics
from protocols.resize import matlab_imresize


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    astronaut = data.astronaut()  # 512x512 RGB
    return np.asarray(Image.fromarray(astronaut).resize((1024, 768), Image.Resampling.BICUBIC))


def test_pillow_bicubic_down4(benchmark, photo: np.ndarray) -> None:
    image = Image.fromarray(photo)
    result = benchmark(image.resize, (256, 192), Image.Resampling.BICUBIC)
    assert result.size == (256, 192)


def test_matlab_imresize_down4(benchmark, photo: np.ndarray) -> None:
    result = benchmark(matlab_imresize, photo.astype(np.float32) / 255, 0.25)
    assert result.shape == (192, 256, 3)


def test_ssim_y(benchmark, photo: np.ndarray) -> None:
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 5, photo.shape), 0, 255).round()
    value = benchmark(metrics.ssim_y, noisy, photo.astype(np.float64), crop_border=4)
    assert 0 < value < 1


def test_psnr_y(benchmark, photo: np.ndarray) -> None:
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 5, photo.shape), 0, 255).round()
    value = benchmark(metrics.psnr_y, noisy, photo.astype(np.float64), crop_border=4)
    assert 30 < value < 60
