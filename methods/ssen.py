"""SSEN: Similarity Search and Extraction Network (Shim, Park, Kweon, CVPR 2020), benchmark configuration.

No official code exists. The network follows paper 000 where it is explicit and the benchmark's
recommended configuration ("ssen_bench", ``docs/methods/ssen.md`` §4) where the paper is silent; every
such decision is recorded in ``MethodInfo.choices``. Registered variants (all ×4 only):

- ``ssen``: EDSR-style RefSR network (64 ch, 8 RB trunk shared by LR and Ref, 3 stacked modulated
  deformable convolutions driven by dynamic offset estimators with non-local blocks, mid-level fusion,
  8 RB reconstruction, bicubic global skip). 3,257,515 parameters.
- ``ssen_baseline``: the same network without ``ref_head``, SSEN and the fusion conv = EDSR-baseline ×4
  plus the bicubic global skip. 1,517,571 parameters.
- ``ssen_self``: self-similarity variant: RCAN (10 groups × 20 RCAB, 64 ch, reduction 16) with SSEN
  inserted after residual group 5, fed the LR feature as its own reference.

Our checkpoints only (no official weights exist): ``load_weights`` takes a plain state_dict of this
module's own layout, strictly.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from methods.base import MethodInfo, check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.blocks import ResidualBlock, conv3x3
from methods.cards import builtin_card
from protocols.core import UserError

SUPPORTED_SCALES = (4,)
# Bound on one non-local affinity chunk (query rows x keys), in elements: 2**24 fp32 = 64 MiB. The
# affinity at the 1/2 level of an LR of 256x400 would otherwise be 25,600^2 entries (2.6 GB).
NL_CHUNK_ELEMENTS = 2**24
LEAKY_SLOPE = 0.1



# ---------------------------------------------------------------------------------------------------
# building blocks


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (paper eqs. 2-3): y_i = x_i + W(sum_j softmax_j(theta_i . phi_j) g_j).

    theta, phi, g are 1x1 convs to ``embed_channels`` (half the channels, as the paper states); W is a
    1x1 conv back to ``channels``, zero-initialised so that the block starts as the identity. The
    softmax over all positions j is exact; queries are processed in chunks so that one affinity chunk
    never exceeds ``chunk_elements`` entries. No 1/sqrt(d) temperature (the paper's eq. 3 has none).
    """

    def __init__(self, channels: int, embed_channels: int, chunk_elements: int = NL_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.theta = nn.Conv2d(channels, embed_channels, 1)
        self.phi = nn.Conv2d(channels, embed_channels, 1)
        self.g = nn.Conv2d(channels, embed_channels, 1)
        self.out = nn.Conv2d(embed_channels, channels, 1)
        self.chunk_elements = chunk_elements
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, C, H, W) feature -> same shape."""
        batch, _, height, width = x.shape
        queries = self.theta(x).flatten(2).transpose(1, 2)  # (N, L, E)
        keys = self.phi(x).flatten(2)  # (N, E, L)
        values = self.g(x).flatten(2).transpose(1, 2)  # (N, L, E)
        positions = height * width
        rows_per_chunk = max(1, self.chunk_elements // positions)
        pieces = []
        for start in range(0, positions, rows_per_chunk):
            # bmm (not einsum) so that fvcore counts both products of the attention
            affinity = torch.bmm(queries[:, start : start + rows_per_chunk], keys)
            pieces.append(torch.bmm(torch.softmax(affinity, dim=-1), values))
        attended = torch.cat(pieces, dim=1).transpose(1, 2).reshape(batch, -1, height, width)
        return x + self.out(attended)


class DynamicOffsetEstimator(nn.Module):
    """Offset/mask predictor for one deformable layer (paper Fig. 3; ssen.md §4.3).

    U-shape at LR feature resolution: entry conv on concat[F_LR, Ref feature] (2C -> C), three
    stride-2 convs each followed by a non-local block (1/2, 1/4, 1/8), three 4x4 transposed convs back up
    with additive skips, then a zero-initialised conv to ``out_channels`` (offsets 0 and mask logits 0 at
    the start). Input height and width must be multiples of 8.
    """

    def __init__(self, channels: int, out_channels: int, embed_channels: int) -> None:
        super().__init__()
        self.entry = conv3x3(2 * channels, channels)
        self.down1 = conv3x3(channels, channels, stride=2)
        self.down2 = conv3x3(channels, channels, stride=2)
        self.down3 = conv3x3(channels, channels, stride=2)
        self.nonlocal1 = NonLocalBlock(channels, embed_channels)
        self.nonlocal2 = NonLocalBlock(channels, embed_channels)
        self.nonlocal3 = NonLocalBlock(channels, embed_channels)
        self.up3 = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        self.out = conv3x3(channels, out_channels)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, 2C, H, W) with H, W multiples of 8 -> (N, out_channels, H, W)."""
        act = F.leaky_relu
        e0 = act(self.entry(x), LEAKY_SLOPE)
        d1 = self.nonlocal1(act(self.down1(e0), LEAKY_SLOPE))
        d2 = self.nonlocal2(act(self.down2(d1), LEAKY_SLOPE))
        d3 = self.nonlocal3(act(self.down3(d2), LEAKY_SLOPE))
        u2 = act(self.up3(d3), LEAKY_SLOPE) + d2
        u1 = act(self.up2(u2), LEAKY_SLOPE) + d1
        u0 = act(self.up1(u1), LEAKY_SLOPE) + e0
        return self.out(u0)


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable convolution (DCNv2, paper eq. 1) via ``torchvision.ops.deform_conv2d``.

    Dense C_in -> C_out kernel (no conv groups); the offsets/masks are shared within each of
    ``offset_groups`` channel groups. Offset layout (torchvision = DCNv2): channel
    ``2 * (g * K + k) + {0: dy, 1: dx}`` for group g and kernel tap k (row-major); mask channel ``g * K + k``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, offset_groups: int = 8) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.offset_groups = offset_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        # same initialisation as nn.Conv2d, so the layer starts like the plain conv it generalises
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C_in, H, W); ``offset`` (N, 2·G·K, H, W) in pixels; ``mask`` (N, G·K, H, W) -> (N, C_out, H, W)."""
        return deform_conv2d(x, offset, self.weight, self.bias, padding=self.kernel_size // 2, mask=mask)


class SSEN(nn.Module):
    """Stacked modulated deformable convolutions, each driven by its own dynamic offset estimator.

    A_0 = Ref feature; A_k = DCN_k(A_{k-1}; DOE_k(concat[F_LR, A_{k-1}])). Sequential, no skip across the
    deformable layers (the paper rules it out); LeakyReLU(0.1) after every layer but the last.
    The estimator output is split as [offsets (2·G·K), mask logits (G·K)]; masks = sigmoid(logits).
    """

    def __init__(self, channels: int = 64, layers: int = 3, offset_groups: int = 8, kernel_size: int = 3) -> None:
        super().__init__()
        taps = kernel_size * kernel_size
        self.offset_channels = 2 * offset_groups * taps
        self.mask_channels = offset_groups * taps
        self.estimators = nn.ModuleList(
            DynamicOffsetEstimator(channels, self.offset_channels + self.mask_channels, channels // 2)
            for _ in range(layers)
        )
        self.dcns = nn.ModuleList(
            ModulatedDeformConv2d(channels, channels, kernel_size, offset_groups) for _ in range(layers)
        )

    def forward(self, lr_feature: torch.Tensor, ref_feature: torch.Tensor) -> torch.Tensor:
        """``lr_feature``, ``ref_feature``: (N, C, h, w), h and w multiples of 8 -> aligned Ref feature (N, C, h, w)."""
        aligned = ref_feature
        last = len(self.dcns) - 1
        for layer, (estimator, dcn) in enumerate(zip(self.estimators, self.dcns, strict=True)):
            raw = estimator(torch.cat([lr_feature, aligned], dim=1))
            offset, mask_logit = raw.split([self.offset_channels, self.mask_channels], dim=1)
            aligned = dcn(aligned, offset, torch.sigmoid(mask_logit))
            if layer < last:
                aligned = F.leaky_relu(aligned, LEAKY_SLOPE)
        return aligned


def pixel_shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """EDSR-style up-sampler for scale 4: 2 x (conv C -> 4C, PixelShuffle 2), no activation."""
    layers: list[nn.Module] = []
    for _ in range(int(math.log2(scale))):
        layers += [conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------------
# networks


class SSENRefSR(nn.Module):
    """EDSR-style RefSR network with SSEN (``use_ssen=True``) or the EDSR-baseline without it.

    All feature work at LR resolution. ``forward(lr, ref)``: ``lr`` (N, 3, h, w), ``ref`` (N, 3, s·h, s·w),
    RGB in [0, 1], h and w multiples of 8 when ``use_ssen``; returns (N, 3, s·h, s·w), not clamped.
    """

    def __init__(
        self, *, scale: int = 4, channels: int = 64, trunk_blocks: int = 8, recon_blocks: int = 8, use_ssen: bool = True
    ) -> None:
        super().__init__()
        self.scale = scale
        self.use_ssen = use_ssen
        self.lr_head = conv3x3(3, channels)
        if use_ssen:
            # the HR Ref reaches LR resolution losslessly by pixel-unshuffle (3 -> 3·s² channels)
            self.ref_head = conv3x3(3 * scale * scale, channels)
        self.trunk = nn.Sequential(*(ResidualBlock(channels) for _ in range(trunk_blocks)))
        if use_ssen:
            self.ssen = SSEN(channels)
            self.fusion = nn.Conv2d(2 * channels, channels, 1)
        self.recon_body = nn.Sequential(*(ResidualBlock(channels) for _ in range(recon_blocks)))
        self.recon_tail = conv3x3(channels, channels)
        self.upsampler = pixel_shuffle_upsampler(channels, scale)
        self.out = conv3x3(channels, 3)

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        head = self.lr_head(lr)
        feature = self.trunk(head)
        if self.use_ssen:
            if ref is None:
                raise UserError("ssen needs a reference image")
            ref_feature = self.trunk(self.ref_head(F.pixel_unshuffle(ref, self.scale)))
            aligned = self.ssen(feature, ref_feature)
            feature = self.fusion(torch.cat([feature, aligned], dim=1))
        body = self.recon_tail(self.recon_body(feature)) + head
        height, width = lr.shape[-2:]
        upsampled = F.interpolate(
            lr, size=(height * self.scale, width * self.scale), mode="bicubic", align_corners=False
        )
        return self.out(self.upsampler(body)) + upsampled


class ChannelAttention(nn.Module):
    """RCAN channel attention: global average pool, 1x1 C -> C/r, ReLU, 1x1 C/r -> C, sigmoid, rescale."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, channels // reduction, 1)
        self.excite = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1)))))
        return x * weights


