"""Matching-accuracy protocol, its datasets (embedded demo pairs, Sintel, HCI, LF video) and the CLI verb."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import map_coordinates, maximum_filter, minimum_filter, sobel, uniform_filter

from methods.base import MethodInfo
from methods.classical import build_matcher
from protocols.core import Correspondence, UserError
from protocols.embedded import demo_homography_pairs, demo_stereo_pairs
from protocols.flow_io import write_flo, write_pfm
from protocols.matching import (
    MatchingItem,
    MatchingOptions,
    accuracy_rows,
    check_dataset,
    evaluate_item,
    load_dataset,
)
from protocols.matching_data import lf_video_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_DATA = "data"



# --------------------------------------------------------------------------------------------------
# embedded demo pairs


def test_demo_stereo_pair_ground_truth_follows_the_disparity() -> None:
    from skimage import data

    (pair,) = demo_stereo_pairs()
    left, right, disparity = data.stereo_motorcycle()
    assert pair.image.shape == pair.ref.shape == (496, 736, 3) and pair.image.dtype == np.uint8
    np.testing.assert_array_equal(pair.image, left[:496, :736])
    np.testing.assert_array_equal(pair.ref, right[:496, :736])
    d = disparity[:496, :736].astype(np.float64)
    known = np.isfinite(d)
    cols = np.arange(736)[None, :].repeat(496, 0)
    expected_valid = known & (cols - np.where(known, d, 0) >= 0)
    np.testing.assert_array_equal(pair.valid, expected_valid)
    np.testing.assert_allclose(pair.gt_yx[..., 1][pair.valid], (cols - d)[pair.valid])
    np.testing.assert_array_equal(pair.gt_yx[..., 0][pair.valid], np.nonzero(pair.valid)[0])
    assert not pair.valid[~known].any() and (~known).sum() > 0  # NaN/inf disparities are invalid
    with pytest.raises(ValueError):
        pair.image[0, 0, 0] = 1  # read-only: the cached pairs are shared


def test_demo_homography_references_agree_with_their_ground_truth() -> None:
    pairs = demo_homography_pairs()
    assert [p.name for p in pairs] == ["astronaut", "coffee", "chelsea", "rocket"]
    assert demo_homography_pairs() is pairs  # deterministic and cached
    for pair in pairs:
        assert pair.image.shape[0] % 8 == 0 and pair.image.shape[1] % 8 == 0 and pair.ref.shape == pair.image.shape
        valid = pair.valid
        assert 0.8 < valid.mean() <= 1.0
        # Independent resampling (scipy, bilinear) of the reference at the ground truth reproduces the image.
        coords = np.nan_to_num(pair.gt_yx, nan=0.0)
        warped = np.stack(
            [map_coordinates(pair.ref[..., c].astype(float), [coords[..., 0], coords[..., 1]], order=1)
             for c in range(3)], axis=-1)
        shifted = np.stack(
            [map_coordinates(pair.ref[..., c].astype(float), [coords[..., 0] + 2, coords[..., 1]], order=1)
             for c in range(3)], axis=-1)
        inner = valid & (coords[..., 0] < pair.ref.shape[0] - 3)
        error = np.abs(warped - pair.image)[inner].mean()
        assert error < 4.0 and error < 0.5 * np.abs(shifted - pair.image)[inner].mean(), pair.name


# --------------------------------------------------------------------------------------------------
# protocol arithmetic with a scripted matcher


class _Scripted:
    def __init__(self, ref_yx: np.ndarray, scale: int) -> None:
        self.ref_yx = ref_yx
        self.info = MethodInfo("scripted", "-", "-", 0, None, "test", scale, ("lr", "ref"), "-")

    def match(self, lr: torch.Tensor, ref: torch.Tensor) -> Correspondence:
        assert lr.shape == (1, 3, 4, 4) and ref.shape == (1, 3, 8, 8)
        return Correspondence(torch.from_numpy(self.ref_yx).float(), torch.zeros(4, 4))


def _scripted_case() -> tuple[MatchingItem, np.ndarray]:
    """8x8 image, x2 (16 positions (2m, 2n)); ground truth p + (1, 0) except where noted."""
    rows, cols = np.mgrid[0:8, 0:8].astype(float)
    gt = np.stack([rows + 1, cols], axis=-1)
    valid = np.ones((8, 8), bool)
    occluded = np.zeros((8, 8), bool)
    valid[0, 0] = False  # position (0, 0): no ground truth
    occluded[0, 4] = True  # position (0, 2)
    gt[4, 4] = (7, 4)  # position (2, 2): 3 px from p, outside a radius-2 window
    gt[6, 0] = (8.2, 0)  # position (3, 0): rounds to row 8, outside the 8-row reference
    gt[6, 6] = np.nan  # position (3, 3)
    errors = {  # position (m, n) -> prediction minus rounded ground truth
        (0, 1): (0, 0), (0, 2): (0, 0), (0, 3): (1, 0), (1, 0): (1, 1), (1, 1): (0, -2), (1, 2): (2, 2),
        (1, 3): (3, 4), (2, 0): (0.4, -0.3), (2, 1): (7, 0), (2, 2): (0, 0), (2, 3): (0, 8), (3, 1): (0, 0),
        (3, 2): (-1, 0),
    }
    predicted = np.zeros((4, 4, 2))
    for (m, n), error in errors.items():
        predicted[m, n] = np.floor(gt[2 * m, 2 * n] + 0.5) + error
    image = np.zeros((8, 8, 3), np.uint8)
    return MatchingItem("case", image, image.copy(), gt, valid, occluded), predicted


@pytest.mark.parametrize(
    ("changes", "expected_hits", "expected_n"),
    [
        # distances (L2): 0, 1, 1.41, 2, 2.83, 5, 0, 7, miss (window), 8, 0, 1
        ({}, (3, 5, 7, 8, 8, 9, 9, 10), 12),
        # Chebyshev: 0, 1, 1, 2, 2, 4, 0, 7, miss, 8, 0, 1
        ({"norm": "linf"}, (3, 6, 8, 8, 9, 9, 9, 10), 12),
        # the occluded position (error 0) joins
        ({"occlusion": "include"}, (4, 6, 8, 9, 9, 10, 10, 11), 13),
        # raw positions: (0.4, -0.3) is 0.5 px away
        ({"gt_rounding": "none"}, (2, 5, 7, 8, 8, 9, 9, 10), 12),
    ],
)
def test_accuracy_counts_match_hand_computed_values(changes, expected_hits, expected_n) -> None:
    item, predicted = _scripted_case()
    options = MatchingOptions(scale=2, search_radius_px=2, **changes)
    result = evaluate_item(_Scripted(predicted, 2), item, options)
    assert result.n_positions == expected_n
    assert result.hits == expected_hits


def test_rows_pool_positions_and_average_frames() -> None:
    from protocols.matching import FrameAccuracy

    frames = [FrameAccuracy("a", (1,) * 8, 2), FrameAccuracy("b", (3,) * 8, 6), FrameAccuracy("c", (0,) * 8, 0)]
    rows = {(image, metric): value for image, metric, value in accuracy_rows(frames)}
    assert rows[("a", "acc_le_0px")] == 0.5 and rows[("b", "acc_le_7px")] == 0.5
    assert rows[("ALL", "acc_le_3px")] == 4 / 8 and rows[("ALL", "n_positions")] == 8
    assert rows[("MEAN", "acc_le_3px")] == 0.5 and rows[("MEAN", "n_frames")] == 2  # frame c has no positions
    assert np.isnan(rows[("c", "acc_le_0px")])


def test_options_validate_and_name_their_preset() -> None:
    assert MatchingOptions().preset_id() == "ccnet2017"
    assert MatchingOptions(sintel_pass="final").preset_id() == "ccnet2017"  # the pass is a level, not a preset
    assert MatchingOptions(scale=4, norm="linf").preset_id() == "ccnet2017[norm=linf;scale=4]"
    with pytest.raises(UserError, match="norm"):
        MatchingOptions(norm="l1")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="outside the 9x9 view grid"):
        MatchingOptions(lf_ref_view=(9, 0))
    with pytest.raises(UserError, match="scale"):
        MatchingOptions(scale=3)


def test_matcher_scale_must_match_the_protocol() -> None:
    item, predicted = _scripted_case()
    with pytest.raises(UserError, match="x4"):
        evaluate_item(_Scripted(predicted, 4), item, MatchingOptions(scale=2))


# --------------------------------------------------------------------------------------------------
# geometry check: ZNCC with a perfect input on the embedded pairs

PATCH_PX = 11
TEXTURE_MIN_EIGENVALUE = 100.0  # (grey levels / px)^2: gradients of ~10 levels/px in every direction


def _textured(image: np.ndarray) -> np.ndarray:
    """Smallest eigenvalue of the structure tensor over the patch >= threshold (no aperture problem)."""
    grey = image.astype(float) @ np.array([0.299, 0.587, 0.114])
    gy, gx = sobel(grey, 0) / 8, sobel(grey, 1) / 8
    a, b, c = (uniform_filter(v, PATCH_PX) for v in (gx * gx, gx * gy, gy * gy))
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b) >= TEXTURE_MIN_EIGENVALUE


def _crop(pair, y0: int, x0: int, height: int, width: int, ref_left: int, stereo: bool) -> MatchingItem:
    """Input crop and reference crop (extended ``ref_left`` px to the left); keeps only well-posed pixels:
    textured, patch inside both crops, and for stereo no disparity jump inside the patch."""
    image = pair.image[y0 : y0 + height, x0 : x0 + width]
    ref = pair.ref[y0 : y0 + height, x0 - ref_left : x0 + width]
    gt = pair.gt_yx[y0 : y0 + height, x0 : x0 + width] - np.array([y0, x0 - ref_left])
    half = PATCH_PX // 2 + 1
    g = np.floor(np.nan_to_num(gt, nan=-1e9) + 0.5)
    keep = pair.valid[y0 : y0 + height, x0 : x0 + width] & _textured(image)
    keep &= (g[..., 0] >= half) & (g[..., 0] <= ref.shape[0] - 1 - half)
    keep &= (g[..., 1] >= half) & (g[..., 1] <= ref.shape[1] - 1 - half)
    inner = np.zeros_like(keep)
    inner[half:-half, half:-half] = True
    keep &= inner
    if stereo:
        d = np.nan_to_num(np.arange(width)[None, :] + ref_left - gt[..., 1], nan=1e3)
        keep &= maximum_filter(d, PATCH_PX) - minimum_filter(d, PATCH_PX) <= 1
    return MatchingItem(pair.name, np.ascontiguousarray(image), np.ascontiguousarray(ref), gt, keep)


def _geometry_items() -> dict[str, list[MatchingItem]]:
    homography = []
    for pair in demo_homography_pairs():
        h, w = pair.image.shape[:2]
        homography.append(_crop(pair, (h // 2 - 48) // 8 * 8, (w // 2 - 48) // 8 * 8, 96, 96, 0, False))
    (stereo_pair,) = demo_stereo_pairs()
    # The Ref crop starts 32 px further left, so the 7..60 px disparities become -28..25 px offsets.
    stereo = [_crop(stereo_pair, y0, x0, 64, 128, 32, True) for y0, x0 in ((256, 256), (304, 128))]
    return {"demo_homography": homography, "demo_stereo": stereo}


def _accuracy(items: list[MatchingItem], scale: int, radius: int, norm: str) -> tuple[tuple[float, ...], int]:
    """Pooled accuracy at 0..7 px and the number of positions."""
    patch = PATCH_PX if scale == 1 else None  # x4: the matcher's default support (33 px)
    matcher = build_matcher("zncc", scale=scale, patch_size_px=patch, search_radius_px=radius)
    options = MatchingOptions(scale=scale, norm=norm, search_radius_px=radius)  # type: ignore[arg-type]
    results = [evaluate_item(matcher, item, options) for item in items]
    n = sum(r.n_positions for r in results)
    return tuple(sum(r.hits[k] for r in results) / n for k in range(8)), n


@pytest.mark.parametrize(("dataset", "radius"), [("demo_homography", 16), ("demo_stereo", 32)])
def test_zncc_on_a_perfect_input_finds_the_ground_truth(dataset: str, radius: int, capsys) -> None:
    """Chebyshev distance: an integer match next to a sub-pixel ground truth can be off by one pixel in
    both coordinates after rounding (L2 = 1.41), which is not a geometry error."""
    items = _geometry_items()[dataset]
    perfect, n_perfect = _accuracy(items, 1, radius, "linf")
    degraded, n_degraded = _accuracy(items, 4, radius, "linf")
    with capsys.disabled():
        print(f"\n{dataset}: ZNCC perfect x1 acc@0 {perfect[0]:.4f} acc@1 {perfect[1]:.4f} (n={n_perfect}); "
              f"degraded x4 acc@0 {degraded[0]:.4f} acc@1 {degraded[1]:.4f} (n={n_degraded}) [Chebyshev]")
    assert n_perfect > 500
    assert perfect[1] >= 0.99
    assert degraded[0] < perfect[0] and degraded[1] <= perfect[1]
    # The same matches scored against a mirrored ground truth collapse: the check can fail.
    flipped = [MatchingItem(i.name, i.image, i.ref, 2 * np.stack(np.mgrid[0:i.gt_yx.shape[0], 0:i.gt_yx.shape[1]],
                                                                  -1) - i.gt_yx, i.valid) for i in items]
    wrong, _ = _accuracy(flipped[:1], 1, radius, "linf")
    assert wrong[1] < 0.5


# --------------------------------------------------------------------------------------------------
# Sintel


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _fake_sintel(root: Path, height: int = 16, width: int = 24, flow_hw: tuple[int, int] | None = None) -> Path:
    rng = np.random.default_rng(0)
    base = root / "MPI-Sintel_subset" / "training"
    for index in (1, 2, 3):
        _png(base / "clean" / "scene_a" / f"frame_{index:04d}.png",
             rng.integers(0, 256, (height, width, 3)).astype(np.uint8))
    flow = np.zeros((*(flow_hw or (height, width)), 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    (base / "flow" / "scene_a").mkdir(parents=True)
    write_flo(base / "flow" / "scene_a" / "frame_0001.flo", flow)
    occlusion = np.zeros((height, width), np.uint8)
    occlusion[:, :4] = 255
    _png(base / "occlusions" / "scene_a" / "frame_0001.png", occlusion)
    return root


def test_sintel_layout_loads_pairs_with_flow_ground_truth(tmp_path: Path) -> None:
    root = _fake_sintel(tmp_path)
    dataset = load_dataset("sintel", root, MatchingOptions())
    assert dataset.entries == ("scene_a/frame_0001",) and dataset.level == "clean"
    item = dataset.load("scene_a/frame_0001")
    frame_2 = np.asarray(Image.open(root / "MPI-Sintel_subset/training/clean/scene_a/frame_0002.png"))
    np.testing.assert_array_equal(item.ref, frame_2)  # Ref = frame t+1
    np.testing.assert_array_equal(item.gt_yx[5, 7], [4.0, 9.0])  # p + (v, u)
    assert item.occluded is not None and item.occluded[:, :4].all() and not item.occluded[:, 4:].any()
    backward = load_dataset("sintel", root, MatchingOptions(direction="backward")).load("scene_a/frame_0001")
    np.testing.assert_array_equal(backward.image, frame_2)
    np.testing.assert_array_equal(backward.gt_yx[5, 9], [6.0, 7.0])  # P - (v, u)
    # Sources of frame t land on rows 0..14 and columns 6..25 (columns 0..3 are occluded).
    expected = np.zeros((16, 24), bool)
    expected[:15, 6:] = True
    np.testing.assert_array_equal(backward.valid, expected)


def test_sintel_layout_errors_name_the_problem(tmp_path: Path) -> None:
    root = _fake_sintel(tmp_path / "ok")
    with pytest.raises(UserError, match="missing flow file for frame scene_a/frame_0002"):
        load_dataset("sintel", root, MatchingOptions(), frames=["scene_a/frame_0002"])
    with pytest.raises(UserError, match="missing folder .*final"):
        load_dataset("sintel", root, MatchingOptions(sintel_pass="final"))
    with pytest.raises(UserError, match="expected '<scene>/frame_NNNN'"):
        load_dataset("sintel", root, MatchingOptions(), frames=["frame_0001"])
    with pytest.raises(UserError, match="mismatched frame/flow sizes"):
        load_dataset("sintel", _fake_sintel(tmp_path / "bad", flow_hw=(16, 20)), MatchingOptions())
    with pytest.raises(UserError, match="MPI-Sintel_subset/ holding training/"):
        load_dataset("sintel", tmp_path / "empty", MatchingOptions())
    with pytest.raises(UserError, match="REFSR_DATA"):
        load_dataset("sintel", None, MatchingOptions())
    with pytest.raises(UserError, match="unknown matching dataset"):
        load_dataset("kitti", tmp_path, MatchingOptions())
    check_dataset("sintel", str(root))  # the up-front check used by dataset jobs
    with pytest.raises(UserError, match="no MPI Sintel dataset"):
        check_dataset("sintel", str(tmp_path / "empty"))


def test_sintel_subset_pairs_and_flow_direction(shared: Path) -> None:
    clean = load_dataset("sintel", shared / SHARED_DATA, MatchingOptions())
    final = load_dataset("sintel", shared / SHARED_DATA, MatchingOptions(sintel_pass="final"))
    assert clean.entries == ("alley_1/frame_0002", "cave_2/frame_0002", "market_5/frame_0002")
    assert len(final.entries) == 7 and "ambush_2/frame_0020" in final.meta["skipped_pairs"]
    item = clean.load("alley_1/frame_0002")
    assert item.image.shape == (436, 1024, 3) and item.occluded is not None
    use = item.valid & ~item.occluded
    rows, cols = np.mgrid[0:436, 0:1024].astype(float)

    def photometric_error(ys: np.ndarray, xs: np.ndarray) -> float:
        sampled = np.stack([map_coordinates(item.ref[..., c].astype(float), [ys, xs], order=1, mode="nearest")
                            for c in range(3)], -1)
        return float(np.abs(sampled - item.image)[use].mean())

    forward = photometric_error(item.gt_yx[..., 0], item.gt_yx[..., 1])
    swapped_axes = photometric_error(rows + item.gt_yx[..., 1] - cols, cols + item.gt_yx[..., 0] - rows)
    assert forward < 3.0 < swapped_axes


# --------------------------------------------------------------------------------------------------
# HCI light field and LF video


def test_hci_view_rules_and_layout_errors(tmp_path: Path) -> None:
    scene = tmp_path / "LF_HCI4D" / "additional" / "toy"
    for index in range(5):  # most views missing
        _png(scene / f"input_Cam{index:03d}.png", np.zeros((8, 8, 3), np.uint8))
    write_pfm(scene / "gt_disp_lowres.pfm", np.zeros((8, 8), np.float32))
    with pytest.raises(UserError, match="missing views input_Cam005.png"):
        load_dataset("lf_hci", tmp_path, MatchingOptions())
    with pytest.raises(UserError, match="centre view"):
        load_dataset("lf_hci", tmp_path, MatchingOptions(lf_lr_view=(3, 3), lf_ref_view=(0, 0)))
    with pytest.raises(UserError, match="no HCI 4D light-field scene"):
        load_dataset("lf_hci", tmp_path / "nothing", MatchingOptions())


def test_hci_antinous_sign_is_chosen_on_the_data(shared: Path) -> None:
    dataset = load_dataset("lf_hci", shared / SHARED_DATA, MatchingOptions())
    assert dataset.entries == ("additional/antinous",) and dataset.level == "lr4-4_ref1-1"
    item = dataset.load("additional/antinous")
    sign = dataset.meta["disparity_sign"]["additional/antinous"]
    errors = sign["photometric_error_by_sign"]
    assert sign["sign"] == -1 and errors["-1"] < 0.5 * errors["+1"]
    disparity = np.fromfile(shared / SHARED_DATA / "LF_HCI4D/additional/antinous/gt_disp_lowres.pfm",
                            dtype="<f4", offset=14).reshape(512, 512)[::-1]
    np.testing.assert_allclose(item.gt_yx[100, 200], [100 + 3 * disparity[100, 200], 200 + 3 * disparity[100, 200]])


def _fake_lf_video(path: Path, grid: int = 8) -> np.ndarray:
    import h5py

    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (2, grid, 8, 3, 16, 24), dtype=np.uint8)
    with h5py.File(path, "w") as handle:
        handle["img_HR"] = hr
        handle["img_LR_8"] = hr[..., ::8, ::8]
    return hr


def test_lf_video_loader_reads_the_crossnet_layout(tmp_path: Path) -> None:
    hr = _fake_lf_video(tmp_path / "test.h5")
    pairs = list(lf_video_pairs(tmp_path / "test.h5"))
    assert [p.name for p in pairs] == ["test/0000", "test/0001"]
    np.testing.assert_array_equal(pairs[1].image, hr[1, 3, 3].transpose(1, 2, 0))
    np.testing.assert_array_equal(pairs[1].ref, hr[1, 0, 0].transpose(1, 2, 0))
    assert pairs[0].lr is not None and pairs[0].lr.shape == (2, 3, 3)
    _fake_lf_video(tmp_path / "bad.h5", grid=7)
    with pytest.raises(UserError, match=r"expected \(N, 8, 8, 3, H, W\)"):
        list(lf_video_pairs(tmp_path / "bad.h5"))
    with pytest.raises(UserError, match="outside the 8x8"):
        list(lf_video_pairs(tmp_path / "test.h5", lr_view=(8, 0)))
    with pytest.raises(UserError, match="not found"):
        list(lf_video_pairs(tmp_path / "missing.h5"))
    with pytest.raises(UserError, match="no ground-truth correspondence"):
        load_dataset("lf_video", tmp_path, MatchingOptions())


# --------------------------------------------------------------------------------------------------
# CLI


def _cli(argv: list[str]) -> int:
    """Parse with a parser holding only the ``match`` verb (independent of the other verbs' modules)."""
    import argparse

    from bench.commands.match import add_subcommand

    parser = argparse.ArgumentParser(prog="refsr-bench")
    add_subcommand(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_match_cli_writes_records_and_run_json(tmp_path: Path) -> None:
    root = _fake_sintel(tmp_path / "data", height=32, width=48)
    out = tmp_path / "out"
    argv = ["match", "-m", "zncc", "zncc_blurry", "-d", "sintel", "--data", str(root), "--scale", "4",
            "--search-radius", "8", "--out", str(out)]
    assert _cli(argv) == 0
    with open(out / "records.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["run_id", "dataset", "preset", "method", "reference", "image", "metric", "value"]
    assert {r["preset"] for r in rows} == {"ccnet2017[scale=4;search_radius_px=8]"}
    assert {r["reference"] for r in rows} == {"clean"} and {r["dataset"] for r in rows} == {"sintel"}
    for method in ("zncc", "zncc_blurry"):
        mine = {(r["image"], r["metric"]): float(r["value"]) for r in rows if r["method"] == method}
        assert mine[("ALL", "n_positions")] == mine[("scene_a/frame_0001", "n_positions")] > 0
        curve = [mine[("ALL", f"acc_le_{t}px")] for t in range(8)]
        assert all(0 <= a <= 1 for a in curve) and curve == sorted(curve)
    run = json.loads((out / "run.json").read_text())["runs"][0]
    assert run["references"]["clean"]["options"]["search_radius_px"] == 8
    assert run["methods"]["zncc"]["choices"]["search_radius_px"].startswith("8 ")
    assert run["schema"] == 3 and "protocol" not in run
    assert run["dataset"] == "sintel" and run["protocol_spec"]["name"] == "ccnet2017[scale=4;search_radius_px=8]"
    assert "±8 px window" in run["protocol_sentence"]
    assert "| sintel | ccnet2017[scale=4;search_radius_px=8] | clean | zncc |" in (out / "table.md").read_text()
    with pytest.raises(UserError, match="missing folder .*final"):
        _cli(argv + ["--pass", "final"])
    with pytest.raises(UserError, match="unknown method"):
        _cli(["match", "-m", "nope", "-d", "demo_stereo", "--out", str(out)])
