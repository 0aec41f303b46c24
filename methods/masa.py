"""MASA-SR (Lu et al., CVPR 2021): a port of the official network ``MASA`` and its test-time conventions.

Specification: ``docs/methods/masa.md`` of the shared reference folder (architecture, the exact matching
algorithm, checkpoint format, official test recipes). The official repository (dvlab-research/MASA-SR)
has no licence file; nothing here is taken from its code.

Layout of ``MASA`` (state_dict keys = the official checkpoint keys, 210 entries, 4,028,291 parameters):

- ``enc``       -- shared 3-level encoder (run on LR, Ref↓ and Ref, in that order);
- ``matching``  -- parameter-free MEM search (coarse block search + fine patch search; all its MACs are the
  two batched matrix products = FLOPS-M);
- ``transfer``  -- parameter-free MEM extraction (gather, fold, overlap normalisation, score weighting);
- ``decoder``   -- LR U-Net path, one shared SAM (``decoder.pAda``), DRAMs and residual stacks.

The official matching is a method of the network class; wrapping it in submodules only adds
parameter-free modules, so official checkpoints still load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from methods._matching_utils import FLOAT32_BYTES, items_per_chunk, top1_similarity_chunked
from methods.base import (
    MethodInfo,
    WeightFile,
    check_image_tensor,
    info_from_card,
    load_state_dict_strict,
    read_checkpoint,
)
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.resize import pil_bicubic

SCALE = 4  # hard-wired in the architecture (encoder depth and fusion scales)
NUM_FEATURES = 64
LR_BLOCK = 8  # MEM LR block size (paper: 8x8)
PATCH = 3  # MEM patch size
DILATIONS = (1, 2, 3)  # coarse-search dilations, similarity maps summed in this order
REF_MULTIPLE = 16  # official loaders pad the Ref (bottom/right, replicate) to a multiple of 16
DEFAULT_LR_MULTIPLE = 8  # official CUFED5 test pads the HR to x32, i.e. the LR to x8
DEFAULT_CHUNK_BYTES = 128 * 2**20  # working-memory budget of one matching/transfer chunk


# ------------------------------------------------------------------------------------------------------
# Network


class ResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, plus identity; no activation after the sum, no residual scaling."""

    def __init__(self, channels: int = NUM_FEATURES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def _blocks(count: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock() for _ in range(count)])


