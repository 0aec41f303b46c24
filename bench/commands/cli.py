"""``refsr-bench`` command line. Every verb lives in a small function; user errors print one clear
message (no traceback) and exit with status 2.

Start-up is cheap: the verbs defined here import their work lazily, and the verbs of other modules are
listed in ``VERB_MODULES`` (name -> module, one-line help); a verb's module is imported only when that
verb is the one being run, so ``--help``, ``list`` and ``weights list`` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from protocols.errors import UserError

# Verbs contributed by other modules (each defines ``add_subcommand(subparsers)``): verb -> (module, help).
VERB_MODULES: dict[str, tuple[str, str]] = {
    "predict": ("bench.commands.predict", "super-resolve one PNG with one method (real weights), write the SR"),
    "match": ("bench.commands.match", "matching accuracy (fraction within 0..7 px) on Sintel / HCI / demos"),
    "cost": ("bench.commands.cost", "parameters, MACs (GMACs), latency and peak memory of methods"),
    "gate": ("bench.commands.gate", "compare a run with golden values; exit 1 on drift"),
    "accept": ("bench.commands.gate", "write golden values from a run (explicit request only)"),
    "audit": ("bench.commands.audit", "one method under every applicable preset (protocol audit table)"),
    "dataset-job": ("bench.commands.jobs", "run + gate + report for one dataset (tox -e DATASET)"),
    "released-job": ("bench.commands.released", "a paper's table rows from its released SR images"),
    "manifest": ("bench.commands.manifests", "draw and commit the random references (Sun80, Manga109)"),
    "report": ("bench.commands.report", "HTML page, LaTeX tables and plots from run folders"),
    "data": ("bench.commands.data", "list, fetch (download, check, install) and verify the public test sets"),
    "demo": ("bench.commands.demo", "the main job: embedded data, cost table, HTML report (offline)"),
    "bundle": ("bench.commands.bundle", "pack a finished run folder into one checkable .refsr.tar"),
    "verify": ("bench.commands.bundle", "check a result bundle here; exit 0 only when every check passes"),
    "gpu-check": ("bench.commands.gpu_check", "fixtures, deform-conv replay and cost of every network on one device"),
}


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.commands.run_options import level_policies, parse_outputs, parse_protocol, parse_shard
    from bench.engines.run.execute import run
    from bench.engines.run.plan import RunConfig

    dataset, preset = parse_protocol(args.protocol)
    policies = level_policies(args.level) or ((args.ref_policy,) if args.ref_policy else ())
    config = RunConfig(
        dataset=dataset,
        preset=preset,
        methods=tuple(args.methods or ()),
        out_dir=Path(args.out),
        data_root=args.data,
        weights=tuple(args.weights) if args.weights else None,
        device=args.device,
        reference_policies=policies,
        shard=parse_shard(args.shard),
        allow_random_weights=args.allow_random_weights,
        save_images=args.save_images,
        outputs=parse_outputs(args.outputs or [], args.outputs_format or [], args.outputs_pattern or []),
        metrics=tuple(args.metrics or ()),
        threads=args.threads,
    )
    if "lpips" in config.metrics:  # the backbone is a separate file: say so before any work
        from protocols.perceptual import require_backbone

        require_backbone()
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
    table = frame.groupby(["dataset", "preset", "method", "reference", "metric"])["value"].mean().unstack("metric")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    draws = frame[frame["reference"].str.startswith("draw:")]
    if draws["reference"].nunique() > 1:  # protocols.md §5.2: mean ± std of the dataset mean over reference draws
        per_draw = draws.groupby(["method", "metric", "reference"])["value"].mean()
        spread = per_draw.groupby(["method", "metric"]).agg(["mean", "std", "count"])
        print("over reference draws (mean ± sample std of the per-draw dataset means):")
        for (method, metric), row in spread.iterrows():
            print(f"  {method} {metric}: {row['mean']:.4f} ± {row['std']:.4f} ({int(row['count'])} draws)")


def _cmd_merge(args: argparse.Namespace) -> int:
    from bench.engines.run.merge import merge

    records = merge([Path(d) for d in args.run_dirs], Path(args.out), partial=args.partial)
    print(f"merged {len(args.run_dirs)} runs into {args.out} ({len(records)} records)")
    return 0


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "methods":
        _list_methods(args.pattern, args.weights, args.json)
    else:
        _list_protocols(args.pattern, args.json)
    return 0


def _list_methods(pattern: str, weights: str | None, as_json: bool) -> None:
    from methods.registry import cards
    from methods.weights import weight_status, weights_dir

    folder = weights_dir(weights)
    rows = [
        {
            "name": c.name,
            "aliases": list(c.aliases),
            "task": c.task,
            "scales": c.scales_text(),
            "weights": weight_status(c, folder),
            "paper": c.paper,
            "title": c.title,
        }
        for c in cards(pattern)
    ]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        print(f"no method matches {pattern!r}")
        return
    print(f"{'name':18s} {'aliases':12s} {'task':8s} {'scales':10s} {'weights':10s} paper")
    for row in rows:
        aliases = ",".join(row["aliases"]) or "-"  # type: ignore[arg-type]
        status = str(row["weights"]).split(":", 1)[0]  # "invalid: <reason>": the reason is listed below
        print(f"{row['name']:18s} {aliases:12s} {row['task']:8s} {row['scales']:10s} {status:10s} "
              f"{row['paper']}: {row['title']}")
    for row in rows:
        if str(row["weights"]).startswith("invalid"):
            print(f"{row['name']}: weights {row['weights']}")
    print(f"weights: installed (in {folder}, verified) / unverified (present; `refsr-bench weights fetch NAME` "
          "verifies it) / invalid / fetchable (`refsr-bench weights fetch NAME`) / "
          "manual (download by hand, see `weights fetch NAME`) / none (no official checkpoint)")


def _list_protocols(pattern: str, as_json: bool) -> None:
    import fnmatch

    from protocols.datasets import DATASETS
    from protocols.metrics import METRICS
    from protocols.spec import PRESETS, list_presets

    datasets = [
        {"name": name, "kind": card.kind, "display_name": card.display_name, "layout": card.layout}
        for name, card in sorted(DATASETS.items())
        if fnmatch.fnmatchcase(name, pattern)
    ]
    metrics = [
        {"name": name, "label": card.label, "channels": card.channels, "unit": card.unit,
         "higher_is_better": card.higher_is_better}
        for name, card in METRICS.items()
    ]
    presets = [{"name": name, "description": PRESETS[name].description} for name in list_presets(pattern)]
    if as_json:
        _print_json({"datasets": datasets, "metrics": metrics, "presets": presets})
        return
    print("datasets (quality: run -p DATASET[:PRESET]; matching: match -d DATASET):")
    for row in datasets:
        print(f"  {row['name']:16s} {row['kind']:9s} {row['display_name']}: {row['layout']}")
    print("metrics:")
    for metric in metrics:
        direction = "higher is better" if metric["higher_is_better"] else "lower is better"
        unit = f", {metric['unit']}" if metric["unit"] else ""
        print(f"  {metric['name']:16s} {metric['label']} ({metric['channels']}{unit}, {direction})")
    print("presets:")
    for preset in presets:
        print(f"  {preset['name']:16s} {preset['description']}")


def _cmd_weights(args: argparse.Namespace) -> int:
    from methods.weights import all_weight_entries, fetch, file_status, recorded_hashes, weights_dir

    folder = weights_dir(args.weights)
    if args.action == "list":
        recorded = recorded_hashes(folder)
        rows = [
            {
                "method": entry.method,
                "file": entry.file.file_name,
                "status": (status := file_status(entry.file, folder, recorded)),
                "installed": status == "installed",  # verified once (pinned or recorded sha256), not just present
                "sha256": entry.file.sha256 or recorded.get(entry.file.file_name),
                "sha256_pinned": entry.file.sha256 is not None,
                "source": entry.file.source,
                "url": entry.file.url,
                "license": entry.file.license,
            }
            for entry in all_weight_entries()
        ]
        if args.json:
            _print_json({"folder": str(folder), "files": rows})
            return 0
        print(f"weights folder: {folder} (set REFSR_WEIGHTS to change)")
        for row in rows:
            present = row["status"]
            sha = row["sha256"] or "unknown"
            sha = sha if row["sha256_pinned"] or sha == "unknown" else f"{sha} (recorded)"
            print(f"  {row['method']:18s} {row['file']:32s} {present:9s} {row['source']:6s} sha256={sha}"
                  f"  {row['license']}  {row['url']}")
        return 0
    if not args.name:
        raise UserError("weights fetch needs a method or file name, e.g. `refsr-bench weights fetch carn_m`")
    if args.source:
        from methods.weights import fetch_from

        print(f"ok: {fetch_from(args.name, Path(args.source), folder)}")
        return 0
    for path in fetch(args.name, folder):
        print(f"ok: {path}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("refsr-bench")
    except PackageNotFoundError:
        return "unknown (not installed; run `python3 -m pip install -e .`)"


def _verb_of(argv: Sequence[str]) -> str | None:
    """The verb in ``argv`` (the first word that is not an option or the value of ``--plugin``)."""
    skip_next = False
    for item in argv:
        if skip_next:
            skip_next = False
        elif item == "--plugin":
            skip_next = True
        elif not item.startswith("-"):
            return item
    return None


def _add_run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``refsr-bench run``'s options."""
    run_parser = sub.add_parser("run", help="evaluate methods on one protocol, writing per-image records")
    run_parser.add_argument("-p", "--protocol", required=True, help="DATASET[:PRESET], e.g. urban100:refsr")
    run_parser.add_argument(
        "-m", "--methods", nargs="+", action="extend", help="method names or patterns (repeatable)"
    )
    run_parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    run_parser.add_argument(
        "--weights", action="append",
        help="weights folder (default: $REFSR_WEIGHTS), METHOD=FILE (repeatable), or FILE when -m names one method",
    )
    run_parser.add_argument("--out", default="runs/latest",
                            help="output folder: records.csv, run.json (default: %(default)s)")
    run_parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: %(default)s)")
    run_parser.add_argument(
        "--level",
        help="reference policies to run (the records' reference column): CUFED5 levels 1..5 or all, a stitching "
        "recipe, or draws:K for K seeded reference draws (Sun80, Manga109), reported as mean ± std",
    )
    run_parser.add_argument("--ref-policy", help="one reference policy instead of the preset's (e.g. self_lr)")
    run_parser.add_argument("--shard", default="0/1",
                            help="i/n: evaluate every n-th image from i (default: %(default)s, all images)")
    run_parser.add_argument(
        "--allow-random-weights", action="store_true", help="plumbing tests only; records are tagged"
    )
    run_parser.add_argument("--save-images", action="store_true", help="also write the SR images as PNG")
    run_parser.add_argument(
        "--outputs", action="append", metavar="NAME=DIR",
        help="score SR images made elsewhere (e.g. a paper's released results) as method NAME (repeatable)",
    )
    run_parser.add_argument(
        "--outputs-format", action="append", metavar="FORMAT[:PARAM]",
        help="file names in the --outputs folders: plain ({image}.png), saved (--save-images layout), "
        "c2matching:EXPERIMENT, ttsr, masa, mmagic; once for all --outputs or once per --outputs, in order",
    )
    run_parser.add_argument(
        "--outputs-pattern", action="append", metavar="TEMPLATE",
        help="file-name template instead of a format, with {image} {index} {level} {policy} {hr_stem}, "
        "e.g. 'save_results/{index:05d}.png'; once for all --outputs or once per --outputs",
    )
    run_parser.add_argument(
        "--metrics", nargs="+", metavar="METRIC",
        help="score these metrics instead of the preset's (e.g. psnr_y ssim_y lpips; see `list protocols`); "
        "recorded in the run identity",
    )
    run_parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice for one "
                            "process, also under torchrun); part of the run identity")
    run_parser.set_defaults(handler=_cmd_run)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The full parser; only ``verb``'s module (if it is one of ``VERB_MODULES``) is imported."""
    parser = argparse.ArgumentParser(
        prog="refsr-bench", description="Reference-based SR benchmark and reproducibility suite"
    )
    parser.add_argument("--version", action="version", version=f"refsr-bench {_version()}")
    parser.add_argument("--plugin", action="append", default=[],
                        help="a Python file that registers your own method, dataset or metric")
    sub = parser.add_subparsers(dest="verb", required=True)

    _add_run_parser(sub)

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
    list_parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    list_parser.add_argument("--weights", help="weights folder for the weight status (default: $REFSR_WEIGHTS)")
    list_parser.set_defaults(handler=_cmd_list)

    weights_parser = sub.add_parser("weights", help="list or explicitly download official checkpoints")
    weights_parser.add_argument("action", choices=["list", "fetch"])
    weights_parser.add_argument("name", nargs="?")
    weights_parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS)")
    weights_parser.add_argument("--json", action="store_true", help="print JSON for scripts (list)")
    weights_parser.add_argument("--from", dest="source", metavar="FILE",
                                help="fetch: install this hand-downloaded file through the same checks")
    weights_parser.set_defaults(handler=_cmd_weights)

    if verb in VERB_MODULES:
        importlib.import_module(VERB_MODULES[verb][0]).add_subcommand(sub)
    for name, (_, summary) in VERB_MODULES.items():
        if name not in sub.choices:  # a placeholder: its module is imported when the verb is run
            sub.add_parser(name, help=summary, add_help=False)
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
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser(_verb_of(argv))
        args = parser.parse_args(argv)
        from methods.registry import forget_plugin_files, load_plugin

        forget_plugin_files()
        if args.plugin:
            for plugin in args.plugin:
                _load_plugin(load_plugin, plugin)
        return int(args.handler(args))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the records already written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
