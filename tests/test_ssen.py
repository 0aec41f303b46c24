"""SSEN (ssen, ssen_baseline, ssen_self): sizes, building blocks against direct computations, costs, loss.

No official code or checkpoint exists, so the oracles are: the parameter counts and MACs of
docs/methods/ssen.md (§4.4-4.5, §7), plain convolutions (DCN with zero offsets), a direct numpy
softmax-attention (non-local block) and closed-form loss values. Networks run with the fixtures'
synthetic-weight rule (tests/synth.py) so that offsets and attention are not at their zero init.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth import synthetic_state_dict

from methods import registry
from methods.base import Method
from methods.losses import charbonnier_loss
from methods.ssen import SSEN, NonLocalBlock, SSENMethod, ssen, ssen_baseline, ssen_self
from protocols.core import UserError

pytestmark = pytest.mark.usefixtures("one_thread")



def _load_synthetic(method: SSENMethod, folder: Path) -> SSENMethod:
    """Fill ``method`` with the fixtures' synthetic weights through its own ``load_weights``."""
    layout = folder / f"{method.info.name}_layout.tsv"
    layout.write_text(
        "".join(
            f"{key}\t{','.join(map(str, value.shape))}\t{str(value.dtype).replace('torch.', '')}\n"
            for key, value in method.module.state_dict().items()
        )
    )
    checkpoint = folder / f"{method.info.name}.pth"
    torch.save(synthetic_state_dict(layout), checkpoint)
    method.load_weights(checkpoint)
    return method


@pytest.fixture(scope="module")
def synthetic_ssen(tmp_path_factory: pytest.TempPathFactory) -> SSENMethod:
    return _load_synthetic(ssen(), tmp_path_factory.mktemp("ssen"))


@pytest.fixture(scope="module")
def synthetic_ssen_self(tmp_path_factory: pytest.TempPathFactory) -> SSENMethod:
    # synthetic weights for the SSEN part only: the rule over all 17.3 M RCAN values takes ~15 s
    method = ssen_self()
    layout = tmp_path_factory.mktemp("ssen_self") / "ssen_part_layout.tsv"
    layout.write_text(
        "".join(
            f"{key}\t{','.join(map(str, value.shape))}\tfloat32\n"
            for key, value in method.module.ssen.state_dict().items()
        )
    )
    method.module.ssen.load_state_dict(synthetic_state_dict(layout), strict=True)
    return method


# --- parameters (ssen.md §4.4, §4.5, §7) --------------------------------------------------------


def test_parameter_counts_match_the_method_doc() -> None:
    counts = ssen().param_counts
    assert counts == {
        "lr_head": 1_792,
        "ref_head": 27_712,
        "trunk": 590_848,
        "ssen.estimators": 1_593_192,
        "ssen.dcns": 110_784,
        "fusion": 8_256,
        "recon_body": 590_848,
        "recon_tail": 36_928,
        "upsampler": 295_424,
        "out": 1_731,
        "total": 3_257_515,
    }
    for estimator in ssen().module.ssen.estimators:
        assert sum(p.numel() for p in estimator.parameters()) == 531_064
    assert ssen_baseline().param_counts["total"] == 1_517_571
    self_counts = ssen_self().param_counts
    alignment = self_counts["ssen.estimators"] + self_counts["ssen.dcns"] + self_counts["fusion"]
    assert self_counts["total"] - alignment == 15_592_355  # plain RCAN x4 (BasicSR definition)
    assert (self_counts["ssen.estimators"], self_counts["ssen.dcns"]) == (1_593_192, 110_784)


def test_metadata_and_registry() -> None:
    for name, needs_ref, multiple in (("ssen", True, 8), ("ssen_self", False, 8), ("ssen_baseline", False, 1)):
        method = registry.create(name)
        assert isinstance(method, Method)
        assert method.info.name == name and method.info.scale == 4 and method.info.weights == ()
        assert method.info.needs_reference is needs_ref and method.info.lr_multiple == multiple
        assert "parameters" in method.info.choices and not method.weights_loaded
        for path in method.info.parts.values():
            method.module.get_submodule(path)
    assert ssen().info.parts["matching"] == "ssen"
    assert "matching" not in ssen_baseline().info.parts
    for factory in (ssen, ssen_self, ssen_baseline):
        with pytest.raises(UserError, match="scale"):
            factory(scale=2)


