"""C²-Matching: official layouts, fidelity against the official fixtures, wrapper conventions, losses.

Fidelity data: ``../shared/fixtures/c2_matching`` (official code, synthetic weights). Oracles for the
losses and the correspondence convention are written out independently below (loops, closed forms).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth import assert_layout_equal, synthetic_state_dict

from methods.base import load_state_dict_strict
from methods.c2_losses import (
    batch_margin_ranking_loss,
    correlation_distillation_loss,
    margin_ranking_loss,
    student_objective,
)
from methods.c2_matching import C2Matching, c2_matching_gan, c2_matching_rec
from methods.registry import create
from protocols.core import UserError
from protocols.resize import pil_bicubic

pytestmark = pytest.mark.usefixtures("one_thread")

# layout file stem -> attribute of the wrapper holding that official network
NETWORKS = {"restoration": "net_g", "extractor": "net_extractor", "vgg_map": "net_map"}
OUTPUT_ATOL = 1e-4  # fixture README: float32 vs float64 of the official code differ by 7.2e-6



@pytest.fixture(scope="module")
def fixture_dir(shared: Path) -> Path:
    return shared / "fixtures" / "c2_matching"


@pytest.fixture(scope="module")
def synthetic_method(fixture_dir: Path) -> C2Matching:
    method = c2_matching_rec()
    for stem, attribute in NETWORKS.items():
        state = synthetic_state_dict(fixture_dir / f"layout_{stem}.tsv", fixture_dir / f"synth_overrides_{stem}.tsv")
        load_state_dict_strict(getattr(method, attribute), state, stem)
    return method


@pytest.fixture(scope="module")
def inputs(fixture_dir: Path) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in np.load(fixture_dir / "inputs.npz").items()}


@pytest.fixture(scope="module")
def official_run(synthetic_method: C2Matching, inputs: dict[str, torch.Tensor]) -> dict[str, object]:
    """One forward of ``module`` on the fixture inputs, with every net_g submodule and net_map hooked."""
    captured: dict[str, object] = {}
    handles = []

    def keep(name: str):
        def hook(module: torch.nn.Module, args: tuple, output: object) -> None:
            captured[name] = output

        return hook

    for name, submodule in synthetic_method.net_g.named_modules():
        if name:
            handles.append(submodule.register_forward_hook(keep(name)))
    handles.append(synthetic_method.net_map.matching.register_forward_hook(keep("matching")))
    handles.append(synthetic_method.net_map.register_forward_hook(keep("net_map")))
    handles.append(synthetic_method.net_extractor.register_forward_hook(keep("net_extractor")))
    try:
        with torch.inference_mode():
            captured["output"] = synthetic_method.module(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def _fixture_tensor(captured: dict[str, object], key: str) -> torch.Tensor:
    """Our tensor for an intermediates.npz key ``<path>#<call>@chA-B``."""
    base, _, channels = key.partition("@")
    path = base.split("#")[0]
    if path.startswith("net_map.img_ref_feat."):
        tensor = captured["net_map"][1][path.rsplit(".", 1)[1]]
    elif path.startswith("net_map.pre_offset."):
        tensor = captured["net_map"][0][path.rsplit(".", 1)[1]]
    elif path.startswith("net_extractor."):
        tensor = captured["net_extractor"][path.rsplit(".", 1)[1]]
    else:
        tensor = captured[path]
    if channels:
        first, last = (int(v) for v in channels[2:].split("-"))
        tensor = tensor[:, first : last + 1]
    return tensor


# --- layouts and sizes ----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(NETWORKS))
def test_layout_equals_state_dict(fixture_dir: Path, stem: str) -> None:
    assert_layout_equal(getattr(c2_matching_rec(), NETWORKS[stem]), fixture_dir / f"layout_{stem}.tsv")


def test_parameter_counts_match_spec() -> None:
    method = c2_matching_gan()

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(method.net_g) == 8_865_547
    assert count(method.net_extractor) == 1_110_656
    assert count(method.net_map) == 555_328  # frozen VGG19; the matching part has no parameters
    assert count(method.net_map.matching) == 0
    restore = method.net_g.dyn_agg_restore
    # per-part numbers of c2_matching.md §5.4
    assert count(method.net_g.content_extractor) == 1_183_488
    assert count(restore.small_dyn_agg) == 1_087_960
    assert count(restore.medium_dyn_agg) == 396_632
    assert count(restore.large_dyn_agg) == 161_560
    assert count(restore.small_offset_conv1) == 737_536
    assert count(restore.tail_large) == 19_331
    assert all(not p.requires_grad for p in method.net_map.vgg.parameters())


