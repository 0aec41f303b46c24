"""SRNTT as implemented by the PyTorch port S-aiueo32/srntt-pytorch (the model MASA-SR Table 2 measured).

Specification: ``docs/methods/srntt.md`` §2–3 and ``fixtures/srntt/README.md`` of the shared folder.
The official TensorFlow model (ZZUTK/SRNTT) is a different architecture and is not implemented here.

Pipeline (port ``online_inference.py`` / ``test.py``):

1. ``vgg``: frozen ImageNet VGG19 up to relu3_1 on LR↑ (relu3_1), Ref↓↑ (relu3_1) and Ref (relu1_1,
   relu2_1, relu3_1); the VGG standardises its [0, 1] RGB input with its own ``vgg_mean``/``vgg_std``.
2. ``swapper.correlation``: every valid 3×3 patch of the Ref↓↑ relu3_1 map, divided by (its L2 norm +
   1e-5), is a kernel convolved over the LR↑ relu3_1 map; argmax over kernels. Chunked over kernels so
   memory is bounded for any Ref size (FLOPS-M).
3. ``swapper``: the matched Ref patches (3r×3r, stride r, r = 1, 2, 4) are pasted and overlaps averaged.
4. ``content_extractor`` + ``texture_transfer``: the port's generator ``SRNTT(x, maps, weights)``.

State-dict keys follow the port: the generator checkpoint (``netG_*.pth``) holds ``content_extractor.*``
and ``texture_transfer.*``; the VGG (``vgg.*`` here) comes from the torchvision ImageNet VGG19 file.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from methods.blocks import named_vgg19_features, vgg19_layer_names
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.resize import pil_bicubic

SRNTT_SCALE = 4
LEAKY_SLOPE = 0.1
# Port's Swapper: added to the patch norm before dividing, on both sides of the weight product.
PATCH_NORM_EPS = 1e-5
PATCH_SIZE = 3
# (VGG layer, ratio r of its resolution to relu3_1): pasted patches are 3r×3r with stride r.
SWAP_LAYERS: tuple[tuple[str, int], ...] = (("relu3_1", 1), ("relu2_1", 2), ("relu1_1", 4))
# Upper bound on the elements of one correlation chunk (score block or kernel block), in float32
# numbers: 2**24 = 64 MiB. The port uses ⌊1024²·512 / (h₃·w₃)⌋ kernels, i.e. up to 2 GiB of scores.
# Measured (CPU, LR 16², Ref 2560×512, C = 256, weights on): +250 MiB peak vs +1.5 GiB unchunked, same time.
DEFAULT_CHUNK_ELEMENTS = 1 << 24

_VGG_LAST_LAYER = "relu3_1"  # the port stops the VGG at the last requested layer
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


class VGG(nn.Module):
    """The port's ``VGG('vgg19')``: torchvision VGG19 ``features`` renamed, with standardisation buffers.

    Holds all 16 convolutions (so its state_dict equals ``layout_vgg.tsv``) but runs only up to relu3_1.
    Parameters are frozen (``requires_grad=False``) as in the port; they are not counted in SRNTT's 5.75M.
    """

    vgg_mean: torch.Tensor
    vgg_std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("vgg_mean", torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1))
        self.register_buffer("vgg_std", torch.tensor(IMAGENET_STD_RGB).view(3, 1, 1))
        self.net = named_vgg19_features()
        self.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) RGB [0, 1] -> {relu1_1: (N, 64, H, W), relu2_1: (N, 128, H/2, W/2),
        relu3_1: (N, 256, H/4, W/4)}."""
        h = (image - self.vgg_mean) / self.vgg_std
        features: dict[str, torch.Tensor] = {}
        for name, layer in self.net.named_children():
            h = layer(h)
            if name in ("relu1_1", "relu2_1", "relu3_1"):
                features[name] = h
            if name == _VGG_LAST_LAYER:
                break
        return features


