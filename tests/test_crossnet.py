"""CrossNet (official MultiscaleWarpingNet): layout, parameter count, fidelity against
``../shared/fixtures/crossnet`` (tolerances from its README: atol 1e-4 on output and flows), the
wrapper's padding / Ref fitting, and the flow-to-correspondence conversion."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import skip_unless_ci
from synth import assert_layout_equal, synthetic_state_dict

from methods.crossnet import BackwardWarp, MultiscaleWarpingNet, UNetDecoder2, crossnet
from methods.registry import create
from protocols.core import UserError
from protocols.resize import pil_bicubic

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-4  # fixture README: float32 vs float64 of the official code differ by ≤ 1.3e-5



def fixture_dir(shared: Path) -> Path:
    return shared / "fixtures" / "crossnet"


def load_npz(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path) as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


@pytest.fixture(scope="module")
def synthetic_state(shared: Path) -> dict[str, torch.Tensor]:
    """The fixture's synthetic weights (35M numbers; made once, never modified by the tests)."""
    return synthetic_state_dict(fixture_dir(shared) / "layout.tsv", fixture_dir(shared) / "synth_overrides.tsv")


def select(caught: dict[str, object], fixture_key: str) -> torch.Tensor:
    """The captured tensor a fixture key ``<path>#<call>[.<element>][@chA-B]`` names."""
    name, _, channels = fixture_key.partition("@")
    path, _, rest = name.partition("#")
    call, _, element = rest.partition(".")
    value = caught[f"{path}#{call}"]
    if element:
        value = value[element] if isinstance(value, dict) else value[int(element)]  # type: ignore[index]
    assert isinstance(value, torch.Tensor)
    if channels:
        first, last = (int(c) for c in channels[2:].split("-"))
        value = value[:, first : last + 1]
    return value


def test_layout_and_parameter_counts(shared: Path) -> None:
    net = MultiscaleWarpingNet()
    assert_layout_equal(net, fixture_dir(shared) / "layout.tsv")

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(net) == 35_183_841  # MASA Table 2's 35.18M
    assert count(net.FlowNet) == 33_830_110
    assert count(net.Encoder) == 414_720
    assert count(net.UNet_decoder_2) == 939_011
    assert count(net.UNet_decoder_2.post_fusion2) == 102_464
    assert count(net.Backward_warp) == 0


def test_synthetic_weights_are_the_fixtures(synthetic_state: dict[str, torch.Tensor]) -> None:
    digest = hashlib.sha256(b"".join(v.numpy().astype("<f4").tobytes() for v in synthetic_state.values()))
    assert digest.hexdigest() == "c4c3e923e408f3e800bcaaf648b642fa62cf44d991e511d2af9551c4065dc7ce"


def test_forward_matches_official_outputs_and_intermediates(
    shared: Path, synthetic_state: dict[str, torch.Tensor]
) -> None:
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    expected = load_npz(fixture_dir(shared) / "outputs.npz")["output"]
    intermediates = load_npz(fixture_dir(shared) / "intermediates.npz")
    net = MultiscaleWarpingNet().eval()
    net.load_state_dict(synthetic_state, strict=True)
    caught: dict[str, object] = {}
    for name, sub in net.named_modules():
        if name:

            def hook(_m: torch.nn.Module, _i: object, out: object, name: str = name) -> None:
                calls = sum(1 for key in caught if key.split("#")[0] == name)
                caught[f"{name}#{calls}"] = out

            sub.register_forward_hook(hook)
    with torch.no_grad():
        output = net(**inputs)  # the official buff keys, including the unused input_img1_HR
    assert output.shape == (1, 3, 128, 128)
    assert (output - expected).abs().max() <= ATOL
    assert len(intermediates) == 18
    for key, value in intermediates.items():
        got = select(caught, key)
        assert got.shape == value.shape, key
        assert (got - value).abs().max() <= ATOL, key
    # post_fusion2 ran (the official dead branch costs MACs) ...
    assert "UNet_decoder_2.post_fusion2#0" in caught


