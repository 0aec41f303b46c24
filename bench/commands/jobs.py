"""``refsr-bench dataset-job DATASET``: what ``tox -e <dataset>`` runs -- the dataset's protocols for every
method that can run (weights installed), then the gate against reports/golden, then the report.

A missing dataset ends with one message naming the expected layout (exit 2), not a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands.run_options import level_policies
from bench.engines import torchrun
from bench.engines.matching.accuracy import MatchConfig, match_accuracy
from bench.engines.run.execute import run
from bench.engines.run.plan import RunConfig
from bench.results.gate import GOLDEN_DIR, format_table, gate, read_golden
from bench.results.records import read_records
from methods.weights import matchers, runnable_methods
from protocols.datasets import DATASETS, JobStep, load_items
from protocols.errors import unknown_name
from protocols.spec import get_preset
from reports.page import render_report


def jobs() -> dict[str, tuple[JobStep, ...]]:
    """Dataset name -> job steps (``DatasetCard.job``) for every dataset card that has a job (plugins included)."""
    return {name: card.job for name, card in DATASETS.items() if card.job}


def _run_step(dataset: str, step: JobStep, out: Path, data: str | None, weights: str | None) -> Path:
    if step.kind == "matching":
        target = out / f"matching_{dataset}"
        match_accuracy(MatchConfig(methods=tuple(matchers()), dataset=dataset, out=target, data=data))
        return target
    sr_methods = runnable_methods(weights, get_preset(step.preset).scale)
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
        ),
        allow_distributed=True,
    )
    return target


def dataset_job(dataset: str, out: Path, data: str | None, weights: str | None) -> int:
    steps = jobs().get(dataset)
    if steps is None:
        raise unknown_name("dataset job", dataset, sorted(jobs()))
    # layout errors surface here, before any work
    if any(step.kind == "matching" for step in steps):
        from protocols import matching

        matching.check_dataset(dataset, data)
    if any(step.kind == "quality" for step in steps):
        load_items(dataset, data)
    with torchrun.process_group() as ctx:  # under torchrun every rank takes part in each run, in order
        run_dirs = [_run_step(dataset, step, out, data, weights) for step in steps]
    if ctx.rank != 0:
        return 0  # rank 0 gates and reports
    failed = False
    golden = read_golden(sorted(GOLDEN_DIR.glob("*.csv")))
    for run_dir in run_dirs:
        verdicts = gate(read_records(run_dir / "records.csv"), golden)
        checked = [v for v in verdicts if v.verdict in ("pass", "FAIL", "MISSING")]
        print(f"\ngate {run_dir}:\n{format_table(verdicts)}")
        print(f"{len(checked)} golden keys checked" + ("" if checked else " (none committed for this run)"))
        failed |= any(v.verdict in ("FAIL", "MISSING") for v in verdicts)
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
