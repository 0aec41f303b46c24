"""Cost tables and the reference-size sweep plot (issue 15 item 5, issue 16 items 2-3).

Run folders are written by the tests into a temporary results folder. The GPU ones are FAKE: their numbers
are made up to drive the tables (device name chosen so the compute bound applies) and are never committed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bench.results.cost_csv import COLUMNS as COST_COLUMNS
from bench.results.gpu_specs import GPU_PEAKS
from reports.collect import collect
from reports.paper_values import load_paper_values
from reports.render import render_latex
from reports.tables import REASON_NOT_RUN, REASON_UNKNOWN_PEAK, TableModel, build_all

H100 = "NVIDIA H100 80GB HBM3"
FAKE_GPU = "FAKE GPU 9000 (test data)"


def write_run(root: Path, name: str, device: str, device_name: str, threads: int | None,
              rows: list[tuple[str, str, str, float, str, str, str, str]], ref_sizes: int = 1) -> None:
    """rows: (method, part, quantity, value, unit, lr_hw, ref_hw, convention)."""
    folder = root / name
    folder.mkdir(parents=True)
    with open(folder / "cost.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COST_COLUMNS)
        for method, part, quantity, value, unit, lr, ref, convention in rows:
            writer.writerow([method, part, quantity, f"{value:.6f}", unit, lr, ref, device, convention])
    environment: dict[str, object] = {"device": device, "device_name": device_name}
    if threads is not None:
        environment["torch_threads"] = threads
    manifest = {"note": "FAKE numbers written by a test", "environment": environment,
                "settings": {"ref_sizes": [[0, 0]] * ref_sizes}}
    (folder / "run.json").write_text(json.dumps(manifest))


def latency(method: str, value: float, lr: str = "128x128", ref: str = "512x512"
            ) -> tuple[str, str, str, float, str, str, str, str]:
    return (method, "total", "latency_ms_median", value, "ms", lr, ref, "-")


def flops(method: str, value: float, convention: str = "macs", lr: str = "128x128", ref: str = "512x512"
          ) -> tuple[str, str, str, float, str, str, str, str]:
    return (method, "total", "flops_t", value, "GMACs", lr, ref, convention)


@pytest.fixture()
def mixed_results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    write_run(root, "cpu_xeon_t2", "cpu", "CPU: Fake Xeon", 2,
              [latency("masa_rec", 850.0), latency("ttsr_rec", 1900.0), flops("masa_rec", 349.27),
               flops("masa_rec", 367.93, "masa2021"), flops("ttsr_rec", 1043.29)])
    write_run(root, "cpu_epyc_t1", "cpu", "CPU: Fake EPYC", 1, [latency("masa_rec", 700.0)])
    write_run(root, "gpu_h100", "cuda", H100, None, [latency("masa_rec", 12.5), flops("masa_rec", 349.27)])
    write_run(root, "gpu_unknown", "cuda", FAKE_GPU, None, [latency("masa_rec", 5.0)])
    write_run(root, "demo_small", "cpu", "CPU: Fake Xeon", 2,
              [latency("masa_rec", 90.0, "64x64", "256x256"), flops("masa_rec", 30.0, lr="64x64", ref="256x256")])
    return root


def models(root: Path) -> dict[str, TableModel]:
    return {m.spec.id: m for m in build_all(collect([root]), load_paper_values())}


def column_cells(model: TableModel, label: str) -> dict[str, float | None]:
    index = [c.label for c in model.spec.columns].index(label)
    return {row.key: row.cells[index].ours for row in model.rows}


def test_latency_columns_are_one_per_device_and_thread_count(mixed_results: Path) -> None:
    cost = models(mixed_results)["cost"]
    labels = [c.label for c in cost.spec.columns if c.metric == "latency_ms_median"]
    # GPUs first; each CPU with its thread count
    assert labels == [FAKE_GPU, H100, "CPU: Fake EPYC, 1 thread", "CPU: Fake Xeon, 2 threads"]
    # each column holds only its own device's measurements (the written values), never another's
    assert column_cells(cost, H100) == {"masa_rec": 12.5, "ttsr_rec": None}
    assert column_cells(cost, FAKE_GPU) == {"masa_rec": 5.0, "ttsr_rec": None}
    assert column_cells(cost, "CPU: Fake EPYC, 1 thread") == {"masa_rec": 700.0, "ttsr_rec": None}
    assert column_cells(cost, "CPU: Fake Xeon, 2 threads") == {"masa_rec": 850.0, "ttsr_rec": 1900.0}


def test_gpu_latency_has_its_fp32_compute_bound_beside_it(mixed_results: Path) -> None:
    cost = models(mixed_results)["cost"]
    labels = [c.label for c in cost.spec.columns]
    assert labels[labels.index(H100) + 1] == f"FP32 bound: {H100}"
    bound = column_cells(cost, f"FP32 bound: {H100}")
    # 349.27 GMACs x 2 FLOP / 67 TFLOP/s (H100 SXM plain FP32, datasheet) = 10.43 ms
    assert bound["masa_rec"] == pytest.approx(349.27e9 * 2 / GPU_PEAKS[H100].fp32_flops * 1e3)
    assert bound["masa_rec"] == pytest.approx(10.426, abs=1e-3)
    index = labels.index(f"FP32 bound: {FAKE_GPU}")
    assert cost.rows[0].cells[index].ours is None and cost.rows[0].cells[index].reason == REASON_UNKNOWN_PEAK
    assert not any(label.startswith("FP32 bound: CPU") for label in labels)  # no bound for CPUs
    # ttsr_rec has FLOPS-T (CPU run) but no H100 measurement: neither latency nor bound there, reason "not run"
    ttsr = next(row for row in cost.rows if row.key == "ttsr_rec")
    for label in (H100, f"FP32 bound: {H100}"):
        cell = ttsr.cells[labels.index(label)]
        assert cell.ours is None and cell.reason == REASON_NOT_RUN, label


def test_every_cost_table_and_its_latex_state_size_and_device(mixed_results: Path) -> None:
    tables = models(mixed_results)
    assert {"cost", "cost_lr64x64_ref256x256"} <= set(tables)  # the small (demo-like) run has its own table
    for table_id, size in (("cost", ("128", "512")), ("cost_lr64x64_ref256x256", ("64", "256"))):
        model = tables[table_id]
        tex = render_latex(model)
        header = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
        assert rf"LR {size[0]}$\times${size[0]} / Ref {size[1]}$\times${size[1]}" in header, table_id
        assert "CPU: Fake Xeon, 2 threads" in header
        assert f"LR {size[0]}×{size[0]}, Ref {size[1]}×{size[1]}" in model.spec.title
    assert H100 not in render_latex(tables["cost_lr64x64_ref256x256"])  # no GPU run at that size


def test_masa_table2_puts_the_papers_runtime_beside_ours_with_both_devices(mixed_results: Path) -> None:
    model = models(mixed_results)["masa_t2"]
    tex = render_latex(model)
    assert "Runtime (ms); paper: hardware not stated" in tex
    latency_labels = [c.label for c in model.spec.columns if c.metric == "latency_ms_median"]
    assert f"ours: {H100}" in latency_labels and "ours: CPU: Fake Xeon, 2 threads" in latency_labels
    masa = next(row for row in model.rows if row.key == "masa_rec")
    for column, cell in zip(model.spec.columns, masa.cells, strict=True):
        if column.metric == "latency_ms_median":
            assert cell.paper == 141.1 and cell.delta is None  # other hardware: shown, never subtracted
    assert column_cells(model, f"ours: {H100}")["masa_rec"] == 12.5


def test_sweep_runs_feed_the_plot_not_tables(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(root, "sweep", "cpu", "CPU: Fake Xeon", 1,
              [latency("masa_rec", v, "32x32", r) for v, r in ((10.0, "128x128"), (30.0, "256x256"))], ref_sizes=2)
    assert not [table for table in models(root) if table.startswith("cost")]


def test_sweep_plot_one_line_per_method_and_lr_distinct_styles_legend_outside(tmp_path: Path) -> None:
    from reports.plots import cost_vs_ref_size

    methods = [f"method_{i:02d}" for i in range(12)]  # more methods than matplotlib's 10 default colours
    root = tmp_path / "results"
    rows = []
    for i, method in enumerate(methods):
        for side in (128, 256, 512):
            # LR 32 values lie in [1, 100), LR 64 values in [1000, ...): a line mixing LR sizes is detectable
            rows.append(flops(method, 1 + i + side / 1000, lr="32x32", ref=f"{side}x{side}"))
            rows.append(flops(method, 1000 + i + side / 1000, lr="64x64", ref=f"{side}x{side}"))
            rows.append(latency(method, 2 + i + side / 1000, "32x32", f"{side}x{side}"))
    write_run(root, "sweep", "cpu", "CPU: Fake Xeon", 1, rows, ref_sizes=3)
    write_run(root, "sweep_gpu", "cuda", FAKE_GPU, None,
              [latency(m, 0.5, "32x32", f"{s}x{s}") for m in methods[:3] for s in (128, 512)], ref_sizes=2)
    fig = cost_vs_ref_size(collect([root]).cost)
    assert fig is not None
    axes = fig.axes
    assert len(axes) == 3  # FLOPS-T, one latency panel per device
    styles: dict[str, set[tuple[str, str]]] = {}
    flops_lines = axes[0].get_lines()
    assert len(flops_lines) == 2 * len(methods)
    for axis in axes:
        for line in axis.get_lines():
            method, lr = str(line.get_gid()).split("|")
            assert line.get_label() == f"{method}, LR {lr.replace('x', '×')}"
            high = [y >= 1000 for y in np.asarray(line.get_ydata(), dtype=float)]
            assert all(high) if lr == "64x64" else not any(high), line.get_label()
            styles.setdefault(method, set()).add((str(line.get_color()), str(line.get_marker())))
    assert all(len(pairs) == 1 for pairs in styles.values())  # one colour + marker per method
    assert len({next(iter(p)) for p in styles.values()}) == len(methods)  # ... distinct across methods
    assert {axes[2].get_title(), axes[1].get_title()} == {FAKE_GPU, "CPU: Fake Xeon, 1 thread"}
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for axis in axes:
        assert not box.overlaps(axis.get_window_extent(renderer))
    figure_box = fig.bbox
    assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1  # inside the saved figure