# --- building blocks against direct computations ------------------------------------------------


def test_each_dcn_with_zero_offsets_and_unit_masks_is_the_plain_convolution(synthetic_ssen: SSENMethod) -> None:
    x = torch.randn(1, 64, 9, 11)
    offset = torch.zeros(1, 144, 9, 11)
    mask = torch.ones(1, 72, 9, 11)
    for dcn in synthetic_ssen.module.ssen.dcns:
        expected = F.conv2d(x, dcn.weight, dcn.bias, padding=1)
        torch.testing.assert_close(dcn(x, offset, mask), expected, rtol=1e-5, atol=1e-5)


def test_dcn_offset_and_mask_layout(synthetic_ssen: SSENMethod) -> None:
    dcn = synthetic_ssen.module.ssen.dcns[1]
    x = torch.randn(1, 64, 8, 10)
    ones = torch.ones(1, 72, 8, 10)
    # channel 2k is Δy, 2k+1 is Δx: an integer shift of +1 samples the next row / column
    shift_y = torch.zeros(1, 144, 8, 10)
    shift_y[:, 0::2] = 1.0
    below = F.pad(x[:, :, 1:], (0, 0, 0, 1))
    expected = F.conv2d(below, dcn.weight, dcn.bias, padding=1)
    torch.testing.assert_close(dcn(x, shift_y, ones)[..., 1:, :], expected[..., 1:, :], rtol=1e-5, atol=1e-5)
    shift_x = torch.zeros(1, 144, 8, 10)
    shift_x[:, 1::2] = 1.0
    right = F.pad(x[..., 1:], (0, 1))
    expected = F.conv2d(right, dcn.weight, dcn.bias, padding=1)
    torch.testing.assert_close(dcn(x, shift_x, ones)[..., 1:], expected[..., 1:], rtol=1e-5, atol=1e-5)
    # mask channel g*9 + k modulates tap k of group g: keeping only the centre tap gives a 1x1 conv
    centre_only = torch.zeros(1, 72, 8, 10)
    centre_only[:, 4::9] = 1.0
    expected = F.conv2d(x, dcn.weight[:, :, 1:2, 1:2], dcn.bias)
    torch.testing.assert_close(dcn(x, torch.zeros(1, 144, 8, 10), centre_only), expected, rtol=1e-5, atol=1e-5)