class ResidualChannelAttentionBlock(nn.Module):
    """RCAB: conv - ReLU - conv - channel attention, plus identity."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)
        self.attention = ChannelAttention(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.conv2(F.relu(self.conv1(x))))


class ResidualGroup(nn.Module):
    """RCAN residual group: ``blocks`` RCABs and a conv, plus identity."""

    def __init__(self, channels: int, blocks: int, reduction: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualChannelAttentionBlock(channels, reduction) for _ in range(blocks)))
        self.tail = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(x))


class SSENSelfSR(nn.Module):
    """Self-similarity SSEN on an RCAN reconstruction network (paper Fig. 4; ssen.md §3 row 17).

    head conv -> residual groups 1..k -> F; SSEN(F, F) aligns the LR feature to itself; fusion 1x1 of
    concat[F, aligned] -> groups k+1..G -> conv -> + head -> up-sampler -> conv to RGB.
    ``forward(lr)``: (N, 3, h, w) RGB [0, 1], h and w multiples of 8 -> (N, 3, s·h, s·w), not clamped.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 64,
        groups: int = 10,
        blocks_per_group: int = 20,
        reduction: int = 16,
        insert_after_group: int = 5,
    ) -> None:
        super().__init__()
        self.insert_after_group = insert_after_group
        self.head = conv3x3(3, channels)
        self.groups = nn.ModuleList(ResidualGroup(channels, blocks_per_group, reduction) for _ in range(groups))
        self.body_tail = conv3x3(channels, channels)
        self.ssen = SSEN(channels)
        self.fusion = nn.Conv2d(2 * channels, channels, 1)
        self.upsampler = pixel_shuffle_upsampler(channels, scale)
        self.out = conv3x3(channels, 3)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.head(lr)
        feature = head
        for index, group in enumerate(self.groups):
            feature = group(feature)
            if index + 1 == self.insert_after_group:
                aligned = self.ssen(feature, feature)
                feature = self.fusion(torch.cat([feature, aligned], dim=1))
        return self.out(self.upsampler(self.body_tail(feature) + head))