def test_post_fusion2_is_dead() -> None:
    """... and its weights cannot change the output: ``final`` reads post_fusion1."""
    decoder = UNetDecoder2().eval()
    generator = torch.Generator().manual_seed(3)
    levels = [torch.rand(1, 64, 16 >> k, 16 >> k, generator=generator) for k in range(4)]
    with torch.no_grad():
        before = decoder(*levels, *levels)
        dead_conv = decoder.post_fusion2[0]
        assert isinstance(dead_conv, torch.nn.Conv2d)
        dead_conv.weight.mul_(-7.0).add_(1.0)
        after = decoder(*levels, *levels)
    assert torch.equal(before, after)


def test_backward_warp_against_independent_oracles() -> None:
    generator = torch.Generator().manual_seed(4)
    feature = torch.rand(1, 3, 9, 11, generator=generator)
    warp = BackwardWarp()
    # Integer flow (+2 px in x, −1 px in y): a shifted copy with the border row/column replicated.
    flow = torch.zeros(1, 2, 9, 11)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    rows = (torch.arange(9) - 1).clamp(0, 8)
    cols = (torch.arange(11) + 2).clamp(0, 10)
    assert torch.equal(warp(feature, flow), feature[:, :, rows][:, :, :, cols])
    # Sub-pixel flow: grid_sample with border padding on align-corners coordinates.
    flow = 3 * (torch.rand(1, 2, 9, 11, generator=generator) - 0.5)
    x = (torch.arange(11).view(1, 1, 11) + flow[:, 0]).clamp(0, 10) / 10 * 2 - 1
    y = (torch.arange(9).view(1, 9, 1) + flow[:, 1]).clamp(0, 8) / 8 * 2 - 1
    oracle = F.grid_sample(feature, torch.stack([x, y], dim=-1), align_corners=True, padding_mode="border")
    assert torch.allclose(warp(feature, flow), oracle, atol=1e-5)


