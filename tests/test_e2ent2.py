"""E2ENT²: sizes, matching (eq. 3), swap (eq. 4), the eq. 5 backward, correspondence, cost, losses.

No official code or checkpoint exists, so the oracles are: the counts of docs/methods/e2ent2.md (§4, §6),
eq. 3 evaluated as the paper writes it (a 2-D convolution of φ(I_in) with each normalised Ref↓ patch),
the unfold/gather/fold swap of e2ent2.md §5, eq. 5 evaluated literally from K(x, y) and Q(x, y) in numpy,
plain autograd where eq. 5 must coincide with it, and closed-form loss values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods import registry
from methods.base import Matcher, Method
from methods.e2ent2 import (
    MATCH_CHUNK_ELEMENTS,
    E2ENT2Net,
    FeatureSwap,
    PatchCorrelation,
    e2ent2,
    swap_forward,
)
from methods.losses import (
    e2ent2_generator_loss,
    l1_loss,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
)
from protocols.core import UserError
from protocols.resize import pil_bicubic

pytestmark = pytest.mark.usefixtures("one_thread")

SCALE = 4



def _tiny_net(**kwargs) -> E2ENT2Net:
    return E2ENT2Net(channels=4, encoder_blocks=1, res1_blocks=1, res2_blocks=1, **kwargs)


# --- parameters and metadata (e2ent2.md §4, §6) --------------------------------------------------


def test_parameter_counts_match_the_method_doc() -> None:
    method = e2ent2()
    counts = method.param_counts
    assert counts["total"] == 3_402_566 and counts["total_inference"] == 3_105_411
    assert counts["correlation"] == 0 and counts["swap"] == 0
    module = method.module
    per_doc_row = {
        "encoder.head": 1_792,
        "encoder.body": 1_181_696,
        "encoder.tail": 36_928,
        "sisr_tail.up": 295_424,
        "sisr_tail.out": 1_731,
        "res1.body": 295_424,
        "res1.up": 295_424,
        "res2.head": 73_792,
        "res2.body": 1_181_696,
        "res2.tail": 36_928,
        "res2.out": 1_731,
    }
    for path, expected in per_doc_row.items():
        assert sum(p.numel() for p in module.get_submodule(path).parameters()) == expected, path


def test_metadata_and_registry() -> None:
    method = registry.create("e2ent2")
    info = method.info
    assert isinstance(method, Method) and isinstance(method, Matcher)
    assert info.name == "e2ent2" and info.scale == 4 and info.weights == () and info.needs_reference
    assert info.parts["matching"] == "correlation"
    assert list(method.module.get_submodule("correlation").parameters()) == []
    assert "patch_norm" in info.choices and "L2" in info.choices["patch_norm"]
    with pytest.raises(UserError, match="scale"):
        e2ent2(scale=2)
    with pytest.raises(UserError, match="l1"):
        PatchCorrelation("cosine")


# --- predict ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lr_hw", "ref_hw"), [((32, 32), (100, 84)), ((40, 56), (90, 130))])
def test_predict_shapes_full_configuration(lr_hw: tuple[int, int], ref_hw: tuple[int, int]) -> None:
    sr = e2ent2().predict(torch.rand(1, 3, *lr_hw), torch.rand(1, 3, *ref_hw))
    assert sr.shape == (1, 3, 4 * lr_hw[0], 4 * lr_hw[1]) and sr.dtype == torch.float32
    assert torch.isfinite(sr).all()


def test_predict_at_128_with_a_tiny_network() -> None:
    # the full network at LR 128² is ~870 GMACs (e2ent2.md §6): too slow for a CPU test
    method = e2ent2()
    method.module = _tiny_net().eval()
    sr = method.predict(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 203, 266))
    assert sr.shape == (1, 3, 512, 512) and torch.isfinite(sr).all()


def test_predict_is_deterministic_and_uses_the_reference() -> None:
    method = e2ent2()
    lr, ref = torch.rand(1, 3, 10, 14), torch.rand(1, 3, 43, 50)
    first = method.predict(lr, ref)
    assert first.shape == (1, 3, 40, 56)
    assert torch.equal(first, method.predict(lr, ref))
    assert not torch.allclose(first, method.predict(lr, torch.rand(1, 3, 43, 50)))


def test_predict_crops_the_reference_and_makes_ref_down_with_pil() -> None:
    method = e2ent2()
    seen: list[tuple[torch.Tensor, ...]] = []
    handle = method.module.register_forward_pre_hook(lambda _, args: seen.append(args))
    ref = torch.randint(0, 256, (1, 3, 43, 50)).float() / 255
    try:
        method.predict(torch.rand(1, 3, 6, 7), ref)
    finally:
        handle.remove()
    _, ref_in, ref_down_in = seen[0]
    assert torch.equal(ref_in, ref[:, :, :40, :48])
    assert torch.equal(ref_down_in, pil_bicubic(ref[:, :, :40, :48], (10, 12)))


def test_user_errors() -> None:
    method = e2ent2()
    with pytest.raises(UserError, match="reference"):
        method.predict(torch.rand(1, 3, 8, 8))
    with pytest.raises(UserError, match="at least 4x4"):
        method.predict(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 3, 30))
    with pytest.raises(UserError, match="exactly 4x"):
        method.module(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 5, 4))


# --- matching: paper eq. 3 ----------------------------------------------------------------------


def _eq3_by_convolution(lr_feature: torch.Tensor, ref_down_feature: torch.Tensor, norm: str) -> torch.Tensor:
    """S_i = φ(I_in) * P_i / ‖P_i‖ for every Ref↓ patch i, as one conv2d with one kernel per patch: (h·w, L)."""
    padded = F.pad(ref_down_feature, (1, 1, 1, 1))[0]
    ref_height, ref_width = ref_down_feature.shape[-2:]
    kernels = torch.stack(
        [padded[:, y : y + 3, x : x + 3] for y in range(ref_height) for x in range(ref_width)]
    ).double()
    lengths = kernels.flatten(1).norm(dim=1) if norm == "l2" else kernels.flatten(1).abs().sum(dim=1)
    kernels = kernels / lengths.clamp_min(1e-12)[:, None, None, None]
    similarity = F.conv2d(lr_feature.double(), kernels, padding=1)[0]  # (L, h, w)
    return similarity.flatten(1).t()


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_correlation_is_the_argmax_of_eq3(norm: str) -> None:
    lr_feature, ref_down_feature = torch.randn(2, 5, 9, 11), torch.randn(2, 5, 13, 10)
    index, score = PatchCorrelation(norm)(lr_feature, ref_down_feature)
    assert index.shape == (2, 99) and index.dtype == torch.int64
    for item in range(2):
        similarity = _eq3_by_convolution(lr_feature[item : item + 1], ref_down_feature[item : item + 1], norm)
        best = similarity.max(dim=1).values
        torch.testing.assert_close(score[item].double(), best, rtol=1e-5, atol=1e-5)
        # the chosen patch scores the maximum (robust to float near-ties between the two evaluations)
        chosen = similarity.gather(1, index[item][:, None])[:, 0]
        torch.testing.assert_close(chosen, best, rtol=1e-5, atol=1e-5)
    banded_index, banded_score = PatchCorrelation(norm, chunk_elements=150)(lr_feature, ref_down_feature)
    assert torch.equal(banded_index, index)
    torch.testing.assert_close(banded_score, score)


def test_correlation_ties_keep_the_first_patch() -> None:
    # a one-hot pattern of period 3: every 3x3 patch holds at most one 1, so all scores are exactly 0 or 1
    # and many Ref↓ patches tie; the first one in row-major order must win, also across bands
    def pattern(height: int, width: int, phase: int) -> torch.Tensor:
        rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        return (((rows + phase) % 3 == 0) & ((cols + 2 * phase) % 3 == 0)).float().expand(1, 2, height, width)

    lr_feature, ref_down_feature = pattern(7, 8, 1), pattern(12, 9, 0)
    want = _eq3_by_convolution(lr_feature, ref_down_feature, "l2").argmax(dim=1)  # first maximum
    for chunk_elements in (MATCH_CHUNK_ELEMENTS, 7 * 8 * 9):  # one band, and one Ref↓ row per band
        index, _ = PatchCorrelation("l2", chunk_elements=chunk_elements)(lr_feature, ref_down_feature)
        assert torch.equal(index[0], want)


# --- swap (eq. 4) and its backward (eq. 5) ------------------------------------------------------


def _swap_by_unfold_fold(ref_feature: torch.Tensor, index: torch.Tensor, lr_hw: tuple[int, int]) -> torch.Tensor:
    """e2ent2.md §5 steps 5-6: unfold V (12x12, stride 4, pad 4), gather i*(p), fold, divide by the fold of ones."""
    columns = F.unfold(ref_feature, 3 * SCALE, stride=SCALE, padding=SCALE)
    picked = torch.gather(columns, 2, index[:, None, :].expand(-1, columns.shape[1], -1))
    size = (SCALE * lr_hw[0], SCALE * lr_hw[1])
    folded = F.fold(picked, size, 3 * SCALE, stride=SCALE, padding=SCALE)
    return folded / F.fold(torch.ones_like(picked), size, 3 * SCALE, stride=SCALE, padding=SCALE)


def _eq5_literal(
    error: np.ndarray,
    index: np.ndarray,
    lr_hw: tuple[int, int],
    ref_down_hw: tuple[int, int],
    alphas: tuple[float, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paper eq. 5 from K(x, y) and Q(x, y), one patch at a time (float64, batch of one).

    ``error``: E = ∂J/∂F (C, 4h, 4w). Returns (E^{I_in}, E^{I_ref↓}, E^{I_ref}); the accumulated patch errors
    are averaged over the number of patches covering each position (all positions, e2ent2.md §5).
    """
    (height, width), (ref_height, ref_width) = lr_hw, ref_down_hw
    channels = error.shape[0]
    error_down = error.reshape(channels, height, SCALE, width, SCALE).mean(axis=(2, 4))
    queries: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for p, q in enumerate(index):
        queries.setdefault(divmod(int(q), ref_width), []).append(divmod(p, width))

    def patch(source: np.ndarray, centre: tuple[int, int], cell: int) -> np.ndarray:
        padded = np.pad(source, ((0, 0), (cell, cell), (cell, cell)))
        y, x = centre
        return padded[:, y * cell : (y + 3) * cell, x * cell : (x + 3) * cell]

    def accumulate(cell: int, source: np.ndarray) -> np.ndarray:
        total = np.zeros((channels, (ref_height + 2) * cell, (ref_width + 2) * cell))
        count = np.zeros_like(total)
        for y in range(ref_height):
            for x in range(ref_width):
                count[:, y * cell : (y + 3) * cell, x * cell : (x + 3) * cell] += 1
                for centre in queries.get((y, x), []):  # K(x, y) terms
                    total[:, y * cell : (y + 3) * cell, x * cell : (x + 3) * cell] += patch(source, centre, cell)
        return (total / count)[:, cell:-cell, cell:-cell]

    return alphas[0] * error_down, alphas[1] * accumulate(1, error_down), alphas[2] * accumulate(SCALE, error)