# ---------------------------------------------------------------------------------------------------
# helpers shared by the wrappers


def crop_or_zero_pad(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Crop or zero-pad ``image`` (N, C, H, W) at the bottom/right to ``size_hw`` (protocols.md §3 rule 3)."""
    height, width = size_hw
    image = image[..., :height, :width]
    return F.pad(image, (0, width - image.shape[-1], 0, height - image.shape[-2]))


def parameter_counts(module: nn.Module, split: tuple[str, ...] = ()) -> dict[str, int]:
    """Parameters per top-level child (and per child of the names in ``split``), plus ``total``."""
    counts: dict[str, int] = {}
    for name, child in module.named_children():
        if name in split:
            for sub_name, sub_child in child.named_children():
                counts[f"{name}.{sub_name}"] = sum(p.numel() for p in sub_child.parameters())
        else:
            counts[name] = sum(p.numel() for p in child.parameters())
    counts["total"] = sum(p.numel() for p in module.parameters())
    return counts


def format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}={count:,}" for name, count in counts.items())


_COMMON_CHOICES: dict[str, str] = {
    "channels": "64 (paper gives no width; ssen.md §3 row 1)",
    "deformable_layers": "3 modulated DCNs (DCNv2, torchvision deform_conv2d with mask), 3x3, dense 64->64 kernel, "
    "no skip across them (paper §3.2 / Table 4)",
    "deformable_groups": "8 offset groups (ssen.md §3 row 4)",
    "offset_layout": "estimator output 216 ch = [144 offsets, DCNv2 per group and tap (dy, dx); 72 mask logits]; "
    "masks = sigmoid; offsets unscaled, in LR-feature pixels",
    "activation_between_dcns": "LeakyReLU(0.1) after DCN 1 and 2, none after DCN 3 (ssen.md §3 row 5)",
    "offset_estimator": "entry conv 2C->C on concat[F_LR, A_k-1] (LR first); 3 x (conv stride 2 + LReLU(0.1) + NL) "
    "at 1/2, 1/4, 1/8; 3 x (tconv 4x4 s2 p1 + LReLU(0.1)) with additive skips; conv C->216 (ssen.md §4.3)",
    "non_local": "embedded Gaussian, theta/phi/g 1x1 64->32 (half the channels), softmax over all positions, "
    "no 1/sqrt(d) temperature, output 1x1 32->64 + identity; queries chunked so that one affinity chunk holds "
    f"at most {NL_CHUNK_ELEMENTS} entries (exact result, bounded memory)",
    "initialisation": "estimator output conv zeros (offsets 0, masks 0.5 at start); NL output conv zeros "
    "(identity at start); other convs PyTorch default; DCN kernel as nn.Conv2d",
    "input_range": "RGB, [0, 1], no mean shift (ssen.md §3 row 14)",
    "lr_padding": "predict() pads the LR replicate bottom/right to a multiple of 8 (three stride-2 levels) and "
    "crops the SR back",
    "flops_m": "undefined (no explicit correspondence search); part `matching` = the whole alignment module "
    "`ssen` (3 DOEs + NL matrix products + 3 DCNs), to be labelled 'alignment' (protocols.md §7.5); fvcore needs a "
    "handle for torchvision::deform_conv2d",
    "training_loss": "Charbonnier, per element sqrt((x-y)^2 + eps^2), mean, eps = 1e-6 (methods.losses)",
    "weights": "no official checkpoint exists; load_weights takes a plain state_dict of this layout (strict)",
}


class SSENMethod:
    """Wrapper implementing the ``Method`` protocol for the three SSEN variants.

    ``predict(lr, ref)``: ``lr`` (1, 3, h, w), ``ref`` (1, 3, H, W) any size (ignored by ``ssen_self``
    and ``ssen_baseline``), RGB float32 in [0, 1] -> SR (1, 3, 4h, 4w) RGB, not clamped.
    """

    def __init__(self, info: MethodInfo, module: nn.Module, device: str, param_counts: dict[str, int]) -> None:
        self.info = info
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.weights_loaded = False
        self.param_counts = param_counts

    def _prepared_inputs(self, lr: torch.Tensor, ref: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The network's inputs: LR replicate-padded to ``lr_multiple``; Ref cropped/zero-padded to s·(h, w)
        of the original LR (never rescaled), then zero-padded like the LR."""
        scale = self.info.scale
        height, width = lr.shape[-2:]
        multiple = self.info.lr_multiple
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        lr_padded = F.pad(lr, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else lr
        if not self.info.needs_reference:
            return (lr_padded,)
        assert ref is not None
        ref_fitted = crop_or_zero_pad(ref, (scale * height, scale * width))
        ref_padded = crop_or_zero_pad(ref_fitted, (scale * (height + pad_h), scale * (width + pad_w)))
        return (lr_padded, ref_padded)

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image_tensor("lr", lr)
        if self.info.needs_reference:
            if ref is None:
                raise UserError(f"{self.info.name} needs a reference image (ref); ssen_self and ssen_baseline do not")
            check_image_tensor("ref", ref)
            ref = ref.to(self.device, torch.float32)
        lr = lr.to(self.device, torch.float32)
        height, width = lr.shape[-2:]
        with torch.inference_mode():
            sr = self.module(*self._prepared_inputs(lr, ref))
        return sr[..., : self.info.scale * height, : self.info.scale * width].contiguous()

    def load_weights(self, path: str | Path) -> None:
        """Load a plain state_dict (optionally under ``state_dict``/``params``) of this module's layout."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.info.name}.pth"
        state = read_checkpoint(path, container_keys=("state_dict", "params"))
        load_state_dict_strict(self.module, state, f"{self.info.name} (benchmark layout, methods/ssen.py)")
        self.weights_loaded = True

    def cost_graph(self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """``self.module`` and the inputs predict() would give it: LR padded to a multiple of 8, Ref brought to
        s·(padded LR size) whatever ``ref_hw`` is (SSEN needs Ref = HR size)."""
        generator = torch.Generator().manual_seed(0)
        lr = torch.rand((1, 3, *lr_hw), generator=generator).to(self.device)
        ref = torch.rand((1, 3, *ref_hw), generator=generator).to(self.device)
        return self.module, self._prepared_inputs(lr, ref)


def _check_scale(name: str, scale: int) -> None:
    if scale not in SUPPORTED_SCALES:
        raise UserError(f"{name} supports scale {', '.join(map(str, SUPPORTED_SCALES))} only, got {scale}")


def _info(name: str, choices: dict[str, str]) -> MethodInfo:
    """Facts (inputs, parts, lr_multiple, paper) from the method's card; ``choices`` from the factory."""
    return info_from_card(builtin_card(name), scale=4, choices=choices)


def ssen(*, scale: int = 4, device: str = "cpu") -> SSENMethod:
    """SSEN RefSR, benchmark configuration (ssen.md §4): 3,257,515 parameters."""
    _check_scale("ssen", scale)
    module = SSENRefSR(scale=scale, use_ssen=True)
    counts = parameter_counts(module, split=("ssen",))
    choices = dict(_COMMON_CHOICES)
    choices.update(
        {
            "feature_extraction": "lr_head conv 3->64; ref_head = pixel-unshuffle x4 (3->48) + conv 48->64; the same "
            "8 RB trunk (shared weights) on both paths (ssen.md §3 rows 2-3)",
            "fusion": "mid-level: 1x1 conv 128->64 on concat[F_LR, aligned Ref] (ssen.md §3 row 10)",
            "reconstruction": "8 RB + conv 64->64 + long skip from lr_head; up-sampler 2 x (conv 64->256, "
            "PixelShuffle 2); conv 64->3",
            "global_skip": "+ bicubic x4 of the LR (torch interpolate bicubic, align_corners False)",
            "reference_size": "Ref cropped or zero-padded bottom/right to 4x the LR size, never rescaled "
            "(protocols.md §3 rule 3), then zero-padded like the LR padding",
            "parameters": format_counts(counts),
        }
    )
    info = _info("ssen", choices)
    return SSENMethod(info, module, device, counts)


def ssen_baseline(*, scale: int = 4, device: str = "cpu") -> SSENMethod:
    """The SSEN network without ref_head, SSEN and fusion = EDSR-baseline x4 + bicubic skip (1,517,571 parameters)."""
    _check_scale("ssen_baseline", scale)
    module = SSENRefSR(scale=scale, use_ssen=False)
    counts = parameter_counts(module)
    choices = {key: _COMMON_CHOICES[key] for key in ("channels", "input_range", "training_loss", "weights")}
    choices.update(
        {
            "network": "ssen without ref_head, SSEN and fusion: lr_head, 8 RB trunk, 8 RB recon_body, conv, long skip, "
            "up-sampler, conv = EDSR-baseline x4 (16 RB) (ssen.md §4.4)",
            "global_skip": "+ bicubic x4 of the LR (torch interpolate bicubic, align_corners False)",
            "parameters": format_counts(counts),
        }
    )
    info = _info("ssen_baseline", choices)
    return SSENMethod(info, module, device, counts)


def ssen_self(*, scale: int = 4, device: str = "cpu") -> SSENMethod:
    """Self-similarity SSEN on RCAN (10 x 20 RCAB, 64 ch, reduction 16), SSEN after group 5."""
    _check_scale("ssen_self", scale)
    module = SSENSelfSR(scale=scale)
    counts = parameter_counts(module, split=("ssen",))
    choices = dict(_COMMON_CHOICES)
    choices.update(
        {
            "backbone": "RCAN: head conv 3->64, 10 residual groups x 20 RCAB (channel attention reduction 16), "
            "conv, long skip, up-sampler 2 x (conv 64->256, PixelShuffle 2), conv 64->3 (paper §3.4)",
            "insertion_point": "SSEN after residual group 5; fusion 1x1 conv 128->64 on concat[F, aligned] "
            "(ssen.md §3 row 17)",
            "self_reference": "the reference feature is the LR feature itself (LR head + groups 1-5, i.e. the shared "
            "trunk of the RefSR variant applied to the LR); no pixel-unshuffle head",
            "global_skip": "none beyond RCAN's long feature skip (plain RCAN output; no bicubic skip, no mean shift)",
            "reference_input": "ignored: the network takes the LR only",
            "parameters": format_counts(counts),
        }
    )
    info = _info("ssen_self", choices)
    return SSENMethod(info, module, device, counts)
