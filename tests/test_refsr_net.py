"""RefSR-Net (CC-Net + SS-Net): no official code exists, so every check is against an independent oracle:
the parameter counts of docs/methods/refsr_net.md, brute-force numpy matching, scipy's Gaussian filter,
paper eq. 2 re-derived here with functional ops, exact reconstruction of known images, and homography
ground truth. Default tests stay cheap (small sizes); the x8 40x56 forward and the longer CC-Net training
run are marked ``slow``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synth import assert_layout_equal, synthetic_state_dict

from methods import registry
from methods.refsr_net import (
    CONFIG_X4,
    CONFIG_X8,
    CCNet,
    RefSRNetMethod,
    WindowedInnerProduct,
    ccnet_classification_loss,
    cut_ref_patches,
    fuse_windows,
    gaussian_smooth,
    matching_macs_benchmark,
    parameter_counts,
    refsr_net,
    refsr_net_x4,
)
from methods.train_ccnet import (
    TRAIN_IMAGES,
    lr_ground_truth,
    make_lr,
    make_pairs,
    optimise,
    ref_positions,
    rotate_pair,
    sample_crop,
)
from protocols.core import Correspondence, UserError


def _randomise_batch_norm(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine terms so that eval-mode BN is not the identity."""
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            n = bn.num_features
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            bn.weight.data.copy_(1 + 0.2 * torch.randn(n, generator=generator))
            bn.bias.data.copy_(0.1 * torch.randn(n, generator=generator))


# ------------------------------------------------------------------------------------ registry, metadata


def test_factories_registry_and_scale_check() -> None:
    method = registry.create("refsr_net", scale=8)
    assert method.info.scale == 8 and method.info.name == "refsr_net"
    assert registry.create("refsr_net_x4", scale=4).info.scale == 4
    with pytest.raises(UserError, match="x8 model; got scale=4"):
        refsr_net(scale=4)
    with pytest.raises(UserError, match="x4 model; got scale=8"):
        refsr_net_x4(scale=8)
    with pytest.raises(UserError, match="needs a reference"):
        method.predict(torch.rand(1, 3, 8, 8))
    with pytest.raises(UserError, match="shape"):
        method.predict(torch.rand(3, 8, 8), torch.rand(1, 3, 8, 8))
    info = method.info
    assert info.needs_reference and info.inputs == ("lr", "ref")
    modules = dict(method.module.named_modules())
    for role, path in info.parts.items():
        assert path in modules, role
    assert info.parts["matching"] == "matching" and info.parts["extractor"] == "ccnet"
    assert sum(p.numel() for p in modules[info.parts["matching"]].parameters()) == 0
    for key in (
        "ccnet_padding",
        "match_query_positions",
        "delta_before_fuse",
        "output_head",
        "sliding_stride",
        "fusion_weights",
        "parameter_counts",
        "ssnet_loss",
        "border_handling",
    ):
        assert key in info.choices


def test_parameter_counts_equal_the_method_doc() -> None:
    """Counts from docs/methods/refsr_net.md §4.1, §4.2 and §5."""
    x8 = parameter_counts(refsr_net().module)
    x4 = parameter_counts(refsr_net_x4().module)
    for counts in (x8, x4):
        assert counts["ccnet"] == 205_056
        assert counts["matching"] == 0
        assert counts["ssnet.lr_module (frozen)"] == 1_238_481
    assert (x8["ssnet.hr_module"], x8["ssnet.pred"], x8["ssnet trainable"]) == (112_576, 744_674, 857_250)
    assert (x4["ssnet.hr_module"], x4["ssnet.pred"], x4["ssnet trainable"]) == (75_648, 522_008, 597_656)
    ccnet = refsr_net().module.ccnet
    bn = sum(p.numel() for name, p in ccnet.named_parameters() if name.startswith("bn"))
    assert bn == 736  # BN gamma + beta; the convolutions hold the other 204,320
    frozen = refsr_net().module.ssnet.lr_module
    assert not any(p.requires_grad for p in frozen.parameters())


def test_matching_macs_benchmark_formula() -> None:
    # protocols.md §7.5: CC-Net FLOPS-M at LR 128x128 is 16,384 * 201^2 * 256 = 169.45 G.
    assert matching_macs_benchmark((128, 128)) == 16_384 * 201**2 * 256
    assert round(matching_macs_benchmark((128, 128)) / 1e9, 2) == 169.45


