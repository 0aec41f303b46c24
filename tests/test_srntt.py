"""SRNTT (srntt-pytorch port): layouts, parameter counts, and fidelity against ``../shared/fixtures/srntt``.

The fixture was produced by the port itself with deterministic synthetic weights; see its README for the
tolerances used here (index map exact, outputs atol 5e-5).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import skip_unless_ci
from synth import assert_layout_equal, read_layout, synthetic_state_dict

from methods.registry import create
from methods.srntt import (
    DEFAULT_CHUNK_ELEMENTS,
    SRNTT,
    VGG,
    PatchCorrelation,
    SRNTTPipeline,
    kernels_per_chunk,
    srntt,
    srntt_rec,
    vgg_state_from_checkpoint,
)
from protocols.core import UserError
from protocols.resize import pil_bicubic

pytestmark = pytest.mark.usefixtures("one_thread")

OUTPUT_ATOL = 5e-5  # fixture README: float32 vs float64 of the port differ by ≤ 2.3e-6
FEATURE_ATOL = 1e-4  # VGG maps reach ~10²; float32 rounding of the port itself



def fixture_dir(shared: Path) -> Path:
    return shared / "fixtures" / "srntt"


def load_npz(path: Path) -> dict[str, torch.Tensor]:
    with np.load(path) as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


def require_fixture_pillow(inputs: dict[str, torch.Tensor]) -> None:
    """predict/match make LR↑ and Ref↓↑ with PIL themselves; that must give the fixture's exact images."""
    if not torch.equal(pil_bicubic(inputs["x"], (128, 128)), inputs["img_in_up"]):
        skip_unless_ci("this Pillow's bicubic differs from the fixture's (Pillow 13.0.0)")


def generator_state(shared: Path, use_weights: bool) -> dict[str, torch.Tensor]:
    layout = "layout_use_weights.tsv" if use_weights else "layout.tsv"
    return synthetic_state_dict(fixture_dir(shared) / layout, fixture_dir(shared) / "synth_overrides.tsv")


@pytest.fixture(scope="module")
def vgg_synthetic(shared: Path) -> dict[str, torch.Tensor]:
    """The fixture's synthetic VGG state (20M numbers; made once, never modified by the tests)."""
    return synthetic_state_dict(fixture_dir(shared) / "layout_vgg.tsv", fixture_dir(shared) / "synth_overrides_vgg.tsv")


def capture(module: torch.nn.Module) -> tuple[dict[str, Any], list[torch.utils.hooks.RemovableHandle]]:
    """Forward hooks storing every submodule's output under ``<path>#<call index>`` (fixture key style)."""
    caught: dict[str, Any] = {}
    handles = []
    for name, sub in module.named_modules():
        if not name:
            continue

        def hook(_m: torch.nn.Module, _i: object, out: object, name: str = name) -> None:
            calls = sum(1 for key in caught if key.split("#")[0] == name)
            caught[f"{name}#{calls}"] = out

        handles.append(sub.register_forward_hook(hook))
    return caught, handles


def select(caught: dict[str, Any], fixture_key: str) -> torch.Tensor:
    """The captured tensor a fixture key ``<path>#<call>[.<element>][@chA-B]`` names."""
    name, _, channels = fixture_key.partition("@")
    path, _, rest = name.partition("#")
    call, _, element = rest.partition(".")
    value = caught[f"{path}#{call}"]
    if element:
        value = value[element] if isinstance(value, dict) else value[int(element)]
    assert isinstance(value, torch.Tensor)
    if channels:
        first, last = (int(c) for c in channels[2:].split("-"))
        value = value[:, first : last + 1]
    return value


class PipelineRun(NamedTuple):
    outputs: tuple[torch.Tensor, torch.Tensor]
    caught: dict[str, Any]
    inputs: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def pipeline_run(shared: Path, vgg_synthetic: dict[str, torch.Tensor]) -> PipelineRun:
    """One run of the use_weights=False pipeline on the fixture inputs, chunked into many small pieces."""
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    # 900 positions × 250 kernels per chunk: 4 chunks whose borders do not fall on patch-row borders.
    module = SRNTTPipeline(use_weights=False, chunk_elements=900 * 250).eval()
    state = {**generator_state(shared, False), **{f"vgg.{k}": v for k, v in vgg_synthetic.items()}}
    module.load_state_dict(state, strict=True)
    caught, handles = capture(module)
    with torch.no_grad():
        outputs = module(inputs["x"], inputs["img_in_up"], inputs["ref"], inputs["ref_blur"])
    for handle in handles:
        handle.remove()
    return PipelineRun(outputs, caught, inputs)


