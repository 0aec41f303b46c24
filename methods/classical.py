"""Classical correspondence baselines of CC-Net Table 2: ZNCC, dense SIFT, PatchMatch (+ "_blurry" variants).

Every matcher follows the geometry of CC-Net's test protocol: the LR is bicubic-upsampled by the scale
(PIL bicubic on 8-bit images, the RefSR convention), and for every LR pixel (i, j) the query is the HR
position p = (s*i, s*j) on that upsampled image (the ``Correspondence`` convention). The best reference
position q is searched among the pixels of the reference with ``max(|q - p|) <= search_radius_px``
(Chebyshev window, candidates outside the reference skipped; ties -> first in row-major order).
"_blurry" variants search the reference's bicubic down-up copy (PIL ÷s then ×s) instead of the sharp
reference, so both sides carry the same blur.

Patch support defaults to ``8*s + 1`` HR pixels (65 at x8, 33 at x4): 8 LR pixels plus the centre, i.e.
the 65 x 65 receptive field of CC-Net at the paper's x8, for all three features so that every matcher sees
the same context. (On one clean Sintel frame at x8, sharp ZNCC reached 5 % at <= 0 px with 33 px patches
and 17 % with 65 px; ZNCC_blurry was insensitive, 40 % vs 39 %.) Patches and descriptors near the image
borders use replicate padding. Every parameter is recorded in ``MethodInfo.choices``.

Memory: the search is tiled over blocks of ``_TILE_LR`` x ``_TILE_LR`` queries; one block holds its
correlation volume only (about 135 MB at x8 with 65 px patches and a ±100 px window), never the full
cost volume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from methods.base import MethodInfo, check_image_tensor, info_from_card
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.errors import unknown_name
from protocols.resize import pil_bicubic, to_uint8_array

SUPPORTED_SCALES = (1, 2, 3, 4, 8)
DEFAULT_SEARCH_RADIUS_PX = 100
_TILE_LR = 8  # queries per side of one search block
# BT.601 luma weights for the grey features (ZNCC, SIFT); ZNCC is invariant to their overall gain.
_LUMA_RGB = (0.299, 0.587, 0.114)


def default_patch_size_px(scale: int) -> int:
    """Patch support in HR pixels for scale s: 8 LR pixels plus the centre pixel (odd; 65 = CC-Net's field)."""
    return 8 * scale + 1


def default_patch_step_px(scale: int) -> int:
    """PatchMatch samples its patch every ``max(1, s // 4)`` pixels: 33 x 33 samples at x4 and x8."""
    return max(1, scale // 4)


# --------------------------------------------------------------------------------------------------
# search geometry shared by the matchers


@dataclass(frozen=True)
class _Block:
    """A block of LR query indices [i0, i1) x [j0, j1) and its candidate-centre region in ref pixels."""

    i0: int
    i1: int
    j0: int
    j1: int
    scale: int
    radius: int

    @property
    def top(self) -> int:  # first candidate row (ref coordinates, may be negative)
        return self.scale * self.i0 - self.radius

    @property
    def left(self) -> int:
        return self.scale * self.j0 - self.radius

    @property
    def rows(self) -> int:  # candidate rows covered by the union of the block's windows
        return self.scale * (self.i1 - self.i0 - 1) + 2 * self.radius + 1

    @property
    def cols(self) -> int:
        return self.scale * (self.j1 - self.j0 - 1) + 2 * self.radius + 1

    @property
    def count(self) -> int:
        return (self.i1 - self.i0) * (self.j1 - self.j0)


def _blocks(lr_h: int, lr_w: int, scale: int, radius: int) -> Iterator[_Block]:
    for i0 in range(0, lr_h, _TILE_LR):
        for j0 in range(0, lr_w, _TILE_LR):
            yield _Block(i0, min(i0 + _TILE_LR, lr_h), j0, min(j0 + _TILE_LR, lr_w), scale, radius)


@dataclass(frozen=True)
class _Canvas:
    """Zero padding that puts every block's candidate region inside an array holding the ref.

    ``pad_top``/``pad_left`` = R; bottom/right cover query positions beyond the ref (the LR↑ may be
    larger than the ref) plus R.
    """

    pad_top: int
    pad_bottom: int
    pad_left: int
    pad_right: int

    @staticmethod
    def for_search(query_hw: tuple[int, int], ref_hw: tuple[int, int], radius: int) -> _Canvas:
        bottom = max(radius, query_hw[0] - ref_hw[0] + radius + 1)
        right = max(radius, query_hw[1] - ref_hw[1] + radius + 1)
        return _Canvas(radius, bottom, radius, right)

    def pad(self, array: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        """Pad the last two dims."""
        return F.pad(array, (self.pad_left, self.pad_right, self.pad_top, self.pad_bottom), value=value)

    def region(self, array: torch.Tensor, block: _Block, extra: int = 0) -> torch.Tensor:
        """The block's candidate region (+ ``extra`` rows/cols for patch support) of a padded array."""
        y0, x0 = block.top + self.pad_top, block.left + self.pad_left
        return array[..., y0 : y0 + block.rows + extra, x0 : x0 + block.cols + extra]


def _window_argmax(
    volume: torch.Tensor, block: _Block, penalty: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best candidate of each query inside its own Chebyshev window.

    ``volume``: (n, rows, cols) scores over the block's candidate region (higher = better), queries in
    row-major order within the block. ``penalty``: (rows, cols), 0 for candidates inside the ref and
    -inf outside. ``weight``: optional (rows, cols) factor applied to the scores first (ZNCC norms).
    Returns ref positions (n, 2) int64 (y, x) and scores (n,) float32 (-inf when nothing is allowed).
    """
    scale, radius = block.scale, block.radius
    side = 2 * radius + 1
    device = volume.device
    a = torch.arange(block.i1 - block.i0, device=device).repeat_interleave(block.j1 - block.j0)
    b = torch.arange(block.j1 - block.j0, device=device).repeat(block.i1 - block.i0)
    offsets = torch.arange(side, device=device)
    rows = ((scale * a)[:, None] + offsets)[:, :, None]  # (n, side, 1)
    cols = ((scale * b)[:, None] + offsets)[:, None, :]  # (n, 1, side)
    query = torch.arange(block.count, device=device)[:, None, None]
    windows = volume[query, rows, cols]
    if weight is not None:
        windows = windows * weight[rows, cols]
    windows = (windows + penalty[rows, cols]).reshape(block.count, -1)
    best = torch.argmax(windows, dim=1)  # first maximum = first in row-major order
    score = windows.gather(1, best[:, None])[:, 0]
    y = block.top + scale * a + torch.div(best, side, rounding_mode="floor")
    x = block.left + scale * b + best % side
    return torch.stack([y, x], dim=1).cpu(), score.float().cpu()


def _smooth_fft_size(length: int) -> int:
    """Smallest n >= length with no prime factor above 5 (fast FFT sizes)."""
    n = length
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _grey(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float64 (H, W) luma in [0, 1]."""
    weights = np.asarray(_LUMA_RGB, dtype=np.float64)
    return (image.astype(np.float64) / 255.0) @ weights


def _box_sum(array: torch.Tensor, size: int) -> torch.Tensor:
    """Sums over every size x size window (valid positions) of a 2-D float64 tensor (integral image)."""
    integral = F.pad(array.cumsum(0).cumsum(1), (1, 0, 1, 0))
    return integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]


def _query_positions(lr_hw: tuple[int, int], scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys = scale * torch.arange(lr_hw[0])
    xs = scale * torch.arange(lr_hw[1])
    return ys, xs


def _block_queries(block: _Block) -> tuple[torch.Tensor, torch.Tensor]:
    """LR indices (i, j) of a block's queries in row-major order."""
    i = torch.arange(block.i0, block.i1).repeat_interleave(block.j1 - block.j0)
    j = torch.arange(block.j0, block.j1).repeat(block.i1 - block.i0)
    return i, j


def _cut_region(array: torch.Tensor, block: _Block) -> torch.Tensor:
    """The block's candidate region of an unpadded (C, H, W) map, zero where it leaves the map."""
    channels, height, width = array.shape
    out = array.new_zeros(channels, block.rows, block.cols)
    y0, x0 = max(block.top, 0), max(block.left, 0)
    y1, x1 = min(block.top + block.rows, height), min(block.left + block.cols, width)
    if y1 > y0 and x1 > x0:
        out[:, y0 - block.top : y1 - block.top, x0 - block.left : x1 - block.left] = array[:, y0:y1, x0:x1]
    return out


def _outside_penalty(canvas: _Canvas, ref_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Padded map: 0 on reference pixels, -inf on the canvas padding (candidates outside the ref)."""
    return canvas.pad(torch.zeros(ref_hw, dtype=torch.float32), value=float("-inf")).to(device)


class _Search(Protocol):
    def __call__(self, query_image: np.ndarray, ref: np.ndarray, lr_hw: tuple[int, int], scale: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``query_image``: uint8 (s*h, s*w, 3) RGB, the upsampled LR; ``ref``: uint8 (H, W, 3) RGB;
        ``lr_hw`` = (h, w). Returns int64 (h, w, 2) ref positions (y, x) and float32 (h, w) scores."""
        ...

    def describe(self) -> dict[str, str]: ...


# --------------------------------------------------------------------------------------------------
# ZNCC


@dataclass(frozen=True)
class ZnccSearch:
    """Full-search zero-mean normalised cross-correlation of grey (BT.601 luma) patches.

    ZNCC(p, q) = sum_u a(u) b(u) / (|a| |b|) with a, b the zero-mean patches of the query image around p
    and of the reference around q. Numerators come from FFT cross-correlation per block of queries
    (float32), reference norms from integral images (float64). Flat patches (zero norm) score 0.
    """

    patch_size_px: int
    search_radius_px: int = DEFAULT_SEARCH_RADIUS_PX

    def describe(self) -> dict[str, str]:
        return {
            "feature": "grey BT.601 luma patch, zero mean, unit norm (ZNCC)",
            "patch_size_px": str(self.patch_size_px),
            "search_radius_px": f"{self.search_radius_px} (Chebyshev window, full search)",
            "border": "replicate padding of both images for patch support",
            "computation": "FFT cross-correlation per block of 8x8 queries; float32 numerators, float64 norms",
        }

    def __call__(self, query_image: np.ndarray, ref: np.ndarray, lr_hw: tuple[int, int], scale: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        k, half, radius = self.patch_size_px, self.patch_size_px // 2, self.search_radius_px
        query_grey = torch.from_numpy(_grey(query_image))
        ref_grey = torch.from_numpy(_grey(ref))
        ref_hw = (ref.shape[0], ref.shape[1])
        query_pad = F.pad(query_grey[None, None], (half,) * 4, mode="replicate")[0, 0]
        # Reference: replicate pad for patch support; norms of zero-mean patches via integral images.
        ref_pad = F.pad(ref_grey[None, None], (half,) * 4, mode="replicate")[0, 0]
        n = float(k * k)
        sums, squares = _box_sum(ref_pad, k), _box_sum(ref_pad * ref_pad, k)
        ref_norm = (squares - sums * sums / n).clamp_min(0.0).sqrt()  # (Hr, Wr)
        canvas = _Canvas.for_search((scale * lr_hw[0], scale * lr_hw[1]), ref_hw, radius)
        # Subtracting the mean keeps float32 correlation sums small; ZNCC ignores offsets (zero-mean queries).
        ref_big = canvas.pad((ref_pad - ref_pad.mean()).float()).to(device)
        # Flat reference patches (zero norm) get weight 0, i.e. ZNCC 0.
        inverse_norm = torch.where(ref_norm > 1e-6, 1.0 / ref_norm.clamp_min(1e-6), torch.zeros_like(ref_norm))
        weight_big = canvas.pad(inverse_norm.float()).to(device)
        penalty_big = _outside_penalty(canvas, ref_hw, device)
        positions = torch.zeros(lr_hw[0], lr_hw[1], 2, dtype=torch.int64)
        scores = torch.zeros(lr_hw[0], lr_hw[1], dtype=torch.float32)
        for block in _blocks(lr_hw[0], lr_hw[1], scale, radius):
            region = canvas.region(ref_big, block, extra=k - 1)
            size = (_smooth_fft_size(region.shape[0]), _smooth_fft_size(region.shape[1]))
            i, j = _block_queries(block)
            kernels = _unit_patches(query_pad, scale * i, scale * j, k).float().to(device)  # (n, k, k)
            spectrum = torch.fft.rfft2(region, s=size)
            correlation = torch.fft.irfft2(spectrum[None] * torch.fft.rfft2(kernels, s=size).conj(), s=size)
            best, best_score = _window_argmax(
                correlation, block, canvas.region(penalty_big, block), canvas.region(weight_big, block)
            )
            positions[i, j] = best.cpu()
            scores[i, j] = best_score.cpu()
        return positions, scores


def _unit_patches(padded: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-mean, unit-norm (n, size, size) patches centred at (ys, xs) of a replicate-padded grey image
    (padded coordinates: the patch top-left equals the centre). Flat patches become all zeros."""
    offsets = torch.arange(size)
    patches = padded[(ys[:, None] + offsets)[:, :, None], (xs[:, None] + offsets)[:, None, :]]
    patches = patches - patches.mean(dim=(1, 2), keepdim=True)
    norms = patches.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()
    return torch.where(norms > 1e-9, patches / norms.clamp_min(1e-12), torch.zeros_like(patches))


def zncc_block_bytes(scale: int, patch_size_px: int, search_radius_px: int) -> int:
    """Upper bound of the float32 working memory of one ZNCC search block (the chunk size), in bytes."""
    queries = _TILE_LR * _TILE_LR
    region = scale * (_TILE_LR - 1) + 2 * search_radius_px + patch_size_px
    fft = _smooth_fft_size(region)
    spectra = 2 * queries * fft * (fft // 2 + 1) * 8  # kernel spectra and their product, complex64
    volumes = 3 * queries * fft * fft * 4  # correlation, zncc and gathered windows, float32
    return spectra + volumes


# --------------------------------------------------------------------------------------------------
# dense SIFT


@dataclass(frozen=True)
class DenseSiftSearch:
    """Upright SIFT descriptors (OpenCV ``SIFT.compute``) at every reference pixel and at every query.

    Keypoint size = patch_size_px / 6, so that the 4x4 descriptor cells (3 * size / 2 pixels each)
    span the same support as the ZNCC patch. Matching = smallest Euclidean descriptor distance.
    """

    patch_size_px: int
    search_radius_px: int = DEFAULT_SEARCH_RADIUS_PX

    @property
    def keypoint_size_px(self) -> float:
        return self.patch_size_px / 6.0

    def describe(self) -> dict[str, str]:
        return {
            "feature": "OpenCV SIFT descriptor (128-d) on grey BT.601 luma, uint8 image",
            "descriptor_support_px": str(self.patch_size_px),
            "keypoint_size": f"{self.keypoint_size_px:.4f} (= support / 6), angle 0 (upright), octave 0",
            "distance": "Euclidean between descriptors",
            "search_radius_px": f"{self.search_radius_px} (Chebyshev window, full search)",
            "opencv": cv2.__version__,
        }

    def _descriptors(self, grey_u8: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        size = self.keypoint_size_px
        keypoints = [cv2.KeyPoint(float(x), float(y), size, 0.0) for y, x in zip(ys, xs, strict=True)]
        sift = cv2.SIFT_create()  # type: ignore[attr-defined]
        kept, descriptors = sift.compute(grey_u8, keypoints)
        if descriptors is None or len(kept) != len(keypoints):
            raise RuntimeError(f"OpenCV SIFT dropped keypoints ({len(kept)} of {len(keypoints)} kept)")
        return descriptors.astype(np.float32)

    def __call__(self, query_image: np.ndarray, ref: np.ndarray, lr_hw: tuple[int, int], scale: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        radius = self.search_radius_px
        to_u8 = lambda image: np.clip(np.round(_grey(image) * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
        ys, xs = np.meshgrid(scale * np.arange(lr_hw[0]), scale * np.arange(lr_hw[1]), indexing="ij")
        query = self._descriptors(to_u8(query_image), ys.ravel(), xs.ravel()).reshape(lr_hw[0], lr_hw[1], -1)
        ref_hw = (ref.shape[0], ref.shape[1])
        ref_ys, ref_xs = np.mgrid[0 : ref_hw[0], 0 : ref_hw[1]]
        ref_desc = self._descriptors(to_u8(ref), ref_ys.ravel(), ref_xs.ravel())
        ref_desc_t = torch.from_numpy(ref_desc).reshape(ref_hw[0], ref_hw[1], -1).permute(2, 0, 1).to(device)
        canvas = _Canvas.for_search((scale * lr_hw[0], scale * lr_hw[1]), ref_hw, radius)
        query_t = torch.from_numpy(query).to(device)
        penalty_big = _outside_penalty(canvas, ref_hw, device)
        positions = torch.zeros(lr_hw[0], lr_hw[1], 2, dtype=torch.int64)
        scores = torch.zeros(lr_hw[0], lr_hw[1], dtype=torch.float32)
        for block in _blocks(lr_hw[0], lr_hw[1], scale, radius):
            # Cut the block's region from the unpadded map (zeros outside): a padded copy of the whole
            # 128-channel map would cost ~0.4 GB on a Sintel frame.
            region = _cut_region(ref_desc_t, block).reshape(ref_desc_t.shape[0], -1)  # (128, rows*cols)
            region_sq = region.pow(2).sum(0, keepdim=True)
            i, j = _block_queries(block)
            q = query_t[i, j]  # (n, 128)
            distance_sq = q.pow(2).sum(1, keepdim=True) + region_sq - 2.0 * (q @ region)
            volume = (-distance_sq).reshape(block.count, block.rows, block.cols)
            best, best_score = _window_argmax(volume, block, canvas.region(penalty_big, block))
            positions[i, j] = best.cpu()
            scores[i, j] = best_score.cpu()
        return positions, scores


# --------------------------------------------------------------------------------------------------
# PatchMatch


@dataclass(frozen=True)
class PatchMatchSearch:
    """Randomized PatchMatch (Barnes et al. 2009) on RGB patches, cost = mean squared difference.

    The nearest-neighbour field lives on the LR query grid; neighbours are s HR pixels apart, so a
    neighbour's match propagates shifted by s. Vectorised schedule per iteration: a vertical scanline
    sweep (each row from its already-updated neighbour row), a horizontal sweep (columns), then random
    search around the current best with radius R * alpha^k (k = 0, 1, ... while >= 1). Sweep directions
    reverse on odd iterations. Random initialisation and search draw from a seeded ``torch.Generator``.
    Every candidate is clamped into the query's search window and the reference.
    """

    patch_size_px: int
    search_radius_px: int = DEFAULT_SEARCH_RADIUS_PX
    patch_step_px: int = 1
    iterations: int = 5
    alpha: float = 0.5
    seed: int = 0

    def describe(self) -> dict[str, str]:
        return {
            "feature": "RGB patch in [0, 1], cost = mean squared difference (lower = better; score = -cost)",
            "patch_size_px": str(self.patch_size_px),
            "patch_step_px": f"{self.patch_step_px} (patch sampled every step pixels: the cost's dimension)",
            "search_radius_px": f"{self.search_radius_px} (Chebyshev window; candidates clamped into it)",
            "iterations": str(self.iterations),
            "random_search_alpha": str(self.alpha),
            "seed": f"{self.seed} (torch.Generator, CPU)",
            "schedule": "vertical then horizontal scanline propagation, then random search; reversed on odd "
            "iterations",
        }

    def __call__(self, query_image: np.ndarray, ref: np.ndarray, lr_hw: tuple[int, int], scale: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        k, half, radius = self.patch_size_px, self.patch_size_px // 2, self.search_radius_px
        h, w = lr_hw
        ref_h, ref_w = ref.shape[:2]
        query = torch.from_numpy(query_image).permute(2, 0, 1).float().div(255.0)
        ref_t = torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1).float().div(255.0)
        query_pad = F.pad(query[None], (half,) * 4, mode="replicate")[0]
        ref_pad = F.pad(ref_t[None], (half,) * 4, mode="replicate")[0].to(device)
        ys, xs = _query_positions(lr_hw, scale)
        taps = torch.arange(0, k, self.patch_step_px)  # sampled offsets inside the patch
        rows = ys[:, None] + taps
        cols = xs[:, None] + taps
        features = query_pad[:, rows[:, None, :, None], cols[None, :, None, :]]  # (3, h, w, n, n)
        features = features.permute(1, 2, 0, 3, 4).reshape(h, w, -1).to(device)
        ref_flat = ref_pad.reshape(-1)
        padded_w = ref_w + 2 * half
        channel = torch.arange(3, device=device) * (ref_h + 2 * half) * padded_w
        taps = taps.to(device)
        patch_offsets = (channel[:, None, None] + taps[None, :, None] * padded_w + taps[None, None, :]).reshape(-1)
        py = ys.to(device)[:, None].expand(h, w)
        px = xs.to(device)[None, :].expand(h, w)
        y_lo, y_hi = (py - radius).clamp(0, ref_h - 1), (py + radius).clamp(0, ref_h - 1)
        x_lo, x_hi = (px - radius).clamp(0, ref_w - 1), (px + radius).clamp(0, ref_w - 1)

        def clamp(cy: torch.Tensor, cx: torch.Tensor, sel: tuple) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.minimum(torch.maximum(cy, y_lo[sel]), y_hi[sel]), torch.minimum(
                torch.maximum(cx, x_lo[sel]), x_hi[sel]
            )

        def cost(sel: tuple, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
            # Patch top-left in padded coordinates equals the centre in ref coordinates.
            index = (cy * padded_w + cx)[..., None] + patch_offsets
            return (ref_flat[index] - features[sel]).pow(2).mean(-1)

        generator = torch.Generator().manual_seed(self.seed)

        def uniform_int(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
            draw = torch.rand(low.shape, generator=generator, dtype=torch.float64).to(device)
            return low + torch.floor(draw * (high - low + 1).double()).long().clamp_max(high - low)

        everything = (slice(None), slice(None))
        best_y, best_x = uniform_int(y_lo, y_hi), uniform_int(x_lo, x_hi)
        best_cost = cost(everything, best_y, best_x)

        def consider(sel: tuple, cy: torch.Tensor, cx: torch.Tensor) -> None:
            cy, cx = clamp(cy, cx, sel)
            candidate = cost(sel, cy, cx)
            better = candidate < best_cost[sel]  # strictly: earlier candidates win ties
            best_y[sel] = torch.where(better, cy, best_y[sel])
            best_x[sel] = torch.where(better, cx, best_x[sel])
            best_cost[sel] = torch.where(better, candidate, best_cost[sel])

        for iteration in range(self.iterations):
            step = 1 if iteration % 2 == 0 else -1
            row_order = range(1, h) if step == 1 else range(h - 2, -1, -1)
            for i in row_order:
                row_source = (i - step, slice(None))
                consider((i, slice(None)), best_y[row_source] + step * scale, best_x[row_source])
            col_order = range(1, w) if step == 1 else range(w - 2, -1, -1)
            for j in col_order:
                col_source = (slice(None), j - step)
                consider((slice(None), j), best_y[col_source], best_x[col_source] + step * scale)
            search = float(radius)
            while search >= 1.0:
                r = int(search)
                dy = uniform_int(torch.full_like(best_y, -r), torch.full_like(best_y, r))
                dx = uniform_int(torch.full_like(best_x, -r), torch.full_like(best_x, r))
                consider(everything, best_y + dy, best_x + dx)
                search *= self.alpha
        positions = torch.stack([best_y, best_x], dim=-1).cpu()
        return positions, (-best_cost).float().cpu()


# --------------------------------------------------------------------------------------------------
# the method wrapper


class _NotANetwork(torch.nn.Module):
    """Placeholder module: classical matchers have no parameters."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        raise UserError("classical matchers are not networks")


class ClassicalMatcher:
    """A Method-like wrapper around one search: ``match`` only (``predict`` raises UserError)."""

    def __init__(self, info: MethodInfo, search: _Search, *, blurry: bool, device: str = "cpu") -> None:
        self.info = info
        self.search = search
        self.blurry = blurry
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise UserError(f"unknown device {device!r}; use 'cpu' or 'cuda[:N]'") from error
        self.module: torch.nn.Module = _NotANetwork()
        self.weights_loaded = True

    def with_search_radius(self, search_radius_px: int) -> ClassicalMatcher:
        """The same matcher searching a Chebyshev window of ``search_radius_px`` (recorded in ``info.choices``)."""
        if search_radius_px < 0:
            raise UserError(f"search_radius_px must be >= 0; got {search_radius_px}")
        search = dataclasses.replace(self.search, search_radius_px=search_radius_px)  # type: ignore[type-var]
        info = dataclasses.replace(self.info, choices={**self.info.choices, **search.describe()})
        return ClassicalMatcher(info, search, blurry=self.blurry, device=str(self.device))

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        raise UserError(f"{self.info.name} is a matcher only: it has match(), not predict()")

    def load_weights(self, path: object = None) -> None:
        """No weights: nothing to load."""

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        raise UserError(f"{self.info.name} is a classical matcher, not a network: it has no cost graph")

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """LR (1, 3, h, w) and Ref (1, 3, H, W), float RGB in [0, 1] (8-bit levels) -> correspondence.

        ``ref_yx[i, j]`` = matched integer position (y, x) in the reference for the HR query (s*i, s*j)
        of the bicubic-upsampled LR; ``score`` = ZNCC value, -descriptor distance or -patch cost.
        """
        check_image_tensor("lr", lr)
        check_image_tensor("ref", ref)
        scale = self.info.scale
        lr_h, lr_w = lr.shape[-2:]
        up = lr if scale == 1 else pil_bicubic(lr.cpu(), (scale * lr_h, scale * lr_w))
        reference = ref.cpu()
        if self.blurry and scale > 1:
            ref_h, ref_w = reference.shape[-2:]
            down = pil_bicubic(reference, (max(1, round(ref_h / scale)), max(1, round(ref_w / scale))))
            reference = pil_bicubic(down, (ref_h, ref_w))
        positions, scores = self.search(
            to_uint8_array(up.cpu()), to_uint8_array(reference), (lr_h, lr_w), scale, self.device
        )
        return Correspondence(ref_yx=positions.float(), score=scores.float())


def _check_scale(name: str, scale: int) -> None:
    if scale not in SUPPORTED_SCALES:
        raise UserError(f"{name}: unsupported scale {scale}; valid: {', '.join(map(str, SUPPORTED_SCALES))}")


_COMMON_CHOICES = {
    "query_positions": "HR (s*i, s*j) on the LR upsampled by PIL bicubic (uint8), one per LR pixel",
    "candidates": "every reference pixel in the window; outside the reference skipped; ties -> first row-major",
}


def _info(name: str, scale: int, search: _Search, blurry: bool) -> MethodInfo:
    reference_choice = (
        "reference blurred like the input: PIL bicubic ÷s then ×s (Ref↓↑)" if blurry else "sharp HR reference"
    )
    return info_from_card(
        builtin_card(name), scale=scale, choices={**_COMMON_CHOICES, "reference": reference_choice, **search.describe()}
    )


_KINDS = ("zncc", "dense_sift", "patchmatch")  # titles, venues and years are on the cards (methods.cards)


def build_matcher(
    kind: str,
    *,
    scale: int,
    blurry: bool = False,
    patch_size_px: int | None = None,
    search_radius_px: int = DEFAULT_SEARCH_RADIUS_PX,
    device: str = "cpu",
) -> ClassicalMatcher:
    """A classical matcher with explicit parameters (the registry factories use the defaults).

    ``kind``: ``zncc``, ``dense_sift`` or ``patchmatch``; ``patch_size_px`` defaults to 8*scale + 1.
    """
    if kind not in _KINDS:
        raise unknown_name("classical matcher", kind, _KINDS)
    name = f"{kind}_blurry" if blurry else kind
    _check_scale(name, scale)
    patch = default_patch_size_px(scale) if patch_size_px is None else patch_size_px
    if patch < 1 or patch % 2 == 0:
        raise UserError(f"{name}: patch_size_px must be a positive odd number; got {patch}")
    if search_radius_px < 0:
        raise UserError(f"{name}: search_radius_px must be >= 0; got {search_radius_px}")
    search: _Search
    if kind == "zncc":
        search = ZnccSearch(patch, search_radius_px)
    elif kind == "dense_sift":
        search = DenseSiftSearch(patch, search_radius_px)
    else:
        search = PatchMatchSearch(patch, search_radius_px, patch_step_px=default_patch_step_px(scale))
    return ClassicalMatcher(_info(name, scale, search, blurry), search, blurry=blurry,
                            device=device)


def zncc(*, scale: int = 4, device: str = "cpu") -> ClassicalMatcher:
    """ZNCC full search of the bicubic-upsampled LR against the sharp reference."""
    return build_matcher("zncc", scale=scale, device=device)


def zncc_blurry(*, scale: int = 4, device: str = "cpu") -> ClassicalMatcher:
    """ZNCC full search against the reference's bicubic down-up copy."""
    return build_matcher("zncc", scale=scale, blurry=True, device=device)


def dense_sift(*, scale: int = 4, device: str = "cpu") -> ClassicalMatcher:
    """Dense upright SIFT descriptors, nearest descriptor in the window, sharp reference."""
    return build_matcher("dense_sift", scale=scale, device=device)


def dense_sift_blurry(*, scale: int = 4, device: str = "cpu") -> ClassicalMatcher:
    """Dense SIFT against the reference's bicubic down-up copy."""
    return build_matcher("dense_sift", scale=scale, blurry=True, device=device)


def patchmatch(*, scale: int = 4, device: str = "cpu") -> ClassicalMatcher:
    """Randomized PatchMatch (seed 0) of the bicubic-upsampled LR against the sharp reference."""
    return build_matcher("patchmatch", scale=scale, device=device)


MATCHER_NAMES: tuple[str, ...] = ("zncc", "zncc_blurry", "dense_sift", "dense_sift_blurry", "patchmatch")