# --- fidelity -------------------------------------------------------------------------------------


def test_forward_reproduces_official_output(official_run: dict[str, object], fixture_dir: Path) -> None:
    expected = torch.from_numpy(np.load(fixture_dir / "outputs.npz")["output"])
    output = official_run["output"]
    assert output.shape == expected.shape == (1, 3, 128, 128)
    assert (output - expected).abs().max().item() <= OUTPUT_ATOL


def test_correspondence_indices_equal_official(official_run: dict[str, object], fixture_dir: Path) -> None:
    # The README lists 0 near-ties (< 1e-5) for case a, so every index must be equal.
    intermediates = np.load(fixture_dir / "intermediates.npz")
    max_idx, max_val = official_run["matching"]
    assert torch.equal(max_idx[0], torch.from_numpy(intermediates["net_map.max_idx"]))
    # max_val is a float32 cosine in [-1, 1]; the fixture README ("Numerical reference and tolerances") promises
    # exact indices and suggests atol 1e-4 on float values -- nothing tighter (a fresh machine measured 2.36e-5).
    assert (max_val[0] - torch.from_numpy(intermediates["net_map.max_val"])).abs().max().item() <= 1e-4
    for layer in ("relu3_1", "relu2_1", "relu1_1"):
        expected = torch.from_numpy(intermediates[f"net_map.pre_offset.{layer}"])
        assert torch.equal(official_run["net_map"][0][layer], expected), layer


def _intermediate_keys() -> list[str]:
    from conftest import shared_root

    root = shared_root()
    if root is None:
        return ["(shared missing)"]
    keys = np.load(root / "fixtures" / "c2_matching" / "intermediates.npz").files
    return [k for k in keys if not k.startswith(("net_map.max_", "net_map.pre_offset"))]


@pytest.mark.parametrize("key", _intermediate_keys())
def test_intermediates_match_official(official_run: dict[str, object], fixture_dir: Path, key: str) -> None:
    expected = torch.from_numpy(np.load(fixture_dir / "intermediates.npz")[key])
    ours = _fixture_tensor(official_run, key)
    assert ours.shape == expected.shape
    tolerance = 1e-4 * max(1.0, expected.abs().max().item())
    assert (ours - expected).abs().max().item() <= tolerance


def test_predict_reproduces_official_output(
    synthetic_method: C2Matching, inputs: dict[str, torch.Tensor], fixture_dir: Path
) -> None:
    # The wrapper makes LR↑ itself with Pillow; it must be the loader's img_in_up for this to be a test.
    assert torch.equal(pil_bicubic(inputs["img_in_lq"], (128, 128)), inputs["img_in_up"])
    expected = torch.from_numpy(np.load(fixture_dir / "outputs.npz")["output"])
    sr = synthetic_method.predict(inputs["img_in_lq"], inputs["img_ref"])
    assert sr.shape == (1, 3, 128, 128)
    assert (sr - expected).abs().max().item() <= OUTPUT_ATOL