def test_generator_layouts_match_port(shared: Path) -> None:
    assert_layout_equal(SRNTT(use_weights=False), fixture_dir(shared) / "layout.tsv")
    assert_layout_equal(SRNTT(use_weights=True), fixture_dir(shared) / "layout_use_weights.tsv")
    assert_layout_equal(VGG(), fixture_dir(shared) / "layout_vgg.tsv")
    # The pipeline's state is the generator checkpoint plus the VGG under ``vgg.``, nothing else.
    keys = set(SRNTTPipeline().state_dict())
    expected = {k for k, _, _ in read_layout(fixture_dir(shared) / "layout.tsv")}
    expected |= {f"vgg.{k}" for k, _, _ in read_layout(fixture_dir(shared) / "layout_vgg.tsv")}
    assert keys == expected


def test_parameter_counts() -> None:
    def count(module: torch.nn.Module, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

    generator = SRNTT()
    assert count(generator) == 5_746_246  # MASA Table 2's 5.75M
    assert count(generator.content_extractor) == 1_517_571
    assert count(generator.texture_transfer) == 4_228_675
    assert count(SRNTT(use_weights=True)) == 5_746_252
    pipeline = SRNTTPipeline()
    assert count(pipeline, trainable_only=True) == 5_746_246  # frozen VGG excluded
    assert count(pipeline.vgg) == 20_024_384
    assert count(pipeline.swapper) == 0


def test_synthetic_weights_are_the_fixtures(shared: Path) -> None:
    """The synthetic state equals the one the fixture was made with (README checksums, layout order)."""
    checks = {
        "layout.tsv": "0799c9507fc50b022218c7dd71dc3884da0af92ec7c51fcce8d6c795c1dab4cf",
        "layout_use_weights.tsv": "3179ff9dde5daf4fe6f46dbb4f9ad8a5891da2adb8c50abb560e8acf7a634fdf",
    }
    for layout, sha in checks.items():
        state = synthetic_state_dict(fixture_dir(shared) / layout, fixture_dir(shared) / "synth_overrides.tsv")
        digest = hashlib.sha256(b"".join(v.numpy().astype("<f4").tobytes() for v in state.values()))
        assert digest.hexdigest() == sha, layout


def test_pipeline_outputs_match_port(pipeline_run: PipelineRun, shared: Path) -> None:
    expected = load_npz(fixture_dir(shared) / "outputs.npz")
    upscale_plain, upscale_srntt = pipeline_run.outputs
    assert upscale_srntt.shape == (1, 3, 128, 128)
    assert (upscale_plain - expected["upscale_plain"]).abs().max() <= OUTPUT_ATOL
    assert (upscale_srntt - expected["upscale_srntt"]).abs().max() <= OUTPUT_ATOL


def test_matching_and_swap_match_port(pipeline_run: PipelineRun, shared: Path) -> None:
    """Chunked correlation gives the port's index map exactly; swapped maps equal the port's maps."""
    intermediates = load_npz(fixture_dir(shared) / "intermediates.npz")
    inputs, caught = pipeline_run.inputs, pipeline_run.caught
    max_idx, max_val, weights = caught["swapper.correlation#0"]
    assert weights is None  # use_weights=False: the weight product is skipped
    assert torch.equal(max_idx, intermediates["swapper.max_idx"])
    assert torch.allclose(max_val, intermediates["swapper.max_val"], rtol=0, atol=FEATURE_ATOL)
    maps, _ = caught["swapper#0"]
    for layer in ("relu3_1", "relu2_1", "relu1_1"):
        assert (maps[layer] - inputs[f"maps.{layer}"]).abs().max() <= FEATURE_ATOL, layer


def test_intermediates_match_port(pipeline_run: PipelineRun, shared: Path) -> None:
    intermediates = load_npz(fixture_dir(shared) / "intermediates.npz")
    caught = pipeline_run.caught
    # The VGG runs on img_in_up (call 0), ref (call 1) and ref_blur (call 2).
    vgg_call = {"img_in_up": 0, "ref": 1, "ref_blur": 2}
    compared = 0
    for key, value in intermediates.items():
        if key.startswith("swapper."):
            continue
        if key.startswith("vgg("):
            image, _, rest = key[len("vgg(") :].partition(").")
            layer, _, channels = rest.partition("@")
            got = select(caught, f"vgg#{vgg_call[image]}.{layer}@{channels}")
        else:
            got = select(caught, key)
        assert got.shape == value.shape, key
        assert (got - value).abs().max() <= FEATURE_ATOL, key
        compared += 1
    assert compared == 11


def test_load_weights_predict_use_weights_matches_port(
    shared: Path, tmp_path: Path, vgg_synthetic: dict[str, torch.Tensor]
) -> None:
    """Official files in a folder -> load_weights (switching to use_weights) -> predict == the port."""
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    require_fixture_pillow(inputs)
    method = srntt()
    generator_file, vgg_file = (w.file_name for w in method.info.weights)
    torch.save(generator_state(shared, True), tmp_path / generator_file)
    torch.save(vgg_synthetic, tmp_path / vgg_file)  # the port's VGG-module format
    assert not method.module.use_weights
    method.load_weights(tmp_path)
    assert method.weights_loaded and method.module.use_weights
    caught, _ = capture(method.module.swapper)
    sr = method.predict(inputs["x"], inputs["ref"])
    expected = load_npz(fixture_dir(shared) / "outputs.npz")["upscale_srntt_use_weights"]
    assert (sr - expected).abs().max() <= OUTPUT_ATOL
    # The weight map (best cosine, chunked product) is the tensor the port passed to the generator.
    _, _, weights = caught["correlation#0"]
    assert (weights - inputs["weights"][0, 0]).abs().max() <= OUTPUT_ATOL  # fixture README: atol 5e-5 (index exact)


def test_weighted_maps_leave_caller_maps_untouched(shared: Path) -> None:
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    maps = {layer: inputs[f"maps.{layer}"].clone() for layer in ("relu3_1", "relu2_1", "relu1_1")}
    transfer = SRNTT(use_weights=True).texture_transfer
    with torch.no_grad():
        scaled = transfer.weighted_maps(maps, inputs["weights"])
    for layer, value in maps.items():
        assert torch.equal(value, inputs[f"maps.{layer}"])
        # a = b = 1 (port initial values): factor sigmoid(W_up + 1), W_up = padded weights upsampled.
        assert scaled[layer].shape == value.shape
    expected_small = maps["relu3_1"] * torch.sigmoid(F.pad(inputs["weights"], (1, 1, 1, 1), mode="replicate") + 1)
    assert torch.allclose(scaled["relu3_1"], expected_small, atol=1e-6)


def test_chunked_correlation_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2560×512 Ref (relu3_1 640×128, here with 8 channels to stay fast): chunked == unchunked, and no
    chunk's score block exceeds the budget."""
    generator = torch.Generator().manual_seed(1)
    content = torch.rand(1, 8, 12, 10, generator=generator)
    condition = torch.rand(1, 8, 640, 128, generator=generator)
    with torch.no_grad():
        whole = PatchCorrelation(compute_weights=True, chunk_elements=1 << 40)(content, condition)
    budget = 11_500 * 80  # 80 positions -> 11,500 kernels per chunk, 7 chunks cut mid-row
    largest: list[int] = []
    real_conv2d = F.conv2d

    def recording_conv2d(x: torch.Tensor, weight: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = real_conv2d(x, weight, *args, **kwargs)
        largest.append(out.numel())
        return out

    monkeypatch.setattr(F, "conv2d", recording_conv2d)
    with torch.no_grad():
        chunked = PatchCorrelation(compute_weights=True, chunk_elements=budget)(content, condition)
    assert len(largest) == 7 and max(largest) <= budget
    for got, want in zip(chunked, whole, strict=True):
        assert got is not None and want is not None
        assert torch.equal(got, want)


def test_default_chunk_budget_bounds_benchmark_sizes() -> None:
    """LR 128² against a 2560×512 Ref: each score and kernel block stays at ≤ 64 MiB (unchunked: 5.1 GB)."""
    positions, patches, patch_numel = 126 * 126, 638 * 126, 256 * 9
    per_chunk = kernels_per_chunk(positions, patch_numel, DEFAULT_CHUNK_ELEMENTS)
    assert per_chunk * max(positions, patch_numel) * 4 <= 64 * 2**20
    assert -(-patches // per_chunk) == 77


def test_match_reports_the_swap_correspondence(shared: Path, vgg_synthetic: dict[str, torch.Tensor]) -> None:
    """match() converts the port's index map: LR pixel (i, j) -> 4 × (matched relu3_1 cell) in the Ref."""
    inputs = load_npz(fixture_dir(shared) / "inputs.npz")
    intermediates = load_npz(fixture_dir(shared) / "intermediates.npz")
    require_fixture_pillow(inputs)
    method = srntt()
    vgg_only = {f"vgg.{k}": v for k, v in vgg_synthetic.items()}
    method.module.load_state_dict({**method.module.state_dict(), **vgg_only})
    correspondence = method.match(inputs["x"], inputs["ref"])
    assert correspondence.ref_yx.shape == (32, 32, 2) and correspondence.score.shape == (32, 32)
    index = intermediates["swapper.max_idx"]
    # Interior LR pixel (i, j) is the centre of the patch with top-left (i-1, j-1); its match's centre
    # cell is (row + 1, col + 1) of the 30×30 Ref patch grid.
    want_y = 4.0 * (index // 30 + 1)
    want_x = 4.0 * (index % 30 + 1)
    assert torch.equal(correspondence.ref_yx[1:31, 1:31, 0], want_y.float())
    assert torch.equal(correspondence.ref_yx[1:31, 1:31, 1], want_x.float())
    assert correspondence.score.max() <= 1.0 + 1e-5
    # The best cosine at each interior pixel is the port's weight map.
    # fixture README ("Numerical reference and tolerances"): atol 5e-5 on float values, index maps exact
    assert torch.allclose(correspondence.score[1:31, 1:31], inputs["weights"][0, 0], atol=OUTPUT_ATOL)


def test_predict_returns_exact_size() -> None:
    """Untrained weights (plumbing only): odd LR and Ref sizes, output exactly 4× the LR."""
    generator = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 7, 5, generator=generator)
    ref = torch.rand(1, 3, 23, 17, generator=generator)  # resized to 20×16 inside, as the port's loader does
    method = srntt_rec()
    sr = method.predict(lr, ref, ref_lr=torch.rand(1, 3, 6, 4, generator=generator))  # wrong size: remade
    assert sr.shape == (1, 3, 28, 20) and torch.isfinite(sr).all()
    correspondence = method.match(lr, ref)
    assert correspondence.ref_yx.shape == (7, 5, 2) and correspondence.score.shape == (7, 5)
    assert correspondence.ref_yx.min() >= 0
    assert correspondence.ref_yx[..., 0].max() <= 22 and correspondence.ref_yx[..., 1].max() <= 16


def test_registry_factories_and_errors(tmp_path: Path) -> None:
    method = create("srntt", scale=4)
    assert method.info.variant == "gan" and create("srntt_rec").info.variant == "rec"
    assert dict(method.info.parts)["matching"] == "swapper.correlation"
    assert sum(p.numel() for p in method.module.get_submodule("swapper.correlation").parameters()) == 0
    with pytest.raises(UserError, match="scale 4"):
        srntt(scale=2)
    with pytest.raises(UserError, match="reference"):
        method.predict(torch.rand(1, 3, 8, 8))
    with pytest.raises(UserError, match="not found"):
        method.load_weights(tmp_path)


def test_load_weights_names_bad_keys(shared: Path, tmp_path: Path) -> None:
    method = srntt()
    generator_file, vgg_file = (w.file_name for w in method.info.weights)
    state = generator_state(shared, False)
    del state["texture_transfer.tail_large.2.bias"]
    state["texture_transfer.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / generator_file)
    torch.save({"vgg_mean": torch.zeros(3, 1, 1)}, tmp_path / vgg_file)  # its missing keys sort after
    with pytest.raises(UserError, match="tail_large.2.bias") as error:
        method.load_weights(tmp_path / generator_file)
    assert "texture_transfer.extra" in str(error.value)


def test_torchvision_vgg_file_is_converted(vgg_synthetic: dict[str, torch.Tensor]) -> None:
    """torchvision ``features.N`` keys map to the port's conv names; the ImageNet mean/std are set."""
    port_state = vgg_synthetic
    torchvision_state = {}
    # torchvision numbering: each conv is followed by a ReLU, each block by a max-pool.
    index = 0
    for block, n_convs in enumerate((2, 2, 4, 4, 4), start=1):
        for conv in range(1, n_convs + 1):
            for kind in ("weight", "bias"):
                torchvision_state[f"features.{index}.{kind}"] = port_state[f"net.conv{block}_{conv}.{kind}"]
            index += 2
        index += 1
    torchvision_state["classifier.0.weight"] = torch.zeros(2, 2)
    converted = vgg_state_from_checkpoint(torchvision_state)
    assert set(converted) == set(port_state)
    for name, index in {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv3_1": 10, "conv5_4": 34}.items():
        assert torch.equal(converted[f"net.{name}.weight"], torchvision_state[f"features.{index}.weight"])
    assert torch.allclose(converted["vgg_mean"].flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(converted["vgg_std"].flatten(), torch.tensor([0.229, 0.224, 0.225]))
    VGG().load_state_dict(converted, strict=True)


def test_cost_graph_runs_and_parts_resolve() -> None:
    method = srntt()
    module, inputs = method.cost_graph((4, 3), (14, 13))  # Ref resized to 12×12 as predict would
    assert [tuple(t.shape[-2:]) for t in inputs] == [(4, 3), (16, 12), (12, 12), (12, 12)]
    for path in method.info.parts.values():
        module.get_submodule(path)
    with torch.no_grad():
        _, sr = module(*inputs)
    assert sr.shape == (1, 3, 16, 12)
