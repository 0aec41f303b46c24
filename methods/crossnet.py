"""CrossNet (Zheng et al., ECCV 2018) as in the official code htzheng/ECCV2018_CrossNet_RefSR.

Specification: ``docs/methods/crossnet.md`` and ``fixtures/crossnet/README.md`` of the shared folder.
``MultiscaleWarpingNet`` = FlowNetS-style flow estimator (``FlowNet``) on (LR↑, Ref), one image encoder
shared by the SISR-upsampled LR and the Ref (``Encoder``), backward warping of the four Ref levels with
the flow of the same scale (``Backward_warp``), and a U-Net fusion decoder (``UNet_decoder_2``) whose
``post_fusion2`` is computed but unused, as in the official code. Everything runs at HR size; H and W
must be multiples of 64. No official weights exist; the state_dict follows the official
``net.state_dict()`` (``CP<iter>.pth``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import MethodInfo, check_image_tensor, info_from_card, load_state_dict_strict, read_checkpoint
from methods.cards import builtin_card
from protocols.core import Correspondence, UserError
from protocols.resize import pil_bicubic

SUPPORTED_SCALES = (4, 8)  # the official HDF5 data hold LR and MDSR inputs for s = 4 and 8
SIZE_MULTIPLE = 64  # six stride-2 levels in the flow estimator
LEAKY_SLOPE = 0.1
# Official forward modes: which two images the flow estimator sees. The Ref encoder features are
# always those of input_img2_HR. ``input_img2_LR`` is inferred from the mode name (not in the fixture).
FLOW_INPUTS_OF_MODE: dict[str, tuple[str, str]] = {
    "input_img2_HR": ("input_img1_LR", "input_img2_HR"),  # inference
    "input_img1_HR": ("input_img1_HR", "input_img2_HR"),  # the official training script's mode
    "input_img2_LR": ("input_img1_LR", "input_img2_LR"),
}

# An upsampler: (LR (1, 3, h, w) RGB [0, 1], target (H, W)) -> (1, 3, H, W) RGB [0, 1].
Upsampler = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def _conv_lrelu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2), nn.LeakyReLU(LEAKY_SLOPE))


def _deconv_lrelu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(LEAKY_SLOPE))


def _predict_flow(in_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, 2, 3, 1, 1))


def _upsample_flow() -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(2, 2, 4, 2, 1)


def _conv_selu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2), nn.SELU())


def _deconv_selu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1), nn.SELU())


class FlowNet(nn.Module):
    """FlowNetS-like estimator. ``forward(input1, input2)``: two (N, 3, H, W) images, [0, 1] ->
    {flow_12_1: (N, 2, H, W), flow_12_2: ½, flow_12_3: ¼, flow_12_4: ⅛}; channel 0 = x, 1 = y, each in
    pixels of its own scale (flows are never rescaled between levels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv_lrelu(6, 64, 7, 2)
        self.conv2 = _conv_lrelu(64, 128, 5, 2)
        self.conv3 = _conv_lrelu(128, 256, 5, 2)
        self.conv3_1 = _conv_lrelu(256, 256, 3)
        self.conv4 = _conv_lrelu(256, 512, 3, 2)
        self.conv4_1 = _conv_lrelu(512, 512, 3)
        self.conv5 = _conv_lrelu(512, 512, 3, 2)
        self.conv5_1 = _conv_lrelu(512, 512, 3)
        self.conv6 = _conv_lrelu(512, 1024, 3, 2)
        self.conv6_1 = _conv_lrelu(1024, 1024, 3)
        self.flow6, self.flow6_up, self.deconv5 = _predict_flow(1024), _upsample_flow(), _deconv_lrelu(1024, 256)
        self.flow5, self.flow5_up, self.deconv4 = _predict_flow(770), _upsample_flow(), _deconv_lrelu(770, 256)
        self.flow4, self.flow4_up, self.deconv3 = _predict_flow(770), _upsample_flow(), _deconv_lrelu(770, 128)
        self.flow3, self.flow3_up, self.deconv2 = _predict_flow(386), _upsample_flow(), _deconv_lrelu(386, 64)
        self.flow2, self.flow2_up, self.deconv1 = _predict_flow(194), _upsample_flow(), _deconv_lrelu(194, 64)
        self.flow1, self.flow1_up, self.deconv0 = _predict_flow(130), _upsample_flow(), _deconv_lrelu(130, 64)
        self.concat0_conv1 = _conv_selu(69, 16, 7)
        self.concat0_conv2 = _conv_selu(16, 16, 7)
        self.flow_12 = _predict_flow(16)

    def forward(self, input1: torch.Tensor, input2: torch.Tensor) -> dict[str, torch.Tensor]:
        conv1 = self.conv1(torch.cat([input1, input2], dim=1))
        conv2 = self.conv2(conv1)
        conv3_1 = self.conv3_1(self.conv3(conv2))
        conv4_1 = self.conv4_1(self.conv4(conv3_1))
        conv5_1 = self.conv5_1(self.conv5(conv4_1))
        conv6_1 = self.conv6_1(self.conv6(conv5_1))
        flow6 = self.flow6(conv6_1)
        concat5 = torch.cat([conv5_1, self.deconv5(conv6_1), self.flow6_up(flow6)], dim=1)
        flow5 = self.flow5(concat5)
        concat4 = torch.cat([conv4_1, self.deconv4(concat5), self.flow5_up(flow5)], dim=1)
        flow4 = self.flow4(concat4)
        concat3 = torch.cat([conv3_1, self.deconv3(concat4), self.flow4_up(flow4)], dim=1)
        flow3 = self.flow3(concat3)
        concat2 = torch.cat([conv2, self.deconv2(concat3), self.flow3_up(flow3)], dim=1)
        flow2 = self.flow2(concat2)
        concat1 = torch.cat([conv1, self.deconv1(concat2), self.flow2_up(flow2)], dim=1)
        flow1 = self.flow1(concat1)
        # Full resolution: the second image itself (the Ref), not the first, joins the refinement.
        concat0 = torch.cat([input2, self.deconv0(concat1), self.flow1_up(flow1)], dim=1)
        flow_12 = self.flow_12(self.concat0_conv2(self.concat0_conv1(concat0)))
        return {"flow_12_1": flow_12, "flow_12_2": flow1, "flow_12_3": flow2, "flow_12_4": flow3}


class Encoder(nn.Module):
    """(N, 3, H, W) [0, 1] -> (conv1 (N, 64, H, W), conv2 ½, conv3 ¼, conv4 ⅛); 5×5 convs with SELU.
    The first conv (``layer_f``) is not returned as a level."""

    def __init__(self) -> None:
        super().__init__()
        self.layer_f = _conv_selu(3, 64, 5)
        self.conv1 = _conv_selu(64, 64, 5)
        self.conv2 = _conv_selu(64, 64, 5, 2)
        self.conv3 = _conv_selu(64, 64, 5, 2)
        self.conv4 = _conv_selu(64, 64, 5, 2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        conv1 = self.conv1(self.layer_f(image))
        conv2 = self.conv2(conv1)
        conv3 = self.conv3(conv2)
        return conv1, conv2, conv3, self.conv4(conv3)


class BackwardWarp(nn.Module):
    """Bilinear backward warp: out(y, x) = feature(y + flow_y, x + flow_x), sample coordinates clamped to
    [0, H−1] × [0, W−1] first and the upper neighbour index clamped to the last row/column (border
    replication). ``feature`` (N, C, H, W), ``flow`` (N, 2, H, W) with channel 0 = x, 1 = y, in pixels."""

    def forward(self, feature: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = feature.shape
        grid_y = torch.arange(height, device=feature.device, dtype=feature.dtype).view(1, height, 1)
        grid_x = torch.arange(width, device=feature.device, dtype=feature.dtype).view(1, 1, width)
        x = (grid_x + flow[:, 0]).clamp(0, width - 1)
        y = (grid_y + flow[:, 1]).clamp(0, height - 1)
        x0, y0 = x.floor(), y.floor()
        x1, y1 = x0 + 1, y0 + 1  # unclamped in the weights, clamped as indices
        flat = feature.reshape(n, channels, height * width)

        def sample(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
            index = (yi.long() * width + xi.long()).view(n, 1, height * width).expand(n, channels, height * width)
            return flat.gather(2, index).view(n, channels, height, width)

        y1_index, x1_index = y1.clamp(max=height - 1), x1.clamp(max=width - 1)
        # Four weights, each a product of two differences, summed in this order: bit-equal to the official layer.
        w_a = ((x1 - x) * (y1 - y)).unsqueeze(1)
        w_b = ((x1 - x) * (y - y0)).unsqueeze(1)
        w_c = ((x - x0) * (y1 - y)).unsqueeze(1)
        w_d = ((x - x0) * (y - y0)).unsqueeze(1)
        return (
            w_a * sample(y0, x0)
            + w_b * sample(y1_index, x0)
            + w_c * sample(y0, x1_index)
            + w_d * sample(y1_index, x1_index)
        )


class UNetDecoder2(nn.Module):
    """Fusion decoder ``UNet_decoder_2``: SR-encoder levels and warped Ref levels -> (N, 3, H, W), linear output.

    ``post_fusion2`` is computed and discarded: the official ``final`` conv reads ``post_fusion1``."""

    def __init__(self) -> None:
        super().__init__()
        self.warp_deconv4 = _deconv_selu(128, 64)
        self.warp_deconv3 = _deconv_selu(192, 64)
        self.warp_deconv2 = _deconv_selu(192, 64)
        self.post_fusion1 = _conv_selu(192, 64, 5)
        self.post_fusion2 = _conv_selu(64, 64, 5)
        self.final = nn.Sequential(nn.Conv2d(64, 3, 5, 1, 2))

    def forward(
        self,
        lr_conv1: torch.Tensor,
        lr_conv2: torch.Tensor,
        lr_conv3: torch.Tensor,
        lr_conv4: torch.Tensor,
        warp_conv1: torch.Tensor,
        warp_conv2: torch.Tensor,
        warp_conv3: torch.Tensor,
        warp_conv4: torch.Tensor,
    ) -> torch.Tensor:
        deconv4 = self.warp_deconv4(torch.cat([lr_conv4, warp_conv4], dim=1))
        deconv3 = self.warp_deconv3(torch.cat([deconv4, lr_conv3, warp_conv3], dim=1))
        deconv2 = self.warp_deconv2(torch.cat([deconv3, lr_conv2, warp_conv2], dim=1))
        fusion1 = self.post_fusion1(torch.cat([deconv2, lr_conv1, warp_conv1], dim=1))
        self.post_fusion2(fusion1)  # official dead branch: computed (it costs MACs), never used
        return self.final(fusion1)


class MultiscaleWarpingNet(nn.Module):
    """The official network; submodule names are the checkpoint's top-level keys.

    ``forward(input_img1_LR, input_img1_SR, input_img2_HR, input_img1_HR=None, mode='input_img2_HR',
    input_img2_LR=None)``: the official ``forward(buff, mode)`` takes these tensors in a dict ``buff`` under the
    same names; here they are arguments. All (N, 3, H, W) float32 in [0, 1], channel order as the training
    data (RGB in the fixture), H and W multiples of 64: ``input_img1_LR`` the bicubic LR↑ (flow input),
    ``input_img1_SR`` the SISR-upsampled LR (encoder input), ``input_img2_HR`` the Ref at HR size,
    ``input_img1_HR`` the ground truth (only for mode ``input_img1_HR``). Returns (N, 3, H, W), no residual,
    no clamp.
    """

    def __init__(self) -> None:
        super().__init__()
        self.FlowNet = FlowNet()
        self.Backward_warp = BackwardWarp()
        self.Encoder = Encoder()
        self.UNet_decoder_2 = UNetDecoder2()

    def forward(
        self,
        input_img1_LR: torch.Tensor,
        input_img1_SR: torch.Tensor,
        input_img2_HR: torch.Tensor,
        input_img1_HR: torch.Tensor | None = None,
        mode: str = "input_img2_HR",
        input_img2_LR: torch.Tensor | None = None,
    ) -> torch.Tensor:
        images = {
            "input_img1_LR": input_img1_LR,
            "input_img1_SR": input_img1_SR,
            "input_img2_HR": input_img2_HR,
            "input_img1_HR": input_img1_HR,
            "input_img2_LR": input_img2_LR,
        }
        if mode not in FLOW_INPUTS_OF_MODE:
            raise UserError(f"unknown CrossNet mode {mode!r}; valid: {', '.join(FLOW_INPUTS_OF_MODE)}")
        first, second = (images[name] for name in FLOW_INPUTS_OF_MODE[mode])
        if first is None or second is None:
            raise UserError(f"CrossNet mode {mode!r} needs {' and '.join(FLOW_INPUTS_OF_MODE[mode])}")
        check_crossnet_size(input_img2_HR)
        flows = self.FlowNet(first, second)
        sr_levels = self.Encoder(input_img1_SR)
        ref_levels = self.Encoder(input_img2_HR)
        warped = [self.Backward_warp(level, flows[f"flow_12_{k}"]) for k, level in enumerate(ref_levels, start=1)]
        return self.UNet_decoder_2(*sr_levels, *warped)


def check_crossnet_size(image: torch.Tensor) -> None:
    height, width = image.shape[-2:]
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE or height == 0 or width == 0:
        raise UserError(
            f"CrossNet inputs must be multiples of {SIZE_MULTIPLE} in height and width; got {height}×{width}"
        )


def fit_ref_to(ref: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Crop or zero-pad the Ref at its bottom/right to ``size_hw`` (never rescale; protocols.md §3 rule 3)."""
    ref = ref[:, :, : size_hw[0], : size_hw[1]]
    return F.pad(ref, (0, size_hw[1] - ref.shape[3], 0, size_hw[0] - ref.shape[2]))


def pad_to_multiple(image: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad bottom/right to the next multiple of ``multiple``."""
    pad_h = -image.shape[2] % multiple
    pad_w = -image.shape[3] % multiple
    return F.pad(image, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else image


class CrossNetMethod:
    """Benchmark wrapper around ``MultiscaleWarpingNet`` (see ``Method`` in ``methods/base.py``).

    ``sisr_upsampler`` makes the encoder's ``input_img1_SR`` from the LR (the paper uses MDSR); default
    PIL bicubic, i.e. the same image as the flow input LR↑."""

    def __init__(self, info: MethodInfo, device: str = "cpu", sisr_upsampler: Upsampler | None = None) -> None:
        self.info = info
        self.device = torch.device(device)
        self.module = MultiscaleWarpingNet().to(self.device).eval()
        self.sisr_upsampler: Upsampler = sisr_upsampler if sisr_upsampler is not None else pil_bicubic
        self.weights_loaded = False

    def _inputs(self, lr: torch.Tensor, ref: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_img1_LR, input_img1_SR, input_img2_HR) at HR size padded to a multiple of 64."""
        check_image_tensor("lr", lr)
        if ref is None:
            raise UserError("CrossNet needs a reference image (ref); got None")
        check_image_tensor("ref", ref)
        lr = lr.to(self.device)
        hr_hw = (self.info.scale * lr.shape[2], self.info.scale * lr.shape[3])
        lr_up = pil_bicubic(lr, hr_hw)
        sr = self.sisr_upsampler(lr, hr_hw).to(self.device)
        if tuple(sr.shape) != tuple(lr_up.shape):
            raise UserError(f"the SISR upsampler returned {tuple(sr.shape)}; expected {tuple(lr_up.shape)}")
        ref_fit = fit_ref_to(ref.to(self.device), hr_hw)
        pad = SIZE_MULTIPLE
        return pad_to_multiple(lr_up, pad), pad_to_multiple(sr, pad), pad_to_multiple(ref_fit, pad)

    def predict(
        self, lr: torch.Tensor, ref: torch.Tensor | None = None, ref_lr: torch.Tensor | None = None
    ) -> torch.Tensor:
        """LR (1, 3, h, w) and Ref (1, 3, H_r, W_r), RGB [0, 1] -> SR (1, 3, s·h, s·w), unclamped.
        ``ref_lr`` is not used (CrossNet sees only HR-size images)."""
        with torch.inference_mode():
            lr_up, sr, ref_fit = self._inputs(lr, ref)
            out = self.module(lr_up, sr, ref_fit)
            return out[:, :, : self.info.scale * lr.shape[2], : self.info.scale * lr.shape[3]]

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        """Full-resolution flow ``flow_12_1`` read at each LR pixel's HR position (s·i, s·j): ref position
        = (s·i + flow_y, s·j + flow_x), clamped as the warp clamps and to the Ref's extent. CrossNet has no
        confidence: score is 0 everywhere."""
        with torch.inference_mode():
            lr_up, _, ref_fit = self._inputs(lr, ref)
            flow = self.module.FlowNet(lr_up, ref_fit)["flow_12_1"][0]
            scale = self.info.scale
            h, w = lr.shape[-2:]
            rows = torch.arange(h, device=self.device) * scale
            cols = torch.arange(w, device=self.device) * scale
            flow_at = flow[:, rows][:, :, cols]  # (2, h, w)
            max_y = min(ref.shape[2], flow.shape[1]) - 1
            max_x = min(ref.shape[3], flow.shape[2]) - 1
            ref_y = (rows[:, None] + flow_at[1]).clamp(0, max_y)
            ref_x = (cols[None, :] + flow_at[0]).clamp(0, max_x)
            ref_yx = torch.stack([ref_y, ref_x], dim=-1).float().cpu()
            return Correspondence(ref_yx=ref_yx, score=torch.zeros(h, w))

    def load_weights(self, path: str | Path) -> None:
        """``path``: an official training checkpoint ``CP<iter>.pth`` (plain state_dict), or a folder holding
        exactly one such file. No official weights were released."""
        path = Path(path)
        if path.is_dir():
            candidates = sorted(path.glob("CP*.pth"))
            if len(candidates) != 1:
                raise UserError(
                    f"expected exactly one CrossNet checkpoint CP<iter>.pth in {path}; found "
                    f"{[c.name for c in candidates] or 'none'}. Pass the file itself."
                )
            path = candidates[0]
        state = read_checkpoint(path)
        load_state_dict_strict(self.module, state, "CrossNet MultiscaleWarpingNet")
        self.module.to(self.device).eval()
        self.weights_loaded = True

    def cost_graph(
        self, lr_hw: tuple[int, int], ref_hw: tuple[int, int]
    ) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
        """The network and (input_img1_LR, input_img1_SR, input_img2_HR) at the HR size s·lr_hw padded to a
        multiple of 64, as predict runs it. The Ref is fitted to the HR size, so ``ref_hw`` does not change
        the cost."""
        del ref_hw  # CrossNet crops/pads the Ref to the HR size
        size = [-(-self.info.scale * n // SIZE_MULTIPLE) * SIZE_MULTIPLE for n in lr_hw]
        generator = torch.Generator().manual_seed(0)
        inputs = tuple(torch.rand(1, 3, *size, generator=generator).to(self.device) for _ in range(3))
        return self.module, inputs


def crossnet(*, scale: int = 4, device: str = "cpu", sisr_upsampler: Upsampler | None = None) -> CrossNetMethod:
    """CrossNet; ``sisr_upsampler`` (LR, (H, W)) -> SR replaces the paper's MDSR (default PIL bicubic)."""
    if scale not in SUPPORTED_SCALES:
        raise UserError(f"crossnet supports scales {SUPPORTED_SCALES}; got {scale}")
    sisr_name = "PIL bicubic" if sisr_upsampler is None else getattr(sisr_upsampler, "__name__", repr(sisr_upsampler))
    info = info_from_card(
        builtin_card("crossnet"),
        scale=scale,
        choices={
            "sisr_input": f"input_img1_SR = {sisr_name} (the paper uses MDSR, which is not available)",
            "flow_input": "input_img1_LR = PIL bicubic LR↑ (the repository README's choice; the paper used MDSR)",
            "mode": "input_img2_HR (the official default / inference path; training used input_img1_HR)",
            "ref_policy": "Ref cropped or zero-padded bottom/right to the HR size, never rescaled",
            "padding": "LR↑, SR and Ref replicate-padded bottom/right to a multiple of 64; SR cropped back",
            "match": "flow_12_1 at HR position (s·i, s·j); score 0 (no confidence)",
            "dead_branch": "UNet_decoder_2.post_fusion2 is computed and unused, as in the official code",
            "weights": "no official checkpoint; load_weights reads a training run's CP<iter>.pth",
        },
    )
    return CrossNetMethod(info, device=device, sisr_upsampler=sisr_upsampler)
