"""``refsr-bench audit``: one method under every preset that applies to a dataset, so a reader can see
how much of a reported gap is protocol rather than method. Writes OUT/<preset>/records.csv per preset and
OUT/audit.csv (preset x metric mean, Δ to the suite default ``refsr``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd
import torch

from bench.engines import torchrun
from bench.engines.run.execute import run
from bench.engines.run.plan import RunConfig
from bench.results.records import Record
from methods.registry import card, resolve
from protocols.core import UserError
from protocols.datasets import get_dataset
from protocols.spec import PRESETS, ProtocolSpec, get_preset

SUITE_DEFAULT = "refsr"


def applicable_presets(method_name: str, dataset: str) -> list[ProtocolSpec]:
    """Presets the method can run under on this dataset (scale supported; a reference where needed). A preset
    that only adds metrics to an earlier one (``c2matching2021_official``) is the same protocol: not run twice."""
    method_card = card(method_name)
    return [
        spec
        for spec in PRESETS.values()
        if method_card.supports(spec.scale)
        and not (method_card.needs_reference and spec.reference_policy_for(dataset) == "none")
        and not _metric_variant(spec)
    ]


def _metric_variant(spec: ProtocolSpec) -> bool:
    """True when an earlier preset has the same protocol and a subset of ``spec``'s metrics."""
    def protocol(other: ProtocolSpec) -> ProtocolSpec:
        return dataclasses.replace(other, name="", description="", source="", status="", metrics=spec.metrics)

    for other in PRESETS.values():
        if other.name == spec.name:
            return False
        if set(other.metrics) < set(spec.metrics) and protocol(other) == protocol(spec):
            return True
    return False


def audit_table(records: list[Record]) -> pd.DataFrame:
    """Rows: preset; columns: metric means and Δ to ``refsr`` for each metric both have."""
    frame = pd.DataFrame([r.__dict__ for r in records])
    means = frame.groupby(["preset", "metric"])["value"].mean().unstack("metric")
    if SUITE_DEFAULT in means.index:
        for metric in list(means.columns):
            means[f"delta_{metric}"] = means[metric] - means.loc[SUITE_DEFAULT, metric]
    return means.sort_index()


def format_audit_table(table: pd.DataFrame) -> str:
    """The audit for a terminal: one line per preset with only the metrics it computed, each followed by its
    difference to ``refsr`` where refsr has that metric (presets compute different metrics: a wide table is
    mostly NaN)."""
    metrics = [c for c in table.columns if not str(c).startswith("delta_")]
    lines = [f"{'preset':<18} metric values (Δ = preset − {SUITE_DEFAULT}, where {SUITE_DEFAULT} has the metric)"]
    for preset in sorted(table.index, key=lambda p: (p != SUITE_DEFAULT, p)):
        row = table.loc[preset]
        parts = []
        for metric in metrics:
            value = row[metric]
            if pd.isna(value):
                continue
            delta = row.get(f"delta_{metric}")
            shown = f"{metric} {value:.4f}"
            if preset != SUITE_DEFAULT and delta is not None and not pd.isna(delta):
                shown += f" ({delta + 0.0:+.4f})"  # + 0.0: no "-0.0000"
            parts.append(shown)
        lines.append(f"{str(preset):<18} " + ("  ".join(parts) or "no metric computed"))
    return "\n".join(lines)


def audit(
    method: str,
    dataset: str,
    out_dir: Path,
    data_root: str | None,
    weights: str | None,
    presets: list[str] | None = None,
) -> pd.DataFrame | None:
    """Run ``method`` on ``dataset`` under every applicable preset (or ``presets``) into OUT/<preset>/ and write
    OUT/audit.csv; returns the audit table. Under torchrun each run is distributed and only rank 0 gets the
    table (other ranks: None)."""
    get_dataset(dataset)
    (method,) = resolve([method])
    specs = applicable_presets(method, dataset)
    if presets:
        for name in presets:
            get_preset(name)  # an unknown name lists the valid ones
        skipped = sorted(set(presets) - {s.name for s in specs})
        if skipped:
            raise UserError(f"preset(s) {', '.join(skipped)} do not apply to {method} on {dataset}")
        specs = [s for s in specs if s.name in presets]
    if not specs:
        raise UserError(f"no preset applies to {method} on {dataset}")
    records: list[Record] = []
    cache: dict[tuple[str, ...], torch.Tensor] = {}
    with torchrun.process_group() as ctx:  # under torchrun every rank takes part in each preset's run, in order
        for spec in specs:
            config = RunConfig(
                dataset=dataset,
                preset=spec.name,
                methods=(method,),
                out_dir=out_dir / spec.name,
                data_root=data_root,
                weights=weights,
            )
            records += run(config, prediction_cache=cache, allow_distributed=True)
    if ctx.rank != 0:
        return None  # rank 0 writes the audit table
    table = audit_table(records)
    table.to_csv(out_dir / "audit.csv", float_format="%.6f")
    return table


def _cmd_audit(args: argparse.Namespace) -> int:
    table = audit(args.method, args.dataset, Path(args.out), args.data, args.weights, args.presets)
    if table is None:
        return 0  # under torchrun only rank 0 reports
    print(format_audit_table(table))
    print(f"wrote {Path(args.out) / 'audit.csv'} and one run folder per preset")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="one method under every applicable preset (protocol audit table)")
    parser.add_argument("-m", "--method", required=True)
    parser.add_argument("-d", "--dataset", required=True)
    parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    parser.add_argument("--weights", help="weights folder or checkpoint file")
    parser.add_argument("--presets", nargs="+", help="restrict to these presets")
    parser.add_argument("--out", default="runs/audit")
    parser.set_defaults(handler=_cmd_audit)