def test_match_follows_official_indices(
    synthetic_method: C2Matching, inputs: dict[str, torch.Tensor], fixture_dir: Path
) -> None:
    max_idx = np.load(fixture_dir / "intermediates.npz")["net_map.max_idx"]
    correspondence = synthetic_method.match(inputs["img_in_lq"], inputs["img_ref"])
    assert correspondence.ref_yx.shape == (32, 32, 2) and correspondence.score.shape == (32, 32)
    grid = max_idx.shape[1]
    expected = np.zeros((32, 32, 2), dtype=np.float32)
    for i in range(32):
        for j in range(32):
            top, left = min(max(i - 1, 0), 29), min(max(j - 1, 0), 29)  # patch centred at (i, j), or nearest
            index = int(max_idx[top, left])
            expected[i, j] = (4 * (index // grid + i - top), 4 * (index % grid + j - left))
    assert np.array_equal(correspondence.ref_yx.numpy(), expected)


def test_match_recovers_known_translation() -> None:
    """Same weights in both branches, Ref = LR↑ moved by 8 HR pixels: interior pixels match p - 8."""
    method = c2_matching_rec()
    method.net_extractor.feature_extraction_image2.load_state_dict(
        method.net_extractor.feature_extraction_image1.state_dict()
    )
    generator = torch.Generator().manual_seed(3)
    lr = torch.randint(0, 256, (1, 3, 20, 20), generator=generator).float() / 255
    up = pil_bicubic(lr, (80, 80))
    ref = F.pad(up[:, :, 8:, 8:], (0, 8, 0, 8))  # ref pixel (y, x) shows LR↑ pixel (y + 8, x + 8)
    same = method.match(lr, up)
    rows, cols = torch.meshgrid(torch.arange(20.0), torch.arange(20.0), indexing="ij")
    identity = torch.stack((rows, cols), dim=-1) * 4
    assert torch.equal(same.ref_yx, identity)
    assert torch.allclose(same.score[1:-1, 1:-1], torch.ones(18, 18), atol=1e-4)
    shifted = method.match(lr, ref)
    # Ref patches touching the Ref's border or its zero band see padded convolutions: keep away from both.
    interior = (slice(5, 16), slice(5, 16))
    assert torch.equal(shifted.ref_yx[interior], identity[interior] - 8)


# --- wrapper conventions --------------------------------------------------------------------------


def _random_image(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, 3, height, width), generator=generator).float() / 255


@pytest.fixture(scope="module")
def random_method() -> C2Matching:
    return c2_matching_rec()


@pytest.mark.parametrize("ref_hw", [(23, 30), (41, 50), (28, 20)])
def test_predict_default_policy_crops_or_pads_ref_to_hr(random_method: C2Matching, ref_hw: tuple[int, int]) -> None:
    lr, ref = _random_image(7, 5, 1), _random_image(*ref_hw, 2)
    sr = random_method.predict(lr, ref)
    assert sr.shape == (1, 3, 28, 20)
    # independent construction: mod-crop the Ref, then crop / zero-pad it bottom-right to 28 x 20
    modcropped = ref[:, :, : ref_hw[0] // 4 * 4, : ref_hw[1] // 4 * 4]
    fitted = torch.zeros(1, 3, 28, 20)
    h, w = min(28, modcropped.shape[2]), min(20, modcropped.shape[3])
    fitted[:, :, :h, :w] = modcropped[:, :, :h, :w]
    with torch.inference_mode():
        expected = random_method.module(lr, pil_bicubic(lr, (28, 20)), fitted)
    assert torch.equal(sr, expected)


def test_predict_zero_pad_to_common_pads_lr_and_ref() -> None:
    method = c2_matching_rec()
    method.ref_policy = "zero_pad_to_common"
    lr, ref = _random_image(6, 5, 3), _random_image(31, 18, 4)  # Ref mod-crop 28 x 16; HR 24 x 20
    sr = method.predict(lr, ref)
    assert sr.shape == (1, 3, 24, 20)
    lr_padded = torch.zeros(1, 3, 7, 5)  # common HR size 28 x 20 -> LR 7 x 5
    lr_padded[:, :, :6, :5] = lr
    ref_padded = torch.zeros(1, 3, 28, 20)
    ref_padded[:, :, :28, :16] = ref[:, :, :28, :16]
    with torch.inference_mode():
        expected = method.module(lr_padded, pil_bicubic(lr_padded, (28, 20)), ref_padded)[:, :, :24, :20]
    assert torch.equal(sr, expected)


def test_user_errors(random_method: C2Matching) -> None:
    with pytest.raises(UserError, match="scale 4"):
        c2_matching_rec(scale=2)
    with pytest.raises(UserError, match="reference"):
        random_method.predict(_random_image(8, 8, 0))
    with pytest.raises(UserError, match="3x3"):
        random_method.predict(_random_image(2, 8, 0), _random_image(8, 32, 0))
    with pytest.raises(UserError, match="crop_or_pad_to_hr"):
        C2Matching(random_method.info, ref_policy="stretch")
    with pytest.raises(UserError, match="4x the LR size"):
        random_method.module(_random_image(8, 8, 0), _random_image(32, 32, 0), _random_image(36, 32, 0))


def test_registry_and_info() -> None:
    method = create("c2_matching")
    assert method.info.name == "c2_matching_rec" and method.info.variant == "rec"
    assert create("c2_matching_gan").info.weights[0].file_name == "c2_matching_restoration.pth"
    assert method.info.weights[0].file_name == "c2_matching_restoration_mse.pth"
    for path in method.info.parts.values():
        method.module.get_submodule(path)  # raises if the path is wrong
    assert not list(method.module.get_submodule(method.info.parts["matching"]).parameters())
    assert not method.weights_loaded


# --- checkpoints ----------------------------------------------------------------------------------


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) for k, v in module.state_dict().items()}


