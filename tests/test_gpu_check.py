"""``refsr-bench gpu-check`` on the CPU with tiny sizes: every step (environment, fixtures, deformable-convolution
replay, cost with latency / memory / autocast, summary) runs here exactly as it would on a GPU.

Oracles: the fixtures' official outputs (tolerances from each fixture README, carried by
``bench.engines.checks.fixtures.PORT_FIXTURES``),
the CPU replay of the same ``deform_conv2d`` calls (identical on one device),
and hand arithmetic for the compute bound.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch

from bench.commands.cli import main
from bench.engines.checks.fixtures import PORT_FIXTURES
from bench.engines.checks.gpu import SIZES, measure_networks, run_name, summary_table
from bench.engines.cost.latency import timed_latency
from bench.engines.cost.pipeline import Budget, Shape
from bench.results.cost_csv import CostRow
from bench.results.gpu_specs import GPU_PEAKS, UNKNOWN_PEAK, fp32_compute_bound_ms
from reports.collect import read_cost_csv

# bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %); the carn_m / MASA outputs under CPU autocast
# measured 37-45 dB against float32 here. 30 dB (3 % RMS of the range) still catches a wrong dtype path
# (e.g. fp16 overflow, or autocast silently off, which gives inf).
MIN_AUTOCAST_PSNR_DB = 30.0


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    from conftest import require_shared

    shared = require_shared()  # skips without ../shared, fails under CI=true, like every data-backed test
    out = tmp_path_factory.mktemp("gpu_check")
    previous = torch.get_num_threads()
    code = main(["gpu-check", "--device", "cpu", "--sizes", "tiny", "--iterations", "3", "--warmup", "1",
                 "--threads", "1", "--shared", str(shared), "--out", str(out), "-m", "carn_m", "masa_gan", "masa_rec"])
    torch.set_num_threads(previous)
    folders = list(out.iterdir())
    assert len(folders) == 1
    return code, folders[0]


def test_cpu_run_writes_every_file_and_succeeds(cpu_run: tuple[int, Path]) -> None:
    code, folder = cpu_run
    assert code == 0
    assert folder.name.startswith("gpu-check-") and folder.name == run_name(
        json.loads((folder / "run.json").read_text())["environment"]["device_name"])
    assert {p.name for p in folder.iterdir()} == {"cost.csv", "checks.csv", "run.json", "summary.md"}
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["settings"]["tf32_matmul"] is False and manifest["settings"]["tf32_cudnn"] is False
    assert set(manifest["steps_seconds"]) == {"fixtures_s", "deform_conv_s", "cost_s", "total_s"}


def test_fixture_step_reproduces_the_official_outputs(cpu_run: tuple[int, Path]) -> None:
    _, folder = cpu_run
    checks = read_cost_csv(folder / "checks.csv", "run")
    diffs = {e.method: e.value for e in checks if e.quantity == "fixture_max_abs_diff"}
    assert set(diffs) == {"carn_m", "masa_rec"}  # -m limits the fixture step to the selected ports
    tolerance = {p.method: p.atol for p in PORT_FIXTURES}
    for method, diff in diffs.items():
        assert 0 <= diff <= tolerance[method], method
    psnr = {e.method: e.value for e in checks if e.quantity == "psnr_autocast_bf16_vs_fp32_db"}
    assert set(psnr) == {"carn_m", "masa_rec"}
    assert all(MIN_AUTOCAST_PSNR_DB < v < math.inf for v in psnr.values()), psnr


def test_deform_conv_replay_covers_c2_and_ssen(cpu_run: tuple[int, Path]) -> None:
    _, folder = cpu_run
    checks = read_cost_csv(folder / "checks.csv", "run")
    calls = {e.method: e.value for e in checks if e.quantity == "deform_conv2d_calls"}
    assert calls == {"c2_matching_rec": 3, "ssen": 3}  # three DCN layers each (c2_matching.md, ssen.md)
    diffs = [e.value for e in checks if e.quantity == "deform_conv2d_max_abs_diff_vs_cpu"]
    assert diffs == [0.0, 0.0]  # the same kernel on the same device replays bit for bit


def test_cost_rows_latency_memory_and_autocast(cpu_run: tuple[int, Path]) -> None:
    _, folder = cpu_run
    rows = read_cost_csv(folder / "cost.csv", "run")
    manifest = json.loads((folder / "run.json").read_text())

    def value(method: str, quantity: str, lr: str, convention: str = "-") -> float:
        wanted = (method, quantity, lr, "total", convention)
        found = [e.value for e in rows if (e.method, e.quantity, e.lr_hw, e.part, e.convention) == wanted]
        assert len(found) == 1, (method, quantity, lr)
        return found[0]

    for method in ("carn_m", "masa_gan", "masa_rec"):
        p10, median, p90 = (value(method, f"latency_ms_{q}", "16x16") for q in ("p10", "median", "p90"))
        assert 0 < p10 <= median <= p90
        assert value(method, "latency_ms_median_autocast_bf16", "16x16") > 0
        assert value(method, "peak_rss_delta_mib", "16x16") >= 0
        assert value(method, "flops_t", "16x16", "macs") > 0
    assert {e.device for e in rows} == {"cpu"}
    # the GAN/rec twins: measured once, recorded under both names
    twin = [e for e in manifest["methods"]["masa_rec"] if e["shape"] == "masa_table2_tiny"][0]
    assert twin["same_network_as"] == "masa_gan"
    assert value("masa_rec", "latency_ms_median", "16x16") == value("masa_gan", "latency_ms_median", "16x16")
    carn = [e for e in manifest["methods"]["carn_m"] if e["shape"] == "masa_table2_tiny"][0]
    assert carn["fp32"]["latency"]["repeat_run"] == 3 and len(carn["fp32"]["latency"]["samples_ms"]) == 3
    assert "fresh process" in carn["fp32"]["memory"]["how"] and "not a GPU number" in carn["fp32"]["memory"]["how"]
    # both shapes of the tiny plan appear for the SISR network (its Ref is ignored)
    assert {e.lr_hw for e in rows if e.method == "carn_m"} == {"16x16", "15x11"}
    summary = (folder / "summary.md").read_text()
    assert "| method | fp32 latency ms | bf16 latency ms |" in summary and UNKNOWN_PEAK in summary


def test_compute_bound_is_gmacs_times_two_over_the_fp32_peak() -> None:
    # 67 GMACs = 134 GFLOP on H100 SXM's 67 TFLOP/s plain-FP32 peak: 2 ms
    assert fp32_compute_bound_ms(67.0, "NVIDIA H100 80GB HBM3") == pytest.approx(2.0)
    assert fp32_compute_bound_ms(51.0, "NVIDIA H100 PCIe") == pytest.approx(2.0)
    assert fp32_compute_bound_ms(67.0, "NVIDIA GeForce RTX 4090") is None
    assert all(p.tf32_tensor_flops > p.fp32_flops for p in GPU_PEAKS.values())
    rows = [CostRow("net", "total", "flops_t", 67.0, "GMACs", "128x128", "512x512", "cuda", "macs"),
            CostRow("net", "total", "latency_ms_median", 10.0, "ms", "128x128", "512x512", "cuda")]
    shape = Shape("s", (128, 128), (512, 512))
    assert "| net | 10.00 | - | - | 2.000 | - |" in summary_table(rows, [], "NVIDIA H200", shape, "bf16")
    assert f"| {UNKNOWN_PEAK} |" in "\n".join(summary_table(rows, [], "Some GPU", shape, "bf16"))


def test_timed_loop_is_capped_by_its_budget_and_says_so() -> None:
    class Slow(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(0.02)
            return x

    samples, info = timed_latency(Slow(), (torch.zeros(1),), "cpu", warmup=1, repeat=50, cap_s=0.2, autocast=None)
    assert info["capped_by_budget"] and info["repeat_run"] == len(samples) < 50
    assert all(s >= 20.0 for s in samples)


def test_cells_past_the_budget_are_recorded_as_skipped() -> None:
    rows, manifest = measure_networks(["carn_m"], SIZES["tiny"], "cpu", 0, 1, None,
                                      Budget(deadline=time.perf_counter() - 1), lambda _: None)
    assert rows == []
    assert [e["skipped"].startswith("budget spent") for e in manifest["carn_m"]] == [True, True]


def test_user_errors(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        assert main(["gpu-check", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert main(["gpu-check", "--device", "cpu", "--shared", str(tmp_path), "--out", str(tmp_path),
                 "--iterations", "0"]) == 2
