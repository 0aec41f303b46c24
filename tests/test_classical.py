"""Classical matchers: brute-force numpy/OpenCV oracles, window geometry, PatchMatch on a known shift."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from methods.base import Matcher, Method
from methods.classical import build_matcher, zncc_block_bytes
from methods.registry import create
from protocols.core import UserError
from protocols.resize import from_uint8_array

pytestmark = pytest.mark.usefixtures("one_thread")



NAMES = ("zncc", "zncc_blurry", "patchmatch", "dense_sift", "dense_sift_blurry")
LUMA = np.array([0.299, 0.587, 0.114])


def _random_image(rng: np.random.Generator, height: int, width: int, smooth: bool = False) -> np.ndarray:
    image = rng.integers(0, 256, size=(height, width, 3)).astype(np.float64)
    if smooth:  # a little spatial correlation so that PatchMatch propagation has something to follow
        image = (image + np.roll(image, 1, 0) + np.roll(image, 1, 1) + np.roll(image, (1, 1), (0, 1))) / 4
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _pil_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def _window(py: int, px: int, radius: int, ref_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Candidates of the window in row-major order, inside the reference."""
    return [
        (y, x)
        for y in range(py - radius, py + radius + 1)
        for x in range(px - radius, px + radius + 1)
        if 0 <= y < ref_hw[0] and 0 <= x < ref_hw[1]
    ]


