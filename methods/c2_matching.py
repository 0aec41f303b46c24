"""C²-Matching (Jiang et al., "Robust Reference-based Super-Resolution via C²-Matching", CVPR 2021).

Three networks, named and laid out as the official code (yumingj/C2-Matching) names them, so that the
official checkpoints load with ``strict=True``:

- ``net_extractor`` -- ``ContrasExtractorSep``: two non-shared VGG16 trunks up to conv3_1 (no ReLU after
  it), one for LR↑ and one for the Ref; checkpoint ``feature_extraction.pth``.
- ``net_map`` -- ``CorrespondenceGenerationArch``: the parameter-free 3x3 patch correlation with argmax
  (submodule ``matching``, the FLOPS-M part), index -> flow -> nine shifted pre-offsets per scale, and a
  frozen ImageNet VGG19 (``vgg``) giving the Ref texture features relu1_1 / relu2_1 / relu3_1. The VGG19
  is in no C² checkpoint: it is torchvision's ``vgg19-dcbb9e9d.pth``.
- ``net_g`` -- ``RestorationNet(ngf=64, n_blocks=16, groups=8)``: content extractor, three dynamic-
  aggregation stages (modulated deformable conv, 8 groups, learned offsets added to the pre-offsets)
  and the bilinear x4 LR skip; checkpoints ``c2_matching_restoration_mse.pth`` (rec) and
  ``c2_matching_restoration.pth`` (GAN).

Specification: ``docs/methods/c2_matching.md`` and ``fixtures/c2_matching/README.md`` of the shared
reference folder. The deformable convolution is ``torchvision.ops.deform_conv2d``, which takes the DCNv2
offset layout (per group, per tap, (dy, dx)) unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from methods._matching_utils import RunningTop1
from methods.base import MethodInfo, check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.blocks import ResidualBlock, conv3x3, named_vgg19_features, vgg19_layer_names
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.resize import pil_bicubic

SCALE = 4
PATCH_SIZE = 3
LEAKY_SLOPE = 0.1
DEFORMABLE_GROUPS = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The official correlation processes ⌊1024²·512 / (h·w)⌋ Ref patches per convolution call (h×w = LR↑
# feature size): it bounds the score tensor to about 2 GiB of float32. Kept for tie-breaking parity.
CORRELATION_CHUNK_ELEMENTS = 1024 * 1024 * 512
# (scale name, Ref VGG19 layer, channels, resolution factor w.r.t. the LR) in the order net_g uses them.
DYN_AGG_SCALES: tuple[tuple[str, str, int, int], ...] = (
    ("small", "relu3_1", 256, 1),
    ("medium", "relu2_1", 128, 2),
    ("large", "relu1_1", 64, 4),
)
# Test-time recipes for bringing LR and Ref to the sizes the network needs (protocols.md §3).
REF_POLICIES: dict[str, str] = {
    "crop_or_pad_to_hr": "benchmark adapter (protocols.md §3 rule 3): the mod-cropped Ref is cropped or "
    "zero-padded bottom/right to the HR size 4h x 4w; the LR is used as given",
    "zero_pad_to_common": "official C² test loader transposed to LR scale: the mod-cropped Ref and the LR "
    "are zero-padded bottom/right to a common size (max of 4h and the Ref height, same for widths; the LR "
    "by a quarter of it), and the SR is cropped back to 4h x 4w",
}


# ---------------------------------------------------------------------------------------------------
# (A) contrastive correspondence network and (B)'s frozen VGG19: the same VGG trunk up to conv3_1


def _imagenet_buffers(module: nn.Module) -> None:
    # Registered as (persistent) buffers because the official checkpoints store them.
    module.register_buffer("mean", torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1))
    module.register_buffer("std", torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1))


class ContrasExtractorLayer(nn.Module):
    """One branch: (x - mean) / std, then VGG16 conv1_1 ... conv3_1 without the final ReLU.

    Input (N, 3, H, W) RGB [0, 1]; output (N, 256, H/4, W/4) (floor for sizes not divisible by 4).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        _imagenet_buffers(self)
        self.model = named_vgg19_features("conv3_1")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model((image - self.mean) / self.std)


