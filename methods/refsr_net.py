"""RefSR-Net = CC-Net (cross-scale correspondence) + SS-Net (patch synthesis), Zheng et al., BMVC 2017.

No official code or checkpoint exists. Everything the paper states is implemented as stated; every open
choice follows ``docs/methods/refsr_net.md`` §3-§5 and is recorded in ``MethodInfo.choices``. The two
registered variants differ only in data (``RefSRNetConfig``):

- ``refsr_net``    x8, the paper's setting: 8x8 LR patches -> 64x64 HR patches, LR stride 4;
- ``refsr_net_x4`` x4 adaptation (doc §5): 16x16 LR patches -> 64x64 HR patches, LR stride 8.

Pipeline of ``RefSRNet.forward(lr, ref)`` (all images RGB, [0, 1], no mean subtraction):
1. replicate-pad the LR so that the sliding LR windows cover it;
2. CC-Net features of the bilinear LR↑ at the window centres and of the whole Ref (shared weights);
3. windowed inner-product matching (Chebyshev radius 100 HR px) -> one Ref position per window;
4. SS-Net per window: frozen SRResNet trunk features of the LR window, the 64x64 Ref patch centred at the
   match, coarse-to-fine masked fusion (paper eq. 2) -> 64x64 HR prediction and scale-0 mask;
5. overlapping predictions averaged with weights = scale-0 mask smoothed by a Gaussian (sigma 3 px).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError

CCNET_DILATIONS = (1, 1, 2, 4, 8, 16)
CCNET_CHANNELS = (16, 32, 64, 64, 64, 128)
CCNET_FEATURE_CHANNELS = 256
# Half of the CC-Net receptive field (65 px): the sum of the dilations of the six 3x3 layers.
CCNET_RECEPTIVE_RADIUS_PX = sum(CCNET_DILATIONS)
SSNET_CHANNELS = 64
SRRESNET_BLOCKS = 16


@dataclass(frozen=True)
class RefSRNetConfig:
    """Everything that distinguishes the registered variants; the paper's conventions as data."""

    name: str
    scale: int
    lr_patch_px: int  # side of one LR window fed to SS-Net
    lr_stride_px: int  # stride of the sliding LR windows
    search_radius_px: int = 100  # Chebyshev radius of the CC-Net search window at test, HR pixels
    hr_patch_px: int = 64  # side of the Ref patch and of the HR prediction
    fuse_activation: str = "sigmoid"  # delta() before W_fuse in eq. 2: literal sigmoid, or "relu"
    gaussian_sigma_px: float = 3.0
    gaussian_truncate_sigmas: float = 3.0
    weight_epsilon: float = 1e-6
    window_batch: int = 32  # SS-Net windows per forward chunk (bounds memory, not results)
    match_block_hr_px: int = 32  # query block side for the blocked matching GEMM (bounds memory)

    @property
    def num_levels(self) -> int:
        """Index of the coarsest HR-feature scale: 3 for x8 (scales 1..1/8), 2 for x4 (1..1/4)."""
        return int(round(math.log2(self.hr_patch_px // self.lr_patch_px)))

    def file_name(self) -> str:
        return f"{self.name}.pth"


CONFIG_X8 = RefSRNetConfig(name="refsr_net", scale=8, lr_patch_px=8, lr_stride_px=4)
CONFIG_X4 = RefSRNetConfig(name="refsr_net_x4", scale=4, lr_patch_px=16, lr_stride_px=8)


# ----------------------------------------------------------------------------------------------- CC-Net


class CCNet(nn.Module):
    """CC-Net feature extractor (paper Table 1): six dilated 3x3 conv + BN + ReLU layers and a linear 1x1 "fc".

    Input (N, 3, H, W) RGB in [0, 1]. ``same_padding=True`` (test): zero padding = dilation in every layer,
    output (N, 256, H, W), translation-equivariant away from the borders. ``same_padding=False``
    (training crops): valid convolutions, output (N, 256, H - 64, W - 64).
    """

    def __init__(self) -> None:
        super().__init__()
        in_channels = 3
        for index, (channels, dilation) in enumerate(zip(CCNET_CHANNELS, CCNET_DILATIONS, strict=True), start=1):
            # Padding is applied explicitly in forward so the same layers serve valid (training) and same (test).
            self.add_module(f"conv{index}", nn.Conv2d(in_channels, channels, 3, dilation=dilation))
            self.add_module(f"bn{index}", nn.BatchNorm2d(channels))
            in_channels = channels
        self.fc = nn.Conv2d(in_channels, CCNET_FEATURE_CHANNELS, 1)

    def trunk(self, image: torch.Tensor, same_padding: bool = True) -> torch.Tensor:
        """The six conv+BN+ReLU layers: (N, 3, H, W) -> (N, 128, H', W')."""
        x = image
        for index, dilation in enumerate(CCNET_DILATIONS, start=1):
            if same_padding:
                x = F.pad(x, (dilation, dilation, dilation, dilation))
            x = getattr(self, f"conv{index}")(x)
            x = F.relu(getattr(self, f"bn{index}")(x))
        return x

    def forward(self, image: torch.Tensor, same_padding: bool = True) -> torch.Tensor:
        return self.fc(self.trunk(image, same_padding))

    def features_on_grid(self, image: torch.Tensor, y0: int, x0: int, step: int) -> torch.Tensor:
        """Dense (same-padded) features sampled at rows y0 + step*m and columns x0 + step*n.

        The 1x1 ``fc`` commutes with the sub-sampling, so it runs only at the sampled positions."""
        return self.fc(self.trunk(image, same_padding=True)[:, :, y0::step, x0::step])


def ccnet_classification_loss(
    lr_feature: torch.Tensor, ref_features: torch.Tensor, target_yx: torch.Tensor
) -> torch.Tensor:
    """CC-Net training loss (paper eq. 1): cross-entropy of the 2-D softmax over the Ref search map.

    ``lr_feature``: (N, C, 1, 1), the feature of a 65x65 LR↑ patch (valid convolutions);
    ``ref_features``: (N, C, Hs, Ws), the feature map of the Ref patch (129x129 in the paper);
    ``target_yx``: (N, 2) int64, the ground-truth cell (row, column) of each map.
    Logits s_ij = <f, g_ij> (plain inner product, no temperature). Returns the batch mean.
    """
    if lr_feature.shape[-2:] != (1, 1):
        raise ValueError(f"lr_feature must be (N, C, 1, 1); got {tuple(lr_feature.shape)}")
    logits = (lr_feature * ref_features).sum(dim=1).flatten(1)
    width = ref_features.shape[-1]
    target = target_yx[:, 0] * width + target_yx[:, 1]
    return F.cross_entropy(logits, target)


class WindowedInnerProduct(nn.Module):
    """Parameterless CC-Net matching: argmax of <f(p), g(q)> over ||q - p||_inf <= radius, q inside the Ref.

    Queries lie on a regular grid of the HR (LR↑) frame: p = (y0 + step*m, x0 + step*n). Work is done in
    blocks of neighbouring queries: one GEMM of the block's query features against the Ref features of the
    union of their windows, then candidates outside each query's own window are masked. Memory is bounded by
    the block size; the GEMM computes ((step*(b-1) + 2R + 1) / (2R + 1))^2 times the necessary products.
    Ties go to the first candidate in row-major order. A query whose window holds no Ref pixel gets score
    -inf and its own position clamped into the Ref frame.
    """

    def __init__(self, radius_px: int, block_hr_px: int) -> None:
        super().__init__()
        self.radius_px = radius_px
        self.block_hr_px = block_hr_px

    def forward(
        self, query: torch.Tensor, ref: torch.Tensor, y0: int, x0: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` (1, C, Qh, Qw) features at the grid points, ``ref`` (1, C, H, W) dense Ref features.

        Returns ``ref_yx`` (Qh, Qw, 2) float32 integer-valued (row, column) in the Ref frame and ``score``
        (Qh, Qw) float32, the winning inner product."""
        # Python ints (constants when traced for cost counting, where shapes would otherwise be tensors).
        channels, rows, cols = int(query.shape[1]), int(query.shape[2]), int(query.shape[3])
        ref_h, ref_w = int(ref.shape[2]), int(ref.shape[3])
        radius = self.radius_px
        block = max(2, self.block_hr_px // step)
        device = query.device
        ref_yx = torch.zeros(rows, cols, 2, dtype=torch.float32, device=device)
        score = torch.full((rows, cols), -math.inf, dtype=torch.float32, device=device)
        for m0 in range(0, rows, block):
            m1 = min(rows, m0 + block)
            query_y = y0 + step * torch.arange(m0, m1, device=device)
            # Default for queries without any candidate: their own position clamped into the Ref.
            ref_yx[m0:m1, :, 0] = query_y.clamp(0, ref_h - 1).to(torch.float32)[:, None]
            r0, r1 = max(0, y0 + step * m0 - radius), min(ref_h, y0 + step * (m1 - 1) + radius + 1)
            for n0 in range(0, cols, block):
                n1 = min(cols, n0 + block)
                query_x = x0 + step * torch.arange(n0, n1, device=device)
                ref_yx[m0:m1, n0:n1, 1] = query_x.clamp(0, ref_w - 1).to(torch.float32)[None, :]
                c0, c1 = max(0, x0 + step * n0 - radius), min(ref_w, x0 + step * (n1 - 1) + radius + 1)
                if r0 >= r1 or c0 >= c1:
                    continue
                block_query = query[0, :, m0:m1, n0:n1].reshape(channels, -1).t()
                block_ref = ref[0, :, r0:r1, c0:c1].reshape(channels, -1)
                scores = torch.matmul(block_query, block_ref)  # (queries, candidates)
                cand_y = torch.arange(r0, r1, device=device)
                cand_x = torch.arange(c0, c1, device=device)
                inside_y = (cand_y[None, :] - query_y[:, None]).abs() <= radius  # (bm, Uh)
                inside_x = (cand_x[None, :] - query_x[:, None]).abs() <= radius  # (bn, Uw)
                inside = inside_y[:, None, :, None] & inside_x[None, :, None, :]
                scores = scores.masked_fill(~inside.reshape(scores.shape), -math.inf)
                best, index = scores.max(dim=1)  # first maximum = first in row-major order
                best = best.reshape(m1 - m0, n1 - n0)
                found = torch.isfinite(best)
                width = c1 - c0
                found_yx = torch.stack([r0 + index // width, c0 + index % width], dim=-1)
                found_yx = found_yx.reshape(m1 - m0, n1 - n0, 2).to(torch.float32)
                current = ref_yx[m0:m1, n0:n1]
                ref_yx[m0:m1, n0:n1] = torch.where(found[..., None], found_yx, current)
                score[m0:m1, n0:n1] = best
        return ref_yx, score


# ----------------------------------------------------------------------------------------------- SS-Net


class ResidualBlock(nn.Module):
    """SRResNet block: conv3x3 -> BN -> PReLU -> conv3x3 -> BN, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class SRResNetTrunk(nn.Module):
    """SS-Net LR feature module: the SRResNet trunk without its up-sampling blocks (Ledig et al.).

    (N, 3, h, w) RGB [0, 1] -> (N, 64, h, w). Frozen in the paper (pretrained for x4 SR on ImageNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_input = nn.Conv2d(3, SSNET_CHANNELS, 9, padding=4)
        self.prelu_input = nn.PReLU()
        self.blocks = nn.Sequential(*[ResidualBlock(SSNET_CHANNELS) for _ in range(SRRESNET_BLOCKS)])
        self.conv_mid = nn.Conv2d(SSNET_CHANNELS, SSNET_CHANNELS, 3, padding=1)
        self.bn_mid = nn.BatchNorm2d(SSNET_CHANNELS)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.prelu_input(self.conv_input(lr))
        return head + self.bn_mid(self.conv_mid(self.blocks(head)))


class HRFeatureModule(nn.Module):
    """SS-Net HR feature module: conv + ReLU (F_HR^0), then per level conv + ReLU + 2x2 max-pool (F_HR^k).

    (N, 3, 64, 64) RGB [0, 1] Ref patch -> list of (N, 64, 64 / 2^k, 64 / 2^k) for k = 0..levels."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, SSNET_CHANNELS, 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(SSNET_CHANNELS, SSNET_CHANNELS, 3, padding=1) for _ in range(levels))

    def forward(self, ref_patch: torch.Tensor) -> list[torch.Tensor]:
        features = [F.relu(self.conv0(ref_patch))]
        for conv in self.down:
            features.append(F.max_pool2d(F.relu(conv(features[-1])), 2))
        return features


class PredictionModule(nn.Module):
    """SS-Net prediction module: coarse-to-fine masked fusion of paper eq. 2 and the output head.

    Level L (coarsest): M_L = relu(conv([F_LR, F_HR^L])), M = sig(M_L), F^L = conv(delta([F_LR, F_HR^L * M])).
    Level i < L: M_L = relu(conv([SP(F^(i+1)), F_HR^i, NN(M_L^(i+1))])), M = sig(M_L),
    F^i = conv(delta([NN(F^(i+1)), F_HR^i * M])). The mask multiplies the HR part only (doc §3 row 10).
    Output = conv(F^0) + nearest-neighbour x s of the LR patch (doc §3 row 14, a documented deviation).
    ``mask{i}``/``fuse{i}``/``sp{i}`` are W_mask^(i), W_fuse^(i) and the SP convolution producing level i.
    """

    def __init__(self, levels: int, fuse_activation: str) -> None:
        super().__init__()
        if fuse_activation not in ("sigmoid", "relu"):
            raise UserError(f"fuse_activation must be 'sigmoid' or 'relu'; got {fuse_activation!r}")
        self.levels = levels
        self.fuse_activation = fuse_activation
        c = SSNET_CHANNELS
        for level in range(levels, -1, -1):
            coarsest = level == levels
            if not coarsest:
                self.add_module(f"sp{level}", nn.Conv2d(c, 4 * c, 3, padding=1))
            self.add_module(f"mask{level}", nn.Conv2d(2 * c + (0 if coarsest else 1), 1, 3, padding=1))
            self.add_module(f"fuse{level}", nn.Conv2d(2 * c, c, 3, padding=1))
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def _delta(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) if self.fuse_activation == "sigmoid" else F.relu(x)

    def forward(
        self, lr_feature: torch.Tensor, hr_features: list[torch.Tensor], lr_patch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``lr_feature`` (N, 64, p, p), ``hr_features`` from ``HRFeatureModule``, ``lr_patch`` (N, 3, p, p)
        RGB [0, 1]. Returns the HR prediction (N, 3, 64, 64) RGB (not clamped) and M^(0) (N, 1, 64, 64)."""
        top = self.levels
        hr = hr_features[top]
        mask_logit = F.relu(getattr(self, f"mask{top}")(torch.cat([lr_feature, hr], dim=1)))
        mask = torch.sigmoid(mask_logit)
        fused = getattr(self, f"fuse{top}")(self._delta(torch.cat([lr_feature, hr * mask], dim=1)))
        for level in range(top - 1, -1, -1):
            hr = hr_features[level]
            sub_pixel = F.pixel_shuffle(getattr(self, f"sp{level}")(fused), 2)
            mask_in = torch.cat([sub_pixel, hr, F.interpolate(mask_logit, scale_factor=2, mode="nearest")], dim=1)
            mask_logit = F.relu(getattr(self, f"mask{level}")(mask_in))
            mask = torch.sigmoid(mask_logit)
            fuse_in = torch.cat([F.interpolate(fused, scale_factor=2, mode="nearest"), hr * mask], dim=1)
            fused = getattr(self, f"fuse{level}")(self._delta(fuse_in))
        # HR patch = scale x LR patch and each level halves it, so the scale is 2^levels (an int, also when traced).
        residual = F.interpolate(lr_patch, scale_factor=2**self.levels, mode="nearest")
        return self.out(fused) + residual, mask


class SSNet(nn.Module):
    """SS-Net: ``lr_module`` (frozen SRResNet trunk), ``hr_module`` and ``pred`` (eq. 2)."""

    def __init__(self, levels: int, fuse_activation: str) -> None:
        super().__init__()
        self.lr_module = SRResNetTrunk()
        self.hr_module = HRFeatureModule(levels)
        self.pred = PredictionModule(levels, fuse_activation)
        for parameter in self.lr_module.parameters():
            parameter.requires_grad_(False)

    def forward(
        self, lr_feature: torch.Tensor, ref_patch: torch.Tensor, lr_patch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-window synthesis: F_LR (N, 64, p, p), Ref patch (N, 3, 64, 64) and LR patch (N, 3, p, p),
        RGB [0, 1] -> prediction (N, 3, 64, 64) and scale-0 mask (N, 1, 64, 64)."""
        return self.pred(lr_feature, self.hr_module(ref_patch), lr_patch)


# ------------------------------------------------------------------------------------ geometry helpers


def padded_length(length_px: int, window_px: int, stride_px: int) -> int:
    """Smallest L >= max(length, window) such that windows of ``window_px`` at stride ``stride_px`` tile [0, L)."""
    steps = max(0, math.ceil((length_px - window_px) / stride_px))
    return window_px + steps * stride_px


def gather_windows(image: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size_px: int) -> torch.Tensor:
    """Square windows of a (1, C, H, W) image: window k is rows tops[k]..+size, columns lefts[k]..+size.

    The caller guarantees the windows lie inside the image. Returns (K, C, size, size)."""
    offsets = torch.arange(size_px, device=image.device)
    rows = (tops[:, None] + offsets)[:, :, None]  # (K, size, 1)
    cols = (lefts[:, None] + offsets)[:, None, :]  # (K, 1, size)
    return image[0][:, rows, cols].permute(1, 0, 2, 3)


def cut_ref_patches(ref: torch.Tensor, centres_yx: torch.Tensor, size_px: int) -> torch.Tensor:
    """Ref patches centred at integer positions, zero outside the Ref.

    ``ref`` (1, 3, H, W) RGB [0, 1]; ``centres_yx`` (K, 2) integer-valued; patch k covers rows
    [y - size/2, y + size/2) and likewise columns (even ``size_px``). Returns (K, 3, size, size)."""
    half = size_px // 2
    padded = F.pad(ref, (half, half, half, half))
    centres = centres_yx.to(torch.int64)
    return gather_windows(padded, centres[:, 0], centres[:, 1], size_px)


def gaussian_kernel_1d(sigma_px: float, truncate_sigmas: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius round(truncate * sigma) (scipy.ndimage's rule)."""
    radius = int(truncate_sigmas * sigma_px + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def gaussian_smooth(masks: torch.Tensor, sigma_px: float, truncate_sigmas: float) -> torch.Tensor:
    """Separable Gaussian smoothing with replicate borders: (K, 1, H, W) -> (K, 1, H, W)."""
    kernel = gaussian_kernel_1d(sigma_px, truncate_sigmas).to(masks.device, masks.dtype)
    radius = kernel.numel() // 2
    x = F.pad(masks, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    return F.conv2d(x, kernel.view(1, 1, 1, -1))


def fuse_windows(
    predictions: torch.Tensor,
    weights: torch.Tensor,
    grid_hw: tuple[int, int],
    stride_px: int,
    epsilon: float,
) -> torch.Tensor:
    """Weighted average of overlapping square HR predictions.

    ``predictions`` (K, C, P, P), ``weights`` (K, 1, P, P) >= 0, windows in row-major order of a
    ``grid_hw`` grid whose top-left corners are ``stride_px`` apart. Returns (1, C, P + stride*(rows-1),
    P + stride*(cols-1)) = sum(w * pred) / (sum(w) + epsilon)."""
    count, channels, size = int(predictions.shape[0]), int(predictions.shape[1]), int(predictions.shape[-1])
    out_hw = (size + stride_px * (grid_hw[0] - 1), size + stride_px * (grid_hw[1] - 1))

    def fold(x: torch.Tensor) -> torch.Tensor:
        columns = x.reshape(count, -1).t().unsqueeze(0)  # (1, C*P*P, K)
        return F.fold(columns, out_hw, kernel_size=size, stride=stride_px)

    numerator = fold(predictions * weights)
    denominator = fold(weights.expand(count, 1, size, size))
    assert numerator.shape[1] == channels
    return numerator / (denominator + epsilon)


# ------------------------------------------------------------------------------------------ the network


class RefSRNet(nn.Module):
    """The whole RefSR-Net. ``forward(lr, ref)``: LR (1, 3, h, w) and Ref (1, 3, H, W), RGB [0, 1]
    -> SR (1, 3, s*h, s*w) RGB, not clamped. Submodules: ``ccnet``, ``matching`` (parameterless), ``ssnet``."""

    def __init__(self, config: RefSRNetConfig) -> None:
        super().__init__()
        self.config = config
        self.ccnet = CCNet()
        self.matching = WindowedInnerProduct(config.search_radius_px, config.match_block_hr_px)
        self.ssnet = SSNet(config.num_levels, config.fuse_activation)

    def upsample_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """Bilinear LR↑ for CC-Net (doc §3 row 4): (1, 3, h, w) -> (1, 3, s*h, s*w)."""
        return F.interpolate(lr, scale_factor=self.config.scale, mode="bilinear", align_corners=False)

    def correspond(
        self, lr: torch.Tensor, ref: torch.Tensor, y0: int, x0: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """CC-Net matches for HR query positions (y0 + step*m, x0 + step*n) of the LR↑ (see WindowedInnerProduct)."""
        query = self.ccnet.features_on_grid(self.upsample_lr(lr), y0, x0, step)
        return self.matching(query, self.ccnet(ref), y0, x0, step)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        scale, patch, stride = cfg.scale, cfg.lr_patch_px, cfg.lr_stride_px
        height, width = int(lr.shape[-2]), int(lr.shape[-1])  # ints also when traced (fixed-shape cost graph)
        padded_h, padded_w = padded_length(height, patch, stride), padded_length(width, patch, stride)
        lr_padded = F.pad(lr, (0, padded_w - width, 0, padded_h - height), mode="replicate")
        grid_h, grid_w = (padded_h - patch) // stride + 1, (padded_w - patch) // stride + 1

        # One CC-Net query per window, at the window centre (an LR-grid point: scale * (top + patch/2)).
        centre = scale * (patch // 2)
        ref_yx, _ = self.correspond(lr_padded, ref, centre, centre, scale * stride)
        ref_patches = cut_ref_patches(ref, ref_yx.reshape(-1, 2), cfg.hr_patch_px)

        lr_features = self.ssnet.lr_module(lr_padded)
        tops = (stride * torch.arange(grid_h, device=lr.device)).repeat_interleave(grid_w)
        lefts = (stride * torch.arange(grid_w, device=lr.device)).repeat(grid_h)
        feature_windows = gather_windows(lr_features, tops, lefts, patch)
        lr_windows = gather_windows(lr_padded, tops, lefts, patch)

        predictions, masks = [], []
        for start in range(0, grid_h * grid_w, cfg.window_batch):
            chunk = slice(start, start + cfg.window_batch)
            prediction, mask = self.ssnet(feature_windows[chunk], ref_patches[chunk], lr_windows[chunk])
            predictions.append(prediction)
            masks.append(mask)
        weights = gaussian_smooth(torch.cat(masks), cfg.gaussian_sigma_px, cfg.gaussian_truncate_sigmas)
        fused = fuse_windows(torch.cat(predictions), weights, (grid_h, grid_w), scale * stride, cfg.weight_epsilon)
        return fused[:, :, : scale * height, : scale * width]


# ------------------------------------------------------------------------------------- method wrapper


def parameter_counts(module: RefSRNet) -> dict[str, int]:
    """Parameters per part (frozen SRResNet trunk included in ``ssnet`` and listed separately)."""

    def count(part: nn.Module) -> int:
        return sum(p.numel() for p in part.parameters())

    ssnet = module.ssnet
    return {
        "ccnet": count(module.ccnet),
        "matching": count(module.matching),
        "ssnet.lr_module (frozen)": count(ssnet.lr_module),
        "ssnet.hr_module": count(ssnet.hr_module),
        "ssnet.pred": count(ssnet.pred),
        "ssnet trainable": count(ssnet.hr_module) + count(ssnet.pred),
        "total": count(module),
    }


def matching_macs_benchmark(lr_hw: tuple[int, int], radius_px: int = 100) -> int:
    """FLOPS-M by the benchmark definition (doc §4.1 / protocols §7.5): one query per LR pixel,
    (2R + 1)^2 candidates of 256 channels each, borders ignored."""
    return lr_hw[0] * lr_hw[1] * (2 * radius_px + 1) ** 2 * CCNET_FEATURE_CHANNELS


_CHOICES_COMMON = {
    "no_official_code": "no official code or weights; architecture from the paper + docs/methods/refsr_net.md §3",
    "ccnet_activation": "conv -> BN -> ReLU after each of the six dilated layers; the 1x1 fc (256) is linear",
    "ccnet_padding": "valid convolutions on training crops (65 -> 1, 193 -> 129); zero 'same' padding "
    "(= dilation) for dense test features",
    "ccnet_input": "RGB [0, 1], no mean subtraction; LR↑ = interpolate(bilinear, align_corners=False)",
    "ccnet_siamese": "one CC-Net applied to LR↑ and Ref (shared weights, paper Fig. 2)",
    "match_query_positions": "match(): one query per LR pixel at HR (s*i, s*j) (protocols.md §6 #4 and the "
    "Correspondence convention; supersedes refsr_net.md §3 row 7's s*i + floor(s/2)); predict(): one query per "
    "window at its centre s*(top + p/2)",
    "match_search": "argmax inner product, Chebyshev radius 100 HR px, candidates outside the Ref skipped, ties "
    "-> first in row-major order; no candidate -> score -inf and the query position clamped into the Ref",
    "match_implementation": "blocked GEMM over the union of neighbouring queries' windows + window mask "
    "(~32 HR px query blocks); exact result, but fvcore counts the union GEMM, not (2R+1)^2 per query",
    "ccnet_training_loss": "2-D softmax cross-entropy over the (2r+1)^2 search map, logits = plain inner "
    "product (ccnet_classification_loss)",
    "srresnet_trunk": "conv9x9 3->64 + PReLU; 16 x [conv-BN-PReLU-conv-BN + x]; conv-BN; + head (no "
    "up-sampler); frozen; run on the whole padded LR (zero padding) and cropped per window",
    "hr_module": "conv3x3 3->64 + ReLU, then per level conv3x3 64->64 + ReLU + max-pool 2x2/2",
    "mask_placement": "mask multiplies the HR part of the concatenation only",
    "mask_input": "M_L^(i+1) (after relu, before the sigmoid) is nearest-up-sampled into the next mask conv",
    "delta_before_fuse": "literal sigmoid (paper text); config.fuse_activation='relu' is the alternative",
    "mask_and_fuse_convs": "3x3; mask conv -> 1 channel, fusion conv -> 64 channels",
    "sp": "conv3x3 64->256 + PixelShuffle(2)",
    "output_head": "conv3x3 64->3 + nearest-neighbour x s up-sampling of the LR patch as residual "
    "(documented deviation: the paper shows no residual)",
    "ssnet_loss": "MSE on the 64x64 HR patch (paper does not state it)",
    "border_handling": "LR replicate-padded at bottom/right so windows cover it; Ref patches zero outside the Ref",
    "ref_patch_geometry": "64x64 Ref patch rows [y-32, y+32) around the match y of the window centre",
    "fusion_weights": "O = M^(0) smoothed by a separable Gaussian sigma 3 px, truncated at 3 sigma (radius 9), "
    "replicate border; weighted mean with epsilon 1e-6 on the weight sum",
    "flops_m": "the inference graph queries CC-Net once per SS-Net window, so its `matching` part is "
    "~(h/stride)*(w/stride) queries; the benchmark FLOPS-M (one query per LR pixel, as match() does) is "
    "matching_macs_benchmark()",
    "factory_scale": "the scale argument must equal the variant's scale (refsr_net: 8, its default; "
    "refsr_net_x4: 4); a mismatch raises UserError",
    "lr_features_fc": "the 1x1 fc of the LR↑ stream runs only at the query positions (it commutes with sampling)",
    "weights": "no official checkpoint; load_weights reads this module's own state_dict layout "
    "(file <name>.pth, flat, strict)",
}


def _choices(config: RefSRNetConfig, counts: dict[str, int]) -> dict[str, str]:
    choices = dict(_CHOICES_COMMON)
    choices["variant"] = (
        "paper setting x8: 8x8 LR -> 64x64 HR patches, HR scales 1..1/8"
        if config.scale == 8
        else "x4 adaptation (refsr_net.md §5): 16x16 LR -> 64x64 HR patches, HR scales 1..1/4 (the "
        "'8x8 LR -> 32x32 HR' alternative is not used)"
    )
    patch = config.lr_patch_px
    choices["sliding_stride"] = f"LR stride {config.lr_stride_px} px ({patch}x{patch} LR windows, 50% overlap)"
    choices["search_radius"] = f"{config.search_radius_px} HR px at test (paper); 64 in training"
    choices["parameter_counts"] = "; ".join(f"{k} {v:,}" for k, v in counts.items())
    return choices


class RefSRNetMethod:
    """Method wrapper for RefSR-Net (``Method`` and ``Matcher`` protocols)."""

    def __init__(self, config: RefSRNetConfig, device: str) -> None:
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise UserError(f"invalid device {device!r}; use e.g. 'cpu' or 'cuda'") from error
        self.config = config
        # Fixed seed for the random initialisation so that an untrained method is reproducible.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = RefSRNet(config)
        self.module: RefSRNet = module.to(self.device).eval()
        self.weights_loaded = False
        self.info = info_from_card(
            builtin_card(config.name), scale=config.scale, choices=_choices(config, parameter_counts(self.module))
        )

    def _check_inputs(self, lr: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError(f"{self.config.name} needs a reference image (ref); got None")
        check_image_tensor("ref", ref)
        return ref

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """LR (1, 3, h, w) and Ref (1, 3, H, W), RGB [0, 1] float32 -> SR (1, 3, s*h, s*w) RGB float32,
        not clamped. ``ref_lr`` is ignored (RefSR-Net never uses a down-scaled Ref)."""
        ref = self._check_inputs(lr, ref)
        with torch.inference_mode():
            return self.module(lr.to(self.device, torch.float32), ref.to(self.device, torch.float32))

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """CC-Net correspondence of every LR pixel (i, j), queried at HR (s*i, s*j) of the bilinear LR↑,
        searched within Chebyshev radius ``search_radius_px`` in the HR Ref (1, 3, H, W) RGB [0, 1]."""
        self._check_inputs(lr, ref)
        scale = self.config.scale
        with torch.inference_mode():
            ref_yx, score = self.module.correspond(
                lr.to(self.device, torch.float32), ref.to(self.device, torch.float32), 0, 0, scale
            )
        return Correspondence(ref_yx=ref_yx.cpu(), score=score.cpu())

    def load_weights(self, path: str | Path) -> None:
        """Load a flat state_dict in this module's layout from ``path`` (a file, or a folder holding
        ``<name>.pth``)."""
        path = Path(path)
        if path.is_dir():
            path = path / self.config.file_name()
        state = read_checkpoint(path)
        load_state_dict_strict(self.module, state, f"{self.config.name} (RefSR-Net, own layout)")
        self.module.eval()
        self.weights_loaded = True

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """The whole network (``forward(lr, ref)``) and RGB [0, 1] example inputs of the given sizes."""
        generator = torch.Generator().manual_seed(0)
        lr = torch.rand(1, 3, *lr_hw, generator=generator).to(self.device)
        ref = torch.rand(1, 3, *ref_hw, generator=generator).to(self.device)
        return self.module, (lr, ref)


def _build(config: RefSRNetConfig, scale: int, device: str) -> RefSRNetMethod:
    if scale != config.scale:
        raise UserError(
            f"{config.name} is a x{config.scale} model; got scale={scale}. "
            f"Valid: refsr_net (scale 8, the paper's setting) or refsr_net_x4 (scale 4)."
        )
    return RefSRNetMethod(config, device)


def refsr_net(*, scale: int = 8, device: str = "cpu") -> RefSRNetMethod:
    """RefSR-Net in the paper's x8 setting."""
    return _build(CONFIG_X8, scale, device)


def refsr_net_x4(*, scale: int = 4, device: str = "cpu") -> RefSRNetMethod:
    """RefSR-Net x4 adaptation (docs/methods/refsr_net.md §5)."""
    return _build(CONFIG_X4, scale, device)