# -------------------------------------------------------------------------------------------- CC-Net


def test_ccnet_valid_crop_equals_dense_feature_away_from_borders() -> None:
    """Training (valid convs on a 65x65 crop) and test (same padding) give the same feature wherever the
    receptive field stays inside the image: the translation equivariance the paper relies on."""
    torch.manual_seed(1)
    ccnet = CCNet()
    _randomise_batch_norm(ccnet, 1)
    ccnet.eval()
    image = torch.rand(1, 3, 70, 72)
    with torch.no_grad():
        dense = ccnet(image)
        assert dense.shape == (1, 256, 70, 72)
        for y, x in ((32, 32), (37, 39), (34, 35)):
            crop = image[:, :, y - 32 : y + 33, x - 32 : x + 33]
            single = ccnet(crop, same_padding=False)
            assert single.shape == (1, 256, 1, 1)
            torch.testing.assert_close(single[0, :, 0, 0], dense[0, :, y, x], rtol=1e-4, atol=1e-5)
        # Near a border the zero padding of the dense path matters: the two must differ there.
        corner = F.pad(image, (32, 0, 32, 0))[:, :, :65, :65]
        assert not torch.allclose(ccnet(corner, same_padding=False)[0, :, 0, 0], dense[0, :, 0, 0], atol=1e-3)


def test_ccnet_classification_loss_matches_numpy() -> None:
    generator = torch.Generator().manual_seed(2)
    f = torch.randn(3, 5, 1, 1, generator=generator)
    g = torch.randn(3, 5, 7, 9, generator=generator)
    target = torch.tensor([[0, 0], [3, 4], [6, 8]])
    loss = ccnet_classification_loss(f, g, target)
    f64, g64 = f.double().numpy(), g.double().numpy()
    expected = []
    for n in range(3):
        logits = np.einsum("c,cij->ij", f64[n, :, 0, 0], g64[n])
        log_z = np.log(np.sum(np.exp(logits - logits.max()))) + logits.max()
        expected.append(log_z - logits[target[n, 0], target[n, 1]])
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)
    with pytest.raises(ValueError):
        ccnet_classification_loss(g, g, target)


