"""Honest latency (issue 24 item 5) and the one cost pipeline (issue 20 item 2).

Oracles: a load average set by the test (the reader is monkeypatched), so the mark follows from the rule
"1-min load > usable cores" alone; the report's column labels are compared with the thread counts and load
marks the test wrote into the run folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.engines.cost.load as load_module
from bench.engines.cost.latency import LatencyConfig
from bench.engines.cost.load import usable_cores
from bench.engines.cost.precision import PRECISIONS, REFERENCE, autocast_choices
from bench.engines.cost.run_folder import CostConfig, measure_costs
from reports.collect import collect
from reports.paper_values import load_paper_values
from reports.render import render_latex
from reports.tables import build_all


def _measure_carn_m(out: Path) -> dict[str, object]:
    config = CostConfig(methods=("carn_m",), out_dir=out, lr_hw=(8, 8), ref_sizes=((16, 16),), memory=False,
                        latency=LatencyConfig(warmup=0, repeat=2), show_progress=False)
    result = measure_costs(config)
    assert result.failures == ()
    return json.loads((out / "run.json").read_text())["methods"]["carn_m"]["sizes"][0]["measured_on"]


def _latency_labels(root: Path) -> list[str]:
    """The device labels (what a latency column's header says) of the latencies the report reads."""
    return sorted({row.device_label for row in collect([root]).cost if row.quantity == "latency_ms_median"})


def test_a_measurement_under_a_faked_high_load_is_marked_warned_and_labelled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cores = usable_cores()
    monkeypatch.setattr(load_module, "load_average_1min", lambda: cores + 0.5)
    measured = _measure_carn_m(tmp_path / "loaded")
    assert measured["under_load"] is True and measured["cpu_cores_usable"] == cores
    assert measured["load_avg_1min"] == [cores + 0.5, cores + 0.5] and measured["cpu_model"]
    captured = capsys.readouterr()
    assert "exceeded the" in captured.err and "under_load" in captured.err
    assert "UNDER LOAD" in captured.out  # the console summary line
    labels = _latency_labels(tmp_path)
    assert len(labels) == 1 and labels[0].endswith(", under load"), labels


def test_a_measurement_at_the_core_count_is_not_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(load_module, "load_average_1min", lambda: float(usable_cores()))  # equal: not exceeded
    measured = _measure_carn_m(tmp_path / "idle")
    assert measured["under_load"] is False
    assert "exceeded the" not in capsys.readouterr().err
    assert not _latency_labels(tmp_path)[0].endswith(", under load")


def _write_cost_run(root: Path, name: str, threads: int, median_ms: float, under_load: bool | None) -> None:
    """A FAKE cpu cost run (numbers made up to drive the table): one latency of masa_rec at LR 8 / Ref 16."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "cost.csv").write_text("method,part,quantity,value,unit,lr_hw,ref_hw,device,convention\n"
                                     f"masa_rec,total,latency_ms_median,{median_ms:.6f},ms,8x8,16x16,cpu,-\n")
    size: dict[str, object] = {"lr_hw": [8, 8], "ref_hw": [16, 16]}
    if under_load is not None:
        size["measured_on"] = {"under_load": under_load, "load_avg_1min": [9.0 if under_load else 0.1] * 2}
    (folder / "run.json").write_text(json.dumps({
        "environment": {"device": "cpu", "device_name": "CPU: Same Model", "torch_threads": threads},
        "settings": {"ref_sizes": [[16, 16]]}, "methods": {"masa_rec": {"sizes": [size]}}}))


def test_a_table_mixing_thread_counts_and_load_says_so_in_its_header(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _write_cost_run(root, "t1", 1, 100.0, False)
    _write_cost_run(root, "t2", 2, 60.0, None)  # written before load was recorded
    _write_cost_run(root, "t2_loaded", 2, 400.0, True)
    models = {m.spec.id: m for m in build_all(collect([root]), load_paper_values())}
    model = models["cost_lr8x8_ref16x16"]
    columns = [c for c in model.spec.columns if c.metric == "latency_ms_median"]
    assert [c.label for c in columns] == ["CPU: Same Model, 1 thread", "CPU: Same Model, 2 threads",
                                          "CPU: Same Model, 2 threads, under load"]
    index = {c.label: model.spec.columns.index(c) for c in columns}
    (row,) = model.rows
    assert [row.cells[index[c.label]].ours for c in columns] == [100.0, 60.0, 400.0]
    header = "\n".join(line for line in render_latex(model).splitlines() if not line.startswith("%"))
    for label in ("1 thread", "2 threads", "2 threads, under load"):
        assert f"CPU: Same Model, {label}" in header


def test_precisions_are_one_table_and_feed_both_verbs() -> None:
    assert REFERENCE in PRECISIONS and PRECISIONS[REFERENCE].suffix == ""
    assert PRECISIONS["autocast_bf16"].suffix == "_autocast_bf16"
    assert autocast_choices() == [n.removeprefix("autocast_") for n in PRECISIONS if n.startswith("autocast_")]
    from bench.commands.cli import build_parser

    for verb, option, expected in (("cost", "--precision", list(PRECISIONS)),
                                   ("gpu-check", "--autocast", [*autocast_choices(), "none"])):
        parser = build_parser(verb)
        sub = parser._subparsers._group_actions[0].choices[verb]  # type: ignore[union-attr]
        (action,) = [a for a in sub._actions if option in a.option_strings]
        assert list(action.choices) == expected, verb


def _calls(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    return {node.func.id if isinstance(node.func, ast.Name) else node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))}


def test_cost_demo_and_gpu_check_share_the_one_cost_loop() -> None:
    """Only the pipeline measures a graph; the verbs reach it through ``measure_cost`` / ``measure_costs``."""
    root = Path(__file__).resolve().parents[1]
    measuring = {"count_graph", "time_graph", "analyze_trace", "timed_latency", "time_forward", "peak_memory"}
    callers = {str(p.relative_to(root)) for p in (root / "bench").rglob("*.py") if _calls(p) & measuring}
    assert callers == {"bench/engines/cost/pipeline.py", "bench/engines/cost/measure.py",
                       "bench/engines/cost/latency.py"}, callers
    assert "measure_cost" in _calls(root / "bench/engines/cost/run_folder.py")
    assert "measure_cost" in _calls(root / "bench/engines/checks/gpu.py")
    assert "measure_costs" in _calls(root / "bench/commands/demo.py")
    assert "measure_costs" in _calls(root / "bench/commands/cost.py")
