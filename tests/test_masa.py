"""MASA-SR port: official layout, fidelity to the official code (fixtures), wrapper conventions, MEM chunking.

Fixture facts used below come from ``fixtures/masa/README.md`` and ``docs/methods/masa.md``: 210 entries,
4,028,291 parameters, output tolerance 5e-5, at most 4 near-tie flips in the fine index map of case a,
FLOPS-M formula K*3*576*(h_r*w_r) + K*64*576*(d_y*d_x).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from synth import assert_layout_equal, synthetic_state_dict

from bench.engines.cost.macs import analyze_trace
from methods import registry
from methods.masa import MASA, MasaSR, MemSearch, MemTransfer, masa_gan, masa_rec, mem_geometry
from protocols.core import UserError
from protocols.resize import pil_bicubic

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_ATOL = 5e-5  # fixture README: "compare output with atol = 5e-5"
NEAR_TIE_GAP = 1e-5  # fixture README: near-ties differ by less than 1e-5
FINE_NEAR_TIES_CASE_A = 4


def fixture_dir(shared: Path) -> Path:
    return shared / "fixtures" / "masa"


def capture(module: torch.nn.Module, names: list[str], run: Callable[[], torch.Tensor]) -> dict[str, Any]:
    """Call ``run()`` with forward hooks on ``module``'s submodules ``names``.

    Returns ``'<name>#<call>'`` -> hooked output, ``'inputs'`` -> the top-level forward's arguments,
    ``'network_output'`` -> the top-level forward's output and ``'result'`` -> what ``run`` returned.
    """
    caught: dict[str, Any] = {}
    calls: dict[str, int] = {}
    handles = []
    for name in names:

        def hook(_mod: torch.nn.Module, _args: object, result: object, name: str = name) -> None:
            index = calls.get(name, 0)
            calls[name] = index + 1
            caught[f"{name}#{index}"] = result

        handles.append(module.get_submodule(name).register_forward_hook(hook))

    def top_hook(_mod: torch.nn.Module, args: tuple[torch.Tensor, ...], result: torch.Tensor) -> None:
        caught["inputs"] = tuple(a.clone() for a in args)
        caught["network_output"] = result.clone()

    handles.append(module.register_forward_hook(top_hook))
    try:
        caught["result"] = run()
    finally:
        for handle in handles:
            handle.remove()
    return caught


@dataclass
class Fidelity:
    method: MasaSR
    caught: dict[str, Any]  # see ``capture``
    inputs: dict[str, np.ndarray]  # inputs.npz (BGR)
    lr_rgb: torch.Tensor
    ref_rgb: torch.Tensor


@pytest.fixture(scope="module")
def fidelity(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Fidelity:
    """Synthetic weights saved as an official-format checkpoint (with the DataParallel prefix), loaded
    through ``load_weights``; then ``predict`` on the RGB version of ``inputs.npz`` (Ref↓ made inside by
    Pillow), hooking the official submodules. One network run serves all fidelity tests."""
    folder = fixture_dir(shared)
    state = synthetic_state_dict(folder / "layout.tsv", folder / "synth_overrides.tsv")
    checkpoint = tmp_path_factory.mktemp("masa") / "masa_rec.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, checkpoint)
    method = masa_rec()
    method.load_weights(checkpoint.parent)  # folder form: finds the official file name
    inputs = np.load(folder / "inputs.npz")
    lr_rgb = torch.from_numpy(inputs["lr"]).flip(1)
    ref_rgb = torch.from_numpy(inputs["ref"]).flip(1)
    names = ["enc", "matching", "transfer", "decoder.blk_L1", "decoder.pAda", "decoder.blk_x1", "decoder.dram_x2"]
    names += ["decoder.blk_x2", "decoder.dram_x4", "decoder.blk_x4", "decoder.conv_out"]
    caught = capture(method.module, names, lambda: method.predict(lr_rgb, ref_rgb))
    return Fidelity(method, caught, {k: inputs[k] for k in inputs.files}, lr_rgb, ref_rgb)


# ---------------------------------------------------------------------------------------------------
# Layout and weights


def test_layout_and_parameter_count(shared: Path) -> None:
    module = MASA()
    assert_layout_equal(module, fixture_dir(shared) / "layout.tsv")
    assert len(module.state_dict()) == 210
    assert sum(p.numel() for p in module.parameters()) == 4_028_291
    for name in ("matching", "transfer"):
        assert not list(module.get_submodule(name).parameters())


def test_load_weights_reports_bad_checkpoints(shared: Path, tmp_path: Path) -> None:
    method = masa_rec()
    state = synthetic_state_dict(fixture_dir(shared) / "layout.tsv")
    with pytest.raises(UserError, match="not found"):
        method.load_weights(tmp_path / "nothing.pth")
    with pytest.raises(UserError, match="masa_rec.pth"):
        method.load_weights(tmp_path)  # a folder without the official file
    broken = dict(state)
    del broken["decoder.pAda.conv_gamma.bias"]
    broken["decoder.pAda_x2.conv_gamma.bias"] = state["decoder.pAda.conv_gamma.bias"]
    broken["enc.conv_L1.weight"] = torch.zeros(64, 4, 3, 3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(UserError) as error:
        method.load_weights(tmp_path / "broken.pth")
    message = str(error.value)
    assert "decoder.pAda.conv_gamma.bias" in message and "decoder.pAda_x2.conv_gamma.bias" in message
    assert "enc.conv_L1.weight" in message
    assert not method.weights_loaded


# ---------------------------------------------------------------------------------------------------
# Fidelity to the official implementation (synthetic weights)


def test_weights_loaded_from_official_format(fidelity: Fidelity) -> None:
    method = fidelity.method
    assert isinstance(method, MasaSR) and method.weights_loaded


def test_predict_feeds_the_official_inputs_and_reproduces_the_output(fidelity: Fidelity, shared: Path) -> None:
    """The wrapper turns the RGB images into exactly the official BGR tensors (Ref↓ by Pillow), and the
    network output, and predict's RGB result, equal the official output."""
    caught = fidelity.caught
    inputs = fidelity.inputs
    for name, given in zip(("lr", "ref", "ref_down"), caught["inputs"], strict=True):
        np.testing.assert_array_equal(given.numpy(), inputs[name])
    expected = np.load(fixture_dir(shared) / "outputs.npz")["output"]
    network = caught["network_output"].numpy()
    assert network.shape == expected.shape == (1, 3, 128, 128)
    np.testing.assert_allclose(network, expected, rtol=0, atol=OUTPUT_ATOL)
    sr = caught["result"]
    assert sr.shape == (1, 3, 128, 128)
    np.testing.assert_allclose(sr.flip(1).numpy(), expected, rtol=0, atol=OUTPUT_ATOL)


