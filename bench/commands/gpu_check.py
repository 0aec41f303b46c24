"""``refsr-bench gpu-check``: one call that checks every port on a device and measures every network's cost there.

    refsr-bench gpu-check --device cuda --sizes paper --out $OUT   # GPU machine: bench/commands/gpu_check.sh
    refsr-bench gpu-check --device cpu --sizes tiny --iterations 3     # the same steps on CPU, tiny sizes (tests)

Steps, in this order (each one's wall time is recorded in run.json):

1. Environment: GPU name, driver, torch / CUDA / cuDNN / torchvision versions, TF32 flags. TF32 is turned
   OFF (``torch.backends.cuda.matmul.allow_tf32 = False``, ``torch.backends.cudnn.allow_tf32 = False``) so
   float32 means float32 everywhere below.
2. Fixtures: every port with an official fixture (``bench.engines.checks.fixtures.PORT_FIXTURES``) runs the fixture
   inputs on the device in float32; max |Δ| against ``outputs.npz`` is compared with the tolerance the fixture README
   justifies (``PortFixture.atol`` / ``atol_why``). Those tolerances come from the float32-vs-float64 spread
   of the official code (1e-6 .. 1e-5) with margin; a GPU's float32 kernels (other summation orders, cuDNN
   algorithm choice, no TF32) differ from the CPU by the same order, so the same tolerance is expected to
   hold; a discrete matching step could flip only at near-ties, which the READMEs rule out at 1e-5.
   With ``--autocast`` the same fixture inputs also run under autocast; PSNR of that output against the
   float32 output (peak = the output's nominal range: 1 for [0, 1], 2 for [-1, 1]) is recorded.
3. Deformable convolution: every ``torchvision.ops.deform_conv2d`` call of C²-Matching (its fixture) and of
   SSEN (synthetic weights, no official fixture exists: the C² fixture's LR/Ref images are used) is recorded
   on the CPU and replayed on the device; max |Δ| device vs CPU per call.
4. Cost of every registered network (or ``-m``) at LR 128² / Ref 512² and on the CUFED5 stitched shape
   (LR 125×83, Ref 2560×512) — ``--sizes tiny`` uses LR 16² / Ref 64² and LR 15×11 / Ref 160×48 — through the
   one cost pipeline (``bench.engines.cost.pipeline.measure_cost``, the same as ``refsr-bench cost``):
   parameters and MACs (one fvcore trace), latency (warm-up, then
   ``--iterations`` timed forwards: CUDA events on GPU, ``time.perf_counter`` on CPU; median, p10/p90), peak
   memory (GPU: ``torch.cuda.max_memory_allocated`` over one forward; CPU: the in-process peak-RSS delta,
   labelled as such), in float32 and, with ``--autocast``, under autocast (quantities suffixed
   ``_autocast_bf16`` / ``_autocast_fp16``), and the machine's load during the timing (run.json
   ``measured_on``). The same network (``bench.engines.cost.network``: GAN/rec twins) is measured once and
   recorded under both names (``same_network_as`` in run.json).

The device-specific steps live in ``bench.engines.checks.gpu``; this module is the verb.

Budget (H100, ``--sizes paper``; the plan is under 8 minutes): Python and torch imports ~10 s before the clock
starts; then ``--budget-s`` (default 400 s) for everything: environment ~2 s; fixtures ~60 s (the synthetic
weights are ~80 M numbers made with numpy, six small forwards); deformable convolution ~15 s; building every
network once on the CPU to count the distinct networks (the cards say which methods are networks) ~10 s; cost:
the rest (~310 s), shared evenly among the remaining (distinct network, shape) cells (11 networks x 2 shapes:
~14 s each, of which 60 % timed loops, the rest trace, warm-up, memory and the autocast PSNR). When 50 timed
iterations do not fit a cell's share (SRNTT at the stitched shape, seconds per forward) fewer are run and the
cell says ``below_gpu_protocol_minimum``; cells
reached after the budget is spent are recorded as skipped, and the cell in flight may overrun by one cell
(~20 s), so the whole call ends by ~7.5 minutes. Nothing is estimated: a number in the output was measured.

Writes ``OUT/<run-name>/cost.csv`` (``bench.results.cost_csv`` format; ``reports`` reads it), ``checks.csv`` (same
columns: fixture and deformable-convolution max |Δ|, autocast PSNR), ``run.json`` and ``summary.md`` (the
table a session pastes into its note). ``OUT`` defaults to ``$OUT`` when set. Commit the folder under
``reports/results/cost/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.engines.checks.gpu import (
    SIZES,
    check_deform_conv,
    check_fixtures,
    device_environment,
    measure_networks,
    run_name,
    shared_folder,
    summary_table,
    tf32_off,
)
from bench.engines.cost.pipeline import Budget
from bench.engines.cost.precision import autocast_choices
from bench.results.cost_csv import CostRow, write_cost_csv
from protocols.core import UserError


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gpu-check", help="fixture equality, deform-conv check and cost of every network on one device",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu-check",
                        help="output folder; the run goes to OUT/<run-name>/ (default $OUT, else runs/gpu-check)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="device to check (default cuda)")
    parser.add_argument("--sizes", default="paper", choices=sorted(SIZES), help="paper (default) or tiny (tests)")
    parser.add_argument("-m", "--methods", nargs="+", default=None, metavar="METHOD",
                        help="registry names or patterns (default: every registered network); also limits the "
                             "fixture step to these ports (the deformable-convolution step always runs)")
    parser.add_argument("--iterations", type=int, default=None, help="timed forwards (default 50 cuda, 5 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up forwards (default 10 cuda, 1 cpu)")
    parser.add_argument("--autocast", default="bf16", choices=[*autocast_choices(), "none"],
                        help="also measure under autocast with this dtype (default bf16; none = float32 only)")
    parser.add_argument("--budget-s", type=float, default=400.0,
                        help="wall-clock budget of the whole check in seconds (default 400)")
    parser.add_argument("--shared", default=None, help="folder holding fixtures/ (default $REFSR_SHARED, ../shared)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(handler=run_gpu_check)


def _check_args(args: argparse.Namespace) -> tuple[Path, int, int]:
    """(fixtures folder, warm-up, timed forwards) of valid arguments; a UserError otherwise."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False; on a CPU use --device cpu")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    shared = shared_folder(args.shared)
    if shared is None:
        raise UserError("fixtures not found: pass --shared DIR or set REFSR_SHARED to the folder holding fixtures/ "
                        "(bench/commands/gpu_check.sh prepare copies it into .gpu_carry/shared)")
    on_gpu = args.device == "cuda"
    repeat = args.iterations if args.iterations is not None else (50 if on_gpu else 5)
    warmup = args.warmup if args.warmup is not None else (10 if on_gpu else 1)
    if repeat < 1 or warmup < 0:
        raise UserError(f"--iterations must be >= 1 and --warmup >= 0; got {repeat}, {warmup}")
    return shared, warmup, repeat


