"""Cost measurement: operator rules against closed-form counts, parameter counting, timing statistics,
the CPU memory probe, the ``cost`` verb end to end, and every registered method.

Oracles: closed-form MAC formulas written out here from the layer shapes; the CARN-M architecture as
described in ``fixtures/carn_m/README.md``; MASA-SR Table 2 (``paper_tables.md``) and each fixture's
``flops.json`` (counts made from the official code).

Speed: the analytic tests take well under a second each. Every registered method is traced at LR 16 /
Ref 64 by default, except the ones listed in ``HEAVY_AT_SMALL_SIZE`` (marked slow). The benchmark
setting (LR 128 / Ref 512: MASA Table 2, fixture counts, the full smoke test) needs minutes of CPU per
method and is marked slow; those tests share one trace per method through ``_traced``.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from bench.engines.cost.latency import LatencyConfig, summarize_ms, time_forward
from bench.engines.cost.macs import TraceCost, analyze_trace
from bench.engines.cost.memory import cpu_peak_rss_delta
from bench.engines.cost.params import ParamCount, count_params
from bench.results.cost_csv import COLUMNS
from methods import registry
from methods.classical import MATCHER_NAMES
from protocols.core import UserError

G = 1e9


def _counts(module: nn.Module, *inputs: torch.Tensor) -> TraceCost:
    return analyze_trace(module.eval(), tuple(inputs))


# --------------------------------------------------------------------------------------------------
# operator rules, closed form


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def test_conv_with_groups_stride_dilation_is_exact_in_both_conventions() -> None:
    n, c_in, c_out, h, w, k, stride, pad, dil, groups = 2, 8, 12, 17, 23, 3, 2, 2, 2, 4
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad, dilation=dil, groups=groups)
    h_out, w_out = _conv_out(h, k, stride, pad, dil), _conv_out(w, k, stride, pad, dil)
    expected = n * c_out * h_out * w_out * (c_in // groups) * k * k
    trace = _counts(conv, torch.rand(n, c_in, h, w))
    assert trace.counts["macs"].by_operator == {"conv": expected}
    assert trace.counts["masa2021"].by_operator == {"conv": expected}


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_conv_true_macs_and_the_masa_quirk(groups: int) -> None:
    n, c_in, c_out, h, w, k = 1, 16, 8, 10, 12, 4
    deconv = nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=1, groups=groups)
    h_out, w_out = 2 * h, 2 * w  # (h - 1) * 2 - 2 + 4
    trace = _counts(deconv, torch.rand(n, c_in, h, w))
    # true: every input pixel scatters C_in x (C_out / groups) x k x k products
    assert trace.counts["macs"].by_operator == {"conv": n * h * w * c_in * (c_out // groups) * k * k}
    # MASA counter: output resolution x C_out x w.shape[1] (= C_out / groups) x k x k
    assert trace.counts["masa2021"].by_operator == {"conv": n * h_out * w_out * c_out * (c_out // groups) * k * k}


def test_stride2_deconvolution_is_overcounted_4x_by_masa_when_channels_match() -> None:
    trace = _counts(nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1), torch.rand(1, 64, 8, 8))
    assert trace.counts["masa2021"].total == 4 * trace.counts["macs"].total


def test_linear_counts_every_leading_dimension() -> None:
    trace = _counts(nn.Linear(20, 7), torch.rand(3, 5, 20))
    assert trace.counts["macs"].by_operator == {"linear": 3 * 5 * 20 * 7}
    assert trace.counts["masa2021"].by_operator == {"linear": 3 * 5 * 20 * 7}


class _Products(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor, bias: torch.Tensor) -> Any:
        return torch.bmm(a, b), torch.matmul(c, d), torch.addmm(bias, c, d)


def test_bmm_matmul_addmm() -> None:
    a, b = torch.rand(4, 5, 6), torch.rand(4, 6, 7)
    c, d, bias = torch.rand(9, 6), torch.rand(6, 3), torch.rand(9, 3)
    expected = {"bmm": 4 * 5 * 6 * 7, "matmul": 9 * 6 * 3, "addmm": 9 * 6 * 3}
    trace = _counts(_Products(), a, b, c, d, bias)
    assert trace.counts["macs"].by_operator == expected
    assert trace.counts["masa2021"].by_operator == expected


class _Einsum(nn.Module):
    def __init__(self, equation: str) -> None:
        super().__init__()
        self.equation = equation

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, x, y)


def test_einsum_known_pattern_and_masa_unsupported_pattern() -> None:
    x, y = torch.rand(2, 5, 3), torch.rand(2, 5, 4)  # "nct,ncp->ntp" contracts c
    trace = _counts(_Einsum("nct,ncp->ntp"), x, y)
    assert trace.counts["macs"].by_operator == {"einsum": 2 * 5 * 3 * 4}
    assert trace.counts["masa2021"].by_operator == {"einsum": 2 * 5 * 3 * 4}
    other = _counts(_Einsum("bij,bjk->bik"), torch.rand(2, 3, 5), torch.rand(2, 5, 4))
    assert other.counts["macs"].by_operator == {"einsum": 2 * 3 * 5 * 4}
    assert other.counts["masa2021"].total == 0
    assert other.counts["masa2021"].unsupported_ops == {"aten::einsum": 1}


class _Deform(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(c_out, c_in // groups, 3, 3))

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.deform_conv2d(x, offset, self.weight, padding=1, mask=mask)


def test_deform_conv2d_dense_part_and_sampling_are_separate_buckets() -> None:
    n, c_in, c_out, groups, offset_groups, h, w = 1, 8, 6, 2, 4, 7, 9
    x = torch.rand(n, c_in, h, w)
    offset = torch.rand(n, 2 * offset_groups * 9, h, w)
    mask = torch.rand(n, offset_groups * 9, h, w)
    trace = _counts(_Deform(c_in, c_out, groups), x, offset, mask)
    dense = n * c_out * h * w * (c_in // groups) * 9
    samples = n * c_in * 9 * h * w
    assert trace.counts["macs"].by_operator == {"deform_conv2d": dense, "deform_conv2d_sampling": samples * 5}
    assert trace.counts["macs"].unsupported_ops == {}
    # outside ATen: the MASA counter never saw it
    assert trace.counts["masa2021"].total == 0
    assert trace.counts["masa2021"].unsupported_ops == {"torchvision::deform_conv2d": 1}


def test_deform_conv2d_without_mask_samples_at_four_macs() -> None:
    layer = torchvision.ops.DeformConv2d(4, 4, 3, padding=1)
    x, offset = torch.rand(1, 4, 5, 5), torch.zeros(1, 18, 5, 5)
    trace = _counts(layer, x, offset)
    assert trace.counts["macs"].by_operator == {
        "deform_conv2d": 4 * 25 * 4 * 9,
        "deform_conv2d_sampling": 4 * 9 * 25 * 4,
    }


class _Elementwise(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Any:
        x = a + b  # broadcast (1,4,5,6) + (1,1,5,6)
        d = F.dropout(x, 0.5, training=False)
        f = torch.floor_divide(x, 2.0)
        q = x - 1.0
        torch.relu_(q)
        r = torch.relu(x * 3.0)
        ratio = x / (b + 1.0)
        accumulated = torch.zeros_like(x)
        accumulated.add_(x)
        scaled = torch.zeros_like(x)
        scaled.mul_(x)  # in-place mul: not in the MASA counter's list
        return (
            d,
            f,
            q,
            r,
            ratio,
            accumulated,
            scaled,
            torch.rsqrt(b + 2.0),
            self.bn(x),
            torch.softmax(x, 1),
            torch.sigmoid(x),
        )


def test_masa2021_elementwise_rules() -> None:
    a, b = torch.rand(1, 4, 5, 6), torch.rand(1, 1, 5, 6)
    big, small = a.numel(), b.numel()  # 120 output elements of the broadcast ops, 30 of b-only ops
    trace = _counts(_Elementwise(), a, b)
    assert trace.counts["masa2021"].by_operator == {
        "add": big + 2 * small,  # a + b, b + 1, b + 2
        "add_": big,
        "sub": big,
        "mul": big,
        "div": big,
        "relu": big,
        "relu_": big,
        "floor_divide": big,
        "dropout": big,
        "rsqrt": 2 * small,
        "batch_norm": 4 * big,
        "softmax": 5 * big,
    }
    assert trace.counts["masa2021"].unsupported_ops == {"aten::mul_": 1, "aten::sigmoid": 1}
    # convention macs: elementwise work is not multiply-accumulate; eval batch norm (affine) = 2 per element
    assert trace.counts["macs"].by_operator == {"batch_norm": 2 * big}
    assert trace.counts["macs"].unsupported_ops == {}
    assert trace.counts["macs"].ops_seen["aten::sigmoid"] == (1, 0)


class _Layout(nn.Module):
    def forward(self, x: torch.Tensor) -> Any:
        cols = F.unfold(x, 3, padding=1)
        folded = F.fold(cols, x.shape[-2:], 3, padding=1)
        up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return folded, up, F.normalize(x, dim=1)


def test_fold_unfold_are_zero_but_listed_bicubic_and_norm_are_counted() -> None:
    x = torch.rand(1, 3, 6, 8)
    trace = _counts(_Layout(), x)
    macs = trace.counts["macs"]
    assert macs.by_operator == {"upsample_bicubic2d": 16 * 3 * 12 * 16, "linalg_vector_norm": x.numel()}
    assert macs.ops_seen["aten::im2col"] == (1, 0)
    assert macs.ops_seen["aten::col2im"] == (1, 0)
    assert macs.unsupported_ops == {}


class _Opaque(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


class _WithOpaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Opaque.apply(self.conv(x))


def test_custom_autograd_function_is_reported_unsupported() -> None:
    trace = _counts(_WithOpaque(), torch.rand(1, 3, 4, 4))
    for convention in ("macs", "masa2021"):
        assert trace.counts[convention].unsupported_ops == {"prim::PythonOp._Opaque": 1}
        assert trace.counts[convention].by_operator == {"conv": 9 * 16}


class _DeadBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Conv2d(3, 4, 3, padding=1)
        self.dead = nn.Conv2d(3, 4, 3, padding=1)
        self.never = nn.Conv2d(3, 4, 1)
        self.register_buffer("table", torch.zeros(10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _ = self.dead(x)  # executed, result unused: the trace drops it
        return self.used(x)


def test_dead_code_is_pruned_and_params_used_follow_the_trace() -> None:
    module = _DeadBranch()
    trace = _counts(module, torch.rand(1, 3, 5, 5))
    assert trace.counts["macs"].total == 4 * 25 * 3 * 9
    assert trace.counts["masa2021"].total == 4 * 25 * 3 * 9
    assert {"dead", "never"} <= set(trace.uncalled_modules)
    params = count_params(module, {"matching": "used"}, trace.used_param_ids)
    conv3x3, conv1x1 = 4 * 3 * 9 + 4, 4 * 3 + 4
    assert params == ParamCount(
        total=2 * conv3x3 + conv1x1,
        trainable=2 * conv3x3 + conv1x1,
        buffers=10,
        used=conv3x3,
        by_part={"matching": conv3x3},
    )


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.alias = self.block  # same module under two names
        self.frozen = nn.Conv2d(4, 4, 1)
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frozen(self.alias(self.block(x)))


def test_shared_parameters_count_once_and_parts_resolve_aliases() -> None:
    module = _Shared()
    trace = _counts(module, torch.rand(1, 4, 6, 6))
    per_call = 36 * 4 * 4 * 9
    block = trace.canonical_names["alias"]
    assert trace.counts["macs"].module_total(block) == 2 * per_call
    params = count_params(module, {"matching": "alias"}, trace.used_param_ids)
    assert (params.total, params.trainable, params.used) == (148 + 20, 148, 168)
    assert params.by_part == {"matching": 148}
    with pytest.raises(UserError, match="not a submodule"):
        count_params(module, {"matching": "missing.path"})


def test_unknown_convention_is_a_user_error() -> None:
    with pytest.raises(UserError, match="masa2021"):
        analyze_trace(nn.Conv2d(1, 1, 1), (torch.rand(1, 1, 2, 2),), ("gflops",))


# --------------------------------------------------------------------------------------------------
# latency statistics, timing, memory


def test_summarize_ms_against_hand_computed_percentiles() -> None:
    stats = summarize_ms([9.0, 1.0, 5.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0])
    # linear interpolation on the sorted 1..9: position (n - 1) * q
    assert stats["latency_ms_median"] == 5.0
    assert stats["latency_ms_p25"] == 3.0 and stats["latency_ms_p75"] == 7.0
    assert stats["latency_ms_iqr"] == 4.0
    assert stats["latency_ms_p10"] == pytest.approx(1.8) and stats["latency_ms_p90"] == pytest.approx(8.2)
    assert stats["latency_ms_mean"] == 5.0 and stats["latency_ms_min"] == 1.0


def test_cpu_timing_returns_one_sample_per_timed_iteration() -> None:
    samples = time_forward(nn.Conv2d(3, 3, 3), (torch.rand(1, 3, 16, 16),), "cpu", LatencyConfig(warmup=1, repeat=4))
    assert len(samples) == 4 and all(s > 0 for s in samples)
    with pytest.raises(UserError):
        time_forward(nn.Identity(), (torch.rand(1),), "cpu", LatencyConfig(warmup=0, repeat=0))


@pytest.mark.gpu
def test_gpu_timing_and_peak_memory() -> None:
    from bench.engines.cost.memory import gpu_peak_memory_mib

    module = nn.Conv2d(3, 8, 3).cuda().eval()
    inputs = (torch.rand(1, 3, 256, 256, device="cuda"),)
    samples = time_forward(module, inputs, "cuda", LatencyConfig(warmup=10, repeat=50))
    assert len(samples) == 50 and all(s > 0 for s in samples)
    peak = gpu_peak_memory_mib(module, inputs)
    output_mib = 8 * 254 * 254 * 4 / 2**20
    assert peak["peak_allocated_delta_mib"] >= output_mib * 0.99


_PLUGIN = """
import torch, torch.nn as nn
from methods.base import MethodInfo
from methods.registry import register
from protocols.core import UserError

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.matcher = nn.Conv2d(8, 8, 1)
        self.tail = nn.Conv2d(8, 48, 3, padding=1)
        self.training_only = nn.Conv2d(8, 8, 3)

    def forward(self, lr, ref):
        # a 64 MiB scratch tensor touched during the forward, for the memory probe
        scratch = torch.ones(16 * 1024 * 1024) if ALLOCATE else torch.zeros(1)
        small = nn.functional.adaptive_avg_pool2d(ref, lr.shape[-2:])
        x = self.head(lr) + self.matcher(self.head(small)) + scratch[0]
        return nn.functional.pixel_shuffle(self.tail(x), 4)