def test_index_maps_match_official(fidelity: Fidelity, shared: Path) -> None:
    official = np.load(fixture_dir(shared) / "intermediates.npz")
    found = fidelity.caught["matching#0"]
    np.testing.assert_array_equal(found.coarse_index.numpy().ravel(), official["search.ind_l"].ravel())
    # Scores: the fixture README ("Numerical reference and tolerances") promises exact index maps and atol 5e-5
    # on float outputs, nothing tighter; C²-Matching's equivalent cosine check drifted by 2.4e-5 on another machine.
    np.testing.assert_allclose(
        found.coarse_score.numpy().ravel(), official["search.sorted_corr"].ravel(), rtol=0, atol=OUTPUT_ATOL
    )
    ours_index = found.fine_index.numpy().reshape(16, 64)
    theirs_index = official["search_org.index_all_l"].reshape(16, 64)
    ours_score = found.fine_score.numpy().reshape(16, 64)
    theirs_score = official["search_org.corr_all_l"].reshape(16, 64)
    flipped = ours_index != theirs_index
    # Only documented near-ties may flip, and a flip between near-tied candidates keeps the best score.
    assert flipped.sum() <= FINE_NEAR_TIES_CASE_A
    np.testing.assert_allclose(ours_score[flipped], theirs_score[flipped], rtol=0, atol=NEAR_TIE_GAP)
    np.testing.assert_allclose(ours_score, theirs_score, rtol=0, atol=OUTPUT_ATOL)  # README: 5e-5, see above


def _ours_for_key(caught: dict[str, Any], key: str) -> np.ndarray:
    base, _, channels = key.partition("@")
    if base.startswith("warp_ref_patches_x"):
        transfer_call = {"1": 0, "2": 1, "4": 2}[base[len("warp_ref_patches_x") :]]  # runs x1, x2, x4
        value = caught[f"transfer#{transfer_call}"]
    elif base.startswith("enc#"):
        enc_call, level = base.split(".")
        value = caught[enc_call][int(level)]
    else:
        value = caught[base]
    array = value.numpy()
    if channels:
        first, last = (int(v) for v in channels[len("ch") :].split("-"))
        array = array[:, first : last + 1]
    return array