def test_swap_forward_equals_unfold_gather_fold() -> None:
    ref_feature = torch.randn(2, 3, 4 * 6, 4 * 5)
    index = torch.randint(0, 30, (2, 7 * 9))
    got = swap_forward(ref_feature, index, (7, 9), SCALE)
    torch.testing.assert_close(got, _swap_by_unfold_fold(ref_feature, index, (7, 9)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alphas", [(0.25, 0.25, 0.5), (0.7, -0.2, 1.3)])
def test_swap_backward_is_eq5(alphas: tuple[float, float, float]) -> None:
    lr_feature = torch.randn(1, 3, 5, 6, requires_grad=True)
    ref_down_feature = torch.randn(1, 3, 4, 7, requires_grad=True)
    ref_feature = torch.randn(1, 3, 16, 28, requires_grad=True)
    index = torch.tensor([[0, 0, 0, 27, 27, 5] + [13] * 12 + list(range(12))])  # repeats, borders, unused
    swapped = FeatureSwap(SCALE, alphas)(lr_feature, ref_down_feature, ref_feature, index)
    error = torch.randn_like(swapped)
    swapped.backward(error)
    expected = _eq5_literal(error[0].double().numpy(), index[0].numpy(), (5, 6), (4, 7), alphas)
    for tensor, want in zip((lr_feature, ref_down_feature, ref_feature), expected, strict=True):
        np.testing.assert_allclose(tensor.grad[0].double().numpy(), want, rtol=1e-5, atol=1e-6)


def test_ref_gradient_is_autograd_of_the_swap_in_the_interior() -> None:
    # e2ent2.md §5 test (i): α = (0, 0, 1), error zero on the LR border ring, Ref cells with 9 overlaps
    ref_feature = torch.randn(1, 2, 4 * 6, 4 * 7, requires_grad=True)
    index = torch.randint(0, 42, (1, 6 * 8))
    error = torch.randn(1, 2, 24, 32)
    error[..., :4, :] = error[..., -4:, :] = error[..., :4] = error[..., -4:] = 0
    swap = FeatureSwap(SCALE, (0.0, 0.0, 1.0))
    swap(torch.zeros(1, 2, 6, 8), torch.zeros(1, 2, 6, 7), ref_feature, index).backward(error)
    (reference,) = torch.autograd.grad(_swap_by_unfold_fold(ref_feature, index, (6, 8)), ref_feature, error)
    torch.testing.assert_close(ref_feature.grad[..., 4:-4, 4:-4], reference[..., 4:-4, 4:-4], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ref_feature.grad, reference)  # ... and differs at the borders


@pytest.mark.parametrize("alphas", [(0.25, 0.25, 0.5), (1.0, 0.0, 0.0)])
def test_encoder_feature_gradients_in_the_network_are_eq5(alphas: tuple[float, float, float]) -> None:
    net = _tiny_net(gradient_weights=alphas)
    captured: dict[str, torch.Tensor] = {}

    def before_swap(_: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        for name, tensor in zip(("lr", "ref_down", "ref"), args[:3], strict=True):
            tensor.retain_grad()
            captured[name] = tensor
        captured["index"] = args[3]

    def keep_output(name: str):
        def hook(_: torch.nn.Module, __: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            output.retain_grad()
            captured[name] = output

        return hook

    net.swap.register_forward_pre_hook(before_swap)
    net.swap.register_forward_hook(keep_output("swapped"))
    net.res1.register_forward_hook(keep_output("res1"))
    ref = torch.rand(1, 3, 20, 28)
    sr = net(torch.rand(1, 3, 6, 7), ref, F.avg_pool2d(ref, 4))
    (sr * torch.randn_like(sr)).sum().backward()

    error = captured["swapped"].grad
    want_lr, want_ref_down, want_ref = _eq5_literal(
        error[0].double().numpy(), captured["index"][0].numpy(), (6, 7), (5, 7), alphas
    )
    np.testing.assert_allclose(captured["ref_down"].grad[0].double().numpy(), want_ref_down, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(captured["ref"].grad[0].double().numpy(), want_ref, rtol=1e-5, atol=1e-7)
    # φ(I_in) also feeds Res1: its gradient = α1·E↓ + the ordinary gradient through Res1
    res1_error = captured["res1"].grad
    lr_feature = captured["lr"].detach().requires_grad_(True)
    (through_res1,) = torch.autograd.grad(net.res1(lr_feature), lr_feature, res1_error)
    np.testing.assert_allclose(
        captured["lr"].grad[0].double().numpy(), want_lr + through_res1[0].double().numpy(), rtol=1e-5, atol=1e-7
    )
    assert net.encoder.head.weight.grad is not None and net.encoder.head.weight.grad.abs().sum() > 0


# --- correspondence -----------------------------------------------------------------------------


def test_match_finds_the_true_offset_with_an_identity_encoder() -> None:
    method = e2ent2()
    net = _tiny_net().eval()
    with torch.no_grad():  # φ(x) = x in channels 0-2: the head copies RGB, body and tail add nothing
        for parameter in net.encoder.parameters():
            parameter.zero_()
        for channel in range(3):
            net.encoder.head.weight[channel, channel, 1, 1] = 1.0
    method.module = net
    ref = torch.randint(0, 256, (1, 3, 64, 80)).float() / 255
    lr = pil_bicubic(ref, (16, 20))[:, :, 3:13, 5:17]
    correspondence = method.match(lr, ref)
    assert correspondence.ref_yx.shape == (10, 12, 2) and correspondence.score.shape == (10, 12)
    assert correspondence.ref_yx.dtype == torch.float32
    rows, cols = torch.meshgrid(torch.arange(10), torch.arange(12), indexing="ij")
    truth = torch.stack([4 * (rows + 3), 4 * (cols + 5)], dim=-1).float()
    # interior LR pixels (whose 3x3 patch is not zero-padded) find their exact source block
    assert torch.equal(correspondence.ref_yx[1:-1, 1:-1], truth[1:-1, 1:-1])


# --- cost ---------------------------------------------------------------------------------------


def test_flops_m_is_the_correlation_product() -> None:
    from fvcore.nn import FlopCountAnalysis

    # e2ent2.md §6, benchmark setting (Ref↓ 128², 64-channel features): FLOPS-M 154.62 G, counted on the
    # matcher itself (meta tensors: fvcore needs shapes only)
    features = (torch.empty(1, 64, 128, 128, device="meta"), torch.empty(1, 64, 128, 128, device="meta"))
    benchmark = FlopCountAnalysis(PatchCorrelation(), features).unsupported_ops_warnings(False)
    assert round(benchmark.total() / 1e9, 2) == 154.62
    module, inputs = e2ent2().cost_graph((8, 8), (34, 38))
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 8, 8), (1, 3, 32, 36), (1, 3, 8, 9)]
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    assert analysis.by_module()["correlation"] == (8 * 8) * (8 * 9) * 576
    assert "sisr_tail" not in analysis.by_module() or analysis.by_module()["sisr_tail"] == 0


# --- training objectives ------------------------------------------------------------------------


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
    return -np.log1p(np.exp(-z))


def test_relativistic_losses_follow_eqs_9_and_10() -> None:
    real = np.array([0.3, -1.2, 2.0, 0.1])
    fake = np.array([-0.5, 0.4, -2.2])
    d_real = real - fake.mean()  # logit of D(x_real, x_fake)
    d_fake = fake - real.mean()  # logit of D(x_fake, x_real)
    want_d = -_log_sigmoid(d_real).mean() - np.log(1 - 1 / (1 + np.exp(-d_fake))).mean()
    want_g = -np.log(1 - 1 / (1 + np.exp(-d_real))).mean() - _log_sigmoid(d_fake).mean()
    real_t, fake_t = torch.tensor(real), torch.tensor(fake)
    assert relativistic_discriminator_loss(real_t, fake_t).item() == pytest.approx(want_d, rel=1e-12)
    assert relativistic_generator_loss(real_t, fake_t).item() == pytest.approx(want_g, rel=1e-12)
    equal = torch.zeros(5)
    assert relativistic_discriminator_loss(equal, equal).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert torch.isfinite(relativistic_generator_loss(torch.tensor([500.0]), torch.tensor([-500.0])))


def test_e2ent2_generator_objective() -> None:
    sr, hr = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    real, fake = torch.randn(2, 1, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)
    l1 = np.abs(sr.numpy() - hr.numpy()).mean()
    assert l1_loss(sr, hr).item() == pytest.approx(l1, rel=1e-12)
    want = 1e-2 * l1 + 1e-5 * relativistic_generator_loss(real, fake).item()
    assert e2ent2_generator_loss(sr, hr, real, fake).item() == pytest.approx(want, rel=1e-12)
