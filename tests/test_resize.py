"""MATLAB-style imresize: kernel properties, an independent loop implementation, Pillow parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from protocols.resize import _contributions, _cubic, matlab_imresize, pil_bicubic


def keys_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def loop_imresize_1d(signal: np.ndarray, scale: float) -> np.ndarray:
    """Direct transcription of MATLAB's contributions + symmetric padding, one sample at a time."""
    n_in = len(signal)
    n_out = math.ceil(n_in * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros(n_out)
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        weights = [(scale * keys_cubic((u - j) * scale)) if scale < 1 else keys_cubic(u - j) for j in taps]
        total = sum(weights)
        value = 0.0
        for j, w in zip(taps, weights, strict=True):
            k = j - 1
            while k < 0 or k >= n_in:  # symmetric boundary, edge sample repeated
                k = -k - 1 if k < 0 else 2 * n_in - 1 - k
            value += w / total * signal[k]
        out[i - 1] = value
    return out


def test_cubic_kernel_properties() -> None:
    assert _cubic(np.array([0.0]))[0] == 1.0
    assert np.allclose(_cubic(np.array([1.0, 2.0, -1.0, -2.0, 2.5])), 0.0)
    x = np.linspace(-2.5, 2.5, 101)
    assert np.allclose(_cubic(x), _cubic(-x))
    # partition of unity at any phase
    for phase in np.linspace(0, 1, 7):
        assert _cubic(phase + np.arange(-3, 4)).sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("scale", [0.25, 0.5, 4.0, 2.0])
def test_contribution_weights_are_normalised(scale: float) -> None:
    indices, weights = _contributions(37, math.ceil(37 * scale), scale)
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert indices.min() >= 0 and indices.max() < 37


@pytest.mark.parametrize("scale", [0.25, 4.0, 1 / 3])
def test_matches_independent_loop_implementation(scale: float) -> None:
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, size=(13, 11)).astype(np.float64)
    ours = matlab_imresize(image, scale).astype(np.float64)
    rows = np.stack([loop_imresize_1d(image[:, c], scale) for c in range(image.shape[1])], axis=1)
    expected = np.stack([loop_imresize_1d(rows[r], scale) for r in range(rows.shape[0])], axis=0)
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() < 1e-5  # float32 arithmetic in ours


def test_constant_image_stays_constant_and_uint8_mode_rounds() -> None:
    image = np.full((24, 20, 3), 77, dtype=np.uint8)
    assert np.array_equal(matlab_imresize(image, 0.25, uint8_passes=True), np.full((6, 5, 3), 77, np.uint8))
    assert np.allclose(matlab_imresize(image.astype(np.float32) / 255, 4.0), 77 / 255, atol=1e-6)


def test_pillow_path_equals_pillow() -> None:
    rng = np.random.default_rng(4)
    array = rng.integers(0, 256, size=(32, 24, 3), dtype=np.uint8)
    ours = pil_bicubic(torch.from_numpy(array).permute(2, 0, 1)[None].float() / 255, (8, 6))
    direct = np.asarray(Image.fromarray(array).resize((6, 8), Image.Resampling.BICUBIC))
    assert np.array_equal(np.round(ours[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), direct)


def test_pillow_and_matlab_agree_in_the_interior() -> None:
    """protocols.md §2: PIL and MATLAB bicubic differ mostly at the border."""
    rng = np.random.default_rng(5)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(64, 64)), 0), 1)
    smooth = ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(smooth).resize((16, 16), Image.Resampling.BICUBIC)).astype(np.float64)
    mat = matlab_imresize(smooth.astype(np.float32), 0.25)
    assert np.abs(pil - mat)[3:-3, 3:-3].max() <= 3.0
