"""``refsr-bench cost``: parameters, MACs (two conventions), latency and peak memory of methods.

    refsr-bench cost -m masa ttsr --lr 128 --ref 512 --convention macs masa2021 --out runs/cost
    refsr-bench cost -m 'ssen*' --sweep-ref 128,256,512,1024 --no-latency

Writes ``DIR/cost.csv`` (long format: method, part, quantity, value, unit, lr_hw, ref_hw, device,
convention) and ``DIR/run.json`` (versions, device, thread count, raw latency samples, unsupported
operators per method and convention); with ``--sweep-ref`` also ``DIR/sweep.png`` and ``DIR/sweep.svg``.
Numbers from methods without loaded weights are cost numbers only: cost does not depend on weight values.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from bench.cost import (
    CONVENTIONS,
    CostRow,
    LatencyConfig,
    default_latency_config,
    environment,
    measure_method_size,
    parse_hw,
    plot_sweep,
    write_cost_csv,
)
from protocols.core import UserError


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``cost`` verb; its handler is stored as ``handler`` (``args.handler(args) -> exit code``).
    User method files come from the global ``--plugin`` option of ``refsr-bench`` (``args.plugin``); they
    are already loaded here and are handed to the memory-probe subprocess."""
    parser = subparsers.add_parser(
        "cost",
        help="parameters, MACs (GMACs), latency and peak memory of methods",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-m",
        "--methods",
        nargs="+",
        required=True,
        metavar="METHOD",
        help="registry names, aliases or fnmatch patterns (see `refsr-bench list`)",
    )
    parser.add_argument("--lr", default="128", help="LR size, N or HxW (default 128)")
    parser.add_argument("--ref", default="512", help="reference size at HR resolution, N or HxW (default 512)")
    parser.add_argument("--scale", type=int, default=4, help="SR scale passed to the method factories (default 4)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where latency/memory are measured")
    parser.add_argument(
        "--convention",
        nargs="+",
        default=["macs"],
        choices=list(CONVENTIONS),
        help="MAC counting convention(s): macs (fvcore + handlers) and/or masa2021 (MASA-SR counter)",
    )
    parser.add_argument("--out", default="runs/cost", help="output folder (default runs/cost)")
    parser.add_argument(
        "--sweep-ref",
        default=None,
        metavar="SIZES",
        help="comma-separated reference sizes to sweep, e.g. 128,256,512,1024 (adds sweep.png/svg)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip latency timing")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 10 on cuda, 1 on cpu)")
    parser.add_argument("--repeat", type=int, default=None, help="timed iterations (default 50 on cuda, 5 on cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.set_defaults(handler=run_cost)


def _ref_sizes(args: argparse.Namespace) -> list[tuple[int, int]]:
    sizes = [parse_hw(args.ref)]
    if args.sweep_ref:
        sizes += [parse_hw(s.strip()) for s in args.sweep_ref.split(",") if s.strip()]
    unique = sorted(set(sizes), key=lambda hw: (hw[0] * hw[1], hw))
    return unique


def _print_summary(rows: Sequence[CostRow], method: str, lr: str, ref: str) -> None:
    def pick(quantity: str, part: str = "total", convention: str = "-") -> float | None:
        for row in rows:
            if row.quantity == quantity and row.part == part and row.convention == convention:
                return row.value
        return None

    params = pick("params")
    used = pick("params_used")
    parts = [f"{method} (LR {lr}, Ref {ref})"]
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
    print(" | ".join(parts), flush=True)


def _write_outputs(out: Path, rows: list[CostRow], manifest: dict[str, Any]) -> None:
    write_cost_csv(out / "cost.csv", rows)
    tmp = out / "run.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    tmp.replace(out / "run.json")


def run_cost(args: argparse.Namespace) -> int:
    """Handler of ``refsr-bench cost``; returns the process exit code."""
    from methods import registry

    plugins = list(getattr(args, "plugin", None) or [])
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False; use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "cuda" else "cpu"
    latency: LatencyConfig | None = None
    if not args.no_latency:
        default = default_latency_config(device)
        latency = LatencyConfig(
            warmup=default.warmup if args.warmup is None else args.warmup,
            repeat=default.repeat if args.repeat is None else args.repeat,
        )
        if latency.warmup < 0 or latency.repeat < 1:
            raise UserError(f"--warmup must be >= 0 and --repeat >= 1; got {latency.warmup}, {latency.repeat}")
    lr_hw = parse_hw(args.lr)
    ref_sizes = _ref_sizes(args)
    names = registry.resolve(list(args.methods))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[CostRow] = []
    failures: list[str] = []
    per_method: dict[str, Any] = {}
    manifest: dict[str, Any] = {
        "command": ["refsr-bench", *sys.argv[1:]] if sys.argv else [],
        "environment": environment(device),
        "settings": {
            "lr_hw": list(lr_hw),
            "ref_sizes": [list(s) for s in ref_sizes],
            "scale": args.scale,
            "conventions": list(args.convention),
            "latency": None if latency is None else {"warmup": latency.warmup, "repeat": latency.repeat},
            "memory": not args.no_memory,
            "latency_excludes": "data loading and host-to-device copies (inputs live on the device)",
        },
        "methods": per_method,
    }
    progress = tqdm(names, desc="cost", unit="method", file=sys.stderr, mininterval=1.0)
    for name in progress:
        progress.set_postfix_str(name)
        entry: dict[str, Any] = {"sizes": [], "skipped": None}
        per_method[name] = entry
        try:
            method = registry.create(name, scale=args.scale, device=device)
        except UserError as error:
            entry["skipped"] = f"factory: {error}"
            print(f"{name}: skipped ({error})", flush=True)
            continue
        if not hasattr(method, "cost_graph"):
            entry["skipped"] = "the method has no cost_graph"
            print(f"{name}: skipped (no cost_graph)", flush=True)
            continue
        sizes = ref_sizes if method.info.needs_reference else ref_sizes[:1]  # SISR: Ref ignored
        for ref_hw in sizes:
            try:
                result = measure_method_size(
                    name,
                    method,
                    scale=args.scale,
                    lr_hw=lr_hw,
                    ref_hw=ref_hw,
                    device=device,
                    conventions=args.convention,
                    latency=latency,
                    memory=not args.no_memory,
                    plugins=plugins,
                )
            except (UserError, NotImplementedError) as error:
                # matcher-only methods and sizes a method cannot take are recorded, not fatal
                entry["sizes"].append({"lr_hw": list(lr_hw), "ref_hw": list(ref_hw), "skipped": str(error)})
                print(f"{name} (LR {lr_hw}, Ref {ref_hw}): skipped ({error})", flush=True)
                continue
            except Exception as error:  # a method that cannot be traced or run must not lose the others' results
                failures.append(name)
                entry["sizes"].append(
                    {"lr_hw": list(lr_hw), "ref_hw": list(ref_hw), "error": f"{type(error).__name__}: {error}"}
                )
                print(
                    f"{name} (LR {lr_hw}, Ref {ref_hw}): FAILED {type(error).__name__}: {error}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            rows += result.rows
            entry["sizes"].append(result.manifest)
            _print_summary(result.rows, name, result.rows[0].lr_hw, result.rows[0].ref_hw)
            for convention, info in result.manifest["conventions"].items():
                if info["unsupported_ops"]:
                    listing = ", ".join(f"{k} x{v}" for k, v in info["unsupported_ops"].items())
                    print(f"    {convention}: unsupported ops counted as 0: {listing}", flush=True)
        del method
        _write_outputs(out, rows, manifest)  # after every method, so a long run that is stopped keeps its results

    progress.close()
    _write_outputs(out, rows, manifest)
    written = [out / "cost.csv", out / "run.json"]
    if args.sweep_ref and rows:
        written += plot_sweep(rows, out, args.convention[0])
    print("wrote " + ", ".join(str(p) for p in written), flush=True)
    if failures:
        print(f"error: cost failed for {', '.join(sorted(set(failures)))} (details in run.json)", file=sys.stderr)
        return 1
    return 0