class Encoder(nn.Module):
    """Three levels: conv (stride 1, 2, 2) + ReLU + 4 residual blocks each.

    ``forward``: (N, 3, H, W) BGR [0, 1] -> [E1 (N, 64, H, W), E2 (.., ceil(H/2), ..), E3 (.., ceil(H/4), ..)].
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv_L1 = nn.Conv2d(in_channels, NUM_FEATURES, 3, 1, 1)
        self.blk_L1 = _blocks(4)
        self.conv_L2 = nn.Conv2d(NUM_FEATURES, NUM_FEATURES, 3, 2, 1)
        self.blk_L2 = _blocks(4)
        self.conv_L3 = nn.Conv2d(NUM_FEATURES, NUM_FEATURES, 3, 2, 1)
        self.blk_L3 = _blocks(4)
        self.act = nn.ReLU(inplace=True)

    def level1(self, x: torch.Tensor) -> torch.Tensor:
        """Level-1 features only (what MEM matches on)."""
        return self.blk_L1(self.act(self.conv_L1(x)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e1 = self.level1(x)
        e2 = self.blk_L2(self.act(self.conv_L2(e1)))
        e3 = self.blk_L3(self.act(self.conv_L3(e2)))
        return [e1, e2, e3]


class SpatialAdaptation(nn.Module):
    """SAM (``decoder.pAda``): re-normalise the transferred Ref feature to the LR feature's statistics.

    ``forward(lr_feat, ref_feat)``, both (N, 64, H, W) -> (N, 64, H, W).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv_shared = nn.Sequential(nn.Conv2d(2 * NUM_FEATURES, NUM_FEATURES, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv_gamma = nn.Conv2d(NUM_FEATURES, NUM_FEATURES, 3, 1, 1)
        self.conv_beta = nn.Conv2d(NUM_FEATURES, NUM_FEATURES, 3, 1, 1)

    def forward(self, lr_feat: torch.Tensor, ref_feat: torch.Tensor) -> torch.Tensor:
        # Instance norm: no affine, biased variance, eps 1e-5 (official nn.InstanceNorm2d defaults).
        ref_normed = F.instance_norm(ref_feat, eps=1e-5)
        style = self.conv_shared(torch.cat([lr_feat, ref_feat], dim=1))
        gamma = self.conv_gamma(style)
        beta = self.conv_beta(style)
        n, c = lr_feat.shape[:2]
        flat = lr_feat.reshape(n, c, -1)
        # Unbiased std (torch default), as the official code; the paper writes the biased 1/HW form.
        lr_mean = flat.mean(dim=-1).reshape(n, c, 1, 1)
        lr_std = flat.std(dim=-1).reshape(n, c, 1, 1)
        return ref_normed * (gamma + lr_std) + (beta + lr_mean)


class DualResidualAggregation(nn.Module):
    """DRAM: ``forward(lr, ref)`` with lr (N, 64, S, S') and ref (N, 64, 2S, 2S') -> (N, 64, 2S, 2S')."""

    def __init__(self) -> None:
        super().__init__()
        nf = NUM_FEATURES
        self.conv_down_a = nn.Conv2d(nf, nf, 3, 2, 1)
        self.conv_up_a = nn.ConvTranspose2d(nf, nf, 3, 2, 1, output_padding=1)
        self.conv_down_b = nn.Conv2d(nf, nf, 3, 2, 1)
        self.conv_up_b = nn.ConvTranspose2d(nf, nf, 3, 2, 1, output_padding=1)
        self.conv_cat = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        # The ReLUs are in the official code, not in the paper's equations 12-13.
        res_a = self.act(self.conv_down_a(ref)) - lr
        out_a = self.act(self.conv_up_a(res_a)) + ref
        res_b = lr - self.act(self.conv_down_b(ref))
        out_b = self.act(self.conv_up_b(res_b + lr))
        return self.act(self.conv_cat(torch.cat([out_a, out_b], dim=1)))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """LR U-Net path, then fusion at x1 (SAM + conv + 12 RB), x2 (SAM + DRAM + 8 RB), x4 (SAM + DRAM + 4 RB).

    ``forward(lr_feats, warped)``: ``lr_feats`` = encoder outputs of the LR [E1, E2, E3]; ``warped`` =
    transferred Ref features (W1, W2, W4) at 1x, 2x, 4x the LR size. Returns (N, 3, 4h, 4w) BGR residual.
    """

    def __init__(self) -> None:
        super().__init__()
        nf = NUM_FEATURES
        self.conv_L3 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.blk_L3 = _blocks(2)
        self.conv_L2 = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.blk_L2 = _blocks(2)
        self.conv_L1 = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.blk_L1 = _blocks(2)
        self.merge_warp_x1 = nn.Conv2d(2 * nf, nf, 3, 1, 1)
        self.blk_x1 = _blocks(12)
        self.dram_x2 = DualResidualAggregation()
        self.blk_x2 = _blocks(8)
        self.dram_x4 = DualResidualAggregation()
        self.blk_x4 = _blocks(4)
        self.conv_out = nn.Conv2d(nf, 3, 3, 1, 1)
        self.pAda = SpatialAdaptation()  # one instance shared by the three scales, as in the checkpoint
        self.act = nn.ReLU(inplace=True)

    def forward(self, lr_feats: Sequence[torch.Tensor], warped: Sequence[torch.Tensor]) -> torch.Tensor:
        lr_e1, lr_e2, lr_e3 = lr_feats
        warp_x1, warp_x2, warp_x4 = warped
        x = _up2(self.blk_L3(self.act(self.conv_L3(lr_e3))))
        x = _up2(self.blk_L2(self.act(self.conv_L2(torch.cat([x, lr_e2], dim=1)))))
        fea_l1 = self.blk_L1(self.act(self.conv_L1(torch.cat([x, lr_e1], dim=1))))

        sam_x1 = self.pAda(fea_l1, warp_x1)
        fea_x1 = self.blk_x1(self.act(self.merge_warp_x1(torch.cat([sam_x1, fea_l1], dim=1))))

        sam_x2 = self.pAda(_up2(fea_x1), warp_x2)
        fea_x2 = self.blk_x2(self.dram_x2(fea_x1, sam_x2))

        sam_x4 = self.pAda(_up2(fea_x2), warp_x4)
        fea_x4 = self.blk_x4(self.dram_x4(fea_x2, sam_x4))
        return self.conv_out(fea_x4)


# ------------------------------------------------------------------------------------------------------
# MEM: matching and extraction


@dataclass(frozen=True)
class MemGeometry:
    """Block grid and Ref↓ window sizes of MEM for one (LR, Ref↓) size pair (masa.md §4.1, §4.3)."""

    blocks_yx: tuple[int, int]  # (p_y, p_x) LR blocks per column / row
    block_hw: tuple[int, int]  # (k_y, k_x) LR block size, 8 x 8
    candidates_hw: tuple[int, int]  # (d_y, d_x) valid 3x3 candidate positions per Ref↓ window
    ref_down_hw: tuple[int, int]  # (h_r, w_r)

    @property
    def num_blocks(self) -> int:
        return self.blocks_yx[0] * self.blocks_yx[1]

    @property
    def window_hw(self) -> tuple[int, int]:
        """Ref↓ window size: the candidate grid plus a one-pixel border."""
        return self.candidates_hw[0] + 2, self.candidates_hw[1] + 2


def mem_geometry(lr_hw: tuple[int, int], ref_down_hw: tuple[int, int]) -> MemGeometry:
    """MEM geometry for an LR of ``lr_hw`` and a Ref↓ of ``ref_down_hw`` pixels; UserError if MASA cannot run.

    The LR must be a multiple of 8 on both sides; the Ref↓ must hold one whole window.
    """
    h, w = lr_hw
    h_r, w_r = ref_down_hw
    if h < LR_BLOCK or w < LR_BLOCK or h % LR_BLOCK or w % LR_BLOCK:
        raise UserError(
            f"MASA needs the LR height and width to be multiples of {LR_BLOCK} (its 8x8 matching blocks); "
            f"got {h}x{w}. Use predict(), which pads, or pad the HR to a multiple of {LR_BLOCK * SCALE}."
        )
    p_y, p_x = h // LR_BLOCK, w // LR_BLOCK
    # Integer division first, then x1.5, then floor (official formula); equals 2*floor(1.5*a) + 1.
    d_y = 2 * ((3 * (h_r // (2 * p_y))) // 2) + 1
    d_x = 2 * ((3 * (w_r // (2 * p_x))) // 2) + 1
    if h_r < d_y + 2 or w_r < d_x + 2:
        # The official window rule gives d ~ 1.5 * Ref↓ / blocks, so it fits only with >= 2 blocks per side.
        raise UserError(
            f"MASA's Ref↓ ({h_r}x{w_r}) is smaller than one matching window ({d_y + 2}x{d_x + 2}) for an LR of "
            f"{h}x{w}; the official window rule needs at least 2 LR blocks ({2 * LR_BLOCK} px) per side and a "
            "larger reference."
        )
    return MemGeometry((p_y, p_x), (h // p_y, w // p_x), (d_y, d_x), (h_r, w_r))


class MemMatch(NamedTuple):
    """Result of the MEM search for N images with K blocks each (blocks row-major), P = k_y*k_x pixels/block.

    ``coarse_score`` (N, K) summed cosine of the three dilations (<= 3); ``coarse_index`` (N, K) flat Ref↓
    index ``y*w_r + x`` of the block centre; ``window_yx`` (N, K, 2) top-left (y, x) of the block's Ref↓
    window; ``fine_score`` (N, K, P) best cosine per LR pixel; ``fine_index`` (N, K, P) flat index into the
    block's d_y x d_x candidate grid (the matched patch centre is window_yx + (D // d_x + 1, D % d_x + 1)).
    """

    coarse_score: torch.Tensor
    coarse_index: torch.Tensor
    window_yx: torch.Tensor
    fine_score: torch.Tensor
    fine_index: torch.Tensor


def _lr_tiles(lr_feat: torch.Tensor, geometry: MemGeometry) -> torch.Tensor:
    """(N, C, h, w) -> (N*K, C, k_y+2, k_x+2): each block with a one-pixel halo of the replicate-padded map."""
    n, c = lr_feat.shape[:2]
    k_y, k_x = geometry.block_hw
    padded = F.pad(lr_feat, (1, 1, 1, 1), mode="replicate")
    tiles = padded.unfold(2, k_y + 2, k_y).unfold(3, k_x + 2, k_x)  # (N, C, p_y, p_x, k_y+2, k_x+2)
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(n * geometry.num_blocks, c, k_y + 2, k_x + 2)


def _window_start(centre: torch.Tensor, candidates: int, size: int) -> torch.Tensor:
    """First row (or column) of the (candidates+2)-long window centred on ``centre``, shifted inside [0, size)."""
    start = centre - candidates // 2 - 1
    end = centre + candidates // 2 + 1
    # The official clamp: left overflow first, then right overflow using the updated end.
    end = torch.where(start < 0, torch.full_like(end, candidates + 1), end)
    start = start.clamp_min(0)
    return torch.where(end > size - 1, torch.full_like(start, size - 1 - (candidates + 1)), start)


def _gather_windows(
    feat: torch.Tensor, image: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size_hw: tuple[int, int]
) -> torch.Tensor:
    """Crop (B,) windows of ``size_hw`` at (top, left) from ``feat`` (N, C, H, W) rows ``image`` -> (B, C, h, w)."""
    rows = top[:, None] + torch.arange(size_hw[0], device=feat.device)
    cols = left[:, None] + torch.arange(size_hw[1], device=feat.device)
    crops = feat[image[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, h, w, C)
    return crops.permute(0, 3, 1, 2)


class MemSearch(nn.Module):
    """MEM matching (masa.md §4.2-4.4), parameter-free; its only MACs are the two stages' ``bmm``.

    ``forward(lr_feat, ref_down_feat)``: level-1 encoder features of the LR (N, 64, h, w) and of the Ref↓
    (N, 64, h_r, w_r) -> ``MemMatch``. Candidates (coarse) and blocks (fine) are processed in chunks of at
    most ``chunk_bytes`` working memory; the result does not depend on the chunking.
    """

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        self.chunk_bytes = chunk_bytes

    def forward(self, lr_feat: torch.Tensor, ref_down_feat: torch.Tensor) -> MemMatch:
        n, c, h, w = lr_feat.shape
        h_r, w_r = ref_down_feat.shape[-2:]
        geometry = mem_geometry((h, w), (h_r, w_r))
        tiles = _lr_tiles(lr_feat, geometry)
        coarse_score, coarse_index = self._coarse(tiles, ref_down_feat, geometry)
        centre_y = torch.div(coarse_index, w_r, rounding_mode="floor")
        centre_x = coarse_index - centre_y * w_r
        window_yx = torch.stack(
            [
                _window_start(centre_y, geometry.candidates_hw[0], h_r),
                _window_start(centre_x, geometry.candidates_hw[1], w_r),
            ],
            dim=-1,
        )
        fine_score, fine_index = self._fine(tiles, ref_down_feat, window_yx.reshape(-1, 2), geometry)
        pixels = geometry.block_hw[0] * geometry.block_hw[1]
        return MemMatch(
            coarse_score,
            coarse_index,
            window_yx,
            fine_score.reshape(n, geometry.num_blocks, pixels),
            fine_index.reshape(n, geometry.num_blocks, pixels),
        )

    def _coarse(
        self, tiles: torch.Tensor, ref_down_feat: torch.Tensor, geometry: MemGeometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: dilated centre patch of each block vs every Ref↓ position; (N, K) best score and index."""
        n, c, h_r, w_r = ref_down_feat.shape
        k_y, k_x = geometry.block_hw
        centre_y, centre_x = k_y // 2 + 1, k_x // 2 + 1  # block pixel (4, 4) in halo-tile coordinates
        queries = []
        for dilation in DILATIONS:
            rows = torch.tensor([centre_y - dilation, centre_y, centre_y + dilation], device=tiles.device)
            cols = torch.tensor([centre_x - dilation, centre_x, centre_x + dilation], device=tiles.device)
            taps = tiles.index_select(2, rows).index_select(3, cols)  # (N*K, C, 3, 3), unfold order
            queries.append(F.normalize(taps.reshape(n, geometry.num_blocks, c * PATCH * PATCH), dim=-1))
        # Per candidate: each dilation's unfolded and normalised columns, plus the summed similarities.
        bytes_per_candidate = FLOAT32_BYTES * (2 * len(DILATIONS) * c * PATCH * PATCH + 3 * geometry.num_blocks) * n
        rows_per_chunk = items_per_chunk(self.chunk_bytes, bytes_per_candidate * w_r, total=h_r)
        # Zero padding by the dilation, as the official unfold(padding=dilation); padding the whole map once
        # and unfolding row bands without padding gives the same columns.
        padded = [F.pad(ref_down_feat, (d, d, d, d)) for d in DILATIONS]

        def chunks() -> Iterator[tuple[int, list[torch.Tensor]]]:
            for row0 in range(0, h_r, rows_per_chunk):
                row1 = min(h_r, row0 + rows_per_chunk)
                terms = [
                    F.normalize(F.unfold(pad[:, :, row0 : row1 + 2 * d], PATCH, dilation=d), dim=1)
                    for pad, d in zip(padded, DILATIONS, strict=True)
                ]
                yield row0 * w_r, terms

        return top1_similarity_chunked(queries, chunks())

    def _fine(
        self, tiles: torch.Tensor, ref_down_feat: torch.Tensor, window_yx: torch.Tensor, geometry: MemGeometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: every 3x3 patch of each LR block vs every 3x3 patch of its Ref↓ window; (N*K, P) each."""
        n, c = ref_down_feat.shape[:2]
        blocks = tiles.shape[0]
        d_y, d_x = geometry.candidates_hw
        image = torch.arange(n, device=tiles.device).repeat_interleave(geometry.num_blocks)
        pixels = geometry.block_hw[0] * geometry.block_hw[1]
        window_area = geometry.window_hw[0] * geometry.window_hw[1]
        per_block = FLOAT32_BYTES * (
            c * window_area + 2 * c * PATCH * PATCH * (d_y * d_x + pixels) + pixels * d_y * d_x
        )
        step = items_per_chunk(self.chunk_bytes, per_block, total=blocks)
        scores, indices = [], []
        for b0 in range(0, blocks, step):
            b1 = min(blocks, b0 + step)
            lr_patches = F.normalize(F.unfold(tiles[b0:b1], PATCH), dim=1)  # (B, 576, P)
            windows = _gather_windows(
                ref_down_feat, image[b0:b1], window_yx[b0:b1, 0], window_yx[b0:b1, 1], geometry.window_hw
            )
            candidates = F.normalize(F.unfold(windows, PATCH), dim=1)  # (B, 576, d_y*d_x)
            score, index = top1_similarity_chunked([lr_patches.transpose(1, 2)], [(0, [candidates])])
            scores.append(score)
            indices.append(index)
        return torch.cat(scores), torch.cat(indices)


class MemTransfer(nn.Module):
    """MEM extraction (masa.md §4.5), parameter-free.

    ``forward(texture, match, geometry, scale)``: Ref feature ``texture`` (N, C, s*h_r, s*w_r), the
    ``MemMatch`` and ``MemGeometry`` of the search -> transferred feature (N, C, s*h, s*w). Each LR pixel
    receives the 3s x 3s Ref patch of its fine match, folded per block (overlapping patches divided by the
    true overlap count, blocks never mixing) and weighted by the bilinearly resized fine score.
    """

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        self.chunk_bytes = chunk_bytes

    def forward(self, texture: torch.Tensor, match: MemMatch, geometry: MemGeometry, scale: int) -> torch.Tensor:
        n, c = texture.shape[:2]
        h_r, w_r = geometry.ref_down_hw
        if tuple(texture.shape[-2:]) != (scale * h_r, scale * w_r):
            raise ValueError(f"texture {tuple(texture.shape)} is not {scale}x the Ref↓ grid {h_r}x{w_r}")
        k_y, k_x = geometry.block_hw
        pixels = k_y * k_x
        blocks = n * geometry.num_blocks
        d_x = geometry.candidates_hw[1]
        kernel = PATCH * scale
        tile_hw = (k_y * scale, k_x * scale)
        window_yx = match.window_yx.reshape(blocks, 2)
        fine_index = match.fine_index.reshape(blocks, pixels)
        fine_score = match.fine_score.reshape(blocks, 1, k_y, k_x)
        image = torch.arange(n, device=texture.device).repeat_interleave(geometry.num_blocks)
        ones = torch.ones(1, kernel * kernel, pixels, dtype=texture.dtype, device=texture.device)
        overlap = F.fold(ones, tile_hw, kernel, stride=scale, padding=scale)
        offsets = torch.arange(kernel, device=texture.device)
        per_block = FLOAT32_BYTES * (3 * c * kernel * kernel * pixels + 3 * c * tile_hw[0] * tile_hw[1])
        step = items_per_chunk(self.chunk_bytes, per_block, total=blocks)
        tiles = []
        for b0 in range(0, blocks, step):
            b1 = min(blocks, b0 + step)
            index = fine_index[b0:b1]
            # Top-left of each matched 3x3 patch on the Ref↓ grid, then its 3s x 3s footprint in ``texture``.
            top = window_yx[b0:b1, 0:1] + torch.div(index, d_x, rounding_mode="floor")
            left = window_yx[b0:b1, 1:2] + torch.remainder(index, d_x)
            rows = (scale * top)[:, :, None] + offsets  # (B, P, 3s)
            cols = (scale * left)[:, :, None] + offsets
            patches = texture[image[b0:b1, None, None, None], :, rows[:, :, :, None], cols[:, :, None, :]]
            columns = patches.permute(0, 4, 2, 3, 1).reshape(b1 - b0, c * kernel * kernel, pixels)
            folded = F.fold(columns, tile_hw, kernel, stride=scale, padding=scale)
            weight = F.interpolate(fine_score[b0:b1], size=tile_hw, mode="bilinear", align_corners=False)
            tiles.append(folded / overlap * weight)
        p_y, p_x = geometry.blocks_yx
        stacked = torch.cat(tiles).reshape(n, p_y, p_x, c, tile_hw[0], tile_hw[1])
        return stacked.permute(0, 3, 1, 4, 2, 5).reshape(n, c, p_y * tile_hw[0], p_x * tile_hw[1])


class MASA(nn.Module):
    """The official MASA-SR network (class ``MASA``, input_nc=3, nf=64, sr_scale=4, num_nbr=1).

    ``forward(lr, ref, ref_down)``: ``lr`` (N, 3, h, w), h and w multiples of 8; ``ref`` (N, 3, H_r, W_r),
    multiples of 4; ``ref_down`` (N, 3, H_r/4, W_r/4) = Ref bicubic /4. All float32, **BGR**, [0, 1].
    Returns (N, 3, 4h, 4w) BGR, not clamped: decoder output + bicubic x4 (PyTorch, a = -0.75) of ``lr``.
    """

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        super().__init__()
        self.enc = Encoder()
        self.matching = MemSearch(chunk_bytes)
        self.transfer = MemTransfer(chunk_bytes)
        self.decoder = Decoder()

    def forward(self, lr: torch.Tensor, ref: torch.Tensor, ref_down: torch.Tensor) -> torch.Tensor:
        h, w = lr.shape[-2:]
        h_ref, w_ref = ref.shape[-2:]
        if h_ref % SCALE or w_ref % SCALE or tuple(ref_down.shape[-2:]) != (h_ref // SCALE, w_ref // SCALE):
            raise UserError(
                f"MASA needs a Ref with sides divisible by {SCALE} and ref_down = Ref/{SCALE}; got ref "
                f"{h_ref}x{w_ref}, ref_down {tuple(ref_down.shape[-2:])}"
            )
        geometry = mem_geometry((h, w), (h_ref // SCALE, w_ref // SCALE))  # fails early, before the encoder
        # Official order of the encoder calls: lr, ref_down, ref (Ref↓ levels 2-3 are computed but unused).
        lr_feats = self.enc(lr)
        ref_down_feats = self.enc(ref_down)
        ref_feats = self.enc(ref)
        match = self.matching(lr_feats[0], ref_down_feats[0])
        warp_x1 = self.transfer(ref_feats[2], match, geometry, 1)
        warp_x2 = self.transfer(ref_feats[1], match, geometry, 2)
        warp_x4 = self.transfer(ref_feats[0], match, geometry, 4)
        out = self.decoder(lr_feats, (warp_x1, warp_x2, warp_x4))
        return out + F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)


# ------------------------------------------------------------------------------------------------------
# Wrapper: the suite's Method interface




def _choices(lr_multiple: int) -> dict[str, str]:
    return {
        "lr_padding": f"LR replicate-padded, centred, to a multiple of {lr_multiple} (official test pads the HR "
        f"to x{SCALE * lr_multiple}; top = floor(d/2)); SR cropped back",
        "ref_padding": f"Ref replicate-padded bottom/right to a multiple of {REF_MULTIPLE} (official TestSet)",
        "ref_lr": "Ref↓ = Pillow bicubic /4 of the padded Ref when not given; a given ref_lr is used when it "
        "is exactly the padded Ref's size /4, else recomputed from the padded Ref if padding was needed",
        "channel_order": "RGB in and out; the network runs on BGR as the official loaders (OpenCV) feed it",
        "match_coordinates": "Ref↓ pixel (u, v) matched by the fine search -> Ref HR (4u, 4v), the top-left "
        "pixel of its 4x4 footprint, as the x4 transfer copies it; positions may fall in the Ref padding",
        "match_score": "fine-stage cosine similarity of the 3x3 level-1 feature patches, in [-1, 1]",
        "chunking": f"matching and transfer run in chunks of <= {DEFAULT_CHUNK_BYTES // 2**20} MiB working "
        "memory; results identical to the one-shot computation",
    }


def _pad_amounts(size: int, multiple: int) -> tuple[int, int]:
    """Centred padding (before, after) to the next multiple: before = floor(total/2), as the official test."""
    total = -size % multiple
    return total // 2, total - total // 2


@dataclass
class MasaSR:
    """MASA-SR behind the suite's ``Method`` interface (``rec`` and ``gan`` share the architecture).

    ``lr_multiple``: the LR is padded (centred, replicate) to this multiple before the network; a
    multiple of 8 (the official CUFED5 test: 8 = 32/4; Sun80/Urban100: 16 = 64/4).
    """

    info: MethodInfo
    module: MASA
    device: torch.device
    lr_multiple: int = DEFAULT_LR_MULTIPLE
    weights_loaded: bool = False
    _weight: WeightFile = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.lr_multiple < LR_BLOCK or self.lr_multiple % LR_BLOCK:
            raise UserError(f"lr_multiple must be a positive multiple of {LR_BLOCK}; got {self.lr_multiple}")
        self._weight = self.info.weights[0]
        self.module.to(self.device).eval()

    # -- inputs --------------------------------------------------------------------------------------

    def _prepare(
        self, lr: torch.Tensor, ref: torch.Tensor | None, ref_lr: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
        """RGB inputs -> padded BGR (lr, ref, ref_down) for the network and the LR padding (top, left)."""
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError("MASA-SR needs a reference image: pass ref (1, 3, H, W) RGB [0, 1]")
        check_image_tensor("ref", ref)
        lr = lr.to(self.device, torch.float32)
        ref = ref.to(self.device, torch.float32)
        top, bottom = _pad_amounts(lr.shape[-2], self.lr_multiple)
        left, right = _pad_amounts(lr.shape[-1], self.lr_multiple)
        lr_pad = F.pad(lr, (left, right, top, bottom), mode="replicate") if top + bottom + left + right else lr
        ref_h, ref_w = ref.shape[-2:]
        ref_bottom, ref_right = -ref_h % REF_MULTIPLE, -ref_w % REF_MULTIPLE
        ref_pad = F.pad(ref, (0, ref_right, 0, ref_bottom), mode="replicate") if ref_bottom + ref_right else ref
        down_hw = (ref_pad.shape[-2] // SCALE, ref_pad.shape[-1] // SCALE)
        mem_geometry((lr_pad.shape[-2], lr_pad.shape[-1]), down_hw)  # a clear error before any work
        if ref_lr is not None:
            check_image_tensor("ref_lr", ref_lr)
        if ref_lr is not None and tuple(ref_lr.shape[-2:]) == down_hw:
            ref_down = ref_lr.to(self.device, torch.float32)
        elif ref_lr is None or ref_bottom + ref_right:
            # What the official loaders do: Pillow bicubic /4 of the (padded) 8-bit Ref.
            ref_down = pil_bicubic(ref_pad, down_hw).to(self.device)
        else:
            raise UserError(
                f"ref_lr must be the Ref downscaled by {SCALE}: expected {down_hw[0]}x{down_hw[1]}, got "
                f"{ref_lr.shape[-2]}x{ref_lr.shape[-1]}; pass ref_lr=None to compute it with Pillow bicubic"
            )
        # RGB -> BGR: the official weights were trained on OpenCV-loaded images.
        return lr_pad.flip(1), ref_pad.flip(1), ref_down.flip(1), (top, left)

    # -- Method interface ----------------------------------------------------------------------------

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Super-resolve ``lr`` with reference ``ref``.

        ``lr`` (1, 3, h, w), ``ref`` (1, 3, H, W), optional ``ref_lr`` (Ref↓): float32 RGB [0, 1], any size.
        Returns (1, 3, 4h, 4w) float32 RGB, not clamped, not rounded.
        """
        with torch.inference_mode():
            lr_net, ref_net, ref_down, (top, left) = self._prepare(lr, ref, ref_lr)
            sr = self.module(lr_net, ref_net, ref_down)
            h, w = lr.shape[-2:]
            sr = sr[:, :, SCALE * top : SCALE * (top + h), SCALE * left : SCALE * (left + w)]
            return sr.flip(1).contiguous()

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """MEM's correspondence for every LR pixel.

        ``lr`` (1, 3, h, w) and ``ref`` (1, 3, H, W) RGB [0, 1]. ``ref_yx`` (h, w, 2): the Ref HR position
        (4u, 4v) of the Ref↓ pixel (u, v) at the centre of the fine-matched patch; ``score`` (h, w): its
        cosine similarity. Only the level-1 encoder runs (what MEM matches on).
        """
        with torch.inference_mode():
            lr_net, _, ref_down, (top, left) = self._prepare(lr, ref, None)
            lr_feat = self.module.enc.level1(lr_net)
            ref_down_feat = self.module.enc.level1(ref_down)
            found = self.module.matching(lr_feat, ref_down_feat)
            geometry = mem_geometry((lr_net.shape[-2], lr_net.shape[-1]), (ref_down.shape[-2], ref_down.shape[-1]))
            centre_yx = match_centres(found, geometry)[0]  # (h_pad, w_pad, 2) on the Ref↓ grid
            p_y, p_x = geometry.blocks_yx
            k_y, k_x = geometry.block_hw
            score = found.fine_score[0].reshape(p_y, p_x, k_y, k_x).permute(0, 2, 1, 3).reshape(p_y * k_y, p_x * k_x)
            h, w = lr.shape[-2:]
            ref_yx = (SCALE * centre_yx[top : top + h, left : left + w]).to(torch.float32)
            return Correspondence(ref_yx=ref_yx.cpu(), score=score[top : top + h, left : left + w].float().cpu())

    def load_weights(self, path: str | Path) -> None:
        """Load an official checkpoint (plain state_dict of class MASA, ``module.`` prefix allowed).

        ``path``: the file, or a folder holding the official file name (``masa_rec.pth`` / ``masa.pth``).
        """
        path = Path(path)
        if path.is_dir():
            candidate = path / self._weight.file_name
            if not candidate.is_file():
                raise UserError(
                    f"{path} does not contain {self._weight.file_name} (the official {self.info.name} checkpoint)"
                )
            path = candidate
        state = read_checkpoint(path, sha256=self._weight.sha256)
        load_state_dict_strict(self.module, state, f"MASA-SR ({self._weight.file_name})")
        self.module.to(self.device).eval()
        self.weights_loaded = True

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """The network and inputs (lr, ref, ref_down), BGR [0, 1], for an LR of ``lr_hw`` and a Ref of ``ref_hw``.

        The LR sides must be multiples of 8 and the Ref sides multiples of 4 (no padding is added, so the
        counts are those of exactly these sizes).
        """
        ref_h, ref_w = ref_hw
        if ref_h % SCALE or ref_w % SCALE:
            raise UserError(f"MASA cost graph needs Ref sides divisible by {SCALE}; got {ref_h}x{ref_w}")
        mem_geometry(lr_hw, (ref_h // SCALE, ref_w // SCALE))
        generator = torch.Generator().manual_seed(0)
        lr = torch.rand(1, 3, *lr_hw, generator=generator)
        ref = torch.rand(1, 3, ref_h, ref_w, generator=generator)
        ref_down = torch.rand(1, 3, ref_h // SCALE, ref_w // SCALE, generator=generator)
        return self.module, (lr.to(self.device), ref.to(self.device), ref_down.to(self.device))


def match_centres(match: MemMatch, geometry: MemGeometry) -> torch.Tensor:
    """Ref↓ position (y, x) of each LR pixel's matched patch centre: (N, h, w, 2) int64 on the LR grid."""
    d_x = geometry.candidates_hw[1]
    centre_y = match.window_yx[..., 0:1] + torch.div(match.fine_index, d_x, rounding_mode="floor") + 1
    centre_x = match.window_yx[..., 1:2] + torch.remainder(match.fine_index, d_x) + 1
    n = match.fine_index.shape[0]
    p_y, p_x = geometry.blocks_yx
    k_y, k_x = geometry.block_hw
    centres = torch.stack([centre_y, centre_x], dim=-1).reshape(n, p_y, p_x, k_y, k_x, 2)
    return centres.permute(0, 1, 3, 2, 4, 5).reshape(n, p_y * k_y, p_x * k_x, 2)


def _build(name: str, variant: str, file_name: str, scale: int, device: str, lr_multiple: int) -> MasaSR:
    if scale != SCALE:
        raise UserError(f"{name} exists only for scale {SCALE} (architecture hard-wired); got scale {scale}")
    info = info_from_card(builtin_card(name), scale=scale, choices=_choices(lr_multiple))
    return MasaSR(info=info, module=MASA(), device=torch.device(device), lr_multiple=lr_multiple)


def masa_rec(*, scale: int = SCALE, device: str = "cpu", lr_multiple: int = DEFAULT_LR_MULTIPLE) -> MasaSR:
    """MASA-rec: trained with the L1 loss only (official ``masa_rec.pth``)."""
    return _build("masa_rec", "rec", "masa_rec.pth", scale, device, lr_multiple)


def masa_gan(*, scale: int = SCALE, device: str = "cpu", lr_multiple: int = DEFAULT_LR_MULTIPLE) -> MasaSR:
    """MASA (GAN): L1 + perceptual + relativistic adversarial losses (official ``masa.pth``)."""
    return _build("masa_gan", "gan", "masa.pth", scale, device, lr_multiple)
