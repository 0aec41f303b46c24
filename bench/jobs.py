"""``refsr-bench dataset-job DATASET``: what ``tox -e <dataset>`` runs -- the dataset's protocols for every
method that can run (weights installed), then the gate against reports/golden, then the report.

A missing dataset ends with one message naming the expected layout (exit 2), not a traceback.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench.demo import offline_methods
from bench.gate import GOLDEN_DIR, format_table, gate, read_golden
from bench.records import read_records
from bench.runner import RunConfig, level_policies, run
from protocols.core import UserError
from protocols.datasets import get_dataset, load_items


@dataclass(frozen=True)
class Step:
    preset: str
    levels: str | None = None  # CUFED5: "all" = five separate levels, or a stitching recipe
    methods: tuple[str, ...] = ()  # empty: every SR method whose weights are installed
    kind: str = "quality"  # "quality" or "matching"


JOBS: dict[str, tuple[Step, ...]] = {
    "cufed5": (Step("refsr", levels="all"), Step("refsr", levels="stitch5_masa")),
    "sun80": (Step("refsr"),),
    "urban100": (Step("refsr"), Step("sisr_std", methods=("bicubic_matlab", "carn_m"))),
    "manga109": (Step("refsr"), Step("sisr_std", methods=("bicubic_matlab", "carn_m"))),
    "wrsr": (Step("refsr"), Step("c2matching2021")),
    "flickr1024": (Step("refsr"), Step("e2ent2_2020")),
    "sintel": (Step("ccnet2017", kind="matching"),),
    "lf_hci": (Step("ccnet2017", kind="matching"),),
}


def _run_step(dataset: str, step: Step, out: Path, data: str | None, weights: str | None) -> Path:
    sr_methods, matchers = offline_methods(weights)
    if step.kind == "matching":
        from bench.cli import main as cli_main

        target = out / f"matching_{dataset}"
        argv = ["match", "-m", *matchers, "-d", dataset, "--out", str(target)] + (["--data", data] if data else [])
        if cli_main(argv):
            raise UserError(f"matching job on {dataset} failed")
        return target
    methods = tuple(m for m in (step.methods or sr_methods) if m in sr_methods)
    target = out / f"{dataset}_{step.preset}" / (step.levels or "default").replace(":", "_")
    run(
        RunConfig(
            dataset=dataset,
            preset=step.preset,
            methods=methods,
            out_dir=target,
            data_root=data,
            weights=weights,
            reference_policies=level_policies(step.levels),
        )
    )
    return target


def dataset_job(dataset: str, out: Path, data: str | None, weights: str | None) -> int:
    if dataset not in JOBS:
        raise UserError(f"no dataset job for {dataset!r}; valid: {', '.join(sorted(JOBS))}")
    if dataset in ("sintel", "lf_hci"):
        from protocols import matching

        matching.check_dataset(dataset, data)
    else:
        get_dataset(dataset)
        load_items(dataset, data)  # layout errors surface here, before any work
    run_dirs = [_run_step(dataset, step, out, data, weights) for step in JOBS[dataset]]
    failed = False
    golden = read_golden(sorted(GOLDEN_DIR.glob("*.csv")))
    for run_dir in run_dirs:
        verdicts = gate(read_records(run_dir / "records.csv"), golden)
        checked = [v for v in verdicts if v.verdict in ("pass", "FAIL", "MISSING")]
        print(f"\ngate {run_dir}:\n{format_table(verdicts)}")
        print(f"{len(checked)} golden keys checked" + ("" if checked else " (none committed for this run)"))
        failed |= any(v.verdict in ("FAIL", "MISSING") for v in verdicts)
    from reports.cli import render_report

    index = render_report([out], out / "report")
    print(f"report: {index}")
    return 1 if failed else 0


def _cmd_job(args: argparse.Namespace) -> int:
    return dataset_job(args.dataset, Path(args.out or f"runs/{args.dataset}"), args.data, args.weights)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset-job", help="run + gate + report for one dataset (tox -e DATASET)")
    parser.add_argument("dataset")
    parser.add_argument("--out", default=None, help="output folder (default runs/<dataset>)")
    parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS)")
    parser.set_defaults(handler=_cmd_job)
