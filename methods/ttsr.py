"""TTSR -- Learning Texture Transformer Network for Image Super-Resolution (Yang et al., CVPR 2020).

A port of the official network (researchmm/TTSR, MIT) written from the specification in
``docs/methods/ttsr.md``. Submodule names follow the official checkpoint keys (``MainNet.*``, ``LTE.*``),
so the released ``TTSR-rec.pt`` / ``TTSR.pt`` load with ``strict=True``. The frozen ``LTE_copy`` of the
official model only feeds the transferal perceptual loss during training and is never saved; it is
left out here, so ``state_dict()`` is exactly the saved layout (6,729,615 numbers; 7,284,955 with the copy).

Official forward contract (``TTSR.forward(lr, lrsr, ref, refsr)``): RGB in [-1, 1]; ``lr`` (N, 3, h, w),
``lrsr`` = LR↑ (N, 3, 4h, 4w), ``ref`` and ``refsr`` = Ref↓↑ (N, 3, H, W) with H, W multiples of 4;
returns ``(sr, S, T_lv3, T_lv2, T_lv1)``.

Two changes in *how* (never *what*) the search/transfer computes, both for memory:
- the relevance ``bmm`` runs over bands of Ref rows and keeps a running max (the full relevance matrix
  is 16,384² floats = 1 GiB at Ref 512², 3.4 GB for a 2560×512 Ref);
- the transfer gathers only the Ref patches the hard index selects instead of unfolding every Ref
  position first (the lv1 unfold alone is 3 GB for a 2560×512 Ref). Gathering copies values, so the
  transferred textures are bit-identical to unfold + index_select.
Neither adds an elementwise op that the MASA-2021 counter would see, so the traced graph's counts equal
the official ones (FLOPS-M 618.48 G, FLOPS-T 1044.28 G at LR 128² / Ref 512²).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from methods._matching_utils import RunningTop1
from methods.base import (
    MethodInfo,
    check_image_tensor,
    info_from_card,
    load_state_dict_strict,
    read_checkpoint,
)
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.resize import pil_bicubic

SCALE = 4
# ImageNet statistics of torchvision's VGG19, the official MeanShift's initial (frozen) values.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
# Relevance entries (Ref positions x LR positions x batch) computed per bmm call: 2**26 fp32 = 256 MiB.
DEFAULT_RELEVANCE_CHUNK_ELEMENTS = 2**26


# --------------------------------------------------------------------------------------------------
# Building blocks


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=True)


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0, bias=True)


def _bicubic(x: torch.Tensor, factor: int) -> torch.Tensor:
    # The official code resizes inside the network with PyTorch bicubic (a = -0.75) by a scale factor.
    return F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)


class ResBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, times ``res_scale``, plus identity (keys ``conv1``, ``conv2``)."""

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = _conv3x3(channels, channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.relu(self.conv1(x)))
        # Kept as an explicit multiply (even at res_scale 1): the MASA counter counts it, as in the official graph.
        return out * self.res_scale + x


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv: (x - mean) / std per RGB channel. Saved in checkpoints as ``sub_mean.{weight,bias}``."""

    def __init__(self, mean_rgb: tuple[float, ...], std_rgb: tuple[float, ...]) -> None:
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(std_rgb)
        assert self.bias is not None
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(-torch.tensor(mean_rgb) / std)
        for parameter in self.parameters():
            parameter.requires_grad = False


class LTE(nn.Module):
    """Learnable texture extractor: MeanShift then torchvision VGG19 ``features[0:12]`` in three slices.

    Input (N, 3, H, W) RGB in [0, 1]. Returns (lv1, lv2, lv3) = relu1_1 (N, 64, H, W), relu2_1
    (N, 128, H/2, W/2), relu3_1 (N, 256, H/4, W/4). Child names keep the torchvision indices.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slice1 = nn.Sequential()
        self.slice1.add_module("0", _conv3x3(3, 64))
        self.slice1.add_module("1", nn.ReLU(inplace=True))
        self.slice2 = nn.Sequential()
        self.slice2.add_module("2", _conv3x3(64, 64))
        self.slice2.add_module("3", nn.ReLU(inplace=True))
        self.slice2.add_module("4", nn.MaxPool2d(kernel_size=2, stride=2))
        self.slice2.add_module("5", _conv3x3(64, 128))
        self.slice2.add_module("6", nn.ReLU(inplace=True))
        self.slice3 = nn.Sequential()
        self.slice3.add_module("7", _conv3x3(128, 128))
        self.slice3.add_module("8", nn.ReLU(inplace=True))
        self.slice3.add_module("9", nn.MaxPool2d(kernel_size=2, stride=2))
        self.slice3.add_module("10", _conv3x3(128, 256))
        self.slice3.add_module("11", nn.ReLU(inplace=True))
        self.sub_mean = MeanShift(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lv1 = self.slice1(self.sub_mean(x))
        lv2 = self.slice2(lv1)
        lv3 = self.slice3(lv2)
        return lv1, lv2, lv3


# --------------------------------------------------------------------------------------------------
# Search and transfer


class Relevance(nn.Module):
    """The matching step (FLOPS-M): one bmm of normalised Ref patches against normalised LR patches and
    the max over Ref positions. No parameters; called once per chunk of Ref positions.

    ``key`` (N, c, 2304): c normalised Ref↓↑ patches on the rows; ``query`` (N, 2304, hw).
    Returns (best relevance (N, hw), chunk-local Ref index (N, hw) int64).
    """

    def forward(self, key: torch.Tensor, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        relevance = torch.bmm(key, query)
        best, index = torch.max(relevance, dim=1)
        return best, index


def _patch_index_table(height: int, width: int, kernel: int, stride: int, like: torch.Tensor) -> torch.Tensor:
    """(kernel², L) int64: row (ky, kx) of column l holds the flat position in a (height, width) map of
    element (ky, kx) of the l-th ``unfold(kernel, stride)`` patch. Built by unfolding a position map, so
    the traced graph gains no arithmetic op (the MASA counter would count index arithmetic)."""
    positions = torch.arange(height * width, dtype=torch.float64, device=like.device)
    # float64 holds every flat position exactly (far below 2**53).
    table = F.unfold(positions.view(1, 1, height, width), kernel_size=kernel, stride=stride)
    return table[0].long()


def _gather_patches(
    features: torch.Tensor, index: torch.Tensor, kernel: int, stride: int, padding: int
) -> torch.Tensor:
    """Columns ``index`` of ``F.unfold(features, kernel, stride=stride, padding=padding)`` without
    building the whole unfold. ``features`` (N, C, H, W); ``index`` (N, q) int64 -> (N, C*kernel², q)."""
    batch, channels = features.shape[:2]
    padded = F.pad(features, (padding, padding, padding, padding))
    table = _patch_index_table(padded.shape[2], padded.shape[3], kernel, stride, features)
    flat_positions = table[:, index].permute(1, 0, 2).reshape(batch, 1, -1)  # (N, 1, kernel² * q)
    flat_positions = flat_positions.expand(batch, channels, flat_positions.shape[2])
    patches = torch.gather(padded.reshape(batch, channels, -1), 2, flat_positions)
    return patches.view(batch, channels * kernel * kernel, index.shape[1])


class SearchTransfer(nn.Module):
    """Hard/soft attention between LR↑ and Ref↓↑ relu3_1 features, and texture transfer from the Ref.

    ``max_chunk_elements``: relevance entries per bmm call (None = one call over all Ref positions).
    Chunks are whole rows of the Ref lv3 grid; the indices equal the unchunked ones, and so do the scores
    up to BLAS rounding (bitwise with MKL here for bands of >= 64 positions).
    """

    def __init__(self, max_chunk_elements: int | None = DEFAULT_RELEVANCE_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.max_chunk_elements = max_chunk_elements
        self.relevance = Relevance()

    def search(self, lrsr_lv3: torch.Tensor, refsr_lv3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``lrsr_lv3`` (N, 256, h, w), ``refsr_lv3`` (N, 256, H3, W3) ->
        (S (N, h*w) max cosine relevance, hard index (N, h*w) int64 = y*W3 + x on the Ref lv3 grid)."""
        batch, _, ref_rows, ref_cols = refsr_lv3.shape
        query = F.normalize(F.unfold(lrsr_lv3, kernel_size=3, padding=1), dim=1)
        # Padding once, then unfolding bands of rows without padding, gives exactly the columns of the
        # official unfold(padding=1) for those rows.
        key_padded = F.pad(refsr_lv3, (1, 1, 1, 1))
        positions = query.shape[2]
        rows_per_chunk = ref_rows
        if self.max_chunk_elements is not None:
            rows_per_chunk = max(1, min(ref_rows, self.max_chunk_elements // max(1, batch * ref_cols * positions)))
            # Equal bands, no small remainder: BLAS may pick another kernel (other rounding) for tiny calls.
            chunks = math.ceil(ref_rows / rows_per_chunk)
            rows_per_chunk = math.ceil(ref_rows / chunks)
        if rows_per_chunk == ref_rows:
            key = F.normalize(F.unfold(key_padded, kernel_size=3).permute(0, 2, 1), dim=2)
            return self.relevance(key, query)
        running = RunningTop1()  # strict > across bands: on exact ties the earlier Ref position wins
        flat_ref_positions = torch.arange(ref_rows * ref_cols, device=refsr_lv3.device)
        for row0 in range(0, ref_rows, rows_per_chunk):
            row1 = min(ref_rows, row0 + rows_per_chunk)
            band = key_padded[:, :, row0 : row1 + 2, :]
            key = F.normalize(F.unfold(band, kernel_size=3).permute(0, 2, 1), dim=2)
            score, local_index = self.relevance(key, query)
            # Global index by lookup rather than ``local + offset``: no extra counted add in the graph.
            running.update(score, flat_ref_positions[row0 * ref_cols : row1 * ref_cols][local_index])
        return running.result()

    def transfer(
        self,
        index: torch.Tensor,
        lr_hw: tuple[int, int],
        ref_lv1: torch.Tensor,
        ref_lv2: torch.Tensor,
        ref_lv3: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather the Ref patches at ``index`` (N, h*w) and fold them onto the LR grid at three scales.
        Returns T_lv3 (N, 256, h, w), T_lv2 (N, 128, 2h, 2w), T_lv1 (N, 64, 4h, 4w)."""
        h, w = lr_hw
        t_lv3 = _gather_patches(ref_lv3, index, kernel=3, stride=1, padding=1)
        t_lv2 = _gather_patches(ref_lv2, index, kernel=6, stride=2, padding=2)
        t_lv1 = _gather_patches(ref_lv1, index, kernel=12, stride=4, padding=4)
        # Official normalisation: the constant 9 (the interior overlap count), also at the borders.
        t_lv3 = F.fold(t_lv3, output_size=(h, w), kernel_size=3, padding=1) / (3.0 * 3.0)
        t_lv2 = F.fold(t_lv2, output_size=(2 * h, 2 * w), kernel_size=6, padding=2, stride=2) / (3.0 * 3.0)
        t_lv1 = F.fold(t_lv1, output_size=(4 * h, 4 * w), kernel_size=12, padding=4, stride=4) / (3.0 * 3.0)
        return t_lv3, t_lv2, t_lv1

    def forward(
        self,
        lrsr_lv3: torch.Tensor,
        refsr_lv3: torch.Tensor,
        ref_lv1: torch.Tensor,
        ref_lv2: torch.Tensor,
        ref_lv3: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (S (N, 1, h, w), T_lv3, T_lv2, T_lv1)."""
        if refsr_lv3.shape != ref_lv3.shape:
            raise UserError(
                f"refsr must have exactly the size of ref (lv3 grids {tuple(refsr_lv3.shape[2:])} vs "
                f"{tuple(ref_lv3.shape[2:])})"
            )
        h, w = lrsr_lv3.shape[2:]
        score, index = self.search(lrsr_lv3, refsr_lv3)
        t_lv3, t_lv2, t_lv1 = self.transfer(index, (h, w), ref_lv1, ref_lv2, ref_lv3)
        return score.view(score.shape[0], 1, h, w), t_lv3, t_lv2, t_lv1


# --------------------------------------------------------------------------------------------------
# Main network


class SFE(nn.Module):
    """Shallow feature extractor: ReLU(conv_head) -> residual blocks -> conv_tail, plus the head skip."""

    def __init__(self, num_res_blocks: int, channels: int, res_scale: float) -> None:
        super().__init__()
        self.conv_head = _conv3x3(3, channels)
        self.RBs = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(num_res_blocks))
        self.conv_tail = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv_head(x))
        head = x
        for block in self.RBs:
            x = block(x)
        return self.conv_tail(x) + head


class CSFI2(nn.Module):
    """Cross-scale feature integration between the 1x and 2x branches."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv12 = _conv1x1(channels, channels)
        self.conv21 = _conv3x3(channels, channels, stride=2)
        self.conv_merge1 = _conv3x3(channels * 2, channels)
        self.conv_merge2 = _conv3x3(channels * 2, channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x12 = F.relu(self.conv12(_bicubic(x1, 2)))
        x21 = F.relu(self.conv21(x2))
        out1 = F.relu(self.conv_merge1(torch.cat((x1, x21), dim=1)))
        out2 = F.relu(self.conv_merge2(torch.cat((x2, x12), dim=1)))
        return out1, out2


class CSFI3(nn.Module):
    """Cross-scale feature integration between the 1x, 2x and 4x branches."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv12 = _conv1x1(channels, channels)
        self.conv13 = _conv1x1(channels, channels)
        self.conv21 = _conv3x3(channels, channels, stride=2)
        self.conv23 = _conv1x1(channels, channels)
        self.conv31_1 = _conv3x3(channels, channels, stride=2)
        self.conv31_2 = _conv3x3(channels, channels, stride=2)
        self.conv32 = _conv3x3(channels, channels, stride=2)
        self.conv_merge1 = _conv3x3(channels * 3, channels)
        self.conv_merge2 = _conv3x3(channels * 3, channels)
        self.conv_merge3 = _conv3x3(channels * 3, channels)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x12 = F.relu(self.conv12(_bicubic(x1, 2)))
        x13 = F.relu(self.conv13(_bicubic(x1, 4)))
        x21 = F.relu(self.conv21(x2))
        x23 = F.relu(self.conv23(_bicubic(x2, 2)))
        x31 = F.relu(self.conv31_2(F.relu(self.conv31_1(x3))))
        x32 = F.relu(self.conv32(x3))
        out1 = F.relu(self.conv_merge1(torch.cat((x1, x21, x31), dim=1)))
        out2 = F.relu(self.conv_merge2(torch.cat((x2, x12, x32), dim=1)))
        out3 = F.relu(self.conv_merge3(torch.cat((x3, x13, x23), dim=1)))
        return out1, out2, out3


class MergeTail(nn.Module):
    """Merges the three branches at 4x and maps to RGB; output clamped to [-1, 1]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv13 = _conv1x1(channels, channels)
        self.conv23 = _conv1x1(channels, channels)
        self.conv_merge = _conv3x3(channels * 3, channels)
        self.conv_tail1 = _conv3x3(channels, channels // 2)
        self.conv_tail2 = _conv1x1(channels // 2, 3)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        x13 = F.relu(self.conv13(_bicubic(x1, 4)))
        x23 = F.relu(self.conv23(_bicubic(x2, 2)))
        x = F.relu(self.conv_merge(torch.cat((x3, x13, x23), dim=1)))
        x = self.conv_tail2(self.conv_tail1(x))
        return torch.clamp(x, -1.0, 1.0)


class MainNet(nn.Module):
    """TTSR's restoration network (official defaults: res blocks 16+16+8+4, 64 channels, res_scale 1).

    ``lr`` (N, 3, h, w) RGB [-1, 1]; ``S`` (N, 1, h, w); T_lv3/T_lv2/T_lv1 at 1x/2x/4x.
    Returns SR (N, 3, 4h, 4w) clamped to [-1, 1]. No ReLU after the ``conv*_head`` attention convs
    (commented out in the official code); S multiplies the head conv's output.
    """

    def __init__(
        self, num_res_blocks: tuple[int, int, int, int] = (16, 16, 8, 4), channels: int = 64, res_scale: float = 1.0
    ) -> None:
        super().__init__()
        n = num_res_blocks
        self.SFE = SFE(n[0], channels, res_scale)
        self.conv11_head = _conv3x3(256 + channels, channels)
        self.RB11 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[1]))
        self.conv11_tail = _conv3x3(channels, channels)
        self.conv12 = _conv3x3(channels, channels * 4)
        self.ps12 = nn.PixelShuffle(2)
        self.conv22_head = _conv3x3(128 + channels, channels)
        self.ex12 = CSFI2(channels)
        self.RB21 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[2]))
        self.RB22 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[2]))
        self.conv21_tail = _conv3x3(channels, channels)
        self.conv22_tail = _conv3x3(channels, channels)
        self.conv23 = _conv3x3(channels, channels * 4)
        self.ps23 = nn.PixelShuffle(2)
        self.conv33_head = _conv3x3(64 + channels, channels)
        self.ex123 = CSFI3(channels)
        self.RB31 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[3]))
        self.RB32 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[3]))
        self.RB33 = nn.ModuleList(ResBlock(channels, res_scale) for _ in range(n[3]))
        self.conv31_tail = _conv3x3(channels, channels)
        self.conv32_tail = _conv3x3(channels, channels)
        self.conv33_tail = _conv3x3(channels, channels)
        self.merge_tail = MergeTail(channels)

    def forward(
        self, lr: torch.Tensor, S: torch.Tensor, T_lv3: torch.Tensor, T_lv2: torch.Tensor, T_lv1: torch.Tensor
    ) -> torch.Tensor:
        x11 = self.SFE(lr)
        # 1x: soft-attention-weighted fusion of the transferred lv3 texture, then residual blocks.
        x11 = x11 + self.conv11_head(torch.cat((x11, T_lv3), dim=1)) * S
        residual = x11
        for block in self.RB11:
            residual = block(residual)
        x11 = x11 + self.conv11_tail(residual)

        # 2x
        x21 = x11
        x22 = F.relu(self.ps12(self.conv12(x11)))
        x22 = x22 + self.conv22_head(torch.cat((x22, T_lv2), dim=1)) * _bicubic(S, 2)
        res21, res22 = self.ex12(x21, x22)
        for block21, block22 in zip(self.RB21, self.RB22, strict=True):
            res21 = block21(res21)
            res22 = block22(res22)
        x21 = x21 + self.conv21_tail(res21)
        x22 = x22 + self.conv22_tail(res22)

        # 4x
        x31, x32 = x21, x22
        x33 = F.relu(self.ps23(self.conv23(x22)))
        x33 = x33 + self.conv33_head(torch.cat((x33, T_lv1), dim=1)) * _bicubic(S, 4)
        res31, res32, res33 = self.ex123(x31, x32, x33)
        for block31, block32, block33 in zip(self.RB31, self.RB32, self.RB33, strict=True):
            res31 = block31(res31)
            res32 = block32(res32)
            res33 = block33(res33)
        x31 = x31 + self.conv31_tail(res31)
        x32 = x32 + self.conv32_tail(res32)
        x33 = x33 + self.conv33_tail(res33)
        return self.merge_tail(x31, x32, x33)