def test_every_intermediate_matches_official(fidelity: Fidelity, shared: Path) -> None:
    official = np.load(fixture_dir(shared) / "intermediates.npz")
    keys = [k for k in official.files if not k.startswith("search")]
    assert len(keys) == 20
    worst = {}
    for key in keys:
        ours = _ours_for_key(fidelity.caught, key)
        assert ours.shape == official[key].shape, key
        worst[key] = float(np.abs(ours - official[key]).max())
    too_far = {k: v for k, v in worst.items() if v > OUTPUT_ATOL}
    assert not too_far, too_far
    # The network part on its own (the bicubic skip dominates the output's variance).
    assert worst["decoder.conv_out#0"] <= OUTPUT_ATOL


def test_match_exposes_fine_correspondence_in_ref_hr_frame(fidelity: Fidelity, shared: Path) -> None:
    """Expected positions built from the OFFICIAL index maps with the window rule of masa.md §4.3."""
    method = fidelity.method
    official = np.load(fixture_dir(shared) / "intermediates.npz")
    coarse = official["search.ind_l"].ravel()
    fine = official["search_org.index_all_l"].reshape(16, 8, 8)
    fine_score = official["search_org.corr_all_l"].reshape(16, 8, 8)
    ref_down_w, candidates = 32, 13  # Ref↓ 32x32, d = 2*floor(floor(32/8)*1.5)+1

    def window_start(centre: int) -> int:
        start, end = centre - candidates // 2 - 1, centre + candidates // 2 + 1
        if start < 0:
            start, end = 0, candidates + 1
        if end > ref_down_w - 1:
            start = ref_down_w - 1 - (candidates + 1)
        return start

    expected_yx = np.zeros((32, 32, 2), np.float32)
    expected_score = np.zeros((32, 32), np.float32)
    for block in range(16):
        top, left = window_start(coarse[block] // ref_down_w), window_start(coarse[block] % ref_down_w)
        for iy in range(8):
            for ix in range(8):
                y, x = (block // 4) * 8 + iy, (block % 4) * 8 + ix
                centre = (top + fine[block, iy, ix] // candidates + 1, left + fine[block, iy, ix] % candidates + 1)
                expected_yx[y, x] = (4 * centre[0], 4 * centre[1])
                expected_score[y, x] = fine_score[block, iy, ix]
    found = method.match(fidelity.lr_rgb, fidelity.ref_rgb)
    assert found.ref_yx.shape == (32, 32, 2) and found.ref_yx.dtype == torch.float32
    assert found.score.shape == (32, 32)
    np.testing.assert_array_equal(found.ref_yx.numpy(), expected_yx)
    # fixture README: atol 5e-5 on float values (index maps exact)
    np.testing.assert_allclose(found.score.numpy(), expected_score, rtol=0, atol=OUTPUT_ATOL)


def test_match_of_a_reference_with_its_own_downscale_is_the_identity(fidelity: Fidelity) -> None:
    """LR := Pillow(Ref)/4, so the LR features equal the Ref↓ features: every interior LR pixel (i, j) must
    match Ref HR (4i, 4j), the convention of ``Correspondence`` (border pixels use MEM's replicate-padded
    LR halo, which has no exact counterpart among the valid Ref↓ patches)."""
    lr = torch.from_numpy(fidelity.inputs["ref_down"]).flip(1)
    found = fidelity.method.match(lr, fidelity.ref_rgb)
    grid = np.stack(np.meshgrid(4 * np.arange(32), 4 * np.arange(32), indexing="ij"), axis=-1)
    np.testing.assert_array_equal(found.ref_yx.numpy()[1:-1, 1:-1], grid[1:-1, 1:-1])
    assert found.score.numpy()[1:-1, 1:-1].min() > 1 - 1e-5


# ---------------------------------------------------------------------------------------------------
# Wrapper conventions


def test_predict_odd_size_pads_centred_and_crops_back(fidelity: Fidelity) -> None:
    """LR 11x13 -> exactly 44x52. Oracle: the official recipe written out here (masa.md §7): centred
    replicate padding of the LR to x8, Ref padded bottom/right to x16, Ref↓ by Pillow, BGR network."""
    method = fidelity.method
    generator = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 3, 11, 13, generator=generator)
    ref = torch.rand(1, 3, 50, 45, generator=generator)
    sr = method.predict(lr, ref)
    assert sr.shape == (1, 3, 44, 52)
    lr_pad = F.pad(lr, (1, 2, 2, 3), mode="replicate")  # 16x16: top = floor(5/2), left = floor(3/2)
    ref_pad = F.pad(ref, (0, 3, 0, 14), mode="replicate")  # 64x48
    ref_down = pil_bicubic(ref_pad, (16, 12))
    with torch.no_grad():
        full = method.module(lr_pad.flip(1), ref_pad.flip(1), ref_down.flip(1))
    expected = full[:, :, 8 : 8 + 44, 4 : 4 + 52].flip(1)
    torch.testing.assert_close(sr, expected, rtol=0, atol=1e-6)


def test_user_errors() -> None:
    with pytest.raises(UserError, match="scale 4"):
        masa_rec(scale=2)
    with pytest.raises(UserError, match="multiple of 8"):
        masa_gan(lr_multiple=12)
    method = masa_rec()
    lr = torch.rand(1, 3, 16, 16)
    with pytest.raises(UserError, match="reference"):
        method.predict(lr)
    with pytest.raises(UserError, match="smaller than one matching window"):
        method.predict(lr, torch.rand(1, 3, 32, 32))
    with pytest.raises(UserError, match="ref_lr"):
        method.predict(lr, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 15, 16))
    with pytest.raises(UserError, match="multiples of 8"):
        method.module(torch.rand(1, 3, 12, 16), torch.rand(1, 3, 64, 64), torch.rand(1, 3, 16, 16))


def test_registry_and_metadata() -> None:
    rec = registry.create("masa")
    gan = registry.create("masa_gan")
    assert rec.info.name == "masa_rec" and rec.info.weights[0].file_name == "masa_rec.pth"
    assert gan.info.variant == "gan" and gan.info.weights[0].file_name == "masa.pth"
    for path in rec.info.parts.values():
        rec.module.get_submodule(path)  # every part names a real submodule
    assert rec.info.parts["matching"] == "matching"


# ---------------------------------------------------------------------------------------------------
# MEM chunking and cost isolation


def _naive_coarse(lr_feat: torch.Tensor, ref_down_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One-shot stage 1 straight from masa.md §4.2: (K,) best summed cosine and flat Ref↓ index."""
    _, c, h, w = lr_feat.shape
    padded = F.pad(lr_feat, (1, 1, 1, 1), mode="replicate")
    total = None
    for d in (1, 2, 3):
        queries = []
        for by in range(h // 8):
            for bx in range(w // 8):
                rows = [8 * by + 5 - d, 8 * by + 5, 8 * by + 5 + d]
                cols = [8 * bx + 5 - d, 8 * bx + 5, 8 * bx + 5 + d]
                queries.append(padded[0][:, rows][:, :, cols].reshape(-1))
        query = F.normalize(torch.stack(queries), dim=1)
        candidates = F.normalize(F.unfold(ref_down_feat, 3, dilation=d, padding=d)[0], dim=0)
        similarity = query @ candidates
        total = similarity if total is None else total + similarity
    assert total is not None
    return total.max(dim=1)


def test_chunked_matching_equals_unchunked() -> None:
    generator = torch.Generator().manual_seed(3)
    lr_feat = torch.randn(1, 64, 16, 24, generator=generator)
    ref_down_feat = torch.randn(1, 64, 24, 32, generator=generator)
    one_shot = MemSearch(chunk_bytes=2**40)(lr_feat, ref_down_feat)
    chunked = MemSearch(chunk_bytes=1)(lr_feat, ref_down_feat)  # one Ref↓ row / one block per chunk
    for name, a, b in zip(one_shot._fields, one_shot, chunked, strict=True):
        assert torch.equal(a, b), name
    naive_score, naive_index = _naive_coarse(lr_feat, ref_down_feat)
    assert torch.equal(one_shot.coarse_index[0], naive_index)
    torch.testing.assert_close(one_shot.coarse_score[0], naive_score, rtol=0, atol=1e-6)
    geometry = mem_geometry((16, 24), (24, 32))
    texture = torch.randn(1, 4, 96, 128, generator=generator)
    warped_one_shot = MemTransfer(chunk_bytes=2**40)(texture, one_shot, geometry, 4)
    warped_chunked = MemTransfer(chunk_bytes=1)(texture, chunked, geometry, 4)
    assert warped_one_shot.shape == (1, 4, 64, 96)
    assert torch.equal(warped_one_shot, warped_chunked)


def test_transfer_divides_by_per_block_overlap() -> None:
    """A constant texture with unit scores must come back constant: the fold is divided by the true
    per-block overlap count (9 inside, 6 on edges, 4 at corners at x1), not by 9 (masa.md §10)."""
    generator = torch.Generator().manual_seed(4)
    found = MemSearch()(
        torch.randn(1, 64, 16, 16, generator=generator), torch.randn(1, 64, 32, 32, generator=generator)
    )
    found = found._replace(fine_score=torch.ones_like(found.fine_score))
    geometry = mem_geometry((16, 16), (32, 32))
    for scale in (1, 2, 4):
        warped = MemTransfer()(torch.full((1, 2, 32 * scale, 32 * scale), 0.7), found, geometry, scale)
        torch.testing.assert_close(warped, torch.full_like(warped, 0.7))


def test_matching_part_isolates_flops_m() -> None:
    """fvcore on the whole cost graph: the ``matching`` part holds exactly the two stages' bmm MACs."""
    method = masa_rec()
    module, inputs = method.cost_graph((16, 16), (64, 64))
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 16, 16), (1, 3, 64, 64), (1, 3, 16, 16)]
    analysis = FlopCountAnalysis(module, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    blocks, ref_down_positions, candidates = 4, 16 * 16, 13 * 13  # d = 2*floor(floor(16/4)*1.5)+1 = 13
    expected = blocks * 3 * 576 * ref_down_positions + blocks * 64 * 576 * candidates
    assert analysis.by_module()[method.info.parts["matching"]] == expected
    assert analysis.by_operator()["bmm"] == expected
    with pytest.raises(UserError):
        method.cost_graph((12, 16), (64, 64))


def test_benchmark_setting_flops_m() -> None:
    """MASA Table 2 FLOPS-M at LR 128x128 / Ref 512x512: 8,842,641,408 MACs (masa.md §4.6)."""
    # Meta tensors: the trace needs shapes only (the counts do not depend on values).
    features = (torch.empty(1, 64, 128, 128, device="meta"), torch.empty(1, 64, 128, 128, device="meta"))
    analysis = FlopCountAnalysis(MemSearch(), features).unsupported_ops_warnings(False)
    assert analysis.by_operator()["bmm"] == 8_842_641_408


@pytest.mark.slow
def test_benchmark_setting_reproduces_masa_table2() -> None:
    """Suite cost tool at LR 128x128 / Ref 512x512 (flops.json, masa.md §5): MASA-counter FLOPS-T 367.93 G,
    its conv bucket 358.292 G, FLOPS-M 8,842,641,408 MACs, 4,028,291 parameters."""
    method = masa_rec()
    module, inputs = method.cost_graph((128, 128), (512, 512))
    counts = analyze_trace(module, inputs).counts
    masa_counter = counts["masa2021"]
    assert round(masa_counter.total / 1e9, 2) == 367.93
    assert abs(masa_counter.by_operator["conv"] / 1e9 - 358.292) < 5e-4
    assert masa_counter.module_products(method.info.parts["matching"]) == 8_842_641_408
    assert counts["macs"].module_products(method.info.parts["matching"]) == 8_842_641_408
    assert sum(p.numel() for p in module.parameters()) == 4_028_291


@pytest.mark.slow
def test_stitched_reference_memory_and_time() -> None:
    """LR 125x83 (HR 500x332) with a 2560x512 stitched Ref: peak RSS <= 4 GiB; measured in a fresh process."""
    script = textwrap.dedent(
        """
        import json, resource, time, torch
        from methods.masa import masa_rec
        method = masa_rec()
        generator = torch.Generator().manual_seed(0)
        lr = torch.rand(1, 3, 125, 83, generator=generator)
        ref = torch.rand(1, 3, 2560, 512, generator=generator)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        sr = method.predict(lr, ref)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"shape": list(sr.shape), "cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0,
                          "peak_rss_gib": peak_kib / 2**20, "threads": torch.get_num_threads()}))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(result)
    assert result["shape"] == [1, 3, 500, 332]
    assert result["peak_rss_gib"] <= 4.0
