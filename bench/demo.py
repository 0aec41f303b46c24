"""``refsr-bench demo``: the main job on a fresh machine, offline, on the data embedded in scikit-image.

1. quality (suite preset ``refsr``) on ``demo_stereo`` and ``demo_homography`` for every SR method that can
   run offline: bicubic, plus any method whose official weights are installed (never random weights);
2. matching accuracy of the classical matchers on the same pairs (×4);
3. the cost table (params, GMACs in both conventions, CPU latency) of every registered method;
4. the HTML report and LaTeX tables, built from these runs and the committed results in reports/results.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.runner import RunConfig, run
from bench.weights import weight_status, weights_dir
from methods.registry import cards
from protocols.core import UserError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED_RESULTS = ROOT / "reports" / "results"
DEMO_DATASETS = ("demo_stereo", "demo_homography")


def offline_methods(weights: str | None) -> tuple[list[str], list[str]]:
    """(SR methods runnable with real weights, matchers) among the registered methods."""
    folder = weights_dir(weights)
    sr = [c.name for c in cards() if c.task != "matcher" and (not c.trained or weight_status(c, folder) == "installed")]
    return sr, [c.name for c in cards() if c.task == "matcher"]


def demo(out_dir: Path, weights: str | None, cost_lr: str, cost_ref: str) -> Path:
    from bench.cli import main as cli_main

    runs = out_dir / "runs"
    sr_methods, matchers = offline_methods(weights)
    print(f"quality: {', '.join(sr_methods)}; matching: {', '.join(matchers) or 'none registered'}")
    for dataset in DEMO_DATASETS:
        run(
            RunConfig(
                dataset=dataset,
                preset="refsr",
                methods=tuple(sr_methods),
                out_dir=runs / f"quality_{dataset}",
                weights=weights,
            )
        )
        if matchers:
            # one pair per dataset keeps the demo short (dense SIFT on the full stereo pair takes minutes)
            status = cli_main(
                [
                    "match",
                    "-m",
                    *matchers,
                    "-d",
                    dataset,
                    "--scale",
                    "4",
                    "--max-frames",
                    "1",
                    "--out",
                    str(runs / f"matching_{dataset}"),
                ]
            )
            if status:
                raise UserError(f"matching on {dataset} failed (exit {status})")
    status = cli_main(
        [
            "cost",
            "-m",
            "*",
            "--lr",
            cost_lr,
            "--ref",
            cost_ref,
            "--convention",
            "macs",
            "masa2021",
            "--repeat",
            "3",
            "--warmup",
            "1",
            "--no-memory",
            "--out",
            str(runs / "cost"),
        ]
    )
    if status:
        raise UserError(f"cost measurement failed (exit {status})")
    from reports.cli import render_report

    sources = [runs] + ([COMMITTED_RESULTS] if COMMITTED_RESULTS.is_dir() else [])
    return render_report(sources, out_dir)


def _cmd_demo(args: argparse.Namespace) -> int:
    index = demo(Path(args.out), args.weights, args.cost_lr, args.cost_ref)
    print(f"report: {index}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="the main job: embedded data, cost table, HTML report (offline)")
    parser.add_argument("--out", default="reports/build", help="report folder (default reports/build)")
    parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS)")
    parser.add_argument("--cost-lr", default="64", help="LR size for the demo's cost table (default 64)")
    parser.add_argument("--cost-ref", default="256", help="Ref size for the demo's cost table (default 256)")
    parser.set_defaults(handler=_cmd_demo)