class ContrasExtractorSep(nn.Module):
    """``net_extractor``: two non-shared branches, image1 = LR↑, image2 = Ref (both RGB [0, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_extraction_image1 = ContrasExtractorLayer()
        self.feature_extraction_image2 = ContrasExtractorLayer()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "dense_features1": self.feature_extraction_image1(image1),
            "dense_features2": self.feature_extraction_image2(image2),
        }


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 to relu3_1 with ImageNet standardisation inside.

    Input (N, 3, H, W) RGB [0, 1]; output dict relu1_1 (N, 64, H, W), relu2_1 (N, 128, H/2, W/2),
    relu3_1 (N, 256, H/4, W/4).
    """

    layer_names: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1")
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        _imagenet_buffers(self)
        self.vgg_net = named_vgg19_features("relu3_1")
        for parameter in self.vgg_net.parameters():
            parameter.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (image - self.mean) / self.std
        features: dict[str, torch.Tensor] = {}
        for name, layer in self.vgg_net.named_children():
            x = layer(x)
            if name in self.layer_names:
                features[name] = x
        return features


# ---------------------------------------------------------------------------------------------------
# (B) correspondence generation


class PatchCorrelationArgmax(nn.Module):
    """The matching step (FLOPS-M): every 3x3 patch of the LR↑ features against every 3x3 Ref patch.

    Both feature maps (N, C, h, w) are L2-normalised per pixel over channels; each Ref patch (stride 1,
    no padding) is divided by (its norm over C·9 values + 1e-5) and used as a convolution kernel over the
    LR↑ map. Returns ``max_idx`` (N, h-2, w-2) int64, the row-major index of the best Ref patch's
    top-left corner in the (h-2)x(w-2) Ref patch grid, for each LR↑ patch top-left corner; and
    ``max_val`` (N, h-2, w-2) float, the best score divided by (the LR↑ patch norm + 1e-5), i.e. the
    cosine similarity. Earlier indices win exact ties (first index within a chunk, strict ``>`` across
    chunks), as in the official code. No parameters.
    """

    def forward(self, feat_in: torch.Tensor, feat_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feat_in.shape != feat_ref.shape:
            raise UserError(
                f"C² matching needs LR↑ and Ref features of one size; got {tuple(feat_in.shape)} and "
                f"{tuple(feat_ref.shape)} (LR↑ and Ref images must have the same size)"
            )
        height, width = feat_in.shape[-2:]
        if height < PATCH_SIZE or width < PATCH_SIZE:
            raise UserError(f"C² matching needs feature maps of at least 3x3 (LR >= 3x3 pixels); got {height}x{width}")
        indices, values = [], []
        for item in range(feat_in.shape[0]):  # the official code loops over the batch as well
            index, value = self._match_one(feat_in[item : item + 1], feat_ref[item : item + 1])
            indices.append(index)
            values.append(value)
        return torch.stack(indices), torch.stack(values)

    @staticmethod
    def _match_one(feat_in: torch.Tensor, feat_ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        channels, height, width = feat_in.shape[1:]
        feat_in = F.normalize(feat_in, dim=1)
        feat_ref = F.normalize(feat_ref, dim=1)
        patches = F.unfold(feat_ref, PATCH_SIZE)[0].t()  # (L, C·9), channel-major like a conv weight
        patches = patches / (patches.norm(dim=1, keepdim=True) + 1e-5)
        kernels = patches.reshape(-1, channels, PATCH_SIZE, PATCH_SIZE)
        chunk = max(1, CORRELATION_CHUNK_ELEMENTS // (height * width))
        running = RunningTop1()
        for start in range(0, kernels.shape[0], chunk):
            scores = F.conv2d(feat_in, kernels[start : start + chunk])[0]  # (chunk, h-2, w-2)
            chunk_val, chunk_idx = scores.max(dim=0)
            running.update(chunk_val, chunk_idx + start)
        best_val, best_idx = running.result()
        input_norm = F.unfold(feat_in, PATCH_SIZE)[0].norm(dim=0).view(height - 2, width - 2)
        return best_idx, best_val / (input_norm + 1e-5)


def index_to_flow(max_idx: torch.Tensor) -> torch.Tensor:
    """(h-2, w-2) patch indices -> flow (h, w, 2) float32, last axis (dx, dy) in feature pixels.

    flow at patch top-left (y, x) = (idx mod (w-2) - x, idx div (w-2) - y); zero-padded by 2 at the
    bottom and right (no centring shift, as the official code).
    """
    grid_h, grid_w = max_idx.shape
    ys = torch.arange(grid_h, device=max_idx.device).view(-1, 1)
    xs = torch.arange(grid_w, device=max_idx.device).view(1, -1)
    flow = torch.stack((max_idx % grid_w - xs, torch.div(max_idx, grid_w, rounding_mode="floor") - ys), dim=-1)
    return F.pad(flow.to(torch.float32), (0, 0, 0, PATCH_SIZE - 1, 0, PATCH_SIZE - 1))


def shifted_pre_offsets(flow: torch.Tensor, factor: int) -> torch.Tensor:
    """Flow (h, w, 2) (dx, dy) -> pre-offsets (9, f·h, f·w, 2) for a feature map ``factor`` times finer.

    The flow is repeated f x f (nearest) and multiplied by f; tap t = 3i + j holds it shifted down by
    f·i and right by f·j, zero where the source falls outside: pre[t][y][x] = flow_f[y - f·i][x - f·j].
    """
    flow = flow.repeat_interleave(factor, dim=0).repeat_interleave(factor, dim=1) * factor
    height, width = flow.shape[:2]
    taps = flow.new_zeros((PATCH_SIZE * PATCH_SIZE, height, width, 2))
    for i in range(PATCH_SIZE):
        for j in range(PATCH_SIZE):
            dy, dx = factor * i, factor * j
            if dy < height and dx < width:
                taps[PATCH_SIZE * i + j, dy:, dx:] = flow[: height - dy, : width - dx]
    return taps


class CorrespondenceGenerationArch(nn.Module):
    """``net_map``: correlation argmax -> flow -> pre-offsets per scale, and the Ref's VGG19 features.

    ``forward(dense_features, img_ref_hr)``: the extractor's dict (``dense_features1`` from LR↑,
    ``dense_features2`` from the Ref, (N, 256, h, w) each) and the Ref (N, 3, 4h, 4w) RGB [0, 1].
    Returns ``pre_offset`` {relu3_1: (N, 9, h, w, 2), relu2_1: (N, 9, 2h, 2w, 2), relu1_1: (N, 9, 4h, 4w, 2)}
    with last axis (x, y), and ``img_ref_feat`` {relu1_1, relu2_1, relu3_1} of the frozen VGG19.
    """

    def __init__(self) -> None:
        super().__init__()
        self.matching = PatchCorrelationArgmax()
        self.vgg = VGGFeatureExtractor()

    def forward(
        self, dense_features: Mapping[str, torch.Tensor], img_ref_hr: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        max_idx, _ = self.matching(dense_features["dense_features1"], dense_features["dense_features2"])
        flows = [index_to_flow(index) for index in max_idx]
        pre_offset = {
            layer: torch.stack([shifted_pre_offsets(flow, factor) for flow in flows])
            for _, layer, _, factor in DYN_AGG_SCALES
        }
        return pre_offset, self.vgg(img_ref_hr)


# ---------------------------------------------------------------------------------------------------
# (C) restoration network


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


def _zero_conv(conv: nn.Conv2d) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _residual_body(blocks: int, channels: int) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])


class ContentExtractor(nn.Module):
    """LR (N, 3, h, w) RGB [0, 1] -> content feature (N, 64, h, w): conv_first + LReLU, 16 RBs, no skip."""

    def __init__(self, ngf: int = 64, n_blocks: int = 16) -> None:
        super().__init__()
        self.conv_first = conv3x3(3, ngf)
        self.body = _residual_body(n_blocks, ngf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(_lrelu(self.conv_first(x)))


class DynamicAggregation(nn.Module):
    """Modulated deformable conv 3x3 (DCNv2, 8 deformable groups) whose offsets are the learned ones
    plus the pre-computed pre-offsets. Parameters ``weight``, ``bias`` and ``conv_offset_mask``.

    ``forward(ref_feature (N, C, H, W), offset_feature (N, C, H, W), pre_offset (N, 9, H, W, 2) (x, y))``
    -> (N, C, H, W), before the LeakyReLU that follows it in net_g.
    """

    def __init__(self, channels: int, groups: int = DEFORMABLE_GROUPS) -> None:
        super().__init__()
        self.groups = groups
        taps = PATCH_SIZE * PATCH_SIZE
        self.weight = nn.Parameter(torch.empty(channels, channels, PATCH_SIZE, PATCH_SIZE))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.conv_offset_mask = conv3x3(channels, groups * 3 * taps)
        bound = 1.0 / (channels * taps) ** 0.5  # the DCN module's own initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        _zero_conv(self.conv_offset_mask)

    def forward(
        self, ref_feature: torch.Tensor, offset_feature: torch.Tensor, pre_offset: torch.Tensor
    ) -> torch.Tensor:
        offset_y_part, offset_x_part, mask_logits = torch.chunk(self.conv_offset_mask(offset_feature), 3, dim=1)
        learned = torch.cat((offset_y_part, offset_x_part), dim=1)  # (N, 2·G·9, H, W), pairs (dy, dx)
        batch, taps, height, width, _ = pre_offset.shape
        tiled = pre_offset.repeat(1, self.groups, 1, 1, 1)  # entry g·9 + t, the whole 9-tap block per group
        # The pre-offset's last axis is (x, y); the DCN layout wants (dy, dx) per group and tap.
        as_dcn = torch.stack((tiled[..., 1], tiled[..., 0]), dim=2).reshape(
            batch, 2 * self.groups * taps, height, width
        )
        return deform_conv2d(
            ref_feature,
            learned + as_dcn,
            self.weight,
            self.bias,
            padding=(1, 1),
            mask=torch.sigmoid(mask_logits),
        )


class DynAggRestore(nn.Module):
    """``dyn_agg_restore``: three scales of (offset convs, dynamic aggregation, head, 16 RBs + skip, tail).

    ``forward(x (N, 64, h, w), pre_offset, img_ref_feat)`` -> (N, 3, 4h, 4w), without the LR skip.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 16, groups: int = DEFORMABLE_GROUPS) -> None:
        super().__init__()
        for name, _, channels, _ in DYN_AGG_SCALES:
            self.add_module(f"{name}_offset_conv1", conv3x3(ngf + channels, channels))
            self.add_module(f"{name}_offset_conv2", conv3x3(channels, channels))
            self.add_module(f"{name}_dyn_agg", DynamicAggregation(channels, groups))
            self.add_module(f"head_{name}", nn.Sequential(conv3x3(ngf + channels, ngf), nn.LeakyReLU(LEAKY_SLOPE)))
            self.add_module(f"body_{name}", _residual_body(n_blocks, ngf))
            if name == DYN_AGG_SCALES[-1][0]:
                tail = nn.Sequential(conv3x3(ngf, ngf // 2), nn.LeakyReLU(LEAKY_SLOPE), conv3x3(ngf // 2, 3))
            else:
                tail = nn.Sequential(conv3x3(ngf, ngf * 4), nn.PixelShuffle(2), nn.LeakyReLU(LEAKY_SLOPE))
            self.add_module(f"tail_{name}", tail)

    def forward(
        self, x: torch.Tensor, pre_offset: Mapping[str, torch.Tensor], img_ref_feat: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        for name, layer, _, _ in DYN_AGG_SCALES:
            ref_feature = img_ref_feat[layer]
            # The un-warped Ref feature is concatenated with x: alignment comes only from the offsets.
            offset_feature = _lrelu(getattr(self, f"{name}_offset_conv1")(torch.cat((x, ref_feature), dim=1)))
            offset_feature = _lrelu(getattr(self, f"{name}_offset_conv2")(offset_feature))
            aggregated = _lrelu(getattr(self, f"{name}_dyn_agg")(ref_feature, offset_feature, pre_offset[layer]))
            h = getattr(self, f"head_{name}")(torch.cat((x, aggregated), dim=1))
            h = getattr(self, f"body_{name}")(h) + x
            x = getattr(self, f"tail_{name}")(h)
        return x


class RestorationNet(nn.Module):
    """``net_g``: ``forward(x, pre_offset, img_ref_feat)``; x = LR (N, 3, h, w) RGB [0, 1]; returns
    (N, 3, 4h, 4w) RGB = restoration + bilinear x4 of x (align_corners=False); not clamped."""

    def __init__(self, ngf: int = 64, n_blocks: int = 16, groups: int = DEFORMABLE_GROUPS) -> None:
        super().__init__()
        self.content_extractor = ContentExtractor(ngf, n_blocks)
        self.dyn_agg_restore = DynAggRestore(ngf, n_blocks, groups)
        self._official_init()

    def _official_init(self) -> None:
        # srntt_init_weights: N(0, 0.02) for every conv, zero biases (also over the content extractor);
        # then the offset/mask convs are zeroed so training starts from the pre-offsets alone.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DynamicAggregation):
                _zero_conv(module.conv_offset_mask)

    def forward(
        self, x: torch.Tensor, pre_offset: Mapping[str, torch.Tensor], img_ref_feat: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=SCALE, mode="bilinear", align_corners=False)
        content = self.content_extractor(x)
        return self.dyn_agg_restore(content, pre_offset, img_ref_feat) + base


class C2MatchingNet(nn.Module):
    """The whole inference graph, as ``RefRestorationModel.test()`` composes it.

    ``forward(img_in_lq (N, 3, h, w), img_in_up (N, 3, 4h, 4w), img_ref (N, 3, 4h, 4w))``, all RGB [0, 1]
    (img_in_up = Pillow bicubic x4 of img_in_lq); returns the SR (N, 3, 4h, 4w) RGB, not clamped.
    """

    def __init__(self) -> None:
        super().__init__()
        self.net_extractor = ContrasExtractorSep()
        self.net_map = CorrespondenceGenerationArch()
        self.net_g = RestorationNet()

    def forward(self, img_in_lq: torch.Tensor, img_in_up: torch.Tensor, img_ref: torch.Tensor) -> torch.Tensor:
        hr_hw = (img_in_lq.shape[2] * SCALE, img_in_lq.shape[3] * SCALE)
        if tuple(img_in_up.shape[2:]) != hr_hw or tuple(img_ref.shape[2:]) != hr_hw:
            raise UserError(
                f"C² needs img_in_up and img_ref of exactly 4x the LR size {hr_hw}; got "
                f"{tuple(img_in_up.shape[2:])} and {tuple(img_ref.shape[2:])}"
            )
        features = self.net_extractor(img_in_up, img_ref)
        pre_offset, img_ref_feat = self.net_map(features, img_ref)
        return self.net_g(img_in_lq, pre_offset, img_ref_feat)


# ---------------------------------------------------------------------------------------------------
# checkpoints

# the card's weight files: (restoration, feature extraction, torchvision VGG19); roles are submodule names
_, _EXTRACTOR_FILE, _VGG19_FILE = builtin_card("c2_matching_rec").weights
# torchvision vgg19 ``features`` indices of the five convolutions up to conv3_1 (0, 2, 5, 7, 10).
_TORCHVISION_VGG_INDEX = {
    name: index for index, name in enumerate(vgg19_layer_names()[:11]) if name.startswith("conv")
}


def _vgg_trunk_state(state: Mapping[str, torch.Tensor], source: Path) -> dict[str, torch.Tensor]:
    """torchvision ``vgg19`` state_dict (``features.N.*``, classifier ignored) -> ``vgg_net`` keys."""
    wanted = {
        f"features.{index}.{kind}": f"{name}.{kind}"
        for name, index in _TORCHVISION_VGG_INDEX.items()
        for kind in ("weight", "bias")
    }
    missing = sorted(k for k in wanted if k not in state)
    if missing:
        raise UserError(
            f"{source} is not a torchvision VGG19 checkpoint: missing {', '.join(missing)} "
            f"(expected torchvision's {_VGG19_FILE.file_name})"
        )
    return {ours: state[theirs] for theirs, ours in wanted.items()}


# ---------------------------------------------------------------------------------------------------
# the method wrapper


def _modcrop_hw(height: int, width: int) -> tuple[int, int]:
    return height - height % SCALE, width - width % SCALE


def _crop_or_zero_pad(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Crop or zero-pad (1, C, H, W) at the bottom/right to ``size_hw``; the top-left stays in place."""
    image = image[:, :, : size_hw[0], : size_hw[1]]
    return F.pad(image, (0, size_hw[1] - image.shape[3], 0, size_hw[0] - image.shape[2]))


class C2Matching:
    """C²-Matching behind the suite's method interface.

    ``ref_policy`` (see ``REF_POLICIES``) says how the Ref is brought to the size the network needs;
    the default is the suite's adapter, ``zero_pad_to_common`` reproduces the official test loader.
    """

    def __init__(self, info: MethodInfo, device: str = "cpu", ref_policy: str = "crop_or_pad_to_hr") -> None:
        if ref_policy not in REF_POLICIES:
            raise UserError(f"unknown ref_policy {ref_policy!r}; valid: {', '.join(REF_POLICIES)}")
        self.info = info
        self.device = device
        self.ref_policy = ref_policy
        self.module = C2MatchingNet().to(device).eval()
        self._loaded_roles: set[str] = set()

    @property
    def net_extractor(self) -> ContrasExtractorSep:
        return self.module.net_extractor

    @property
    def net_map(self) -> CorrespondenceGenerationArch:
        return self.module.net_map

    @property
    def net_g(self) -> RestorationNet:
        return self.module.net_g

    @property
    def weights_loaded(self) -> bool:
        """True once the restoration net, the extractor and the VGG19 all hold loaded weights."""
        return {wf.role for wf in self.info.weights} <= self._loaded_roles

    # --- sizes --------------------------------------------------------------------------------------

    def fitted_hr_hw(self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> tuple[int, int]:
        """Size (H, W) of LR↑ and Ref as the network sees them; H, W are multiples of 4, >= 4h, 4w."""
        hr_hw = (lr_hw[0] * SCALE, lr_hw[1] * SCALE)
        if self.ref_policy == "crop_or_pad_to_hr":
            return hr_hw
        ref_mc = _modcrop_hw(*ref_hw)
        return max(hr_hw[0], ref_mc[0]), max(hr_hw[1], ref_mc[1])

    def _prepare(self, lr: torch.Tensor, ref: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LR (1, 3, h, w) and Ref (1, 3, H, W), RGB [0, 1] -> the official inputs (img_in_lq, img_in_up,
        img_ref) on the method's device, sized per ``ref_policy``."""
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError(f"{self.info.name} needs a reference image (ref); got None")
        check_image_tensor("ref", ref)
        lr_h, lr_w = lr.shape[2:]
        if lr_h < PATCH_SIZE or lr_w < PATCH_SIZE:
            raise UserError(f"{self.info.name} needs an LR of at least 3x3 pixels; got {lr_h}x{lr_w}")
        hr_h, hr_w = self.fitted_hr_hw((lr_h, lr_w), (ref.shape[2], ref.shape[3]))
        lr = lr.to(self.device, torch.float32)
        ref = ref.to(self.device, torch.float32)
        ref_mc = ref[:, :, : ref.shape[2] - ref.shape[2] % SCALE, : ref.shape[3] - ref.shape[3] % SCALE]
        img_in_lq = _crop_or_zero_pad(lr, (hr_h // SCALE, hr_w // SCALE))
        img_ref = _crop_or_zero_pad(ref_mc, (hr_h, hr_w))
        img_in_up = pil_bicubic(img_in_lq, (hr_h, hr_w))
        return img_in_lq, img_in_up, img_ref

    # --- Method interface ---------------------------------------------------------------------------

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """LR (1, 3, h, w) and Ref (1, 3, H, W) (any sizes), RGB float32 [0, 1] with 8-bit levels ->
        SR (1, 3, 4h, 4w) RGB float32, not clamped or rounded. ``ref_lr`` is not used (C² makes no use
        of Ref↓)."""
        with torch.inference_mode():
            img_in_lq, img_in_up, img_ref = self._prepare(lr, ref)
            sr = self.module(img_in_lq, img_in_up, img_ref)
        return sr[:, :, : lr.shape[2] * SCALE, : lr.shape[3] * SCALE]

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """LR (1, 3, h, w), Ref (1, 3, H, W), RGB [0, 1] -> argmax correspondence of every LR pixel.

        LR pixel (i, j) stands for the feature position (i, j) of LR↑ (stride 4); its 3x3 patch centred
        there (top-left (i-1, j-1)) is matched, and ``ref_yx`` = 4 x the centre of the matched Ref
        patch, in the Ref's HR pixel frame (feature position q stands for Ref pixel 4q, the top-left of
        its 4x4 block, as the Correspondence convention does for the LR). Pixels on the one-pixel border
        have no centred patch and take the flow of the nearest patch. ``score`` = cosine similarity.
        """
        with torch.inference_mode():
            _, img_in_up, img_ref = self._prepare(lr, ref)
            features = self.module.net_extractor(img_in_up, img_ref)
            max_idx, max_val = self.module.net_map.matching(features["dense_features1"], features["dense_features2"])
        index, score = max_idx[0], max_val[0]
        grid_h, grid_w = index.shape
        lr_h, lr_w = lr.shape[2:]
        rows = torch.arange(lr_h, device=index.device)
        cols = torch.arange(lr_w, device=index.device)
        top = (rows - 1).clamp(0, grid_h - 1)
        left = (cols - 1).clamp(0, grid_w - 1)
        picked = index[top][:, left]
        match_y = torch.div(picked, grid_w, rounding_mode="floor") + (rows - top).view(-1, 1)
        match_x = picked % grid_w + (cols - left).view(1, -1)
        ref_yx = torch.stack((match_y, match_x), dim=-1).to(torch.float32) * SCALE
        return Correspondence(ref_yx=ref_yx.cpu(), score=score[top][:, left].to(torch.float32).cpu())

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """``module`` and (img_in_lq, img_in_up, img_ref) at the sizes ``predict`` would run for an LR of
        ``lr_hw`` and a Ref of ``ref_hw`` (the Ref is fitted per ``ref_policy``). Values are a fixed
        pseudo-random image; costs depend on the sizes only."""
        hr_h, hr_w = self.fitted_hr_hw(lr_hw, ref_hw)
        generator = torch.Generator().manual_seed(0)
        img_in_lq = torch.rand(1, 3, hr_h // SCALE, hr_w // SCALE, generator=generator)
        img_ref = torch.rand(1, 3, hr_h, hr_w, generator=generator)
        img_in_up = F.interpolate(img_in_lq, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(0, 1)
        inputs = tuple(t.to(self.device) for t in (img_in_lq, img_in_up, img_ref))
        return self.module, inputs

    def load_weights(self, path: str | Path) -> None:
        """Load official weights from a folder holding the official file names (restoration file of this
        variant, ``feature_extraction.pth``, torchvision's ``vgg19-dcbb9e9d.pth``; the VGG19 is also
        looked up in torch hub's checkpoint folder), or from one of those files. Files are plain
        state_dicts (official); a BasicSR-style nesting under ``params`` is accepted too."""
        path = Path(path)
        if path.is_dir():
            found, absent = {}, []
            for weight_file in self.info.weights:
                candidates = [path / weight_file.file_name]
                if weight_file.role == _VGG19_FILE.role:
                    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / weight_file.file_name)
                hit = next((c for c in candidates if c.is_file()), None)
                if hit is None:
                    absent.append(weight_file.file_name)
                else:
                    found[weight_file.role] = hit
            if absent:
                raise UserError(
                    f"{path} lacks {', '.join(absent)}; {self.info.name} needs "
                    f"{', '.join(wf.file_name for wf in self.info.weights)} (use `refsr-bench weights fetch`)"
                )
            for role, file in found.items():
                self._load_file(file, role)
            return
        if not path.is_file():
            raise UserError(f"weights path not found: {path}")
        self._load_file(path, None)

    def _load_file(self, path: Path, role: str | None) -> None:
        by_role = {wf.role: wf for wf in self.info.weights}
        sha = by_role[role].sha256 if role is not None else None
        state = read_checkpoint(path, sha256=sha, container_keys=("params",))
        if role is None:  # a single file: tell the network apart by its keys
            if any(k.startswith("content_extractor.") for k in state):
                role = "net_g"
            elif any(k.startswith("feature_extraction_image") for k in state):
                role = "net_extractor"
            elif any(k.startswith(("features.", "vgg.")) for k in state):
                role = "net_map.vgg"
            else:
                raise UserError(
                    f"{path} is none of the C² networks (restoration, contrastive extractor, VGG19); "
                    f"first keys: {list(state)[:5]}"
                )
        if role == "net_g":
            load_state_dict_strict(self.net_g, state, "C² restoration network (net_g)")
        elif role == "net_extractor":
            load_state_dict_strict(self.net_extractor, state, "C² contrastive extractor (net_extractor)")
        elif any(k.startswith("vgg.") for k in state):
            load_state_dict_strict(self.net_map, state, "C² net_map (frozen VGG19)")
        else:
            load_state_dict_strict(self.net_map.vgg.vgg_net, _vgg_trunk_state(state, path), "VGG19 conv1_1..conv3_1")
        self._loaded_roles.add(role)


def _info(variant: str) -> MethodInfo:
    return info_from_card(
        builtin_card(f"c2_matching_{variant}"),
        scale=SCALE,
        choices={
            "ref_policy": "default crop_or_pad_to_hr (suite adapter); zero_pad_to_common = official loader "
            "at LR scale: the LR itself is zero-padded, where the official code pads the HR before the "
            "Pillow ÷4 (LR pixels within 2 of the padded edge can differ)",
            "lr_up": "Pillow bicubic x4 of the (padded) LR, as the official loader",
            "vgg19": "frozen torchvision ImageNet VGG19 (vgg19-dcbb9e9d.pth), in no C² checkpoint",
            "match_border": "LR pixels on the one-pixel border take the flow of the nearest 3x3 patch",
            "correlation_chunks": "official chunking, ⌊1024²·512/(h·w)⌋ Ref patches per convolution call",
            "checkpoint_nesting": "plain state_dict (official); a 'params' container is accepted",
        },
    )


def _check_scale(scale: int) -> None:
    if scale != SCALE:
        raise UserError(f"C²-Matching is defined for scale 4 only; got {scale}")


def c2_matching_rec(*, scale: int = 4, device: str = "cpu") -> C2Matching:
    """C²-Matching-rec (restoration trained with the L1 loss only)."""
    _check_scale(scale)
    return C2Matching(_info("rec"), device)


def c2_matching_gan(*, scale: int = 4, device: str = "cpu") -> C2Matching:
    """C²-Matching (restoration trained with perceptual and adversarial losses)."""
    _check_scale(scale)
    return C2Matching(_info("gan"), device)