def test_load_weights_from_official_folder(tmp_path: Path) -> None:
    method = c2_matching_rec()
    restoration = _random_state(method.net_g, 1)
    extractor = _random_state(method.net_extractor, 2)
    vgg_names = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")
    vgg_trunk = _random_state(method.net_map.vgg.vgg_net, 3)
    torchvision_vgg = {
        f"features.{index}.{kind}": vgg_trunk[f"{name}.{kind}"]
        for name, index in zip(vgg_names, (0, 2, 5, 7, 10), strict=True)
        for kind in ("weight", "bias")
    }
    torchvision_vgg["classifier.6.bias"] = torch.zeros(1000)  # unused by C², must be ignored
    torch.save({f"module.{k}": v for k, v in restoration.items()}, tmp_path / "c2_matching_restoration_mse.pth")
    torch.save({"params": extractor}, tmp_path / "feature_extraction.pth")
    torch.save(torchvision_vgg, tmp_path / "vgg19-dcbb9e9d.pth")
    method.load_weights(tmp_path)
    assert method.weights_loaded
    for ours, theirs in (
        (method.net_g.state_dict(), restoration),
        (method.net_extractor.state_dict(), extractor),
        (method.net_map.vgg.vgg_net.state_dict(), vgg_trunk),
    ):
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)

    gan = c2_matching_gan()
    with pytest.raises(UserError, match="c2_matching_restoration.pth"):
        gan.load_weights(tmp_path)  # the GAN variant needs its own restoration file
    gan.load_weights(tmp_path / "feature_extraction.pth")  # a single file is recognised by its keys
    assert torch.equal(
        gan.net_extractor.state_dict()["feature_extraction_image2.mean"], extractor["feature_extraction_image2.mean"]
    )
    assert not gan.weights_loaded


def test_load_weights_reports_bad_keys(tmp_path: Path) -> None:
    method = c2_matching_rec()
    state = _random_state(method.net_g, 0)
    state["content_extractor.conv_last.weight"] = state.pop("content_extractor.conv_first.weight")
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="conv_first.weight") as error:
        method.load_weights(tmp_path / "bad.pth")
    assert "unexpected keys" in str(error.value) and "missing keys" in str(error.value)
    with pytest.raises(UserError, match="not found"):
        method.load_weights(tmp_path / "nothing.pth")


# --- cost -----------------------------------------------------------------------------------------


def test_cost_graph_sizes_and_matching_macs(random_method: C2Matching) -> None:
    from fvcore.nn import FlopCountAnalysis

    module, example = random_method.cost_graph((8, 8), (32, 32))
    assert [tuple(t.shape) for t in example] == [(1, 3, 8, 8), (1, 3, 32, 32), (1, 3, 32, 32)]
    analysis = FlopCountAnalysis(module, example)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    # correlation: 6x6 positions x 36 Ref patches x (256 channels x 3 x 3) MACs
    assert analysis.by_module()[random_method.info.parts["matching"]] == 6 * 6 * 36 * 256 * 9

    method = c2_matching_rec()
    method.ref_policy = "zero_pad_to_common"
    _, example = method.cost_graph((8, 8), (43, 30))
    assert [tuple(t.shape) for t in example] == [(1, 3, 10, 8), (1, 3, 40, 32), (1, 3, 40, 32)]


# --- GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_output_matches_cpu(fixture_dir: Path, inputs: dict[str, torch.Tensor]) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    outputs = {}
    for device in ("cpu", "cuda"):
        method = c2_matching_rec(device=device)
        for stem, attribute in NETWORKS.items():
            state = synthetic_state_dict(
                fixture_dir / f"layout_{stem}.tsv", fixture_dir / f"synth_overrides_{stem}.tsv"
            )
            load_state_dict_strict(getattr(method, attribute), state, stem)
        outputs[device] = method.predict(inputs["img_in_lq"], inputs["img_ref"]).cpu()
    assert (outputs["cpu"] - outputs["cuda"]).abs().max().item() <= 1e-4


# --- training objectives --------------------------------------------------------------------------


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _margin_oracle(desc1, desc2, pos1, pos2, margin, radius) -> float:
    """Loops over the definition in c2_matching.md §9.1, float64 numpy."""
    height1, width1 = desc1.shape[1:]
    total = 0.0
    for a in range(len(pos1)):
        f_p = _unit(desc1[:, pos1[a][0], pos1[a][1]])
        f_q = _unit(desc2[:, pos2[a][0], pos2[a][1]])
        positive = float(np.sum((f_p - f_q) ** 2))
        negative = math.inf
        for b in range(len(pos2)):
            if max(abs(pos2[b][0] - pos2[a][0]), abs(pos2[b][1] - pos2[a][1])) > radius:
                negative = min(negative, float(np.sum((f_p - _unit(desc2[:, pos2[b][0], pos2[b][1]])) ** 2)))
        for y in range(height1):
            for x in range(width1):
                if max(abs(y - pos1[a][0]), abs(x - pos1[a][1])) > radius:
                    negative = min(negative, float(np.sum((f_q - _unit(desc1[:, y, x])) ** 2)))
        total += max(0.0, margin + positive - negative)
    return total / len(pos1)


