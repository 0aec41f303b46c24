"""``measure_costs(config)``: the cost of many methods at one LR size and one or more reference sizes, written
as one run folder: ``cost.csv`` (``bench.results.cost_csv``), ``run.json`` and, for a reference-size sweep,
``sweep.png`` / ``sweep.svg`` (the report's cost-vs-reference-size plot, ``reports.plots``).

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
from tqdm import tqdm

from bench.engines import torchrun
from bench.engines.cost.flop_handlers import CONVENTIONS
from bench.engines.cost.latency import LatencyConfig
from bench.engines.cost.measure import MethodCost, measure_method_size
from bench.results.cost_csv import CostRow, write_cost_csv
from bench.results.provenance import environment
from protocols.core import UserError


@dataclass(frozen=True)
class CostConfig:
    """What ``refsr-bench cost`` measures. Sizes are (height, width) in pixels; ``ref_sizes`` at HR resolution.
    ``latency`` None: no timing; ``threads`` None: torch's choice; ``plugins``: user method files (already
    loaded; handed to the memory-probe subprocess); ``command``: recorded in run.json."""

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


@dataclass(frozen=True)
class CostResult:
    rows: tuple[CostRow, ...]
    run_json: dict[str, Any]
    failures: tuple[str, ...]  # methods with a size that raised (details in the run_json)
    written: tuple[Path, ...] = field(default=())


def sorted_ref_sizes(sizes: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Unique sizes, smallest area first."""
    return tuple(sorted(set(sizes), key=lambda hw: (hw[0] * hw[1], hw)))


def summary_line(rows: Sequence[CostRow], method: str) -> str:
    """One console line: parameters, FLOPS-T/-M per convention, latency, peak memory of one method and size."""

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
    median = pick("latency_ms_median")
    if median is not None:
        device = rows[0].device
        label = "GPU (CUDA events)" if device == "cuda" else f"CPU wall, {int(pick('torch_threads') or 0)} threads"
        parts.append(f"latency median {median:,.2f} ms (IQR {pick('latency_ms_iqr'):,.2f}; {label})")
    for quantity, label in (("peak_allocated_mib", "GPU peak allocated"), ("peak_rss_delta_mib", "CPU peak RSS delta")):
        value = pick(quantity)
        if value is not None:
            parts.append(f"{label} {value:,.1f} MiB")
    return " | ".join(parts)


def write_cost_run(out_dir: Path, rows: Sequence[CostRow], run_json: dict[str, Any]) -> None:
    """``cost.csv`` and ``run.json`` (sorted keys, indent 1), each written atomically."""
    write_cost_csv(out_dir / "cost.csv", rows)
    tmp = out_dir / "run.json.tmp"
    tmp.write_text(json.dumps(run_json, indent=1, sort_keys=True, default=str) + "\n")
    tmp.replace(out_dir / "run.json")


def _check(config: CostConfig) -> None:
    if config.device not in ("cpu", "cuda"):
        raise UserError(f"device must be cpu or cuda, got {config.device!r}")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False; use --device cpu")
    if config.threads is not None and config.threads < 1:
        raise UserError(f"--threads must be >= 1, got {config.threads}")
    latency = config.latency
    if latency is not None and (latency.warmup < 0 or latency.repeat < 1):
        raise UserError(f"--warmup must be >= 0 and --repeat >= 1; got {latency.warmup}, {latency.repeat}")
    unknown = [c for c in config.conventions if c not in CONVENTIONS]
    if unknown:
        raise UserError(f"unknown counting convention(s) {unknown}; valid: {', '.join(CONVENTIONS)}")


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
            "latency": None if latency is None else {"warmup": latency.warmup, "repeat": latency.repeat},
            "memory": config.memory,
            "latency_excludes": "data loading and host-to-device copies (inputs live on the device)",
        },
        "methods": {},
    }