def _environment(args: argparse.Namespace, shared: Path) -> tuple[dict[str, Any], dict[str, bool]]:
    flags = tf32_off()
    env = device_environment(args.device)
    sent_sha = shared.parent / "git_sha"  # by `gpu_check.sh prepare` (the device copy has no .git)
    if env.get("git_sha") in (None, "unknown") and sent_sha.is_file():
        env["git_sha"] = sent_sha.read_text().strip() + " (recorded by gpu_check.sh prepare)"
    return env, flags


def run_gpu_check(args: argparse.Namespace) -> int:
    """Handler of ``refsr-bench gpu-check``; returns the exit code (1 if a port failed or exceeded its tolerance)."""
    started = time.perf_counter()
    shared, warmup, repeat = _check_args(args)
    autocast = None if args.autocast == "none" else args.autocast
    from methods import registry

    names = registry.resolve(list(args.methods)) if args.methods else registry.list_methods()
    env, flags = _environment(args, shared)
    out = Path(args.out) / run_name(str(env["device_name"]))
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(message: str) -> None:
        lines.append(message)
        print(message, flush=True)

    log(f"device {env['device_name']} | driver {env.get('driver', '-')} | torch {env['torch']} | CUDA "
        f"{env.get('cuda')} | cuDNN {env.get('cudnn')} | torchvision {env['torchvision']} | TF32 {flags}")
    steps: dict[str, float] = {}
    clock = time.perf_counter()
    check_rows, fixtures = check_fixtures(shared, args.device, autocast, log, names if args.methods else None)
    steps["fixtures_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    try:
        deform_rows, deform = check_deform_conv(shared, args.device, log)
    except Exception as error:  # recorded; the cost step still runs
        deform_rows, deform = [], [{"error": f"{type(error).__name__}: {error}"}]
        log(f"deform_conv2d check FAILED: {deform[0]['error']}")
    check_rows += deform_rows
    steps["deform_conv_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    cost_rows, networks = measure_networks(names, SIZES[args.sizes], args.device, warmup, repeat, autocast,
                                           Budget(deadline=started + args.budget_s), log)
    steps["cost_s"] = round(time.perf_counter() - clock, 2)
    steps["total_s"] = round(time.perf_counter() - started, 2)
    run_json = {
        "command": ["refsr-bench", *sys.argv[1:]] if sys.argv else [],
        "environment": env,
        "settings": {"sizes": args.sizes, "shapes": [s.__dict__ for s in SIZES[args.sizes]], "warmup": warmup,
                     "repeat": repeat, "autocast": autocast, "budget_s": args.budget_s, **flags,
                     "latency_excludes": "data loading and host-to-device copies (inputs live on the device)"},
        "steps_seconds": steps, "fixtures": fixtures, "deform_conv2d": deform, "methods": networks, "log": lines,
    }
    _write(out, args.sizes, autocast, cost_rows, check_rows, run_json)
    failed = [f["method"] for f in fixtures if "error" in f or not f.get("passed", False)]
    failed += [m for m, entries in networks.items() for e in entries if "error" in e]
    if failed:
        print(f"error: failed or over tolerance: {', '.join(sorted(set(failed)))} (details in run.json)",
              file=sys.stderr)
        return 1
    return 0


def _write(out: Path, sizes: str, autocast: str | None, cost_rows: list[CostRow], check_rows: list[CostRow],
           run_json: dict[str, Any]) -> None:
    """cost.csv, checks.csv, run.json and summary.md (also printed)."""
    write_cost_csv(out / "cost.csv", cost_rows)
    write_cost_csv(out / "checks.csv", check_rows)
    summary: list[str] = []
    for shape in SIZES[sizes]:
        summary += summary_table(cost_rows, check_rows, str(run_json["environment"]["device_name"]), shape,
                                 autocast) + [""]
    (out / "run.json").write_text(json.dumps(run_json, indent=1, sort_keys=True, default=str) + "\n")
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"wrote {out}/cost.csv, checks.csv, run.json, summary.md in {run_json['steps_seconds']['total_s']:.0f} s; "
          f"commit the folder as reports/results/cost/{out.name}/", flush=True)