def vgg_state_from_checkpoint(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``VGG`` state_dict from a torchvision ``vgg19-*.pth`` file or from a saved port ``VGG`` module.

    torchvision keys ``features.{i}.{weight,bias}`` are renamed to ``net.conv{b}_{c}.*``; its ``classifier.*``
    entries are dropped (the port keeps only ``features``), and the ImageNet mean/std buffers are added as
    the port sets them. Any other key is kept, so that strict loading reports it.
    """
    if "vgg_mean" in state or any(k.startswith("net.") for k in state):
        return dict(state)
    if not any(k.startswith("features.") for k in state):
        raise UserError(
            "the VGG checkpoint has neither torchvision keys (features.N.weight) nor the port's VGG keys "
            f"(vgg_mean, net.conv1_1.weight); first keys: {list(state)[:6]}"
        )
    conv_of_index = {str(i): name for i, name in enumerate(vgg19_layer_names()) if name.startswith("conv")}
    converted: dict[str, torch.Tensor] = {
        "vgg_mean": torch.tensor(IMAGENET_MEAN_RGB).view(3, 1, 1),
        "vgg_std": torch.tensor(IMAGENET_STD_RGB).view(3, 1, 1),
    }
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "features" and parts[1] in conv_of_index:
            converted[f"net.{conv_of_index[parts[1]]}.{parts[2]}"] = value
        else:
            converted[key] = value
    return converted


class ResBlock(nn.Module):
    """conv3×3 → ReLU → conv3×3, plus identity (no BN, no residual scaling)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


def _conv_lrelu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE))


def _upsample_x2(channels: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels * 4, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(LEAKY_SLOPE)]