@pytest.mark.parametrize(("radius", "margin", "grid"), [(1, 1.0, 6), (4, 1.0, 11), (2, 0.3, 7)])
def test_margin_ranking_loss_matches_loop_oracle(radius: int, margin: float, grid: int) -> None:
    generator = torch.Generator().manual_seed(radius)
    desc1 = torch.randn(4, grid, grid, generator=generator, dtype=torch.float64)
    desc2 = torch.randn(4, grid + 1, grid - 1, generator=generator, dtype=torch.float64)
    pos1 = torch.tensor([[0, 0], [1, 3], [2, 2], [grid - 1, grid - 2], [3, 1], [grid - 2, 0]])
    pos2 = torch.tensor([[1, 0], [0, 3], [3, 2], [grid, grid - 3], [4, 1], [grid - 1, 1]])
    loss = margin_ranking_loss(desc1, desc2, pos1, pos2, margin=margin, safe_radius=radius)
    expected = _margin_oracle(desc1.numpy(), desc2.numpy(), pos1.tolist(), pos2.tolist(), margin, radius)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected > 0  # the case exercises the hinge


def test_margin_loss_defaults_and_safe_radius() -> None:
    # Image 1 holds one descriptor equal to the target's, one pixel away from p: inside T = 4 it is not a
    # negative (loss 0 with perfect positives), outside T = 0 it is the hardest negative (loss = margin).
    desc1 = torch.zeros(2, 12, 12, dtype=torch.float64)
    desc1[0] = 1.0
    desc1[:, 5, 5] = torch.tensor([0.0, 1.0])
    desc1[:, 5, 6] = torch.tensor([0.0, 1.0])
    desc2 = torch.zeros(2, 12, 12, dtype=torch.float64)
    desc2[0] = 1.0
    desc2[:, 5, 5] = torch.tensor([0.0, 1.0])
    pos = torch.tensor([[5, 5]])
    assert margin_ranking_loss(desc1, desc2, pos, pos).item() == pytest.approx(0.0)
    assert margin_ranking_loss(desc1, desc2, pos, pos, safe_radius=0).item() == pytest.approx(1.0)


def test_batch_margin_loss_skips_images_with_few_correspondences() -> None:
    generator = torch.Generator().manual_seed(7)
    desc1 = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    desc2 = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    many = (torch.tensor([[0, 0], [2, 3], [5, 5]]), torch.tensor([[1, 1], [2, 2], [4, 5]]))
    few = (torch.tensor([[1, 1]]), torch.tensor([[1, 1]]))
    loss, used = batch_margin_ranking_loss(desc1, desc2, [few, many], safe_radius=1, min_correspondences=2)
    assert used == 1
    expected = _margin_oracle(desc1[1].numpy(), desc2[1].numpy(), many[0].tolist(), many[1].tolist(), 1.0, 1)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    none, used = batch_margin_ranking_loss(desc1, desc2, [few, few], min_correspondences=2)
    assert used == 0 and none.item() == 0.0


def test_correlation_distillation_matches_oracle() -> None:
    generator = torch.Generator().manual_seed(11)
    student1, student2, teacher1, teacher2 = (
        torch.randn(5, 3, generator=generator, dtype=torch.float64) for _ in range(4)
    )
    loss = correlation_distillation_loss(student1, student2, teacher1, teacher2)

    def distribution(first: torch.Tensor, second: torch.Tensor, p: int) -> list[float]:
        logits = [float(_unit(first[p].numpy()) @ _unit(second[q].numpy())) / 0.15 for q in range(5)]
        denominator = sum(math.exp(v) for v in logits)
        return [math.exp(v) / denominator for v in logits]

    expected = 0.0
    for p in range(5):
        teacher = distribution(teacher1, teacher2, p)
        student = distribution(student1, student2, p)
        expected += sum(t * math.log(t / s) for t, s in zip(teacher, student, strict=True))
    expected /= 5
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert correlation_distillation_loss(teacher1, teacher2, teacher1, teacher2).item() == pytest.approx(0.0, abs=1e-12)
    assert student_objective(torch.tensor(1.0), torch.tensor(2.0)).item() == pytest.approx(31.0)