class Toy:
    def __init__(self, name, scale, device):
        if scale != 4:
            raise UserError(f"{name}: only x4")
        self.info = MethodInfo(name=name, title="toy", venue="-", year=2024, official_repo=None, variant="rec",
                               scale=4, inputs=("lr", "ref"), license="MIT",
                               parts={"matching": "matcher", "backbone": "tail"})
        self.module = Net().to(device).eval()
        self.weights_loaded = False

    def cost_graph(self, lr_hw, ref_hw):
        return self.module, (torch.rand(1, 3, *lr_hw), torch.rand(1, 3, *ref_hw))

    def predict(self, lr, ref=None, ref_lr=None):
        with torch.inference_mode():
            return self.module(lr, ref)

ALLOCATE = NAME.endswith("big")
register(NAME, lambda *, scale=4, device="cpu": Toy(NAME, scale, device))
"""


def _write_plugin(folder: Path, name: str) -> Path:
    path = folder / f"{name}_plugin.py"
    path.write_text(f"NAME = {name!r}\n" + _PLUGIN)
    return path


def test_cpu_memory_probe_sees_a_64_mib_scratch_tensor(tmp_path: Path) -> None:
    plugin = _write_plugin(tmp_path, "toy_cost_big")
    report = cpu_peak_rss_delta(
        "toy_cost_big", scale=4, lr_hw=(8, 8), ref_hw=(16, 16), threads=1, plugins=[plugin], timeout_s=120
    )
    assert report["how"].startswith("clear_refs")
    assert 60 <= report["peak_rss_delta_mib"] < 64 + 256


def test_cost_verb_end_to_end(tmp_path: Path) -> None:
    from bench.commands.cli import main

    plugin = _write_plugin(tmp_path, "toy_cost")
    out = tmp_path / "out"
    code = main(
        [
            "--plugin",
            str(plugin),
            "cost",
            "-m",
            "toy_cost",
            "--lr",
            "8",
            "--ref",
            "16",
            "--sweep-ref",
            "16,32",
            "--convention",
            "macs",
            "masa2021",
            "--warmup",
            "0",
            "--repeat",
            "2",
            "--no-memory",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    lines = (out / "cost.csv").read_text().splitlines()
    assert tuple(lines[0].split(",")) == COLUMNS
    rows = [dict(zip(COLUMNS, line.split(","), strict=True)) for line in lines[1:]]

    def value(quantity: str, part: str, convention: str, ref_hw: str = "16x16") -> float:
        (hit,) = [
            r
            for r in rows
            if (r["quantity"], r["part"], r["convention"], r["ref_hw"]) == (quantity, part, convention, ref_hw)
        ]
        return float(hit["value"])

    head = 2 * 64 * 8 * 3 * 9  # head on LR and on the pooled Ref, 8x8 each
    matcher, tail = 64 * 8 * 8, 64 * 48 * 8 * 9
    pool = 3 * 16 * 16  # fvcore: adaptive average pooling = 1 per input element
    # values are GMACs with 6 decimals: half a unit of the last place is 500 MACs
    assert value("flops_t", "total", "macs") == pytest.approx((head + matcher + tail + pool) / G, abs=5e-7)
    assert value("flops_t", "total", "masa2021") == pytest.approx((head + matcher + tail + 2 * 64 * 8) / G, abs=5e-7)
    assert value("flops_m", "matching", "macs") == pytest.approx(matcher / G, abs=5e-7)
    assert value("macs", "backbone", "masa2021") == pytest.approx(tail / G, abs=5e-7)
    assert value("params", "total", "-") == 224 + 72 + 3504 + 584
    assert value("params_used", "total", "-") == 224 + 72 + 3504
    assert value("torch_threads", "total", "-") == torch.get_num_threads()
    assert {r["ref_hw"] for r in rows} == {"16x16", "32x32"}
    assert all(r["lr_hw"] == "8x8" and r["device"] == "cpu" for r in rows)
    manifest = json.loads((out / "run.json").read_text())
    size = manifest["methods"]["toy_cost"]["sizes"][0]
    assert len(size["latency"]["samples_ms"]) == 2
    assert size["conventions"]["masa2021"]["unsupported_ops"] == {
        "aten::adaptive_avg_pool2d": 1,
        "aten::pixel_shuffle": 1,
    }
    assert manifest["environment"]["torch_threads"] == torch.get_num_threads()
    assert (out / "sweep.png").stat().st_size > 0 and (out / "sweep.svg").stat().st_size > 0


def test_cost_verb_reports_bad_input_as_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.commands.cli import main

    assert main(["cost", "-m", "no_such_method", "--out", str(tmp_path)]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["cost", "-m", "carn_m", "--lr", "12x", "--out", str(tmp_path)]) == 2
    assert "bad size" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# CARN-M: closed form from the architecture in fixtures/carn_m/README.md


def _carn_m_x4_macs_per_lr_pixel() -> int:
    grouped3x3 = 64 * 16 * 9  # Conv(3, 64->64, g=4)
    residual_e = 2 * grouped3x3 + 64 * 64  # E = two grouped 3x3 + one 1x1
    fusions = (128 + 192 + 256) * 64  # c1, c2, c3 (1x1)
    block = 3 * residual_e + fusions  # the shared E runs three times
    up4 = 256 * 16 * 9 * (1 + 4)  # Conv(3, 64->256, g=4) at LR and at 2x LR
    return 9 + 3 * 64 * 9 + 3 * block + fusions + up4 + 16 * (64 * 3 * 9 + 9)  # sub_mean ... exit, add_mean at 4x


def test_carn_m_x4_params_and_macs_closed_form() -> None:
    method = registry.create("carn_m", scale=4)
    module, inputs = method.cost_graph((6, 10), (0, 0))
    trace = analyze_trace(module.eval(), inputs)
    params = count_params(module, method.info.parts, trace.used_param_ids)
    assert params.total == 414_811  # the checkpoint holds all three upsamplers
    assert params.used == 294_171  # the x4 path (fixtures/carn_m/README.md)
    per_pixel = _carn_m_x4_macs_per_lr_pixel()
    assert trace.counts["macs"].by_operator == {"conv": per_pixel * 60}
    # MASA counter adds 1 per element of every ReLU and residual add: per LR pixel 3 blocks x (3 E x 3 x 64 ReLU
    # + 3 x 64 fusion ReLU) + 3 x 64 global fusion ReLU + up4 ReLUs 256 + 4 x 256; adds 3 x 3 x 64
    relu = 3 * (3 * 3 * 64 + 3 * 64) + 3 * 64 + 256 + 4 * 256
    masa = trace.counts["masa2021"].by_operator
    assert masa["conv"] == per_pixel * 60
    assert masa.get("relu", 0) + masa.get("relu_", 0) == relu * 60
    assert masa["add"] == 3 * 3 * 64 * 60
    # at a 1280x720 output (LR 320x180) this is 32.49 GMACs, the CARN paper's 32.5G Mult-Adds for CARN-M
    assert per_pixel * 320 * 180 == pytest.approx(32.5e9, rel=2e-3)


# --------------------------------------------------------------------------------------------------
# every registered method


HEAVY_AT_SMALL_SIZE = frozenset(
    # > 4 s of CPU each even at LR 16 / Ref 64 (mostly per-node trace overhead); the *_gan variants share
    # the graph of their *_rec sibling, which runs by default.
    {"c2_matching_gan", "c2_matching_rec", "srntt", "srntt_rec", "ssen_self", "masa_gan", "ttsr_gan"}
)


def _create(name: str) -> Any:
    return registry.create(name, scale=registry.card(name).default_scale)  # x8-only methods: RefSR-Net


@functools.cache
def _traced(name: str, lr: int, ref: int) -> tuple[Any, TraceCost, ParamCount]:
    """One trace per (method, size) for the whole session; the module is released afterwards."""
    method = _create(name)
    module, inputs = method.cost_graph((lr, lr), (ref, ref))
    trace = analyze_trace(module.eval(), inputs)
    params = count_params(module, method.info.parts, trace.used_param_ids)
    return method.info, trace, params


def _check_method_cost(name: str, lr: int, ref: int) -> None:
    info, trace, params = _traced(name, lr, ref)
    for convention, count in trace.counts.items():
        assert isinstance(count.unsupported_ops, dict)
        for role, path in info.parts.items():
            assert trace.canonical_names.get(path) is not None, f"{name}: part {role} -> {path}"
        print(f"{name} {convention}: {count.total / G:.3f} GMACs, unsupported {count.unsupported_ops}")
    # every operator of a registered method has a rule (or is declared zero) in the MAC convention
    assert trace.counts["macs"].unsupported_ops == {}
    if params.total > 0:
        assert trace.counts["macs"].total > 0 and 0 < params.used <= params.total


def _params(names: list[str], heavy: frozenset[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in names]


NETWORKS = [name for name in registry.list_methods() if name not in MATCHER_NAMES]


@pytest.mark.parametrize("name", _params(NETWORKS, HEAVY_AT_SMALL_SIZE))
def test_every_registered_network_costs_at_a_small_size(name: str) -> None:
    _check_method_cost(name, 16, 64)


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_every_registered_network_costs_at_the_benchmark_setting(name: str) -> None:
    _check_method_cost(name, 128, 512)


@pytest.mark.parametrize("name", MATCHER_NAMES)
def test_classical_matchers_say_they_have_no_cost_graph(name: str) -> None:
    with pytest.raises(UserError, match="not a network"):
        registry.create(name, scale=4).cost_graph((16, 16), (64, 64))


# --------------------------------------------------------------------------------------------------
# MASA-SR Table 2 and the fixtures' flops.json (benchmark setting LR 128 / Ref 512)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "flops_m", "flops_t"), [("masa_rec", 8.84, 367.93), ("ttsr_rec", 618.48, 1044.28)])
def test_masa_table2_is_reproduced(name: str, flops_m: float, flops_t: float) -> None:
    info, trace, _ = _traced(name, 128, 512)
    count = trace.counts["masa2021"]
    matching = trace.canonical_names[info.parts["matching"]]
    assert count.module_products(matching) / G == pytest.approx(flops_m, abs=0.01)
    assert count.total / G == pytest.approx(flops_t, abs=0.01)


def _flops_json(shared: Path, fixture: str) -> dict[str, Any]:
    return json.loads((shared / "fixtures" / fixture / "flops.json").read_text())


def _assert_close_g(got_macs: float, expected_g: float, what: str, tol_g: float = 0.0015) -> None:
    """fixture values are rounded to 1e-3 G; 1.5e-3 G leaves room for that rounding only"""
    assert abs(got_macs / G - expected_g) <= tol_g, f"{what}: {got_macs / G:.4f} G vs fixture {expected_g} G"


def _assert_modules_close(count: Any, expected: dict[str, float], prefix: str = "") -> None:
    """Per-module fixture values; a module that is also the parent of listed modules holds only what its own
    forward runs outside them (e.g. elementwise ops written directly in ``MainNet.forward``)."""
    for module, value in expected.items():
        path = prefix + module
        parent = any(other.startswith(module + ".") for other in expected)
        _assert_close_g(count.module_exclusive(path) if parent else count.module_total(path), value, path)


@pytest.mark.slow
def test_masa_counts_match_its_fixture(shared: Path) -> None:
    flops = _flops_json(shared, "masa")
    info, trace, params = _traced("masa_rec", 128, 512)
    assert params.total == flops["params"]
    masa, macs = trace.counts["masa2021"], trace.counts["macs"]
    # the port's forward runs 0.003 G fewer additions (MASA counter: 1 per element) than the official code
    _assert_close_g(masa.total, flops["masa_convention_G"]["total"], "total", 0.005)
    _assert_modules_close(masa, flops["masa_convention_G"]["per_submodule"])
    for op, value in flops["masa_convention_G"]["by_op"].items():
        tolerance = 0.005 if op == "aten::add" else 0.0015
        _assert_close_g(masa.by_operator.get(op.removeprefix("aten::"), 0), value, op, tolerance)
    _assert_close_g(macs.by_operator["bmm"], flops["true_macs_G"]["matching"]["total"], "bmm")
    true = flops["true_macs_G"]["per_submodule"]
    for module, value in true.items():
        # the Ref-down encoder pass feeds only level 1: its level-2/3 outputs are unused and pruned by the
        # trace, removing 1 of the 18 (64^2 + 64^2 + 256^2 pixels) shares of enc.*_L2 / enc.*_L3
        expected = value * 17 / 18 if module.startswith("enc.") and module[-2:] in ("L2", "L3") else value
        _assert_close_g(macs.module_products(module), expected, module)


@pytest.mark.slow
def test_ttsr_counts_match_its_fixture(shared: Path) -> None:
    flops = _flops_json(shared, "ttsr")
    _, trace, params = _traced("ttsr_rec", 128, 512)
    assert params.total == flops["params"]
    masa, macs = trace.counts["masa2021"], trace.counts["macs"]
    _assert_close_g(masa.total, flops["masa_convention_G"]["total"], "total")
    for op, value in flops["masa_convention_G"]["by_op"].items():
        _assert_close_g(masa.by_operator.get(op.removeprefix("aten::"), 0), value, op)
    per_module = dict(flops["masa_convention_G"]["per_submodule"])
    _assert_close_g(masa.module_exclusive(""), per_module.pop("<top>"), "top-level forward")
    _assert_modules_close(masa, per_module)
    for module, value in flops["true_macs_G"]["per_submodule"].items():
        _assert_close_g(macs.module_products(module), value, module)
    _assert_close_g(macs.by_operator["bmm"], flops["true_macs_G"]["matching"], "matching bmm")


@pytest.mark.slow
def test_srntt_counts_match_its_fixture(shared: Path) -> None:
    flops = _flops_json(shared, "srntt")
    info, trace, params = _traced("srntt", 128, 512)
    macs = trace.counts["macs"]
    true = flops["true_macs_G"]
    _assert_close_g(macs.module_products(trace.canonical_names[info.parts["matching"]]), true["matching"], "matching")
    for module, value in true["generator_per_module"].items():
        _assert_close_g(macs.module_products(module), value, module)
    masa = trace.counts["masa2021"]
    _assert_modules_close(masa, flops["masa_convention_G"]["generator_per_module"])
    # the generator (saved) + the VGG19 layers up to relu3_1 that the matching uses (not saved)
    assert params.used == flops["params"] + flops["params_vgg_used_not_saved"]


@pytest.mark.slow
def test_c2_matching_counts_match_its_fixture(shared: Path) -> None:
    flops = _flops_json(shared, "c2_matching")
    info, trace, params = _traced("c2_matching_rec", 128, 512)
    macs, masa = trace.counts["macs"], trace.counts["masa2021"]
    true = flops["true_macs_G"]
    _assert_close_g(macs.module_products(trace.canonical_names[info.parts["matching"]]), true["matching"], "matching")
    for network, value in true["per_network"].items():
        _assert_close_g(macs.module_products(network), value, network)
    _assert_close_g(macs.by_operator["deform_conv2d"], true["net_g_deformable_conv"], "deformable conv (dense)")
    # The official residual block computes identity + out * res_scale (res_scale = 1); the port leaves out
    # that multiply, which the MASA counter charges 1 per element: 16 blocks x 64 channels x pixels.
    side_px = {"content_extractor.body": 128, "dyn_agg_restore.body_small": 128,
               "dyn_agg_restore.body_medium": 256, "dyn_agg_restore.body_large": 512}  # fmt: skip
    expected = {
        module: value - 16 * 64 * side_px[module] ** 2 / G if module in side_px else value
        for module, value in flops["masa_convention_G"]["net_g_per_submodule"].items()
    }
    _assert_modules_close(masa, expected, prefix="net_g.")
    assert params.by_part["restoration"] == flops["params"]["restoration"]
    assert params.by_part["extractor"] == flops["params"]["extractor"]


@pytest.mark.slow
def test_crossnet_counts_match_its_fixture(shared: Path) -> None:
    flops = _flops_json(shared, "crossnet")
    _, trace, params = _traced("crossnet", 128, 512)
    assert params.total == flops["params"]
    macs, masa = trace.counts["macs"], trace.counts["masa2021"]
    _assert_close_g(masa.total, flops["masa_convention_G"]["total"], "total")
    _assert_modules_close(masa, flops["masa_convention_G"]["per_submodule"])
    dead = "UNet_decoder_2.post_fusion2"
    for module, value in flops["true_macs_G"]["per_submodule"].items():
        _assert_close_g(macs.module_products(module), 0.0 if module == dead else value, module)
    assert params.total - params.used >= 102_464  # the dead post_fusion2 (flops.json params_note)
    assert math.isclose(
        macs.total / G, flops["true_macs_G"]["total"] - flops["true_macs_G"]["dead_post_fusion2"], abs_tol=0.01
    )


_SLOW_PLUGIN = """
import time
import torch, torch.nn as nn
from methods.base import MethodInfo
from methods.registry import register