class ContentExtractor(nn.Module):
    """LR (N, 3, h, w) [0, 1] RGB -> (auxiliary SISR output (N, 3, 4h, 4w) without the bilinear base,
    content feature (N, ngf, h, w))."""

    def __init__(self, ngf: int = 64, n_blocks: int = 16) -> None:
        super().__init__()
        self.head = _conv_lrelu(3, ngf)
        self.body = nn.Sequential(*[ResBlock(ngf) for _ in range(n_blocks)])
        self.tail = nn.Sequential(
            *_upsample_x2(ngf),
            *_upsample_x2(ngf),
            nn.Conv2d(ngf, ngf, 3, padding=1),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Conv2d(ngf, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.head(x)
        content = self.body(head) + head
        return self.tail(content), content


class TextureTransfer(nn.Module):
    """Conditional texture transfer at ×1, ×2, ×4 of the LR size, from the content feature and the swapped maps."""

    def __init__(self, ngf: int = 64, n_blocks: int = 16, use_weights: bool = False) -> None:
        super().__init__()
        self.use_weights = use_weights
        if use_weights:
            # One scale/offset per map level (relu3_1, relu2_1, relu1_1), port initial value 1.
            self.a = nn.Parameter(torch.ones(3))
            self.b = nn.Parameter(torch.ones(3))
        self.head_small = _conv_lrelu(ngf + 256, ngf)
        self.body_small = nn.Sequential(*[ResBlock(ngf) for _ in range(n_blocks)])
        self.tail_small = nn.Sequential(*_upsample_x2(ngf))
        self.head_medium = _conv_lrelu(ngf + 128, ngf)
        self.body_medium = nn.Sequential(*[ResBlock(ngf) for _ in range(n_blocks)])
        self.tail_medium = nn.Sequential(*_upsample_x2(ngf))
        self.head_large = _conv_lrelu(ngf + 64, ngf)
        self.body_large = nn.Sequential(*[ResBlock(ngf) for _ in range(n_blocks)])
        self.tail_large = nn.Sequential(
            nn.Conv2d(ngf, ngf // 2, 3, padding=1), nn.LeakyReLU(LEAKY_SLOPE), nn.Conv2d(ngf // 2, 3, 3, padding=1)
        )

    def weighted_maps(self, maps: Mapping[str, torch.Tensor], weights: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each map times sigmoid(a_k · W_k + b_k), W_k = bicubic(replicate_pad(weights, 1), ×2^k, align_corners=True).

        Returns new tensors; the port multiplies the caller's maps in place (same values)."""
        padded = F.pad(weights, (1, 1, 1, 1), mode="replicate")
        scaled: dict[str, torch.Tensor] = dict(maps)
        for level, (layer, ratio) in enumerate(SWAP_LAYERS):
            up = F.interpolate(padded, scale_factor=ratio, mode="bicubic", align_corners=True)
            scaled[layer] = maps[layer] * torch.sigmoid(up * self.a[level] + self.b[level])
        return scaled

    def forward(
        self, x: torch.Tensor, maps: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.use_weights:
            if weights is None:
                raise UserError("this SRNTT was built with use_weights=True; pass the swapper's weights map")
            maps = self.weighted_maps(maps, weights)
        h = self.head_small(torch.cat([x, maps["relu3_1"]], dim=1))
        x = self.tail_small(self.body_small(h) + x)
        h = self.head_medium(torch.cat([x, maps["relu2_1"]], dim=1))
        x = self.tail_medium(self.body_medium(h) + x)
        h = self.head_large(torch.cat([x, maps["relu1_1"]], dim=1))
        return self.tail_large(self.body_large(h) + x)


def _generate(
    content_extractor: ContentExtractor,
    texture_transfer: TextureTransfer,
    x: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    weights: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The port's ``SRNTT.forward``: both heads plus the bilinear ×4 of the LR (align_corners=False), unclamped."""
    base = F.interpolate(x, scale_factor=SRNTT_SCALE, mode="bilinear", align_corners=False)
    upscale_plain, content = content_extractor(x)
    upscale_srntt = texture_transfer(content, maps, weights)
    return upscale_plain + base, upscale_srntt + base


class SRNTT(nn.Module):
    """The port's generator ``SRNTT(ngf=64, n_blocks=16, use_weights=False)``; its state_dict is the checkpoint.

    ``forward(x, maps, weights=None)``: ``x`` LR (1, 3, h, w) RGB [0, 1]; ``maps`` {relu3_1 (1, 256, h, w),
    relu2_1 (1, 128, 2h, 2w), relu1_1 (1, 64, 4h, 4w)}; ``weights`` (1, 1, h−2, w−2), used with
    ``use_weights``. Returns (upscale_plain + base, upscale_srntt + base), each (1, 3, 4h, 4w), unclamped.
    """

    def __init__(self, ngf: int = 64, n_blocks: int = 16, use_weights: bool = False) -> None:
        super().__init__()
        self.content_extractor = ContentExtractor(ngf, n_blocks)
        self.texture_transfer = TextureTransfer(ngf, n_blocks, use_weights)

    def forward(
        self, x: torch.Tensor, maps: Mapping[str, torch.Tensor], weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return _generate(self.content_extractor, self.texture_transfer, x, maps, weights)


def kernels_per_chunk(n_positions: int, patch_numel: int, chunk_elements: int) -> int:
    """How many Ref patches one correlation chunk holds so that neither its score block
    (kernels × positions) nor its kernel block (kernels × patch_numel) exceeds ``chunk_elements``."""
    return max(1, chunk_elements // max(n_positions, patch_numel))


class PatchCorrelation(nn.Module):
    """The port's ``Swapper`` matching on relu3_1 (parameterless; the FLOPS-M part).

    ``forward(content, condition)``: ``content`` = LR↑ relu3_1 (1, C, h, w), ``condition`` = Ref↓↑ relu3_1
    (1, C, H, W). Returns ``max_idx`` (h−2, w−2) int64, the flat row-major index over the (H−2)×(W−2) valid
    3×3 Ref↓↑ patches; ``max_val`` (h−2, w−2), the score (unnormalised content patch · patch/(‖patch‖+1e-5));
    and ``weights`` (h−2, w−2), the best cosine with both sides divided by (‖·‖+1e-5), or None unless
    ``compute_weights``. Ties keep the lowest index, as the port's running max (strict ``>``) does.
    """

    def __init__(self, compute_weights: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.compute_weights = compute_weights
        self.chunk_elements = chunk_elements

    def forward(
        self, content: torch.Tensor, condition: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        channels, height, width = content.shape[1:]
        patch_cols = condition.shape[3] - PATCH_SIZE + 1
        n_patches = (condition.shape[2] - PATCH_SIZE + 1) * patch_cols
        n_positions = (height - PATCH_SIZE + 1) * (width - PATCH_SIZE + 1)
        patch_numel = channels * PATCH_SIZE * PATCH_SIZE
        chunk = kernels_per_chunk(n_positions, patch_numel, self.chunk_elements)
        content_unit = None
        if self.compute_weights:
            content_unit = F.unfold(content, PATCH_SIZE)[0]  # (C·9, positions), normalised in place
            content_unit.div_(content_unit.norm(dim=0, keepdim=True) + PATCH_NORM_EPS)
        running = RunningTop1()
        best_weight = None
        for start in range(0, n_patches, chunk):
            stop = min(start + chunk, n_patches)
            # Unfold only the Ref↓↑ rows this chunk needs, so memory stays bounded for any Ref size.
            row_first, row_last = start // patch_cols, (stop - 1) // patch_cols
            slab = condition[:, :, row_first : row_last + PATCH_SIZE]
            offset = row_first * patch_cols
            cols = F.unfold(slab, PATCH_SIZE)[0, :, start - offset : stop - offset]  # (C·9, k)
            norms = cols.norm(dim=0)  # over C·9 as in the port (a different reduction order changes the bits)
            # One (k, C·9) copy normalised in place, so a chunk holds at most two kernel-sized blocks.
            kernels = cols.t().contiguous().div_(norms[:, None] + PATCH_NORM_EPS)
            del cols
            scores = F.conv2d(content, kernels.view(-1, channels, PATCH_SIZE, PATCH_SIZE))[0]
            val, idx = scores.max(dim=0)
            running.update(val, idx + start)
            if content_unit is not None:
                cosine = (kernels @ content_unit).max(dim=0).values
                best_weight = cosine if best_weight is None else torch.maximum(best_weight, cosine)
        best_val, best_idx = running.result()  # a ValueError when the Ref↓↑ map has no 3×3 patch
        shape = (height - PATCH_SIZE + 1, width - PATCH_SIZE + 1)
        weights = best_weight.view(shape) if best_weight is not None else None
        return best_idx.view(shape), best_val.view(shape), weights


def swap_maps(max_idx: torch.Tensor, ref_maps: Mapping[str, torch.Tensor], patch_cols: int) -> dict[str, torch.Tensor]:
    """Paste the matched Ref patches and average the overlaps, for relu3_1, relu2_1 and relu1_1.

    ``max_idx`` (h−2, w−2) indexes the (H₃−2)×``patch_cols`` patch grid of the Ref relu3_1 map (H₃×W₃).
    ``ref_maps[layer]`` is the Ref's VGG map (1, C, r·H₃, r·W₃). Returns maps (1, C, r·h, r·w).
    """
    rows, cols = max_idx.shape
    height, width = rows + PATCH_SIZE - 1, cols + PATCH_SIZE - 1
    src_row, src_col = max_idx // patch_cols, max_idx % patch_cols
    swapped: dict[str, torch.Tensor] = {}
    for layer, ratio in SWAP_LAYERS:
        feature = ref_maps[layer][0]
        channels, ref_h, ref_w = feature.shape
        # View the map as r×r blocks: a 3r×3r patch at stride r is 3×3 consecutive blocks.
        blocks = feature.reshape(channels, ref_h // ratio, ratio, ref_w // ratio, ratio).permute(0, 1, 3, 2, 4)
        target = feature.new_zeros(channels, height, width, ratio, ratio)
        count = feature.new_zeros(height, width)
        # Offsets in descending order: every pixel then sums its patches in the port's raster order of
        # the patch positions, so the float sums are the same as the port's loop.
        for dy in range(PATCH_SIZE - 1, -1, -1):
            for dx in range(PATCH_SIZE - 1, -1, -1):
                target[:, dy : dy + rows, dx : dx + cols] += blocks[:, src_row + dy, src_col + dx]
                count[dy : dy + rows, dx : dx + cols] += 1
        target = target / count[None, :, :, None, None]
        swapped[layer] = target.permute(0, 1, 3, 2, 4).reshape(1, channels, height * ratio, width * ratio)
    return swapped


class Swapper(nn.Module):
    """The port's ``Swapper`` (no parameters): matching on relu3_1 (``correlation``) and swapping at three levels."""

    def __init__(self, compute_weights: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.correlation = PatchCorrelation(compute_weights, chunk_elements)

    def forward(
        self, content: torch.Tensor, condition: torch.Tensor, ref_maps: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """content: LR↑ relu3_1 (1, 256, h, w); condition: Ref↓↑ relu3_1 (1, 256, H₃, W₃); ref_maps: Ref
        relu1_1/2_1/3_1. Returns the swapped maps and the weight map (1, 1, h−2, w−2) or None."""
        max_idx, _, weights = self.correlation(content, condition)
        maps = swap_maps(max_idx, ref_maps, condition.shape[3] - PATCH_SIZE + 1)
        return maps, (weights[None, None] if weights is not None else None)


class SRNTTPipeline(nn.Module):
    """The port's whole inference: VGG19, Swapper and the SRNTT generator in one module.

    Its state_dict is the generator checkpoint (``content_extractor.*``, ``texture_transfer.*``) plus the
    frozen VGG under ``vgg.*``. ``forward(x, img_in_up, ref, ref_blur)`` takes the port's test-loader
    tensors, all (1, 3, ·, ·) RGB [0, 1]: ``x`` LR h×w, ``img_in_up`` LR↑ 4h×4w, ``ref`` Ref H×W and
    ``ref_blur`` Ref↓↑ H×W with H, W multiples of 4. Returns (upscale_plain, upscale_srntt), (1, 3, 4h, 4w).
    """

    def __init__(self, use_weights: bool = False, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        super().__init__()
        self.content_extractor = ContentExtractor()
        self.texture_transfer = TextureTransfer(use_weights=use_weights)
        self.vgg = VGG()
        # The port's Swapper always computes the weight product; it is only consumed with use_weights.
        self.swapper = Swapper(compute_weights=use_weights, chunk_elements=chunk_elements)

    @property
    def use_weights(self) -> bool:
        return self.texture_transfer.use_weights

    def forward(
        self, x: torch.Tensor, img_in_up: torch.Tensor, ref: torch.Tensor, ref_blur: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_pipeline_sizes(x, img_in_up, ref, ref_blur)
        content = self.vgg(img_in_up)["relu3_1"]
        ref_maps = self.vgg(ref)
        condition = self.vgg(ref_blur)["relu3_1"]
        maps, weights = self.swapper(content, condition, ref_maps)
        return _generate(self.content_extractor, self.texture_transfer, x, maps, weights)


def check_pipeline_sizes(x: torch.Tensor, img_in_up: torch.Tensor, ref: torch.Tensor, ref_blur: torch.Tensor) -> None:
    """Raise a UserError naming the problem unless the four inputs have the sizes the port requires."""
    h, w = x.shape[-2:]
    ref_h, ref_w = ref.shape[-2:]
    if x.shape[0] != 1:
        raise UserError(f"the SRNTT swapper works on batch 1 only; got batch {x.shape[0]}")
    if tuple(img_in_up.shape[-2:]) != (SRNTT_SCALE * h, SRNTT_SCALE * w):
        raise UserError(f"img_in_up must be 4× the LR ({4 * h}×{4 * w}); got {tuple(img_in_up.shape[-2:])}")
    if ref_h % 4 or ref_w % 4:
        raise UserError(f"Ref height and width must be multiples of 4 (the port resizes them); got {ref_h}×{ref_w}")
    if ref_blur.shape != ref.shape:
        raise UserError(f"ref_blur must have the Ref's shape {tuple(ref.shape)}; got {tuple(ref_blur.shape)}")
    if min(h, w) < PATCH_SIZE or min(ref_h, ref_w) < 4 * PATCH_SIZE:
        raise UserError(f"LR must be at least 3×3 and Ref at least 12×12 pixels; got LR {h}×{w}, Ref {ref_h}×{ref_w}")


def _multiple_of_4(size_hw: tuple[int, int]) -> tuple[int, int]:
    return size_hw[0] - size_hw[0] % 4, size_hw[1] - size_hw[1] % 4


class SRNTTMethod:
    """Benchmark wrapper around ``SRNTTPipeline`` (see ``Method`` in ``methods/base.py``)."""

    def __init__(self, info: MethodInfo, device: str = "cpu", use_weights: bool = False) -> None:
        self.info = info
        self.device = torch.device(device)
        self.module = SRNTTPipeline(use_weights=use_weights).to(self.device).eval()
        self.weights_loaded = False

    def _inputs(
        self, lr: torch.Tensor, ref: torch.Tensor | None, ref_lr: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, img_in_up, ref, ref_blur) as the port's CUFED5 loader makes them, with PIL bicubic on uint8."""
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError("SRNTT needs a reference image (ref); got None")
        check_image_tensor("ref", ref)
        lr, ref = lr.to(self.device), ref.to(self.device)
        h, w = lr.shape[-2:]
        img_in_up = pil_bicubic(lr, (SRNTT_SCALE * h, SRNTT_SCALE * w))
        ref_hw = _multiple_of_4((ref.shape[2], ref.shape[3]))
        ref_lr_hw = (ref_hw[0] // SRNTT_SCALE, ref_hw[1] // SRNTT_SCALE)
        if ref_hw != tuple(ref.shape[-2:]):
            ref = pil_bicubic(ref, ref_hw)  # the port's loader resizes (not crops) to a multiple of 4
            ref_lr = None  # the protocol's Ref↓ was made from the Ref before that resize
        if ref_lr is None or tuple(ref_lr.shape[-2:]) != ref_lr_hw:
            ref_lr = pil_bicubic(ref, ref_lr_hw)
        ref_blur = pil_bicubic(ref_lr.to(self.device), ref_hw)
        check_pipeline_sizes(lr, img_in_up, ref, ref_blur)
        return lr, img_in_up, ref, ref_blur

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """LR (1, 3, h, w) and Ref (1, 3, H, W), RGB [0, 1] -> SR (1, 3, 4h, 4w) RGB, unclamped.

        ``ref_lr`` (the protocol's Ref↓) makes Ref↓↑ when the Ref needs no resize and it is exactly Ref / 4;
        otherwise Ref↓ is made here with PIL, as the port does."""
        with torch.inference_mode():
            inputs = self._inputs(lr, ref, ref_lr)
            return self.module(*inputs)[1]

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """The swap correspondence: for LR pixel (i, j), the Ref HR position (y, x) of the relu3_1 cell that
        the patch covering it (centred on it where possible) was matched to; score = best cosine similarity."""
        with torch.inference_mode():
            x, img_in_up, ref_used, ref_blur = self._inputs(lr, ref, None)
            content = self.module.vgg(img_in_up)["relu3_1"]
            condition = self.module.vgg(ref_blur)["relu3_1"]
            max_idx, max_val, _ = self.module.swapper.correlation(content, condition)
            # ‖content patch‖ per position; score / (‖·‖ + eps) is the port's weight (best cosine).
            energy = F.avg_pool2d(content.pow(2).sum(1, keepdim=True), PATCH_SIZE, stride=1) * PATCH_SIZE**2
            cosine = max_val / (energy[0, 0].sqrt() + PATCH_NORM_EPS)
            h, w = x.shape[-2:]
            # Patch whose top-left is (i−1, j−1) is centred on LR pixel (i, j); the border uses the nearest patch.
            top = (torch.arange(h, device=self.device) - 1).clamp(0, h - PATCH_SIZE)
            left = (torch.arange(w, device=self.device) - 1).clamp(0, w - PATCH_SIZE)
            chosen = max_idx[top][:, left]
            patch_cols = condition.shape[3] - PATCH_SIZE + 1
            cell_y = chosen // patch_cols + (torch.arange(h, device=self.device) - top)[:, None]
            cell_x = chosen % patch_cols + (torch.arange(w, device=self.device) - left)[None, :]
            # relu3_1 cell q covers Ref pixels 4q…4q+3; map back to the un-resized Ref by pixel centres.
            ratio_y = ref.shape[2] / ref_used.shape[2]
            ratio_x = ref.shape[3] / ref_used.shape[3]
            ref_y = (SRNTT_SCALE * cell_y.float() + 0.5) * ratio_y - 0.5
            ref_x = (SRNTT_SCALE * cell_x.float() + 0.5) * ratio_x - 0.5
            ref_yx = torch.stack([ref_y, ref_x], dim=-1).float().cpu()
            return Correspondence(ref_yx=ref_yx, score=cosine[top][:, left].float().cpu())

    def load_weights(self, path: str | Path) -> None:
        """``path``: the generator checkpoint (``netG_*.pth``, the port's plain state_dict) with the VGG19 file
        beside it, or a folder holding both official file names. A checkpoint with ``texture_transfer.a/b``
        switches the module to ``use_weights=True`` (and vice versa)."""
        generator_file, vgg_file = self._locate_weights(Path(path))
        generator_weight, vgg_weight = self.info.weights
        generator_state = read_checkpoint(generator_file, sha256=generator_weight.sha256)
        vgg_state = vgg_state_from_checkpoint(read_checkpoint(vgg_file, sha256=vgg_weight.sha256))
        use_weights = "texture_transfer.a" in generator_state
        if use_weights != self.module.use_weights:
            self.module = SRNTTPipeline(use_weights=use_weights).to(self.device).eval()
        state = {**generator_state, **{f"vgg.{key}": value for key, value in vgg_state.items()}}
        load_state_dict_strict(self.module, state, "SRNTT port generator + VGG19")
        self.module.to(self.device).eval()
        self.weights_loaded = True

    def _locate_weights(self, path: Path) -> tuple[Path, Path]:
        generator_weight, vgg_weight = self.info.weights
        folder = path if path.is_dir() else path.parent
        generator_file = folder / generator_weight.file_name if path.is_dir() else path
        vgg_file = folder / vgg_weight.file_name
        for file, weight in ((generator_file, generator_weight), (vgg_file, vgg_weight)):
            if not file.is_file():
                raise UserError(
                    f"{self.info.name}: {weight.role} checkpoint not found: {file}. Expected files in {folder}: "
                    f"{generator_weight.file_name} (or pass the generator file itself) and {vgg_weight.file_name} "
                    f"(from {vgg_weight.url})"
                )
        return generator_file, vgg_file

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """The pipeline and (x, img_in_up, ref, ref_blur) for an LR of ``lr_hw`` and a Ref of ``ref_hw``
        (resized to a multiple of 4, as predict does)."""
        ref_hw = _multiple_of_4(ref_hw)
        generator = torch.Generator().manual_seed(0)

        def image(size_hw: tuple[int, int]) -> torch.Tensor:
            return torch.rand(1, 3, *size_hw, generator=generator).to(self.device)

        inputs = (image(lr_hw), image((4 * lr_hw[0], 4 * lr_hw[1])), image(ref_hw), image(ref_hw))
        check_pipeline_sizes(*inputs)
        return self.module, inputs


_CHOICES = {
    "implementation": "PyTorch port S-aiueo32/srntt-pytorch (MASA Table 2's 5.75M); not the TF original ZZUTK/SRNTT",
    "params": "5,746,246 generator parameters (5,746,252 with use_weights); the frozen VGG19 (20,024,384 stored, "
    "555,328 used) has requires_grad=False and is not part of the checkpoint",
    "use_weights": "False by default (port class default); load_weights follows the checkpoint "
    "(texture_transfer.a/b present -> True). The weight product is computed only when use_weights is on "
    "(the port always computes it; outputs are identical)",
    "lr_up_ref_blur": "LR↑ = PIL bicubic ×4; Ref resized (PIL bicubic) to a multiple of 4; Ref↓↑ = PIL ÷4 then ×4; "
    "the protocol's ref_lr is used for Ref↓ when the Ref needed no resize and ref_lr is exactly Ref/4",
    "correlation_chunks": f"at most {DEFAULT_CHUNK_ELEMENTS} float32 numbers per score or kernel block "
    "(port: up to 512·1024² scores); same argmax, ties keep the lowest index",
    "match": "LR pixel (i, j) takes the patch centred on it (nearest patch at the border); position = 4·matched "
    "relu3_1 cell (top-left of its 4×4 block), mapped back through the Ref resize; score = best cosine",
    "weight_file_names": "netG_<epoch:03>.pth / netG_pre<epoch:03>.pth is the port's naming; the Google-Drive "
    "names are undocumented, so netG_100.pth (100 GAN epochs) and netG_pre005.pth (5 reconstruction epochs) "
    "are assumed",
}


def _info(name: str) -> MethodInfo:
    return info_from_card(builtin_card(name), scale=SRNTT_SCALE, choices=_CHOICES)


def _check_scale(name: str, scale: int) -> None:
    if scale != SRNTT_SCALE:
        raise UserError(f"{name} supports scale {SRNTT_SCALE} only; got {scale}")


def srntt(*, scale: int = SRNTT_SCALE, device: str = "cpu") -> SRNTTMethod:
    """SRNTT (port), full-loss (GAN) generator weights."""
    _check_scale("srntt", scale)
    return SRNTTMethod(_info("srntt"), device=device)


def srntt_rec(*, scale: int = SRNTT_SCALE, device: str = "cpu") -> SRNTTMethod:
    """SRNTT-rec (port): the generator after the reconstruction-only pre-training epochs."""
    _check_scale("srntt_rec", scale)
    return SRNTTMethod(_info("srntt_rec"), device=device)