def _patch(padded: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    return padded[y : y + size, x : x + size]


def _oracle_zncc(up: np.ndarray, ref: np.ndarray, scale: int, patch: int, radius: int):
    half = patch // 2
    up_grey = np.pad((up / 255.0) @ LUMA, half, mode="edge")
    ref_grey = np.pad((ref / 255.0) @ LUMA, half, mode="edge")
    lr_h, lr_w = up.shape[0] // scale, up.shape[1] // scale
    best = np.zeros((lr_h, lr_w, 2), np.int64)
    score = np.zeros((lr_h, lr_w))
    margin = np.zeros((lr_h, lr_w))
    for i in range(lr_h):
        for j in range(lr_w):
            a = _patch(up_grey, scale * i, scale * j, patch)
            a = a - a.mean()
            values = []
            for y, x in _window(scale * i, scale * j, radius, ref.shape[:2]):
                b = _patch(ref_grey, y, x, patch)
                b = b - b.mean()
                norm = np.linalg.norm(a) * np.linalg.norm(b)
                values.append(float((a * b).sum() / norm) if norm > 1e-12 else 0.0)
            candidates = _window(scale * i, scale * j, radius, ref.shape[:2])
            k = int(np.argmax(values))
            best[i, j], score[i, j] = candidates[k], values[k]
            margin[i, j] = values[k] - max(v for n, v in enumerate(values) if n != k)
    return best, score, margin


@pytest.mark.parametrize(("scale", "blurry"), [(1, False), (2, False), (2, True)])
def test_zncc_equals_brute_force_oracle(scale: int, blurry: bool) -> None:
    rng = np.random.default_rng(scale + 10 * blurry)
    lr = _random_image(rng, 6, 7)
    ref = _random_image(rng, 11 * scale, 8 * scale)  # smaller than LR↑ in height: windows leave the ref
    matcher = build_matcher("zncc", scale=scale, blurry=blurry, patch_size_px=5, search_radius_px=4)
    result = matcher.match(from_uint8_array(lr), from_uint8_array(ref))
    up = lr if scale == 1 else _pil_resize(lr, 6 * scale, 7 * scale)
    ref_used = ref
    if blurry:
        ref_used = _pil_resize(_pil_resize(ref, ref.shape[0] // scale, ref.shape[1] // scale), *ref.shape[:2])
    best, score, margin = _oracle_zncc(up, ref_used, scale, 5, 4)
    assert result.ref_yx.shape == (6, 7, 2) and result.score.shape == (6, 7)
    clear = margin > 1e-4  # float32 FFT vs float64 loops may swap near-ties only
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(result.ref_yx.numpy()[clear], best[clear])
    np.testing.assert_allclose(result.score.numpy(), score, atol=1e-4)


def test_dense_sift_equals_brute_force_oracle() -> None:
    rng = np.random.default_rng(3)
    scale, patch, radius = 2, 9, 3
    lr = _random_image(rng, 5, 6, smooth=True)
    ref = _random_image(rng, 12, 14, smooth=True)
    result = build_matcher("dense_sift", scale=scale, patch_size_px=patch, search_radius_px=radius).match(
        from_uint8_array(lr), from_uint8_array(ref)
    )
    up = _pil_resize(lr, 10, 12)
    grey = lambda image: np.clip(np.round((image / 255.0) @ LUMA * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    sift = cv2.SIFT_create()

    def describe(image: np.ndarray, points: list[tuple[int, int]]) -> np.ndarray:
        keypoints = [cv2.KeyPoint(float(x), float(y), patch / 6.0, 0.0) for y, x in points]
        return sift.compute(grey(image), keypoints)[1].astype(np.float64)

    ref_points = [(y, x) for y in range(12) for x in range(14)]
    ref_desc = dict(zip(ref_points, describe(ref, ref_points), strict=True))
    queries = [(scale * i, scale * j) for i in range(5) for j in range(6)]
    checked = 0
    for (py, px), q in zip(queries, describe(up, queries), strict=True):
        candidates = _window(py, px, radius, (12, 14))
        distances = np.array([np.linalg.norm(q - ref_desc[c]) for c in candidates])
        order = np.argsort(distances, kind="stable")
        if distances[order[1]] - distances[order[0]] > 1e-3:
            assert tuple(result.ref_yx[py // scale, px // scale].long().tolist()) == candidates[order[0]]
            checked += 1
    assert checked >= 25


def test_patchmatch_recovers_a_known_shift_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    base = _random_image(rng, 48, 56, smooth=True)
    shift_y, shift_x = 3, -4
    image = base[8:40, 8:48]
    ref = base[8 + shift_y : 40 + shift_y, 8 + shift_x : 48 + shift_x]  # image(p) = ref(p - shift)
    matcher = build_matcher("patchmatch", scale=1, patch_size_px=7, search_radius_px=10)
    first = matcher.match(from_uint8_array(image), from_uint8_array(ref)).ref_yx.numpy()
    second = matcher.match(from_uint8_array(image), from_uint8_array(ref)).ref_yx.numpy()
    np.testing.assert_array_equal(first, second)
    rows, cols = np.mgrid[0:32, 0:40]
    expected = np.stack([rows - shift_y, cols - shift_x], axis=-1)
    interior = (expected[..., 0] >= 3) & (expected[..., 0] < 29) & (expected[..., 1] >= 3) & (expected[..., 1] < 37)
    interior &= (rows >= 3) & (rows < 29) & (cols >= 3) & (cols < 37)
    exact = np.all(first == expected, axis=-1)[interior].mean()
    assert exact >= 0.95, exact


@pytest.mark.parametrize("kind", ["zncc", "dense_sift", "patchmatch"])
def test_matches_stay_inside_the_window_and_the_reference(kind: str) -> None:
    rng = np.random.default_rng(7)
    scale, radius = 2, 3
    lr, ref = _random_image(rng, 7, 9), _random_image(rng, 10, 30)
    ref_yx = build_matcher(kind, scale=scale, patch_size_px=5, search_radius_px=radius).match(
        from_uint8_array(lr), from_uint8_array(ref)
    ).ref_yx.numpy()
    query = scale * np.stack(np.meshgrid(np.arange(7), np.arange(9), indexing="ij"), axis=-1)
    reachable = (query[..., 0] - radius) <= 9  # some window rows exist inside the 10-row reference
    assert (np.abs(ref_yx - query).max(axis=-1) <= radius)[reachable].all()
    assert ((ref_yx[..., 0] >= 0) & (ref_yx[..., 0] <= 9) & (ref_yx[..., 1] >= 0) & (ref_yx[..., 1] <= 29))[
        reachable
    ].all()


@pytest.mark.parametrize("name", NAMES)
def test_registry_factories_follow_the_method_interface(name: str) -> None:
    matcher = create(name, scale=8, device="cpu")
    assert isinstance(matcher, Method) and isinstance(matcher, Matcher)
    assert matcher.info.name == name and matcher.info.scale == 8 and matcher.info.inputs == ("lr", "ref")
    assert dict(matcher.info.parts) == {} and matcher.weights_loaded is True
    assert matcher.info.choices["patch_size_px" if "sift" not in name else "descriptor_support_px"] == "65"
    assert ("Ref↓↑" in matcher.info.choices["reference"]) == name.endswith("_blurry")
    assert isinstance(matcher.module, torch.nn.Module) and not list(matcher.module.parameters())
    matcher.load_weights("anything")  # no-op
    image = torch.zeros(1, 3, 8, 8)
    with pytest.raises(UserError, match="matcher only"):
        matcher.predict(image, image)
    with pytest.raises(UserError, match="not a network"):
        matcher.cost_graph((8, 8), (64, 64))
    with pytest.raises(UserError, match="unsupported scale 5"):
        create(name, scale=5)


def test_bad_inputs_raise_user_errors() -> None:
    matcher = create("zncc", scale=2)
    with pytest.raises(UserError, match="shape"):
        matcher.match(torch.zeros(3, 8, 8), torch.zeros(1, 3, 16, 16))
    with pytest.raises(UserError, match="odd"):
        build_matcher("zncc", scale=2, patch_size_px=4)
    with pytest.raises(UserError, match="unknown classical matcher"):
        build_matcher("sad", scale=2)
    with pytest.raises(UserError, match="search_radius_px"):
        matcher.with_search_radius(-1)


def test_zncc_search_is_chunked_under_2gb() -> None:
    # x8 Sintel setting: 65 px patches, ±100 px window; one block of 8 x 8 queries is the unit of memory
    # (about 135 MB); the frame-level arrays (grey images, norms) add a few MB on a 1024 x 436 frame.
    assert zncc_block_bytes(scale=8, patch_size_px=65, search_radius_px=100) < 2**30