class Slow(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, lr, ref):
        time.sleep(0.1)  # every forward takes >= 100 ms: two ranks timing at once would overlap
        return self.conv(lr) + ref.mean()

class SlowMethod:
    def __init__(self, name, device):
        self.info = MethodInfo(name=name, title="slow toy", venue="-", year=2024, official_repo=None,
                               variant="rec", scale=4, inputs=("lr", "ref"), license="MIT")
        self.module = Slow().to(device).eval()

    def cost_graph(self, lr_hw, ref_hw):
        return self.module, (torch.rand(1, 3, *lr_hw), torch.rand(1, 3, *ref_hw))

for _name in ("toy_slow_a", "toy_slow_b"):
    register(_name, lambda *, scale=4, device="cpu", _name=_name: SlowMethod(_name, device))
"""


def test_cost_under_torchrun_splits_methods_and_never_times_two_ranks_at_once_on_the_cpu(tmp_path: Path) -> None:
    """Issue 17 item 4: two CPU ranks share one device, so their timed phases must not overlap; rank 0 writes
    the same cost.csv (latency values aside) and run.json (measured values aside) as one process."""
    import os
    import subprocess
    import sys

    plugin = tmp_path / "slow_plugin.py"
    plugin.write_text(_SLOW_PLUGIN)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    argv = ["--plugin", str(plugin), "cost", "-m", "toy_slow_a", "toy_slow_b", "bicubic", "carn_m", "--lr", "16",
            "--ref", "32", "--warmup", "0", "--repeat", "3", "--no-memory", "--threads", "1"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for command, out in ((launcher + ["-m", "bench", *argv], tmp_path / "ranks"),
                         ([sys.executable, "-m", "bench", *argv], tmp_path / "single")):
        done = subprocess.run([*command, "--out", str(out)], env=env, cwd=root, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]

    def rows(out: Path) -> list[str]:
        return [line for line in (out / "cost.csv").read_text().splitlines() if ",latency_ms_" not in line]

    ranks, single = tmp_path / "ranks", tmp_path / "single"
    assert rows(ranks) == rows(single) and len(rows(single)) > 20
    latency_rows = [line.split(",")[:3] for line in (ranks / "cost.csv").read_text().splitlines() if "latency" in line]
    assert latency_rows == [line.split(",")[:3] for line in (single / "cost.csv").read_text().splitlines()
                            if "latency" in line]

    def sizes(out: Path) -> dict[str, Any]:
        return {name: entry["sizes"] for name, entry in json.loads((out / "run.json").read_text())["methods"].items()}

    measured = sizes(ranks)
    # whole methods per rank, in the given order: 0, 1, 0, 1 (distributed.balanced_split, equal weights);
    # each rank starts with a slow toy, so without turns both would time at once
    assert {name: [s["measured_on"]["rank"] for s in entry] for name, entry in measured.items()} == {
        "toy_slow_a": [0], "toy_slow_b": [1], "bicubic": [0], "carn_m": [1]}
    intervals = sorted(tuple(s["measured_on"]["timed_unix_s"]) for entry in measured.values() for s in entry)
    assert all(s["measured_on"]["device"] == "cpu" for entry in measured.values() for s in entry)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(intervals)), intervals

    def without_measurements(out: Path) -> dict[str, Any]:
        manifest = json.loads((out / "run.json").read_text().replace(str(out), "OUT"))
        for entry in manifest["methods"].values():
            for size in entry["sizes"]:
                for measured_value in ("measured_on", "trace_seconds", "latency"):
                    size.pop(measured_value)
        return manifest

    assert without_measurements(ranks) == without_measurements(single)


def test_committed_cost_csv_files_read_and_write_back_byte_identical(tmp_path: Path) -> None:
    """The one cost.csv format (bench.results.cost_csv) reads every committed cost run and writes it back unchanged."""
    from bench.results.cost_csv import read_cost_csv, write_cost_csv

    committed = sorted((Path(__file__).resolve().parents[1] / "reports" / "results" / "cost").glob("*/cost.csv"))
    assert committed
    for path in committed:
        write_cost_csv(tmp_path / "again.csv", read_cost_csv(path, "run"))
        assert (tmp_path / "again.csv").read_bytes() == path.read_bytes(), path
