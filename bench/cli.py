"""``refsr-bench`` command line. Every verb lives in a small function; user errors print one clear
message (no traceback) and exit with status 2."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from protocols.core import UserError

# Verbs contributed by other modules (each defines ``add_subcommand(subparsers)``).
_VERB_MODULES = (
    "bench.match_cli",
    "bench.cost_cli",
    "bench.gate",
    "bench.audit",
    "bench.jobs",
    "bench.manifests",
    "reports.cli",
    "bench.demo",
)


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.runner import RunConfig, level_policies, parse_protocol, parse_shard, run

    dataset, preset = parse_protocol(args.protocol)
    policies = level_policies(args.level) or ((args.ref_policy,) if args.ref_policy else ())
    config = RunConfig(
        dataset=dataset,
        preset=preset,
        methods=tuple(args.methods),
        out_dir=Path(args.out),
        data_root=args.data,
        weights=args.weights,
        device=args.device,
        reference_policies=policies,
        shard=parse_shard(args.shard),
        allow_random_weights=args.allow_random_weights,
        save_images=args.save_images,
    )
    records = run(config, allow_distributed=True)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    _print_means(records)
    print(f"wrote {Path(args.out) / 'records.csv'} ({len(records)} records) and run.json")
    return 0


def _print_means(records: list) -> None:
    import pandas as pd

    if not records:
        return
    frame = pd.DataFrame([r.__dict__ for r in records])
    table = frame.groupby(["protocol", "preset", "method", "level", "metric"])["value"].mean().unstack("metric")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    draws = frame[frame["level"].str.startswith("draw:")]
    if draws["level"].nunique() > 1:  # protocols.md §5.2: mean ± std of the dataset mean over reference draws
        per_draw = draws.groupby(["method", "metric", "level"])["value"].mean()
        spread = per_draw.groupby(["method", "metric"]).agg(["mean", "std", "count"])
        print("over reference draws (mean ± sample std of the per-draw dataset means):")
        for (method, metric), row in spread.iterrows():
            print(f"  {method} {metric}: {row['mean']:.4f} ± {row['std']:.4f} ({int(row['count'])} draws)")


def _cmd_merge(args: argparse.Namespace) -> int:
    from bench.runner import merge

    records = merge([Path(d) for d in args.run_dirs], Path(args.out), partial=args.partial)
    print(f"merged {len(args.run_dirs)} runs into {args.out} ({len(records)} records)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "methods":
        from methods.registry import list_methods

        print("\n".join(list_methods(args.pattern)))
    elif args.what == "protocols":
        from protocols.datasets import DATASETS
        from protocols.spec import PRESETS, list_presets

        print("datasets (use -p DATASET[:PRESET]):")
        for name, dataset in sorted(DATASETS.items()):
            print(f"  {name:16s} {dataset.layout}")
        print("presets:")
        for name in list_presets(args.pattern):
            print(f"  {name:16s} {PRESETS[name].description}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from bench.weights import all_weight_entries, fetch, weights_dir

    folder = weights_dir(args.weights)
    if args.action == "list":
        print(f"weights folder: {folder} (set REFSR_WEIGHTS to change)")
        for entry in all_weight_entries():
            present = "installed" if (folder / entry.file.file_name).is_file() else "missing"
            print(
                f"  {entry.method:18s} {entry.file.file_name:32s} {present:9s} sha256={entry.file.sha256 or 'unknown'}"
                f"  {entry.file.license}  {entry.file.url}"
            )
        return 0
    if not args.name:
        raise UserError("weights fetch needs a method or file name, e.g. `refsr-bench weights fetch masa_rec`")
    for path in fetch(args.name, folder):
        print(f"ok: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refsr-bench", description="Reference-based SR benchmark and reproducibility suite"
    )
    parser.add_argument("--plugin", action="append", default=[], help="a Python file that registers your own method")
    sub = parser.add_subparsers(dest="verb", required=True)

    run_parser = sub.add_parser("run", help="evaluate methods on one protocol, writing per-image records")
    run_parser.add_argument("-p", "--protocol", required=True, help="DATASET[:PRESET], e.g. urban100:refsr")
    run_parser.add_argument(
        "-m", "--methods", nargs="+", action="extend", required=True, help="method names or patterns (repeatable)"
    )
    run_parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    run_parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS) or one checkpoint file")
    run_parser.add_argument("--out", default="runs/latest", help="output folder (records.csv, run.json)")
    run_parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    run_parser.add_argument(
        "--level",
        help="CUFED5 reference level (1..5, all, or a stitching recipe); draws:K for K seeded reference draws "
        "(Sun80, Manga109), reported as mean ± std",
    )
    run_parser.add_argument("--ref-policy", help="override the preset's reference policy (e.g. self_lr)")
    run_parser.add_argument("--shard", default="0/1", help="i/n: evaluate every n-th image from i")
    run_parser.add_argument(
        "--allow-random-weights", action="store_true", help="plumbing tests only; records are tagged"
    )
    run_parser.add_argument("--save-images", action="store_true", help="also write the SR images as PNG")
    run_parser.set_defaults(handler=_cmd_run)

    merge_parser = sub.add_parser("merge", help="join sharded run folders")
    merge_parser.add_argument("run_dirs", nargs="+")
    merge_parser.add_argument("--out", required=True)
    merge_parser.add_argument(
        "--partial", action="store_true", help="allow missing shards (and repeated shards whose rows agree)"
    )
    merge_parser.set_defaults(handler=_cmd_merge)

    list_parser = sub.add_parser("list", help="list registered methods or protocols")
    list_parser.add_argument("what", choices=["methods", "protocols"])
    list_parser.add_argument("pattern", nargs="?", default="*")
    list_parser.set_defaults(handler=_cmd_list)

    weights_parser = sub.add_parser("weights", help="list or explicitly download official checkpoints")
    weights_parser.add_argument("action", choices=["list", "fetch"])
    weights_parser.add_argument("name", nargs="?")
    weights_parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS)")
    weights_parser.set_defaults(handler=_cmd_weights)

    for module_name in _VERB_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            module = importlib.import_module(module_name)
            if hasattr(module, "add_subcommand"):
                module.add_subcommand(sub)
    return parser


def _load_plugin(load_plugin: Callable[[str], None], path: str) -> None:
    """Import a plugin file; a broken file is the user's to fix, so it is one line, not a traceback."""
    try:
        load_plugin(path)
    except UserError:
        raise
    except SyntaxError as error:
        raise UserError(f"plugin {path} has a syntax error at line {error.lineno}: {error.msg}") from None
    except Exception as error:  # noqa: BLE001 -- any import-time failure of user code
        raise UserError(f"plugin {path} failed to import: {type(error).__name__}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.plugin:
            from methods.registry import load_plugin

            for plugin in args.plugin:
                _load_plugin(load_plugin, plugin)
        return int(args.handler(args))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the records already written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
