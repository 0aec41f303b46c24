"""E2ENT²: End-to-End learning for Neural Texture Transfer (Xie et al., ECCV Workshops 2020), benchmark configuration.

No official code exists. The network follows paper 001 where it is explicit and the benchmark's
recommended configuration ("e2ent2_bench", ``docs/methods/e2ent2.md`` §4-§5) where it is silent; every
such decision is recorded in ``MethodInfo.choices``.

Data flow (r = 4): A = φ(I_in) (C×h×w), B = φ(I_ref↓) (C×h_r×w_r), V = φ(I_ref) (C×r·h_r×r·w_r), one
shared encoder φ. ``correlation`` matches every 3×3 patch of A against every normalised 3×3 patch of B
(paper eq. 3) and keeps the argmax; ``swap`` pastes the matched 3r×3r patches of V (eq. 4) into
F (C×r·h×r·w), averaging overlaps. I_sr = bilinear↑(I_in) + Res2([F ⊕ Res1(A)]) (eq. 7). The backward of
the swap is the paper's eq. 5 (custom autograd Function), not the gradient of the forward.

Patch geometry: a "cell" is one LR-grid position; at HR scale it is an r×r pixel block. A 3×3 patch
centred on cell p covers cells p + δ, δ ∈ {-1, 0, 1}²; cells outside a grid are zero (zero padding 1 at
LR scale, r at HR scale: the unfold/fold geometry of ``e2ent2.md`` §5). Working on cells (pixel-unshuffle)
instead of materialising the unfolded 12×12 patches keeps memory at O(size of V).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods._matching_utils import RunningTop1
from methods.base import MethodInfo, check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.blocks import ResidualBlock, conv3x3
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.errors import unknown_name
from protocols.resize import pil_bicubic

SUPPORTED_SCALES = (4,)
GRADIENT_WEIGHTS = (0.25, 0.25, 0.5)  # (α1, α2, α3), paper Table 4
PATCH_NORMS = ("l2", "l1")
# One similarity chunk holds at most this many (LR patch, Ref↓ patch) scores: 2**24 fp32 = 64 MiB.
MATCH_CHUNK_ELEMENTS = 2**24
MATCH_LR_BAND_POSITIONS = 4096  # LR patches per band (bounds the unfolded LR band: 576 x 4096 floats)



# ---------------------------------------------------------------------------------------------------
# match & swap


class PatchCorrelation(nn.Module):
    """Parameterless matcher (paper eq. 3; ``e2ent2.md`` §5 steps 1-4). This module is FLOPS-M.

    S(p, q) = <a_p, b_q / ‖b_q‖> with a_p, b_q the zero-padded 3×3×C patches of A and B centred on
    positions p (LR) and q (Ref↓); ‖·‖ = L2 (default) or L1, clamped at 1e-12. Returns, per batch item and
    LR position p (row-major), i*(p) = argmax_q S(p, q) (row-major Ref↓ index; first maximum on ties) and
    its score. Computed in bands of LR rows × Ref↓ rows so that no score block exceeds
    ``chunk_elements`` entries, whatever the reference size. Not differentiable (argmax).
    """

    def __init__(self, norm: str = "l2", chunk_elements: int = MATCH_CHUNK_ELEMENTS) -> None:
        super().__init__()
        if norm not in PATCH_NORMS:
            raise unknown_name("patch norm", norm, PATCH_NORMS)
        self.norm = norm
        self.chunk_elements = chunk_elements

    def _normalised_patches(self, padded: torch.Tensor, row_start: int, row_stop: int) -> torch.Tensor:
        """Unfolded Ref↓ patches centred on rows [row_start, row_stop) of a 1-padded map: (C·9, rows·w_r)."""
        columns = F.unfold(padded[:, :, row_start : row_stop + 2], kernel_size=3)[0]
        if self.norm == "l2":
            length = columns.norm(dim=0, keepdim=True)
        else:
            length = columns.abs().sum(dim=0, keepdim=True)
        return columns / length.clamp_min(1e-12)

    def forward(self, lr_feature: torch.Tensor, ref_down_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A (N, C, h, w), B (N, C, h_r, w_r) -> index (N, h·w) int64, score (N, h·w)."""
        batch, _, height, width = lr_feature.shape
        ref_height, ref_width = ref_down_feature.shape[-2:]
        lr_rows = max(1, MATCH_LR_BAND_POSITIONS // width)
        ref_rows = max(1, self.chunk_elements // (min(lr_rows, height) * width * ref_width))
        index = torch.zeros(batch, height * width, dtype=torch.int64, device=lr_feature.device)
        score = torch.zeros(batch, height * width, dtype=lr_feature.dtype, device=lr_feature.device)
        with torch.no_grad():
            lr_padded = F.pad(lr_feature, (1, 1, 1, 1))
            ref_padded = F.pad(ref_down_feature, (1, 1, 1, 1))
            for item in range(batch):
                for lr_start in range(0, height, lr_rows):
                    lr_stop = min(height, lr_start + lr_rows)
                    patches = F.unfold(lr_padded[item : item + 1, :, lr_start : lr_stop + 2], kernel_size=3)[0].t()
                    running = RunningTop1()  # strict > across bands: an earlier band keeps a tie
                    for ref_start in range(0, ref_height, ref_rows):
                        ref_stop = min(ref_height, ref_start + ref_rows)
                        candidates = self._normalised_patches(ref_padded[item : item + 1], ref_start, ref_stop)
                        similarity = torch.matmul(patches, candidates)  # (P, Q): the FLOPS-M product
                        local = torch.argmax(similarity, dim=1)
                        local_score = similarity.gather(1, local[:, None])[:, 0]
                        running.update(local_score, local + ref_start * ref_width)
                    best_score, best_index = running.result()
                    index[item, lr_start * width : lr_stop * width] = best_index
                    score[item, lr_start * width : lr_stop * width] = best_score
        return index, score


def _neighbour_counts(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, height, width): how many 3×3 patches of a height×width grid cover each cell (9 inside, 4 at corners)."""

    def per_axis(length: int) -> torch.Tensor:
        # 3 neighbours along an axis, one fewer at each end (a 1-long axis has just itself)
        counts = torch.full((length,), 3.0, dtype=like.dtype, device=like.device)
        counts[0] -= 1
        counts[-1] -= 1
        return counts

    return (per_axis(height)[:, None] * per_axis(width)[None, :])[None, None]


def gather_patches(ref_cells: torch.Tensor, index: torch.Tensor, lr_hw: tuple[int, int]) -> torch.Tensor:
    """Sum of the matched 3×3 cell patches covering each LR cell (fold of the gathered patches, not averaged).

    ``ref_cells`` (N, D, h_r, w_r); ``index`` (N, h·w) row-major Ref↓ positions -> (N, D, h, w) where
    out[c] = Σ_δ [c - δ inside the LR grid] ref_cells[i*(c - δ) + δ] (zero outside the Ref grid).
    """
    batch, depth, ref_height, ref_width = ref_cells.shape
    height, width = lr_hw
    padded_width = ref_width + 2
    # flat index into the 1-padded Ref grid; cell 0 of that grid is padding, i.e. always zero
    padded = F.pad(ref_cells, (1, 1, 1, 1)).flatten(2)
    match_y = (index // ref_width).view(batch, height, width)
    match_x = (index % ref_width).view(batch, height, width)
    total = torch.zeros(batch, depth, height, width, dtype=ref_cells.dtype, device=ref_cells.device)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            # output cells c whose neighbour p = c - δ lies inside the LR grid
            y0, y1 = max(0, dy), height + min(0, dy)
            x0, x1 = max(0, dx), width + min(0, dx)
            if y0 >= y1 or x0 >= x1:
                continue
            source = torch.zeros(batch, height, width, dtype=torch.int64, device=index.device)
            src_y = match_y[:, y0 - dy : y1 - dy, x0 - dx : x1 - dx] + dy + 1
            src_x = match_x[:, y0 - dy : y1 - dy, x0 - dx : x1 - dx] + dx + 1
            source[:, y0:y1, x0:x1] = src_y * padded_width + src_x
            flat = source.view(batch, 1, height * width).expand(batch, depth, height * width)
            total += torch.gather(padded, 2, flat).view(batch, depth, height, width)
    return total


def scatter_patches(lr_cells: torch.Tensor, index: torch.Tensor, ref_hw: tuple[int, int]) -> torch.Tensor:
    """Accumulate, for every LR position p, its 3×3 cell patch of ``lr_cells`` at the matched Ref position i*(p).

    ``lr_cells`` (N, D, h, w); ``index`` (N, h·w) -> (N, D, h_r, w_r) with
    out[s] = Σ_p Σ_δ [i*(p) + δ = s] lr_cells[p + δ] (zero outside the LR grid; targets outside the Ref grid
    dropped). This is the adjoint of ``gather_patches``.
    Used only in the backward; on CUDA ``scatter_add_`` accumulates in a nondeterministic order.
    """
    batch, depth, height, width = lr_cells.shape
    ref_height, ref_width = ref_hw
    padded_width = ref_width + 2
    source_padded = F.pad(lr_cells, (1, 1, 1, 1))
    target_y = index // ref_width
    target_x = index % ref_width
    buffer = torch.zeros(batch, depth, (ref_height + 2) * padded_width, dtype=lr_cells.dtype, device=lr_cells.device)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            values = source_padded[:, :, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width].reshape(batch, depth, -1)
            target = (target_y + dy + 1) * padded_width + (target_x + dx + 1)
            buffer.scatter_add_(2, target.view(batch, 1, -1).expand(batch, depth, height * width), values)
    return buffer.view(batch, depth, ref_height + 2, padded_width)[:, :, 1:-1, 1:-1]


def swap_forward(ref_feature: torch.Tensor, index: torch.Tensor, lr_hw: tuple[int, int], scale: int) -> torch.Tensor:
    """Paper eq. 4: F (N, C, s·h, s·w) from V = ``ref_feature`` (N, C, s·h_r, s·w_r) and the matches ``index``.

    Every LR position p pastes the 3s×3s patch of V centred on the s×s block of i*(p); overlaps are
    averaged (fold divided by the fold of ones).
    """
    height, width = lr_hw
    summed = gather_patches(F.pixel_unshuffle(ref_feature, scale), index, lr_hw)
    return F.pixel_shuffle(summed / _neighbour_counts(height, width, summed), scale)


class _SwapWithAllocatedGradient(torch.autograd.Function):
    """Forward = ``swap_forward``; backward = paper eq. 5 with weights (α1, α2, α3).

    E = ∂J/∂F (N, C, s·h, s·w), E↓ = avg_pool(E, s):
    - g_A = α1·E↓;
    - g_B = α2 · scatter of the 3×3 patches of E↓ to i*(p), divided by the Ref↓ patch-overlap count;
    - g_V = α3 · scatter of the 3s×3s patches of E to i*(p), divided by the Ref patch-overlap count.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        lr_feature: torch.Tensor,
        ref_down_feature: torch.Tensor,
        ref_feature: torch.Tensor,
        index: torch.Tensor,
        weights: tuple[float, float, float],
        scale: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.lr_hw = tuple(lr_feature.shape[-2:])
        ctx.ref_hw = tuple(ref_down_feature.shape[-2:])
        ctx.weights = weights
        ctx.scale = scale
        return swap_forward(ref_feature, index, ctx.lr_hw, scale)

    @staticmethod
    def backward(ctx: Any, grad_swapped: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        alpha_lr, alpha_ref_down, alpha_ref = ctx.weights
        ref_height, ref_width = ctx.ref_hw
        grad_down = F.avg_pool2d(grad_swapped, ctx.scale)
        ref_counts = _neighbour_counts(ref_height, ref_width, grad_swapped)
        grad_lr = alpha_lr * grad_down
        grad_ref_down = alpha_ref_down * scatter_patches(grad_down, index, ctx.ref_hw) / ref_counts
        scattered = scatter_patches(F.pixel_unshuffle(grad_swapped, ctx.scale), index, ctx.ref_hw) / ref_counts
        grad_ref = alpha_ref * F.pixel_shuffle(scattered, ctx.scale)
        return grad_lr, grad_ref_down, grad_ref, None, None, None


class FeatureSwap(nn.Module):
    """Parameterless swap step (eq. 4) whose backward is eq. 5 (see ``_SwapWithAllocatedGradient``)."""

    def __init__(self, scale: int = 4, weights: tuple[float, float, float] = GRADIENT_WEIGHTS) -> None:
        super().__init__()
        self.scale = scale
        self.weights = tuple(float(w) for w in weights)

    def forward(
        self, lr_feature: torch.Tensor, ref_down_feature: torch.Tensor, ref_feature: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:
        """A (N, C, h, w), B (N, C, h_r, w_r), V (N, C, s·h_r, s·w_r), index (N, h·w) -> F (N, C, s·h, s·w)."""
        needs_grad = torch.is_grad_enabled() and any(
            t.requires_grad for t in (lr_feature, ref_down_feature, ref_feature)
        )
        if not needs_grad:
            height, width = lr_feature.shape[-2:]
            return swap_forward(ref_feature, index, (height, width), self.scale)
        return _SwapWithAllocatedGradient.apply(
            lr_feature, ref_down_feature, ref_feature, index, self.weights, self.scale
        )


# ---------------------------------------------------------------------------------------------------
# network


class Encoder(nn.Module):
    """φ: conv 3 -> C, ``blocks`` RB, conv C -> C, long skip from the head; keeps the spatial size."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = conv3x3(3, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.tail = conv3x3(channels, channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB [0, 1] -> (N, C, H, W)."""
        head = self.head(image)
        return self.tail(self.body(head)) + head


def _upsampling_layers(channels: int, scale: int, activation: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for _ in range(scale.bit_length() - 1):
        layers += [conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
        if activation:
            layers.append(nn.ReLU())
    return layers


class SISRTail(nn.Module):
    """Auxiliary SISR branch after φ (training only): 2 × (conv C -> 4C, PixelShuffle 2), conv C -> 3."""

    def __init__(self, channels: int, scale: int) -> None:
        super().__init__()
        self.up = nn.Sequential(*_upsampling_layers(channels, scale, activation=False))
        self.out = conv3x3(channels, 3)

    def forward(self, lr_feature: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(lr_feature))


class Res1(nn.Module):
    """Up-samples φ(I_in): ``blocks`` RB at LR resolution, then 2 × (conv C -> 4C, PixelShuffle 2, ReLU)."""

    def __init__(self, channels: int, blocks: int, scale: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.up = nn.Sequential(*_upsampling_layers(channels, scale, activation=True))

    def forward(self, lr_feature: torch.Tensor) -> torch.Tensor:
        return self.up(self.body(lr_feature))


class Res2(nn.Module):
    """Fusion: conv 2C -> C + ReLU on concat[F, Res1 out] (F first), ``blocks`` RB, conv, + head skip, conv C -> 3."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.head = conv3x3(2 * channels, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))
        self.tail = conv3x3(channels, channels)
        self.out = conv3x3(channels, 3)

    def forward(self, fused_input: torch.Tensor) -> torch.Tensor:
        head = F.relu(self.head(fused_input))
        return self.out(self.tail(self.body(head)) + head)


class E2ENT2Net(nn.Module):
    """The whole E2ENT² generator.

    ``forward(lr, ref, ref_down)``: ``lr`` (N, 3, h, w), ``ref`` (N, 3, s·h_r, s·w_r), ``ref_down``
    (N, 3, h_r, w_r), RGB in [0, 1] -> I_sr (N, 3, s·h, s·w), not clamped. ``forward_train`` also returns
    the auxiliary SISR output.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        channels: int = 64,
        encoder_blocks: int = 16,
        res1_blocks: int = 4,
        res2_blocks: int = 16,
        norm: str = "l2",
        gradient_weights: tuple[float, float, float] = GRADIENT_WEIGHTS,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.encoder = Encoder(channels, encoder_blocks)
        self.sisr_tail = SISRTail(channels, scale)
        self.correlation = PatchCorrelation(norm)
        self.swap = FeatureSwap(scale, gradient_weights)
        self.res1 = Res1(channels, res1_blocks, scale)
        self.res2 = Res2(channels, res2_blocks)

    def _upsampled(self, lr: torch.Tensor) -> torch.Tensor:
        height, width = lr.shape[-2:]
        return F.interpolate(lr, size=(self.scale * height, self.scale * width), mode="bilinear", align_corners=False)

    def _refsr(self, lr: torch.Tensor, ref: torch.Tensor, ref_down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if ref.shape[-2:] != (self.scale * ref_down.shape[-2], self.scale * ref_down.shape[-1]):
            raise UserError(
                f"ref {tuple(ref.shape[-2:])} must be exactly {self.scale}x ref_down {tuple(ref_down.shape[-2:])}"
            )
        lr_feature = self.encoder(lr)
        ref_down_feature = self.encoder(ref_down)
        ref_feature = self.encoder(ref)
        index, _ = self.correlation(lr_feature, ref_down_feature)
        swapped = self.swap(lr_feature, ref_down_feature, ref_feature, index)
        sr = self._upsampled(lr) + self.res2(torch.cat([swapped, self.res1(lr_feature)], dim=1))
        return sr, lr_feature

    def forward(self, lr: torch.Tensor, ref: torch.Tensor, ref_down: torch.Tensor) -> torch.Tensor:
        return self._refsr(lr, ref, ref_down)[0]

    def forward_train(
        self, lr: torch.Tensor, ref: torch.Tensor, ref_down: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(I_sr, I_sisr), both (N, 3, s·h, s·w); the SISR output = tail(φ(I_in)) + bilinear↑(I_in)."""
        sr, lr_feature = self._refsr(lr, ref, ref_down)
        return sr, self.sisr_tail(lr_feature) + self._upsampled(lr)


# ---------------------------------------------------------------------------------------------------
# wrapper


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Parameters per top-level child, ``total``, and ``total_inference`` (without the SISR tail)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in module.named_children()}
    counts["total"] = sum(p.numel() for p in module.parameters())
    counts["total_inference"] = counts["total"] - counts.get("sisr_tail", 0)
    return counts


class E2ENT2Method:
    """Wrapper implementing the ``Method`` protocol for ``e2ent2``.

    ``predict(lr, ref)``: ``lr`` (1, 3, h, w), ``ref`` (1, 3, H, W) any size ≥ 4×4, RGB float32 in [0, 1]
    -> SR (1, 3, 4h, 4w), not clamped. The Ref is cropped top-left to multiples of 4 and Ref↓ is made
    inside (PIL bicubic ÷4 on 8-bit levels); the protocol's ``ref_lr`` is not used.
    """

    def __init__(self, info: MethodInfo, module: E2ENT2Net, device: str, param_counts: dict[str, int]) -> None:
        self.info = info
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.weights_loaded = False
        self.param_counts = param_counts

    def _reference_pair(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.info.scale
        height, width = ref.shape[-2:]
        height, width = height - height % scale, width - width % scale
        if height < scale or width < scale:
            raise UserError(f"e2ent2 needs a reference of at least {scale}x{scale} pixels, got {tuple(ref.shape[-2:])}")
        cropped = ref[..., :height, :width].to(self.device, torch.float32)
        return cropped, pil_bicubic(cropped, (height // scale, width // scale)).to(self.device)

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError("e2ent2 needs a reference image (ref)")
        check_image_tensor("ref", ref)
        ref_cropped, ref_down = self._reference_pair(ref)
        with torch.inference_mode():
            return self.module(lr.to(self.device, torch.float32), ref_cropped, ref_down)

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """Correspondence of every LR pixel: the top-left HR pixel (4·q_y, 4·q_x) of the matched Ref↓ position q.

        ``lr`` (1, 3, h, w), ``ref`` (1, 3, H, W) RGB [0, 1]; ``ref_yx`` (h, w, 2) float32 in the Ref's pixel
        frame (the crop to multiples of 4 keeps the top-left origin); ``score`` (h, w) = the eq. 3 similarity.
        """
        check_image_tensor("lr", lr)
        check_image_tensor("ref", ref)
        _, ref_down = self._reference_pair(ref)
        with torch.inference_mode():
            lr_feature = self.module.encoder(lr.to(self.device, torch.float32))
            index, score = self.module.correlation(lr_feature, self.module.encoder(ref_down))
        height, width = lr.shape[-2:]
        ref_width = ref_down.shape[-1]
        scale = self.info.scale
        ref_yx = torch.stack([index[0] // ref_width, index[0] % ref_width], dim=-1).float() * scale
        return Correspondence(
            ref_yx=ref_yx.view(height, width, 2).cpu(), score=score[0].view(height, width).float().cpu()
        )

    def load_weights(self, path: str | Path) -> None:
        """Load a plain state_dict (optionally under ``state_dict``/``params``) of this module's layout."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{self.info.name}.pth"
        state = read_checkpoint(path, container_keys=("state_dict", "params"))
        load_state_dict_strict(self.module, state, "e2ent2 (benchmark layout, methods/e2ent2.py)")
        self.weights_loaded = True

    def cost_graph(self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """``self.module`` and (lr, ref cropped to multiples of 4, ref_down) as predict() builds them.
        The SISR tail is not run (training only)."""
        generator = torch.Generator().manual_seed(0)
        lr = torch.rand((1, 3, *lr_hw), generator=generator).to(self.device)
        ref = torch.rand((1, 3, *ref_hw), generator=generator)
        ref_cropped, ref_down = self._reference_pair(ref)
        return self.module, (lr, ref_cropped, ref_down)


def e2ent2(*, scale: int = 4, device: str = "cpu") -> E2ENT2Method:
    """E2ENT² benchmark configuration (e2ent2.md §4): 3,402,566 parameters, 3,105,411 at test time."""
    if scale not in SUPPORTED_SCALES:
        raise UserError(f"e2ent2 supports scale {', '.join(map(str, SUPPORTED_SCALES))} only, got {scale}")
    module = E2ENT2Net(scale=scale)
    counts = parameter_counts(module)
    choices = {
        "encoder": "φ = EDSR-baseline body: conv 3->64, 16 RB, conv 64->64, long skip from the head; full resolution; "
        "one shared φ for I_in, I_ref↓, I_ref (e2ent2.md §3 row 1)",
        "patch_norm": "L2 (Euclidean length of the 3x3x64 Ref↓ patch, clamped at 1e-12); the paper's text says L1, "
        "available as norm='l1' (e2ent2.md §3 row 3); the LR patch is not normalised",
        "patch_padding": "zero padding 1 at LR scale (every position is a patch centre), r at HR scale",
        "matching_tie_break": "first maximum in row-major Ref↓ order",
        "matching_memory": f"banded: <= {MATCH_LR_BAND_POSITIONS} LR patches x <= {MATCH_CHUNK_ELEMENTS} scores per "
        "block; exact argmax",
        "swap_overlap": "overlapping 12x12 patches averaged (fold / fold of ones) (e2ent2.md §3 row 5)",
        "swap_backward": "paper eq. 5, (α1, α2, α3) = (0.25, 0.25, 0.5); E↓ = 4x4 average pooling; accumulated patch "
        "errors divided by the patch-overlap count of all positions (9 inside) (e2ent2.md §5)",
        "res1": "4 RB at LR resolution, then 2 x (conv 64->256, PixelShuffle 2, ReLU) (e2ent2.md §3 row 8)",
        "res2": "conv 128->64 + ReLU on concat[F, Res1 out] (F first), 16 RB, conv 64->64 + head skip, conv 64->3",
        "synthesis": "I_sr = bilinear x4 (align_corners False) of I_in + Res2(...)",
        "sisr_tail": "2 x (conv 64->256, PixelShuffle 2), conv 64->3, + bilinear x4 of I_in; training only, not run "
        "by predict() or cost_graph()",
        "reference": "Ref cropped top-left to multiples of 4; Ref↓ = PIL bicubic ÷4 of it, made inside the wrapper "
        "(Sample.ref_lr ignored); any Ref size >= 4x4",
        "correspondence": "LR pixel p -> top-left HR pixel (4 q_y, 4 q_x) of the matched Ref↓ position q; score = "
        "eq. 3 similarity",
        "input_range": "RGB, [0, 1] (e2ent2.md §3 row 12)",
        "variant": "gan: the paper's E2ENT² row (24.01 dB CUFED5) is trained with L1 + relativistic GAN; its "
        "E2ENT²-MSE row would be a separately trained checkpoint of the same network",
        "module_names": "e2ent2.md §4 names grouped into submodules: enc_head -> encoder.head, sisr_up -> "
        "sisr_tail.up, res1_body -> res1.body, res2_head -> res2.head, etc.",
        "flops_m": "the matrix product in `correlation`: h·w x h_r·w_r x 576 MACs (padded patches)",
        "training_loss": "L1 (weight 1e-2) + relativistic average GAN (weight 1e-5) on both branches (methods.losses); "
        "discriminators not provided here",
        "weights": "no official checkpoint exists; load_weights takes a plain state_dict of this layout (strict)",
        "parameters": ", ".join(f"{name}={count:,}" for name, count in counts.items()),
    }
    info = info_from_card(builtin_card("e2ent2"), scale=scale, choices=choices)
    return E2ENT2Method(info, module, device, counts)