def _brute_force_match(
    query: np.ndarray, ref: np.ndarray, y0: int, x0: int, step: int, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Loop oracle: first maximum in row-major order over in-Ref candidates of the Chebyshev window."""
    rows, cols = query.shape[1:]
    ref_h, ref_w = ref.shape[1:]
    out_yx = np.zeros((rows, cols, 2))
    out_score = np.full((rows, cols), -np.inf)
    for m in range(rows):
        for n in range(cols):
            py, px = y0 + step * m, x0 + step * n
            out_yx[m, n] = (min(max(py, 0), ref_h - 1), min(max(px, 0), ref_w - 1))
            for y in range(max(0, py - radius), min(ref_h, py + radius + 1)):
                for x in range(max(0, px - radius), min(ref_w, px + radius + 1)):
                    value = float(np.dot(query[:, m, n], ref[:, y, x]))
                    if value > out_score[m, n]:
                        out_score[m, n], out_yx[m, n] = value, (y, x)
    return out_yx, out_score


@pytest.mark.parametrize("step,block_hr_px", [(3, 9), (5, 32), (4, 1)])
def test_windowed_matching_equals_brute_force(step: int, block_hr_px: int) -> None:
    generator = torch.Generator().manual_seed(3)
    # Integer-valued features so that exact ties occur and the row-major tie rule is exercised.
    query = torch.randint(-2, 3, (1, 4, 7, 9), generator=generator).float()
    ref = torch.randint(-2, 3, (1, 4, 23, 30), generator=generator).float()
    matcher = WindowedInnerProduct(radius_px=5, block_hr_px=block_hr_px)
    y0, x0 = 2, -1  # the last query rows/columns lie outside the Ref (some windows partly, some fully)
    ref_yx, score = matcher(query, ref, y0, x0, step)
    expected_yx, expected_score = _brute_force_match(query[0].numpy(), ref[0].numpy(), y0, x0, step, 5)
    np.testing.assert_array_equal(ref_yx.numpy(), expected_yx)
    np.testing.assert_array_equal(score.numpy(), expected_score.astype(np.float32))
    if step == 5:
        assert np.isinf(expected_score).any()  # queries whose window misses the Ref entirely


def test_match_queries_hr_positions_s_i_s_j() -> None:
    """match(): LR pixel (i, j) is the CC-Net feature of the bilinear LR↑ at HR (s*i, s*j); checked with
    features computed here and a brute-force search."""
    method = refsr_net_x4()
    _randomise_batch_norm(method.module, 4)
    method.module.matching.radius_px = 6
    generator = torch.Generator().manual_seed(4)
    lr = torch.rand(1, 3, 6, 5, generator=generator)
    ref = torch.rand(1, 3, 19, 26, generator=generator)
    correspondence = method.match(lr, ref)
    assert isinstance(correspondence, Correspondence)
    assert correspondence.ref_yx.shape == (6, 5, 2) and correspondence.score.shape == (6, 5)
    assert correspondence.ref_yx.dtype == torch.float32 and correspondence.score.dtype == torch.float32
    with torch.no_grad():
        lr_up = F.interpolate(lr, size=(24, 20), mode="bilinear", align_corners=False)
        dense_lr = method.module.ccnet(lr_up)[0, :, ::4, ::4].double().numpy()
        dense_ref = method.module.ccnet(ref)[0].double().numpy()
    expected_yx, expected_score = _brute_force_match(dense_lr, dense_ref, 0, 0, 4, 6)
    np.testing.assert_array_equal(correspondence.ref_yx.numpy(), expected_yx)
    np.testing.assert_allclose(correspondence.score.numpy(), expected_score, rtol=1e-4)


# -------------------------------------------------------------------------------------------- SS-Net


def test_prediction_module_follows_eq2() -> None:
    """Paper eq. 2 written out here with functional ops on the module's weights (x4 layout: levels 2..0)."""
    torch.manual_seed(5)
    method = refsr_net_x4()
    ssnet = method.module.ssnet
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in ssnet.parameters():  # bigger biases: masks away from their default values
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
        lr_feature = torch.randn(1, 64, 16, 16, generator=generator)
        ref_patch = torch.rand(1, 3, 64, 64, generator=generator)
        lr_patch = torch.rand(1, 3, 16, 16, generator=generator)
        prediction, mask0 = ssnet(lr_feature, ref_patch, lr_patch)

        state = {k: v for k, v in ssnet.state_dict().items()}

        def conv(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

        f0 = F.relu(conv(ref_patch, "hr_module.conv0"))
        f1 = F.max_pool2d(F.relu(conv(f0, "hr_module.down.0")), 2)
        f2 = F.max_pool2d(F.relu(conv(f1, "hr_module.down.1")), 2)
        m_l = F.relu(conv(torch.cat([lr_feature, f2], 1), "pred.mask2"))
        fused = conv(torch.sigmoid(torch.cat([lr_feature, f2 * torch.sigmoid(m_l)], 1)), "pred.fuse2")
        for level, hr in ((1, f1), (0, f0)):
            sp = F.pixel_shuffle(conv(fused, f"pred.sp{level}"), 2)
            up_mask = m_l.repeat_interleave(2, 2).repeat_interleave(2, 3)
            m_l = F.relu(conv(torch.cat([sp, hr, up_mask], 1), f"pred.mask{level}"))
            up_fused = fused.repeat_interleave(2, 2).repeat_interleave(2, 3)
            fused = conv(torch.sigmoid(torch.cat([up_fused, hr * torch.sigmoid(m_l)], 1)), f"pred.fuse{level}")
        expected = conv(fused, "pred.out") + lr_patch.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(prediction, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mask0, torch.sigmoid(m_l))
    assert prediction.shape == (1, 3, 64, 64) and mask0.shape == (1, 1, 64, 64)
    assert float(mask0.min()) >= 0.5  # sig(relu(.)) as written in eq. 2


def test_gaussian_smoothing_matches_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    masks = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(6))
    smoothed = gaussian_smooth(masks, sigma_px=3.0, truncate_sigmas=3.0)
    for k in range(2):
        expected = gaussian_filter(masks[k, 0].double().numpy(), sigma=3.0, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(smoothed[k, 0].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_fuse_windows_weighted_average() -> None:
    generator = torch.Generator().manual_seed(7)
    size, stride, grid = 8, 4, (3, 4)
    image = torch.rand(1, 3, size + stride * 2, size + stride * 3, generator=generator)
    tops = [stride * r for r in range(grid[0]) for _ in range(grid[1])]
    lefts = [stride * c for _ in range(grid[0]) for c in range(grid[1])]
    crops = torch.cat([image[:, :, t : t + size, left : left + size] for t, left in zip(tops, lefts, strict=True)])
    weights = 0.1 + torch.rand(len(tops), 1, size, size, generator=generator)
    # Windows cut from one image reproduce it whatever the weights.
    torch.testing.assert_close(fuse_windows(crops, weights, grid, stride, 0.0), image)
    # Arbitrary predictions: compare with an explicit accumulation loop.
    predictions = torch.rand(len(tops), 3, size, size, generator=generator)
    numerator = torch.zeros_like(image)
    denominator = torch.zeros(1, 1, *image.shape[-2:])
    for k, (t, left) in enumerate(zip(tops, lefts, strict=True)):
        numerator[:, :, t : t + size, left : left + size] += weights[k] * predictions[k]
        denominator[:, :, t : t + size, left : left + size] += weights[k]
    torch.testing.assert_close(fuse_windows(predictions, weights, grid, stride, 1e-6), numerator / (denominator + 1e-6))


def test_cut_ref_patches_zero_outside() -> None:
    ref = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(8))
    centres = torch.tensor([[10.0, 15.0], [0.0, 0.0], [19.0, 29.0], [3.0, 27.0]])
    patches = cut_ref_patches(ref, centres, 8)
    padded = np.zeros((3, 40, 50), dtype=np.float32)
    padded[:, 10:30, 10:40] = ref[0].numpy()
    for k, (y, x) in enumerate(centres.int().tolist()):
        expected = padded[:, y - 4 + 10 : y + 4 + 10, x - 4 + 10 : x + 4 + 10]
        np.testing.assert_array_equal(patches[k].numpy(), expected)


# ------------------------------------------------------------------------------------- whole forward


def _check_forward(method: RefSRNetMethod, lr_hw: tuple[int, int], ref_hw: tuple[int, int], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lr = torch.rand(1, 3, *lr_hw, generator=generator)
    ref = torch.rand(1, 3, *ref_hw, generator=generator)
    sr = method.predict(lr, ref)
    scale = method.info.scale
    assert sr.shape == (1, 3, scale * lr_hw[0], scale * lr_hw[1]) and sr.dtype == torch.float32
    assert torch.isfinite(sr).all()
    return sr


def test_forward_x4_32x32_and_40x56() -> None:
    method = refsr_net_x4()
    _check_forward(method, (32, 32), (40, 72), seed=9)
    _check_forward(method, (40, 56), (100, 60), seed=10)


def test_forward_x8_32x32() -> None:
    _check_forward(refsr_net(), (32, 32), (64, 48), seed=11)


@pytest.mark.slow
def test_forward_x8_40x56() -> None:
    _check_forward(refsr_net(), (40, 56), (72, 120), seed=12)


def test_forward_deterministic_on_odd_sizes() -> None:
    """Tiny and odd LR sizes exercise the replicate padding, a Ref smaller than one patch the zero padding;
    a fresh instance (same seeded initialisation) gives a bit-identical output."""
    first = _check_forward(refsr_net_x4(), (5, 19), (30, 20), seed=13)
    second = _check_forward(refsr_net_x4(), (5, 19), (30, 20), seed=13)
    assert torch.equal(first, second)


def test_forward_uses_lr_as_residual_when_windows_predict_lr() -> None:
    """With the output head zeroed every window predicts NN↑(LR patch), so the fused SR is exactly the
    nearest-neighbour up-sampled LR, independent of the masks: checks window placement and cropping."""
    method = refsr_net_x4()
    with torch.no_grad():
        head = method.module.ssnet.pred.out
        assert head.bias is not None
        head.weight.zero_()
        head.bias.zero_()
    generator = torch.Generator().manual_seed(14)
    lr = torch.rand(1, 3, 13, 21, generator=generator)  # padded to 16 x 24: two overlapping windows
    sr = method.predict(lr, torch.rand(1, 3, 50, 40, generator=generator))
    torch.testing.assert_close(sr, F.interpolate(lr, scale_factor=4, mode="nearest"), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------- weights and cost


def test_load_weights_strict(tmp_path) -> None:
    method = refsr_net_x4()
    layout = tmp_path / "layout.tsv"
    layout.write_text(
        "key\tshape\tdtype\n"
        + "".join(
            f"{k}\t{','.join(str(d) for d in v.shape)}\t{str(v.dtype).replace('torch.', '')}\n"
            for k, v in method.module.state_dict().items()
        )
    )
    state = synthetic_state_dict(layout, defaults=method.module.state_dict())
    torch.save(state, tmp_path / "refsr_net_x4.pth")
    fresh = refsr_net_x4()
    assert not fresh.weights_loaded
    fresh.load_weights(tmp_path)  # a folder holding <name>.pth
    assert fresh.weights_loaded
    assert_layout_equal(fresh.module, layout)
    for key, value in state.items():
        assert torch.equal(fresh.module.state_dict()[key], value), key
    broken = dict(state)
    del broken["ccnet.fc.weight"]
    broken["ccnet.extra"] = torch.zeros(1)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(UserError, match="ccnet.fc.weight") as error:
        refsr_net_x4().load_weights(tmp_path / "broken.pth")
    assert "ccnet.extra" in str(error.value)
    with pytest.raises(UserError, match="not found"):
        refsr_net().load_weights(tmp_path)  # refsr_net.pth is not there


def test_cost_graph_fvcore_counts() -> None:
    """fvcore traces the cost graph; the matching part is the windowed inner product and the CC-Net
    convolutions count as computed here (one window: LR 16x16 at x4, its query at HR (32, 32))."""
    from fvcore.nn import FlopCountAnalysis

    method = refsr_net_x4()
    module, inputs = method.cost_graph((16, 16), (48, 40))
    assert [tuple(t.shape) for t in inputs] == [(1, 3, 16, 16), (1, 3, 48, 40)]
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_module = analysis.by_module()
    # One query at (32, 32), radius 100: the whole 48x40 Ref is its window -> 48*40 candidates x 256.
    assert by_module["matching"] == 48 * 40 * 256
    channels = (3, 16, 32, 64, 64, 64, 128)  # paper Table 1
    per_pixel_trunk = sum(channels[k] * channels[k + 1] * 9 for k in range(6))
    fc = 128 * 256
    expected_ccnet_convs = 64 * 64 * per_pixel_trunk + 1 * fc + 48 * 40 * (per_pixel_trunk + fc)
    assert analysis.by_module_and_operator()["ccnet"]["conv"] == expected_ccnet_convs
    assert by_module["ssnet.pred"] > 0 and by_module["ssnet.hr_module"] > 0 and by_module["ssnet.lr_module"] > 0


# ------------------------------------------------------------------------------- training sanity check


def test_homography_ground_truth_and_rotation() -> None:
    """The Ref pixel at the ground truth shows the HR pixel (colour check against a 3-px offset), also
    after the 90° training rotations; the ground truth agrees with protocols.embedded when present."""
    pair = make_pairs(TRAIN_IMAGES, 1, seed=3, hr_hw=(96, 96), ref_hw=(112, 112))[0]
    for turns in range(4):
        rotated = rotate_pair(pair, turns)
        grid = np.stack(np.meshgrid(np.arange(96), np.arange(96), indexing="ij"), axis=-1)
        gt, valid = ref_positions(rotated, grid.astype(np.float64))
        assert valid.mean() > 0.8
        rounded = np.floor(gt + 0.5).astype(int)[valid]
        hr = rotated.hr[0].permute(1, 2, 0).numpy()[valid]
        ref = rotated.ref[0].permute(1, 2, 0).numpy()
        error = np.abs(hr - ref[rounded[:, 0], rounded[:, 1]]).mean()
        shifted = np.abs(hr - ref[np.clip(rounded[:, 0] + 3, 0, 111), rounded[:, 1]]).mean()
        assert error < 0.5 * shifted
    gt_lr, valid_lr = lr_ground_truth(pair, 4)
    assert gt_lr.shape == (24, 24, 2) and valid_lr.shape == (24, 24)


def test_training_crop_labels_point_at_the_match() -> None:
    """In a training crop, the Ref pixel at each label cell shows the scene point of its query centre."""
    pair = make_pairs(TRAIN_IMAGES, 1, seed=4, hr_hw=(128, 128), ref_hw=(144, 144))[0]
    rng = np.random.default_rng(0)
    # Use the sharp HR as the "LR↑" so that pixel colours can be compared directly.
    crop = sample_crop(pair, pair.hr, rng, scale=4, queries=6, radius_px=6)
    assert crop is not None
    centres = crop.lr_crop[0, :, 32 : 32 + 21 : 4, 32 : 32 + 21 : 4].permute(1, 2, 0)[crop.valid]
    cells = crop.window_yx + crop.label_yx + 32  # window origin in feature cells + label, back to Ref-crop pixels
    at_label = crop.ref_crop[0][:, cells[:, 0], cells[:, 1]].t()
    off_label = crop.ref_crop[0][:, cells[:, 0] + 3, cells[:, 1]].t()
    assert (centres - at_label).abs().mean() < 0.5 * (centres - off_label).abs().mean()
    assert ((crop.label_yx >= 3) & (crop.label_yx <= 9)).all()  # jitter up to r/2 around the centre cell


def test_ccnet_training_steps_fit_a_crop() -> None:
    """Three Adam steps of the classification loss (the ``optimise`` loop) on one small crop (4 x 4 queries,
    9 x 9 search maps) move the argmax onto the labels: the loss falls below the uniform value log(81) and
    the accuracy rises from chance. Labels that did not point at the true match could not be fitted this
    fast. (Cheap default check; accuracy@1 of ``match`` on held-out pairs: the slow test / the script.)"""
    torch.manual_seed(0)
    method = refsr_net_x4()
    pair = make_pairs(TRAIN_IMAGES, 1, seed=0, hr_hw=(112, 112), ref_hw=(128, 128))[0]
    crop = sample_crop(pair, method.module.upsample_lr(make_lr(pair, 4)), np.random.default_rng(5), 4, 4, 4)
    assert crop is not None and int(crop.valid.sum()) >= 12
    ccnet = method.module.ccnet

    def loss_and_accuracy() -> tuple[float, float]:
        ccnet.train()  # batch statistics, as in training
        with torch.no_grad():
            query = ccnet(crop.lr_crop, same_padding=False)[0, :, ::4, ::4].permute(1, 2, 0)[crop.valid]
            ref = ccnet(crop.ref_crop, same_padding=False)[0]
        logits = np.stack(
            [
                np.einsum("c,cij->ij", q, ref[:, y : y + 9, x : x + 9].numpy()).ravel()
                for q, (y, x) in zip(query.numpy(), crop.window_yx.tolist(), strict=True)
            ]
        ).astype(np.float64)
        target = (crop.label_yx[:, 0] * 9 + crop.label_yx[:, 1]).numpy()
        log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        loss = float(np.mean(log_z - logits[np.arange(len(target)), target]))
        return loss, float(np.mean(logits.argmax(1) == target))

    loss_before, accuracy_before = loss_and_accuracy()
    losses = optimise(ccnet, itertools.repeat([crop]), steps=3, scale=4, radius_px=4)
    loss_after, accuracy_after = loss_and_accuracy()
    assert len(losses) == 3 and losses[0] == pytest.approx(loss_before, rel=1e-3)
    assert loss_before > np.log(81) > loss_after
    assert accuracy_before < 0.2 and accuracy_after >= 0.5


@pytest.mark.slow
def test_ccnet_training_raises_accuracy() -> None:
    """120 steps of the sanity recipe raise accuracy@1 of ``match`` (radius 100) on a held-out crop of the
    embedded rocket pair (several minutes on a CPU; the 300-step numbers are in the report)."""
    from methods.train_ccnet import sanity_check

    torch.manual_seed(0)
    summary = sanity_check(refsr_net_x4(), steps=120, eval_pairs=1)
    before, after = summary["accuracy_before"], summary["accuracy_after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after[1] > before[1] + 0.01


def test_configs_are_data() -> None:
    assert (CONFIG_X8.scale, CONFIG_X8.lr_patch_px, CONFIG_X8.lr_stride_px, CONFIG_X8.num_levels) == (8, 8, 4, 3)
    assert (CONFIG_X4.scale, CONFIG_X4.lr_patch_px, CONFIG_X4.lr_stride_px, CONFIG_X4.num_levels) == (4, 16, 8, 2)
    assert CONFIG_X8.search_radius_px == CONFIG_X4.search_radius_px == 100