class TTSR(nn.Module):
    """The official top-level network without the training-only ``LTE_copy``.

    forward(lr, lrsr, ref, refsr): RGB [-1, 1]; lr (N, 3, h, w), lrsr (N, 3, 4h, 4w), ref and refsr
    (N, 3, H, W) with H, W multiples of 4. Returns (sr (N, 3, 4h, 4w) in [-1, 1], S (N, 1, h, w),
    T_lv3 (N, 256, h, w), T_lv2 (N, 128, 2h, 2w), T_lv1 (N, 64, 4h, 4w)).
    """

    def __init__(self, max_chunk_elements: int | None = DEFAULT_RELEVANCE_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.MainNet = MainNet()
        self.LTE = LTE()
        self.SearchTransfer = SearchTransfer(max_chunk_elements)

    def forward(
        self, lr: torch.Tensor, lrsr: torch.Tensor, ref: torch.Tensor, refsr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_forward_shapes(lr, lrsr, ref, refsr)
        # The extractor sees [0, 1] images; the LTE is called in the official order lrsr, refsr, ref.
        _, _, lrsr_lv3 = self.LTE((lrsr.detach() + 1.0) / 2.0)
        _, _, refsr_lv3 = self.LTE((refsr.detach() + 1.0) / 2.0)
        ref_lv1, ref_lv2, ref_lv3 = self.LTE((ref.detach() + 1.0) / 2.0)
        S, T_lv3, T_lv2, T_lv1 = self.SearchTransfer(lrsr_lv3, refsr_lv3, ref_lv1, ref_lv2, ref_lv3)
        sr = self.MainNet(lr, S, T_lv3, T_lv2, T_lv1)
        return sr, S, T_lv3, T_lv2, T_lv1


def _check_forward_shapes(lr: torch.Tensor, lrsr: torch.Tensor, ref: torch.Tensor, refsr: torch.Tensor) -> None:
    if torch.jit.is_tracing():
        return  # shape checks on traced sizes only add noise to the trace
    h, w = lr.shape[2:]
    if tuple(lrsr.shape[2:]) != (SCALE * h, SCALE * w):
        raise UserError(f"lrsr must be exactly 4x lr: lr {h}x{w}, lrsr {tuple(lrsr.shape[2:])}")
    ref_h, ref_w = ref.shape[2:]
    if ref_h % SCALE or ref_w % SCALE or ref_h == 0 or ref_w == 0:
        raise UserError(f"ref height and width must be positive multiples of 4; got {ref_h}x{ref_w}")
    if refsr.shape != ref.shape:
        raise UserError(f"refsr must have exactly the size of ref: {tuple(refsr.shape)} vs {tuple(ref.shape)}")


# --------------------------------------------------------------------------------------------------
# Benchmark wrapper

_CHOICES: dict[str, str] = {
    "LTE_copy": "left out: training-only frozen copy, never saved; state_dict = released layout "
    "(6,729,615 params; 7,284,955 with the copy)",
    "ref_size": "Ref cropped top-left to a multiple of 4 (official test loader); a side shorter than 4 px "
    "is replicate-padded bottom/right to 4 instead",
    "ref_lr": "Ref↓ from the protocol is used when its size is exactly Ref/4 and the Ref needed no crop; "
    "otherwise Ref↓ = PIL bicubic ÷4 of the (cropped) Ref, as the official loader makes it",
    "resize": "LR↑ = PIL bicubic ×4 of the 8-bit LR; Ref↓↑ = PIL bicubic ×4 of Ref↓ (official loaders)",
    "lr_size": "any LR size; the network needs no padding (no crop back needed)",
    "relevance_chunks": f"relevance bmm over bands of Ref rows, at most {DEFAULT_RELEVANCE_CHUNK_ELEMENTS} "
    "entries per call; same indices and scores as one bmm",
    "match_coordinates": "hard index on the Ref↓↑ relu3_1 grid (y3, x3) -> Ref HR pixel (4*y3, 4*x3), the "
    "top-left of the 4x4 block that grid cell covers; score = S (cosine relevance)",
    "checkpoint_keys": "as the official saver: keys containing 'SearchNet' or '_copy' dropped, 'module.' removed",
}


def _info(name: str) -> MethodInfo:
    return info_from_card(builtin_card(name), scale=SCALE, choices=_CHOICES)


def _to_signed(image: torch.Tensor) -> torch.Tensor:
    return image * 2.0 - 1.0


class TTSRMethod:
    """TTSR behind the benchmark interface. ``variant`` 'rec' (TTSR-rec.pt) or 'gan' (TTSR.pt)."""

    def __init__(self, name: str, variant: str, device: str = "cpu") -> None:
        self.info = _info(name)
        self.device = torch.device(device)
        self.module = TTSR().to(self.device).eval()
        self.weights_loaded = False

    # -- inputs as the official loaders make them --------------------------------------------------

    def _official_inputs(
        self, lr: torch.Tensor, ref: torch.Tensor | None, ref_lr: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """RGB [0, 1] (1, 3, ·, ·) images -> (lr, lrsr, ref, refsr) in [-1, 1] on the method's device."""
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError(f"{self.info.name} needs a reference image (ref); got None")
        check_image_tensor("ref", ref)
        h, w = lr.shape[2:]
        lr = lr.to(self.device, torch.float32)
        lrsr = pil_bicubic(lr, (SCALE * h, SCALE * w))
        ref = ref.to(self.device, torch.float32)
        ref_h, ref_w = ref.shape[2:]
        # Top-left crop to a multiple of 4 (official); a side shorter than 4 is kept and padded to 4.
        keep_h = ref_h - ref_h % SCALE if ref_h >= SCALE else ref_h
        keep_w = ref_w - ref_w % SCALE if ref_w >= SCALE else ref_w
        ref = ref[:, :, :keep_h, :keep_w]
        pad_h, pad_w = max(0, SCALE - keep_h), max(0, SCALE - keep_w)
        if pad_h or pad_w:
            ref = F.pad(ref, (0, pad_w, 0, pad_h), mode="replicate")
        reshaped = tuple(ref.shape[2:]) != (ref_h, ref_w)
        ref_h, ref_w = ref.shape[2:]
        down_hw = (ref_h // SCALE, ref_w // SCALE)
        if ref_lr is not None and not reshaped:
            check_image_tensor("ref_lr", ref_lr)
            if tuple(ref_lr.shape[2:]) != down_hw:
                raise UserError(
                    f"ref_lr must be the Ref down-scaled by 4: expected {down_hw[0]}x{down_hw[1]}, "
                    f"got {ref_lr.shape[2]}x{ref_lr.shape[3]}"
                )
            ref_down = ref_lr.to(self.device, torch.float32)
        else:
            ref_down = pil_bicubic(ref, down_hw)
        refsr = pil_bicubic(ref_down, (ref_h, ref_w))
        return _to_signed(lr), _to_signed(lrsr), _to_signed(ref), _to_signed(refsr)

    # -- public interface --------------------------------------------------------------------------

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """SR of ``lr`` guided by ``ref``.

        ``lr`` (1, 3, h, w), ``ref`` (1, 3, H, W), optional ``ref_lr`` = Ref↓ (1, 3, H/4, W/4): float32
        RGB in [0, 1] with 8-bit levels, any sizes. Returns (1, 3, 4h, 4w) float32 RGB in [0, 1]
        (the network clamps), not rounded.
        """
        with torch.inference_mode():
            inputs = self._official_inputs(lr, ref, ref_lr)
            sr = self.module(*inputs)[0]
            return (sr + 1.0) / 2.0

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """TTSR's hard attention as a dense correspondence.

        ``lr`` (1, 3, h, w) and ``ref`` (1, 3, H, W), RGB [0, 1]. For LR pixel (i, j): ``ref_yx`` (h, w, 2)
        = (4*y3, 4*x3), the Ref HR pixel at the top-left of the relu3_1 cell the search picked;
        ``score`` (h, w) = its cosine relevance S in [-1, 1].
        """
        with torch.inference_mode():
            _, lrsr, _, refsr = self._official_inputs(lr, ref, None)
            _, _, lrsr_lv3 = self.module.LTE((lrsr + 1.0) / 2.0)
            _, _, refsr_lv3 = self.module.LTE((refsr + 1.0) / 2.0)
            score, index = self.module.SearchTransfer.search(lrsr_lv3, refsr_lv3)
            h, w = lrsr_lv3.shape[2:]
            ref_cols = refsr_lv3.shape[3]
            rows, cols = index[0] // ref_cols, index[0] % ref_cols
            ref_yx = torch.stack((rows, cols), dim=-1).view(h, w, 2).float() * SCALE
            return Correspondence(ref_yx=ref_yx.cpu(), score=score[0].view(h, w).float().cpu())

    def load_weights(self, path: str | Path) -> None:
        """Load ``TTSR-rec.pt`` / ``TTSR.pt`` (a plain state_dict), or the variant's file inside a folder."""
        path = Path(path)
        weight = self.info.weights[0]
        if path.is_dir():
            path = path / weight.file_name
            if not path.is_file():
                raise UserError(f"{path.parent} does not hold {weight.file_name}, the official {self.info.name} file")
        state = read_checkpoint(path, sha256=weight.sha256)
        state = {
            key.replace("module.", ""): value
            for key, value in state.items()
            if "SearchNet" not in key and "_copy" not in key
        }
        load_state_dict_strict(self.module, state, f"{self.info.name} (TTSR MainNet + LTE)")
        self.weights_loaded = True

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """The TTSR module and (lr, lrsr, ref, refsr) example inputs in [-1, 1] for an LR of ``lr_hw`` and a
        Ref of ``ref_hw`` (both multiples of 4) pixels; shapes alone fix the counts."""
        ref_h, ref_w = ref_hw
        if ref_h % SCALE or ref_w % SCALE or ref_h <= 0 or ref_w <= 0:
            raise UserError(f"TTSR needs a Ref whose sides are positive multiples of 4; got {ref_h}x{ref_w}")
        h, w = lr_hw
        if h <= 0 or w <= 0:
            raise UserError(f"LR size must be positive; got {h}x{w}")
        generator = torch.Generator().manual_seed(0)

        def image(height: int, width: int) -> torch.Tensor:
            return (torch.rand(1, 3, height, width, generator=generator) * 2.0 - 1.0).to(self.device)

        inputs = (image(h, w), image(SCALE * h, SCALE * w), image(ref_h, ref_w), image(ref_h, ref_w))
        return self.module, inputs


def _check_scale(name: str, scale: int) -> None:
    if scale != SCALE:
        raise UserError(f"{name} supports scale 4 only (hard-wired in the official network); got {scale}")


def ttsr_rec(*, scale: int = 4, device: str = "cpu") -> TTSRMethod:
    """TTSR trained with the reconstruction loss only (official ``TTSR-rec.pt``)."""
    _check_scale("ttsr_rec", scale)
    return TTSRMethod("ttsr_rec", "rec", device)


def ttsr_gan(*, scale: int = 4, device: str = "cpu") -> TTSRMethod:
    """TTSR trained with all losses (official ``TTSR.pt``)."""
    _check_scale("ttsr_gan", scale)
    return TTSRMethod("ttsr_gan", "gan", device)
