"""``refsr-bench cost``: parameters, MACs (two conventions), latency and peak memory of methods.

    refsr-bench cost -m masa ttsr --lr 128 --ref 512 --convention macs masa2021 --out runs/cost
    refsr-bench cost -m 'ssen*' --sweep-ref 128,256,512,1024 --no-latency

Writes ``DIR/cost.csv`` (long format: method, part, quantity, value, unit, lr_hw, ref_hw, device,
convention) and ``DIR/run.json`` (versions, device, thread count, raw latency samples, unsupported
operators per method and convention); with ``--sweep-ref`` also ``DIR/sweep.png`` and ``DIR/sweep.svg``.
Numbers from methods without loaded weights are cost numbers only: cost does not depend on weight values.
Under torchrun (``torchrun --nproc-per-node N -m bench cost ...``) whole methods go to ranks, ranks sharing a
device take turns, and rank 0 writes the one run folder (``bench.engines.cost.run_folder``). Each timed
measurement records the 1-minute load average and the CPU model (run.json ``measured_on``); one made while the
load exceeded the usable cores is marked ``under_load``, warned about, and labelled apart in the report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.engines.cost.flop_handlers import CONVENTIONS
from bench.engines.cost.latency import LatencyConfig, default_latency_config
from bench.engines.cost.precision import PRECISIONS, REFERENCE
from bench.engines.cost.run_folder import CostConfig, measure_costs, sorted_ref_sizes
from bench.results.cost_csv import parse_hw


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
    parser.add_argument("--precision", nargs="+", default=[REFERENCE], choices=list(PRECISIONS),
                        help=f"precisions to time (default {REFERENCE}); others add quantities suffixed _<name> "
                             "and the PSNR of their output against float32")
    parser.set_defaults(handler=run_cost)


def config_from_args(args: argparse.Namespace) -> CostConfig:
    """The typed configuration of a parsed ``cost`` command line."""
    latency = None
    if not args.no_latency:
        default = default_latency_config(args.device)
        latency = LatencyConfig(warmup=default.warmup if args.warmup is None else args.warmup,
                                repeat=default.repeat if args.repeat is None else args.repeat)
    sweep = [parse_hw(s.strip()) for s in (args.sweep_ref or "").split(",") if s.strip()]
    return CostConfig(
        methods=tuple(args.methods), out_dir=Path(args.out), lr_hw=parse_hw(args.lr),
        ref_sizes=sorted_ref_sizes([parse_hw(args.ref), *sweep]), scale=args.scale, device=args.device,
        conventions=tuple(args.convention), latency=latency, memory=not args.no_memory, threads=args.threads,
        sweep_plot=bool(args.sweep_ref), plugins=tuple(getattr(args, "plugin", None) or ()),
        command=("refsr-bench", *sys.argv[1:]) if sys.argv else (), precisions=tuple(args.precision))


def run_cost(args: argparse.Namespace) -> int:
    """Handler of ``refsr-bench cost``; returns the process exit code."""
    result = measure_costs(config_from_args(args))
    if result.written:
        print("wrote " + ", ".join(str(p) for p in result.written), flush=True)
    if result.failures:
        print(f"error: cost failed for {', '.join(result.failures)} (details in run.json)", file=sys.stderr)
        return 1
    return 0