class _FixedEstimator(torch.nn.Module):
    """Stands in for a DOE: records its input, returns zero offsets and mask logits of +50 (masks = 1)."""

    def __init__(self, seen: list[torch.Tensor]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        batch, _, height, width = x.shape
        return torch.cat([torch.zeros(batch, 144, height, width), torch.full((batch, 72, height, width), 50.0)], 1)


def test_ssen_stack_wiring() -> None:
    # offsets first, then mask logits; DOE_k sees concat[F_LR, A_k-1]; LReLU(0.1) after layers 1 and 2 only
    module = SSEN(channels=16)
    seen: list[torch.Tensor] = []
    module.estimators = torch.nn.ModuleList(_FixedEstimator(seen) for _ in range(3))
    lr_feature, ref_feature = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        got = module(lr_feature, ref_feature)
        expected = ref_feature
        for layer, dcn in enumerate(module.dcns):
            torch.testing.assert_close(seen[layer], torch.cat([lr_feature, expected], 1), rtol=1e-5, atol=1e-5)
            expected = F.conv2d(expected, dcn.weight, dcn.bias, padding=1)
            if layer < 2:
                expected = torch.where(expected > 0, expected, 0.1 * expected)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def _direct_non_local(block: NonLocalBlock, x: torch.Tensor) -> np.ndarray:
    """y_i = x_i + W_out(Σ_j softmax_j(θ_i·φ_j) g_j) + b_out, one position at a time in float64."""

    def project(conv: torch.nn.Conv2d, features: np.ndarray) -> np.ndarray:
        weight = conv.weight.detach().double().numpy()[:, :, 0, 0]
        return weight @ features + conv.bias.detach().double().numpy()[:, None]

    channels, height, width = x.shape[1:]
    features = x[0].double().numpy().reshape(channels, -1)
    theta, phi, g = project(block.theta, features), project(block.phi, features), project(block.g, features)
    attended = np.zeros_like(theta)
    for i in range(features.shape[1]):
        logits = theta[:, i] @ phi
        weights = np.exp(logits - logits.max())
        attended[:, i] = g @ (weights / weights.sum())
    return (features + project(block.out, attended)).reshape(channels, height, width)


def test_non_local_block_is_softmax_attention(synthetic_ssen: SSENMethod) -> None:
    block = synthetic_ssen.module.ssen.estimators[2].nonlocal1
    assert block.theta.out_channels == 32  # embedding = half the channels
    x = torch.randn(1, 64, 6, 7)
    with torch.no_grad():
        got = block(x)
        expected = _direct_non_local(block, x)
        np.testing.assert_allclose(got[0].double().numpy(), expected, rtol=1e-4, atol=1e-4)
        block.chunk_elements = 50  # several query chunks: same result
        try:
            torch.testing.assert_close(block(x), got, rtol=1e-6, atol=1e-6)
        finally:
            block.chunk_elements = NonLocalBlock(64, 32).chunk_elements


# --- predict ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lr_hw", "ref_hw"), [((32, 32), (100, 150)), ((40, 56), (200, 180)), ((20, 27), (64, 64))])
def test_ssen_predict_shapes(synthetic_ssen: SSENMethod, lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> None:
    lr, ref = torch.rand(1, 3, *lr_hw), torch.rand(1, 3, *ref_hw)
    sr = synthetic_ssen.predict(lr, ref)
    assert sr.shape == (1, 3, 4 * lr_hw[0], 4 * lr_hw[1]) and sr.dtype == torch.float32
    assert torch.isfinite(sr).all()


def test_ssen_uses_the_reference_and_is_deterministic(synthetic_ssen: SSENMethod) -> None:
    lr, ref = torch.rand(1, 3, 20, 27), torch.rand(1, 3, 80, 100)
    first = synthetic_ssen.predict(lr, ref)
    assert torch.equal(first, synthetic_ssen.predict(lr, ref))
    assert not torch.allclose(first, synthetic_ssen.predict(lr, torch.rand(1, 3, 80, 100)))


def test_ssen_brings_the_reference_to_hr_size_and_pads_the_lr(synthetic_ssen: SSENMethod) -> None:
    seen: list[tuple[torch.Tensor, ...]] = []
    handle = synthetic_ssen.module.register_forward_pre_hook(lambda _, args: seen.append(args))
    lr, ref = torch.rand(1, 3, 13, 18), torch.rand(1, 3, 70, 90)
    try:
        synthetic_ssen.predict(lr, ref)
    finally:
        handle.remove()
    lr_in, ref_in = seen[0]
    # LR: replicate bottom/right to 16 x 24
    expected_lr = lr[:, :, [min(i, 12) for i in range(16)]][..., [min(j, 17) for j in range(24)]]
    assert torch.equal(lr_in, expected_lr)
    # Ref: rows cropped to 4*13 = 52, columns zero-padded to 4*18 = 72, then zeros up to 64 x 96
    expected_ref = torch.zeros(1, 3, 64, 96)
    expected_ref[:, :, :52, :72] = ref[:, :, :52, :72]
    assert torch.equal(ref_in, expected_ref)


def test_ssen_baseline_at_128_ignores_the_reference() -> None:
    method = ssen_baseline()
    lr = torch.rand(1, 3, 128, 128)
    sr = method.predict(lr, torch.rand(1, 3, 40, 40))
    assert sr.shape == (1, 3, 512, 512) and torch.isfinite(sr).all()
    small = torch.rand(1, 3, 40, 56)
    assert torch.equal(method.predict(small), method.predict(small, torch.rand(1, 3, 9, 9)))


@pytest.mark.parametrize("lr_hw", [(32, 32), (40, 56)])
def test_ssen_self_predict_shapes(synthetic_ssen_self: SSENMethod, lr_hw: tuple[int, int]) -> None:
    # RCAN (10 x 20 RCAB) is tested up to 40x56 only: 128x128 costs ~16x the 32x32 time on CPU
    lr = torch.rand(1, 3, *lr_hw)
    sr = synthetic_ssen_self.predict(lr, torch.rand(1, 3, 50, 70))
    assert sr.shape == (1, 3, 4 * lr_hw[0], 4 * lr_hw[1]) and torch.isfinite(sr).all()


def test_ssen_self_is_deterministic(synthetic_ssen_self: SSENMethod) -> None:
    lr = torch.rand(1, 3, 6, 11)
    first = synthetic_ssen_self.predict(lr)
    assert first.shape == (1, 3, 24, 44)
    assert torch.equal(first, synthetic_ssen_self.predict(lr))


# --- errors a user can hit ----------------------------------------------------------------------


def test_user_errors(tmp_path: Path) -> None:
    method = ssen()
    with pytest.raises(UserError, match="reference"):
        method.predict(torch.rand(1, 3, 8, 8))
    with pytest.raises(UserError, match="shape"):
        method.predict(torch.rand(3, 8, 8), torch.rand(1, 3, 32, 32))
    with pytest.raises(UserError, match="not found"):
        method.load_weights(tmp_path / "missing.pth")
    baseline = ssen_baseline()
    state = baseline.module.state_dict()
    state["extra.weight"] = state.pop("out.bias")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError, match=r"missing keys \(1\): out\.bias[\s\S]*unexpected keys \(1\): extra\.weight"):
        baseline.load_weights(tmp_path / "bad.pth")
    assert not baseline.weights_loaded


# --- cost ---------------------------------------------------------------------------------------


def _doe_macs(height: int, width: int) -> tuple[int, int]:
    """(conv MACs, attention MACs) of one dynamic offset estimator at LR h x w, as fvcore counts them:
    conv = C_out*C_in*k² per output position (transposed conv: per INPUT position), no bias."""
    full = height * width
    levels = [full // 4, full // 16, full // 64]
    conv = 64 * 128 * 9 * full  # entry
    conv += 64 * 64 * 9 * sum(levels)  # three stride-2 convs
    conv += (3 * 32 * 64 + 64 * 32) * sum(levels)  # NL theta/phi/g and output 1x1 convs
    conv += 64 * 64 * 16 * sum(levels)  # three 4x4 transposed convs, at their input sizes
    conv += 216 * 64 * 9 * full  # offset/mask output conv
    attention = sum(2 * n * n * 32 for n in levels)  # theta^T phi and A g
    return conv, attention


def test_alignment_macs_match_fvcore_and_the_doc() -> None:
    from fvcore.nn import FlopCountAnalysis

    # the doc's benchmark setting (LR 128²): 3 DOEs 11.52 G (convs), NL products 3.44 G
    conv, attention = _doe_macs(128, 128)
    assert round(3 * conv / 1e9, 2) == 11.52 and round(3 * attention / 1e9, 2) == 3.44
    module, inputs = ssen().cost_graph((16, 16), (50, 70))
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 16, 16), (1, 3, 64, 64)]
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    conv, attention = _doe_macs(16, 16)
    # deform_conv2d is not counted by fvcore without a registered handle (ssen.md §5)
    assert analysis.by_module()["ssen"] == 3 * (conv + attention)
    assert analysis.unsupported_ops()["torchvision::deform_conv2d"] == 3


# --- training objective -------------------------------------------------------------------------


def test_charbonnier_loss() -> None:
    sr = torch.tensor([[0.5, 0.25], [1.0, 0.0]], dtype=torch.float64)
    hr = torch.tensor([[0.5, 0.75], [0.0, 0.0]], dtype=torch.float64)
    eps = 1e-6
    expected = (eps + math.sqrt(0.25 + eps**2) + math.sqrt(1.0 + eps**2) + eps) / 4
    assert charbonnier_loss(sr, hr).item() == pytest.approx(expected, rel=1e-12)
    same = torch.rand(1, 3, 4, 4)
    assert charbonnier_loss(same, same).item() == pytest.approx(1e-6, rel=1e-6)
    sr.requires_grad_(True)
    charbonnier_loss(sr, hr).backward()
    assert sr.grad is not None and sr.grad[0, 1].item() == pytest.approx(-0.25, rel=1e-6)  # d/dx of |x-y|/4
    with pytest.raises(ValueError):
        charbonnier_loss(torch.zeros(2), torch.zeros(3))
