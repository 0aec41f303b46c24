"""``measure_costs(config)``: the cost of many methods at one LR size and one or more reference sizes, written
as one run folder: ``cost.csv`` (``bench.results.cost_csv``), ``run.json`` and, for a reference-size sweep,
``sweep.png`` / ``sweep.svg`` (the report's cost-vs-reference-size plot, ``reports.plots``). The measuring is
``bench.engines.cost.pipeline.measure_cost``; this module adds the run folder, the console lines and torchrun.
``refsr-bench cost`` and the demo's cost step call it.

Under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set, ``WORLD_SIZE`` > 1; ``bench.engines.torchrun``):

1. whole methods go to ranks (``torchrun.balanced_split`` of equal weights: deterministic, in registry
   order); each rank measures on ``cuda:LOCAL_RANK`` with ``device="cuda"``, else on the CPU; the process
   group is gloo (only Python objects are exchanged);
2. ranks that share a device (same host and device string: every rank on the CPU, or two ranks given one
   GPU) take turns: rank order, a barrier between turns, so no two measurements on one device ever overlap.
   A turn covers the rank's whole share (tracing too: a trace running beside a timed forward on the same
   CPU would disturb the timing). Without latency and memory nothing is timed and all ranks run at once;
3. rank 0 gathers the rows and run_json entries and writes the one run folder: the same content as the
   single-process run of the same command, except the measured values (latency, trace seconds) and each
   size's ``measured_on`` (device, rank, host and the wall-clock interval of its timed part). Unlike the
   single process, which rewrites the folder after every method, nothing is written before all ranks finish.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bench.engines import torchrun
from bench.engines.cost.latency import LatencyConfig
from bench.engines.cost.load import LoadReading
from bench.engines.cost.pipeline import Cell, CostRequest, Shape, check_request, failed_methods, measure_cost
from bench.engines.cost.precision import PRECISIONS, REFERENCE
from bench.results.cost_csv import CostRow, hw_text, loaded_measurements, write_cost_csv
from bench.results.provenance import environment
from protocols.core import UserError


@dataclass(frozen=True)
class CostConfig:
    """What ``refsr-bench cost`` measures. Sizes are (height, width) in pixels; ``ref_sizes`` at HR resolution.
    ``latency`` None: no timing; ``threads`` None: torch's choice; ``plugins``: user method files (already
    loaded; handed to the memory-probe subprocess); ``command``: recorded in run.json; ``scale_of``: a scale per
    method where it differs from ``scale``; ``share_networks``: measure "the same network"
    (``bench.engines.cost.network``) once."""

    methods: tuple[str, ...]  # registry names, aliases or fnmatch patterns
    out_dir: Path
    lr_hw: tuple[int, int] = (128, 128)
    ref_sizes: tuple[tuple[int, int], ...] = ((512, 512),)
    scale: int = 4
    device: str = "cpu"  # "cpu" or "cuda" (under torchrun: cuda:LOCAL_RANK)
    conventions: tuple[str, ...] = ("macs",)
    latency: LatencyConfig | None = None
    memory: bool = True
    threads: int | None = None
    sweep_plot: bool = False  # write sweep.png / sweep.svg
    plugins: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    show_progress: bool = True
    precisions: tuple[str, ...] = (REFERENCE,)
    share_networks: bool = False
    scale_of: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class CostResult:
    rows: tuple[CostRow, ...]
    run_json: dict[str, Any]
    failures: tuple[str, ...]  # methods with a size that raised (details in the run_json)
    written: tuple[Path, ...] = field(default=())


def sorted_ref_sizes(sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Unique sizes, smallest area first."""
    return tuple(sorted(set(sizes), key=lambda hw: (hw[0] * hw[1], hw)))


def summary_line(rows: Sequence[CostRow], method: str, load: LoadReading | None = None) -> str:
    """One console line: parameters, FLOPS-T/-M per convention, latency per precision, the machine's load
    during the timing (``load``), peak memory of one method and size."""

    def pick(quantity: str, part: str = "total", convention: str = "-") -> float | None:
        for row in rows:
            if row.quantity == quantity and row.part == part and row.convention == convention:
                return row.value
        return None

    params = pick("params")
    used = pick("params_used")
    parts = [f"{method} (LR {rows[0].lr_hw}, Ref {rows[0].ref_hw})"]
    if params is not None:
        parts.append(
            f"params {params / 1e6:.3f}M ({int(params):,}" + (f"; used {int(used):,})" if used is not None else ")")
        )
    for convention in sorted({r.convention for r in rows if r.convention != "-"}):
        total = pick("flops_t", convention=convention)
        matching = pick("flops_m", "matching", convention)
        text = f"{convention}: FLOPS-T {total:,.3f} GMACs"
        if matching is not None:
            text += f", FLOPS-M {matching:,.3f} GMACs"
        parts.append(text)
    device = rows[0].device
    label = "GPU (CUDA events)" if device == "cuda" else f"CPU wall, {int(pick('torch_threads') or 0)} threads"
    for name, entry in PRECISIONS.items():
        median = pick("latency_ms_median" + entry.suffix)
        if median is not None:
            iqr = pick("latency_ms_iqr" + entry.suffix) or 0.0
            parts.append(f"latency {name} median {median:,.2f} ms (IQR {iqr:,.2f}; {label})")
    if load is not None and load.peak is not None:
        parts.append(f"load {load.peak:.2f} on {load.cores} cores" + (" UNDER LOAD" if load.under_load else ""))
    for quantity, text in (("peak_allocated_mib", "GPU peak allocated"), ("peak_rss_delta_mib", "CPU peak RSS delta")):
        value = pick(quantity)
        if value is not None:
            parts.append(f"{text} {value:,.1f} MiB")
    return " | ".join(parts)