class _RecordingNet(torch.nn.Module):
    """Stands in for the network: records its inputs and returns a recognisable image."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, lr_up: torch.Tensor, sr: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        self.seen = [lr_up, sr, ref]
        return lr_up + 1.0


def test_predict_prepares_the_official_inputs(shared: Path) -> None:
    """LR↑ = PIL bicubic (the fixture's input_img1_LR), SR from the constructor's upsampler, Ref as given."""
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    lr = pil_bicubic(inputs["input_img1_HR"], (32, 32))
    if not torch.equal(pil_bicubic(lr, (128, 128)), inputs["input_img1_LR"]):
        skip_unless_ci("this Pillow's bicubic differs from the fixture's (Pillow 13.0.0)")
    calls: list[tuple[int, int]] = []

    def lanczos_stand_in(image: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
        calls.append(size_hw)
        return inputs["input_img1_SR"]

    method = crossnet(sisr_upsampler=lanczos_stand_in)
    recorder = _RecordingNet()
    method.module = recorder  # type: ignore[assignment]
    sr = method.predict(lr, inputs["input_img2_HR"])
    assert calls == [(128, 128)]
    for seen, key in zip(recorder.seen, ("input_img1_LR", "input_img1_SR", "input_img2_HR"), strict=True):
        assert torch.equal(seen, inputs[key]), key
    assert torch.equal(sr, inputs["input_img1_LR"] + 1.0)


def test_predict_pads_and_fits_the_ref() -> None:
    """HR 52×36 -> padded to 64×64 (replicate); Ref 47×29 zero-padded to 52×36 first; output cropped."""
    generator = torch.Generator().manual_seed(5)
    lr = torch.rand(1, 3, 13, 9, generator=generator)
    ref = torch.rand(1, 3, 47, 29, generator=generator)
    method = crossnet()
    recorder = _RecordingNet()
    method.module = recorder  # type: ignore[assignment]
    sr = method.predict(lr, ref)
    lr_up, sr_in, ref_in = recorder.seen
    assert sr.shape == (1, 3, 52, 36) and ref_in.shape == (1, 3, 64, 64)
    assert torch.equal(sr_in, lr_up)  # default SISR stand-in: the same PIL bicubic
    assert torch.equal(lr_up[:, :, 52:, :36], lr_up[:, :, 51:52, :36].expand(-1, -1, 12, -1))
    assert torch.equal(ref_in[:, :, :47, :29], ref)
    assert ref_in[:, :, 47:52, :36].abs().max() == 0 and ref_in[:, :, :52, 29:36].abs().max() == 0
    assert torch.equal(ref_in[:, :, :, 36:], ref_in[:, :, :, 35:36].expand(-1, -1, -1, 28))


@pytest.mark.parametrize("scale, lr_hw", [(4, (13, 9)), (8, (7, 5))])
def test_predict_returns_exact_size(scale: int, lr_hw: tuple[int, int]) -> None:
    """Untrained weights (plumbing only), the real network on odd sizes."""
    generator = torch.Generator().manual_seed(6)
    lr = torch.rand(1, 3, *lr_hw, generator=generator)
    ref = torch.rand(1, 3, 61, 70, generator=generator)  # larger than the HR: cropped
    sr = crossnet(scale=scale).predict(lr, ref)
    assert sr.shape == (1, 3, scale * lr_hw[0], scale * lr_hw[1]) and torch.isfinite(sr).all()


def test_match_converts_the_flow() -> None:
    """A constant full-resolution flow (x +3.5, y −2.25) gives ref = (s·i − 2.25, s·j + 3.5), clamped."""
    method = crossnet()
    head = method.module.FlowNet.flow_12[0]
    assert isinstance(head, torch.nn.Conv2d) and head.bias is not None
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([3.5, -2.25]))
    generator = torch.Generator().manual_seed(7)
    lr = torch.rand(1, 3, 5, 6, generator=generator)
    ref = torch.rand(1, 3, 20, 22, generator=generator)
    correspondence = method.match(lr, ref)
    want_y = (4.0 * torch.arange(5) - 2.25).clamp(0, 19)
    want_x = (4.0 * torch.arange(6) + 3.5).clamp(0, 21)
    assert torch.equal(correspondence.ref_yx[..., 0], want_y[:, None].expand(5, 6))
    assert torch.equal(correspondence.ref_yx[..., 1], want_x[None, :].expand(5, 6))
    assert correspondence.score.shape == (5, 6)


def test_modes_and_size_errors() -> None:
    net = MultiscaleWarpingNet()
    image = torch.rand(1, 3, 64, 64)
    with pytest.raises(UserError, match="unknown CrossNet mode"):
        net(image, image, image, mode="bogus")
    with pytest.raises(UserError, match="input_img1_HR"):
        net(image, image, image, mode="input_img1_HR")
    odd = torch.rand(1, 3, 64, 96 + 8)
    with pytest.raises(UserError, match="multiples of 64"):
        net(odd, odd, odd)


def test_factory_registry_and_cost_graph() -> None:
    method = create("crossnet", scale=4)
    assert dict(method.info.parts) == {"alignment": "FlowNet", "encoder": "Encoder", "decoder": "UNet_decoder_2"}
    with pytest.raises(UserError, match="scales"):
        crossnet(scale=3)
    module, inputs = method.cost_graph((16, 9), (64, 64))
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 64, 64)] * 3
    for path in method.info.parts.values():
        module.get_submodule(path)


def test_load_weights(synthetic_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    torch.save(synthetic_state, tmp_path / "CP150000.pth")
    method = crossnet()
    method.load_weights(tmp_path)
    assert method.weights_loaded
    got = method.module.state_dict()
    assert all(torch.equal(got[key], value) for key, value in synthetic_state.items())
    partial = {"FlowNet.conv1.0.weight": synthetic_state["FlowNet.conv1.0.weight"], "FlowNet.extra": torch.zeros(1)}
    torch.save(partial, tmp_path / "CP1.pth")
    with pytest.raises(UserError, match="missing keys \\(83\\)") as error:
        crossnet().load_weights(tmp_path / "CP1.pth")
    assert "unexpected keys (1): FlowNet.extra" in str(error.value)
    with pytest.raises(UserError, match="exactly one"):
        crossnet().load_weights(tmp_path)