@dataclass
class _Share:
    """What one process measured: rows, run_json entry per method, failed methods."""

    rows: list[CostRow] = field(default_factory=list)
    entries: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _measure_one(config: CostConfig, name: str, device: str, share: _Share, where: dict[str, Any]) -> None:
    """Every reference size of method ``name`` on ``device``, appended to ``share``."""
    from methods import registry

    entry: dict[str, Any] = {"sizes": [], "skipped": None}
    share.entries[name] = entry
    try:
        method = registry.create(name, scale=config.scale, device=device)
    except UserError as error:
        entry["skipped"] = f"factory: {error}"
        print(f"{name}: skipped ({error})", flush=True)
        return
    if not hasattr(method, "cost_graph"):
        entry["skipped"] = "the method has no cost_graph"
        print(f"{name}: skipped (no cost_graph)", flush=True)
        return
    sizes = config.ref_sizes if method.info.needs_reference else config.ref_sizes[:1]  # SISR: Ref ignored
    for ref_hw in sizes:
        lr, ref = list(config.lr_hw), list(ref_hw)
        try:
            result: MethodCost = measure_method_size(
                name, method, scale=config.scale, lr_hw=config.lr_hw, ref_hw=ref_hw, device=device,
                conventions=config.conventions, latency=config.latency, memory=config.memory,
                plugins=config.plugins)
        except (UserError, NotImplementedError) as error:
            # matcher-only methods and sizes a method cannot take are recorded, not fatal
            entry["sizes"].append({"lr_hw": lr, "ref_hw": ref, "skipped": str(error)})
            print(f"{name} (LR {tuple(lr)}, Ref {tuple(ref)}): skipped ({error})", flush=True)
            continue
        except Exception as error:  # a method that cannot be traced or run must not lose the others' results
            share.failures.append(name)
            entry["sizes"].append({"lr_hw": lr, "ref_hw": ref, "error": f"{type(error).__name__}: {error}"})
            print(f"{name} (LR {tuple(lr)}, Ref {tuple(ref)}): FAILED {type(error).__name__}: {error}",
                  file=sys.stderr, flush=True)
            continue
        result.run_json["measured_on"].update(where)
        share.rows += result.rows
        entry["sizes"].append(result.run_json)
        print(summary_line(result.rows, name), flush=True)
        for convention, info in result.run_json["conventions"].items():
            if info["unsupported_ops"]:
                listing = ", ".join(f"{k} x{v}" for k, v in info["unsupported_ops"].items())
                print(f"    {convention}: unsupported ops counted as 0: {listing}", flush=True)


def _finish(config: CostConfig, share: _Share, run_json: dict[str, Any], names: Sequence[str]) -> CostResult:
    """Write the run folder (rank 0 / the only process) and say what was written."""
    run_json["methods"] = {name: share.entries[name] for name in names if name in share.entries}
    write_cost_run(config.out_dir, share.rows, run_json)
    written = [config.out_dir / "cost.csv", config.out_dir / "run.json"]
    if config.sweep_plot and share.rows:
        written += _sweep_plot(share.rows, config.out_dir, run_json["environment"])
    return CostResult(tuple(share.rows), run_json, tuple(sorted(set(share.failures))), tuple(written))


def _sweep_plot(rows: Sequence[CostRow], out_dir: Path, env: dict[str, Any]) -> list[Path]:
    from reports.plots import cost_vs_ref_size, save_figure

    threads = env.get("torch_threads")
    labelled = [replace(r, device_name=str(env.get("device_name") or ""),
                        threads=threads if isinstance(threads, int) else 0) for r in rows]
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
    share = _Share()
    where = {"rank": 0, "host": platform.node()}
    progress = tqdm(names, desc="cost", unit="method", file=sys.stderr, mininterval=1.0,
                    disable=not config.show_progress)
    for name in progress:
        progress.set_postfix_str(name)
        _measure_one(config, name, config.device, share, where)
        run_json["methods"] = dict(share.entries)
        write_cost_run(config.out_dir, share.rows, run_json)  # after every method: a stopped run keeps its results
    progress.close()
    return _finish(config, share, run_json, names)


def _measure_distributed(config: CostConfig, names: Sequence[str], ctx: torchrun.Context) -> CostResult:
    import torch.distributed as dist

    device = "cpu"
    if config.device == "cuda":
        if ctx.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {ctx.local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                            "start torchrun with --nproc-per-node at most the GPU count")
        device = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(device)
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
        share, error = _Share(), None
        if ctx.rank == 0:
            config.out_dir.mkdir(parents=True, exist_ok=True)
        for turn in range(turns):
            if turn == my_turn:
                try:
                    for name in tqdm(mine, desc=f"cost rank {ctx.rank}", unit="method", file=sys.stderr,
                                     disable=not config.show_progress):
                        _measure_one(config, name, device, share, where)
                except BaseException as failure:  # the other ranks wait at the barrier: tell them, then stop
                    error = f"rank {ctx.rank}: {type(failure).__name__}: {failure}"
            dist.barrier()
        shares: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(shares, (share, error))
        errors = [e for _, e in shares if e is not None]
        if errors:
            raise UserError("cost failed under torchrun: " + "; ".join(errors))
        merged = _Share()
        for part, _ in shares:
            merged.rows += part.rows
            merged.entries.update(part.entries)
            merged.failures += part.failures
        if ctx.rank != 0:
            return CostResult((), {}, tuple(sorted(set(merged.failures))))
        return _finish(config, merged, _run_json(config), names)
    finally:
        dist.destroy_process_group()