def write_cost_run(out_dir: Path, rows: Sequence[CostRow], run_json: dict[str, Any]) -> None:
    """``cost.csv`` and ``run.json`` (sorted keys, indent 1), each written atomically."""
    write_cost_csv(out_dir / "cost.csv", rows)
    tmp = out_dir / "run.json.tmp"
    tmp.write_text(json.dumps(run_json, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(out_dir / "run.json")


def _request(config: CostConfig, names: Sequence[str], device: str, where: dict[str, Any], label: str) -> CostRequest:
    scales = dict(config.scale_of)
    shapes = tuple(Shape(f"lr{hw_text(config.lr_hw)}_ref{hw_text(ref)}", config.lr_hw, ref)
                   for ref in config.ref_sizes)
    return CostRequest(
        methods=tuple((name, scales.get(name, config.scale)) for name in names), shapes=shapes, devices=(device,),
        precisions=config.precisions, conventions=config.conventions, latency=config.latency, memory=config.memory,
        share_networks=config.share_networks, plugins=config.plugins, where=tuple(where.items()),
        progress=label if config.show_progress else None)


def _check(config: CostConfig) -> None:
    if config.threads is not None and config.threads < 1:
        raise UserError(f"--threads must be >= 1, got {config.threads}")
    check_request(_request(config, (), config.device, {}, ""))


def _run_json(config: CostConfig) -> dict[str, Any]:
    latency = config.latency
    return {
        "command": list(config.command),
        "environment": environment(config.device, timing=True),
        "settings": {
            "lr_hw": list(config.lr_hw),
            "ref_sizes": [list(s) for s in config.ref_sizes],
            "scale": config.scale,
            "conventions": list(config.conventions),
            "precisions": list(config.precisions),
            "latency": None if latency is None else {"warmup": latency.warmup, "repeat": latency.repeat},
            "memory": config.memory,
            "latency_excludes": "data loading and host-to-device copies (inputs live on the device)",
            "same_network": "measured once, rows under every name (bench.engines.cost.network.network_key)"
            if config.share_networks else "every method measured itself",
        },
        "methods": {},
    }


def method_entries(cells: Sequence[Cell], names: Sequence[str]) -> dict[str, Any]:
    """run.json ``methods``: per method ``sizes`` (its cells' entries) and ``skipped`` (why the method itself
    could not be measured, else None), in the order of ``names``."""
    entries: dict[str, Any] = {}
    for cell in cells:
        entry = entries.setdefault(cell.method, {"sizes": [], "skipped": None})
        if cell.outcome == "method_skipped":
            entry["skipped"] = cell.entry["skipped"]
        else:
            entry["sizes"].append(cell.entry)
    return {name: entries[name] for name in names if name in entries}


class _Console:
    """Prints each finished cell once: the summary line, a skip, or a failure (stderr)."""

    def __init__(self) -> None:
        self.skipped: set[str] = set()

    def __call__(self, cell: Cell) -> None:
        sizes = f"LR {hw_text(cell.shape.lr_hw)}, Ref {hw_text(cell.shape.ref_hw)}"
        if cell.outcome == "method_skipped" and cell.method not in self.skipped:
            self.skipped.add(cell.method)
            print(f"{cell.method}: skipped ({cell.entry['skipped']})", flush=True)
        elif cell.outcome == "skipped":
            print(f"{cell.method} ({sizes}): skipped ({cell.entry['skipped']})", flush=True)
        elif cell.outcome == "failed":
            print(f"{cell.method} ({sizes}): FAILED {cell.entry['error']}", file=sys.stderr, flush=True)
        elif cell.outcome == "shared":
            print(f"{cell.method} ({sizes}): same network as {cell.entry['same_network_as']}", flush=True)
        if cell.outcome in ("measured", "failed") and cell.rows:
            print(summary_line(cell.rows, cell.method, cell.load), flush=True)
            for convention, info in cell.entry.get("conventions", {}).items():
                if info["unsupported_ops"]:
                    listing = ", ".join(f"{k} x{v}" for k, v in info["unsupported_ops"].items())
                    print(f"    {convention}: unsupported ops counted as 0: {listing}", flush=True)


def _finish(config: CostConfig, cells: Sequence[Cell], run_json: dict[str, Any], names: Sequence[str]) -> CostResult:
    """Write the run folder (rank 0 / the only process) and say what was written."""
    rows = [row for cell in cells for row in cell.rows]
    run_json["methods"] = method_entries(cells, names)
    write_cost_run(config.out_dir, rows, run_json)
    written = [config.out_dir / "cost.csv", config.out_dir / "run.json"]
    if config.sweep_plot and rows:
        written += _sweep_plot(rows, config.out_dir, run_json)
    return CostResult(tuple(rows), run_json, tuple(failed_methods(cells)), tuple(written))


def _sweep_plot(rows: Sequence[CostRow], out_dir: Path, run_json: dict[str, Any]) -> list[Path]:
    """The report's cost-vs-reference-size plot of this run; rows labelled as the report reads them (device,
    threads, load mark), so a latency measured under load gets a panel of its own."""
    from reports.plots import cost_vs_ref_size, save_figure

    env = run_json["environment"]
    threads = env.get("torch_threads")
    loaded = loaded_measurements(run_json)
    labelled = [replace(r, device_name=str(env.get("device_name") or ""), threads=threads if isinstance(threads, int)
                        else 0, under_load=(r.method, r.lr_hw, r.ref_hw) in loaded) for r in rows]
    figure = cost_vs_ref_size(labelled)
    return [] if figure is None else list(save_figure(figure, out_dir, "sweep"))


def measure_costs(config: CostConfig) -> CostResult:
    """What ``refsr-bench cost`` does (see the module docstring); under torchrun every rank calls it and rank 0
    returns the run's rows (the other ranks: every rank's failures, no rows)."""
    from methods import registry

    _check(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    names = registry.resolve(list(config.methods))
    ctx = torchrun.context()
    if ctx.world_size > 1:
        return _measure_distributed(config, names, ctx)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    run_json = _run_json(config)
    cells: list[Cell] = []
    console = _Console()

    def finished(cell: Cell) -> None:
        console(cell)
        cells.append(cell)
        run_json["methods"] = method_entries(cells, names)
        write_cost_run(config.out_dir, [r for c in cells for r in c.rows], run_json)  # a stopped run keeps these

    measure_cost(_request(config, names, config.device, {"rank": 0, "host": platform.node()}, "cost"), finished)
    return _finish(config, cells, run_json, names)


def _rank_device(config: CostConfig, ctx: torchrun.Context) -> str:
    if config.device != "cuda":
        return "cpu"
    if ctx.local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {ctx.local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                        "start torchrun with --nproc-per-node at most the GPU count")
    device = f"cuda:{ctx.local_rank}"
    torch.cuda.set_device(device)
    return device


def _measure_distributed(config: CostConfig, names: Sequence[str], ctx: torchrun.Context) -> CostResult:
    import torch.distributed as dist

    device = _rank_device(config, ctx)
    torchrun.init_process_group("gloo", ctx)
    try:
        where = {"rank": ctx.rank, "host": platform.node()}
        keys: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(keys, (where["host"], device))
        timed = config.latency is not None or config.memory
        # ranks on one device measure one after another (rank order); untimed work runs all at once
        my_turn = sum(1 for r in range(ctx.rank) if keys[r] == keys[ctx.rank]) if timed else 0
        turns = max(sum(1 for k in keys if k == key) for key in keys) if timed else 1
        mine = [names[i] for i in torchrun.balanced_split([1.0] * len(names), ctx.world_size)[ctx.rank]]
        cells: list[Cell] = []
        error = None
        if ctx.rank == 0:
            config.out_dir.mkdir(parents=True, exist_ok=True)
        for turn in range(turns):
            if turn == my_turn:
                try:
                    request = _request(config, mine, device, where, f"cost rank {ctx.rank}")
                    cells = measure_cost(request, _Console())
                except BaseException as failure:  # the other ranks wait at the barrier: tell them, then stop
                    error = f"rank {ctx.rank}: {type(failure).__name__}: {failure}"
            dist.barrier()
        shares: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(shares, (cells, error))
        errors = [e for _, e in shares if e is not None]
        if errors:
            raise UserError("cost failed under torchrun: " + "; ".join(errors))
        merged = [cell for part, _ in shares for cell in part]
        if ctx.rank != 0:
            return CostResult((), {}, tuple(failed_methods(merged)))
        return _finish(config, merged, _run_json(config), names)
    finally:
        dist.destroy_process_group()
