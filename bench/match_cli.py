"""``refsr-bench match``: matching accuracy (CC-Net Table 2 style) of matchers on a dataset with ground truth.

    refsr-bench match -m zncc zncc_blurry -d sintel --data ROOT --pass clean final --out DIR

writes ``DIR/records.csv`` (bench.records format; dataset = the dataset, preset = ``ccnet2017`` or the
changed options, reference = Sintel pass or HCI view pair, image = frame name, ``ALL`` (pooled over
positions) or ``MEAN`` (mean over frames)), ``DIR/run.json`` (options, method parameters, data,
timings, environment) and ``DIR/table.md`` (the pooled Table-2 view). Running again into the same DIR
replaces the rows of the same dataset/preset/method/reference and keeps the others.

Dataset roots: ``--data ROOT`` or ``$REFSR_DATA``. Sintel is looked up as ROOT/MPI-Sintel, then
ROOT/MPI-Sintel_subset (the shared subset), then ROOT itself (a folder holding ``training/``); HCI as
ROOT/LF_HCI4D/<group>/<scene>.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench.records import RUN_JSON_SCHEMA, Record, read_records, write_records
from protocols.core import UserError
from protocols.datasets import get_dataset, matching_datasets
from protocols.matching import (
    SUPPORTED_SCALES,
    THRESHOLDS_PX,
    FrameAccuracy,
    MatchingOptions,
    accuracy_rows,
    evaluate_item,
    load_dataset,
    metric_name,
)

# Columns of CC-Net Table 2 (there is no "<= 3" column in the paper).
TABLE2_THRESHOLDS_PX = (0, 1, 2, 4, 5, 6)


def _view(text: str) -> tuple[int, int]:
    try:
        row, col = (int(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"view must be 'ROW,COL' (e.g. 4,4); got {text!r}") from error
    return row, col


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "match",
        help="matching accuracy (fraction within 0..7 px) of matchers on Sintel / HCI / the demo pairs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--methods", nargs="+", required=True, help="matchers (names or fnmatch patterns)")
    parser.add_argument("-d", "--dataset", required=True,
                        help=f"a dataset with ground-truth correspondence: {', '.join(matching_datasets())} "
                        "(or one a --plugin file registers)")
    parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    parser.add_argument("--pass", dest="passes", nargs="+", choices=("clean", "final"), default=["clean"],
                        help="render pass(es) of datasets that have them (Sintel); each becomes a reference policy")
    parser.add_argument("--scale", type=int, default=8, choices=SUPPORTED_SCALES)
    parser.add_argument("--norm", choices=("l2", "linf"), default="l2")
    parser.add_argument("--gt-rounding", choices=("nearest", "none"), default="nearest")
    parser.add_argument("--direction", choices=("forward", "backward"), default="forward")
    parser.add_argument("--occlusion", choices=("exclude", "include"), default="exclude")
    parser.add_argument("--search-radius", type=int, default=100, help="Chebyshev radius in HR pixels")
    parser.add_argument("--lr-view", type=_view, default=(4, 4), help="HCI LR view ROW,COL (GT: centre only)")
    parser.add_argument("--ref-view", type=_view, default=(1, 1), help="HCI Ref view ROW,COL")
    parser.add_argument("--frames", nargs="+", help="Sintel frames <scene>/frame_NNNN (default: all with GT)")
    parser.add_argument("--max-frames", type=int, help="evaluate only the first N frames")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/match", help="output folder (records.csv, run.json, table.md)")
    parser.add_argument("--weights", action="append", metavar="FOLDER|FILE|METHOD=FILE",
                        help="load trained weights: a folder, one file (with one method) or METHOD=FILE (repeatable); "
                        "default: untrained networks (classical matchers need none)")
    parser.set_defaults(handler=run_match)


def matcher_names(items: list[str]) -> list[str]:
    """Resolve ``-m`` items to methods with a correspondence step (``has_match`` on their card).

    A name that is not a matcher is a UserError naming the valid ones; a pattern keeps only its matchers."""
    from methods.registry import card, cards, resolve

    valid = ", ".join(c.name for c in cards() if c.has_match)
    names: list[str] = []
    for item in items:
        hits = resolve([item])
        if any(ch in item for ch in "*?["):
            hits = [n for n in hits if card(n).has_match]
            if not hits:
                raise UserError(f"no matcher matches {item!r}; matchers: {valid}")
        else:
            for name in hits:
                if not card(name).has_match:
                    raise UserError(f"{name} is not a matcher (it has no correspondence step); matchers: {valid}")
        names.extend(n for n in hits if n not in names)
    return names


def _load_match_weights(methods: dict[str, Any], values: list[str] | None) -> None:
    """Apply ``--weights`` (bench.weights.parse_weights_option) to the built matchers."""
    if not values:
        return
    from bench.weights import parse_weights_option, try_load, weights_dir

    option = parse_weights_option(values, list(methods))
    for name, method in methods.items():
        if name in option.files:
            method.load_weights(option.files[name])
        elif option.folder is not None and (problem := try_load(method, weights_dir(option.folder))) is not None:
            if method.info.weights:
                raise UserError(f"{name}: {problem}")


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _data_root(text: str | None) -> Path | None:
    text = text or os.environ.get("REFSR_DATA")
    return Path(text) if text else None


def run_match(args: argparse.Namespace) -> int:
    from methods.registry import create

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1; got {args.max_frames}")
    names = matcher_names(args.methods)
    methods = {name: create(name, scale=args.scale, device=args.device) for name in names}
    _load_match_weights(methods, args.weights)
    if args.search_radius < 0:
        raise UserError(f"--search-radius must be >= 0; got {args.search_radius}")
    for name, method in methods.items():
        # Matchers with a configurable window search the protocol's window (recorded in their info).
        if hasattr(method, "with_search_radius"):
            methods[name] = method.with_search_radius(args.search_radius)
    data_root = _data_root(args.data)
    card_passes = get_dataset(args.dataset).matching_passes
    unsupported = [p for p in args.passes if card_passes and p not in card_passes]
    if unsupported:
        raise UserError(f"{args.dataset} has no pass {', '.join(unsupported)}; passes: {', '.join(card_passes)}")
    passes = args.passes if card_passes else [MatchingOptions().sintel_pass]
    plans = []
    for pass_name in passes:
        options = MatchingOptions(
            scale=args.scale, norm=args.norm, gt_rounding=args.gt_rounding, sintel_pass=pass_name,  # type: ignore[arg-type]
            direction=args.direction, search_radius_px=args.search_radius, occlusion=args.occlusion,
            lf_lr_view=tuple(args.lr_view), lf_ref_view=tuple(args.ref_view),
        )
        dataset = load_dataset(args.dataset, data_root, options, frames=args.frames)  # validates the layout
        plans.append((options, dataset, dataset.entries[: args.max_frames]))
    identity = {
        "dataset": args.dataset,
        "levels": {d.level: [o.to_dict(), list(e)] for o, d, e in plans},
        "methods": names,
    }
    run_id = "match-" + hashlib.sha1(json.dumps(_json_ready(identity), sort_keys=True).encode()).hexdigest()[:10]

    records: list[Record] = []
    timings: dict[str, dict[str, Any]] = {}
    reference_meta: dict[str, Any] = {}
    for options, dataset, entries in plans:
        per_method: dict[str, list[FrameAccuracy]] = {name: [] for name in names}
        for entry in entries:
            item = dataset.load(entry)
            for name, method in methods.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                frame = evaluate_item(method, item, options)  # type: ignore[arg-type]
                seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
                per_method[name].append(frame)
                timing = timings.setdefault(name, {"per_frame_s": {}, "per_frame_cpu_s": {}})
                timing["per_frame_s"][f"{dataset.level}/{entry}"] = round(seconds, 3)
                timing["per_frame_cpu_s"][f"{dataset.level}/{entry}"] = round(cpu_seconds, 3)
                acc = frame.accuracy()
                print(f"[{dataset.level}] {entry} {name}: acc<=0 {acc[0]:.3f} acc<=1 {acc[1]:.3f} "
                      f"n={frame.n_positions} ({seconds:.1f} s)", file=sys.stderr, flush=True)
        for name, frames in per_method.items():
            for image, metric, value in accuracy_rows(frames):
                records.append(Record(run_id, dataset.name, options.preset_id(), name, dataset.level, image,
                                      metric, float(value)))
        reference_meta[dataset.level] = {"options": options.to_dict(), "frames": list(entries),
                                     "dataset": _json_ready(dataset.meta)}
    for timing in timings.values():
        for kind in ("s", "cpu_s"):
            values = list(timing[f"per_frame_{kind}"].values())
            timing[f"total_{kind}"] = round(sum(values), 3)
            timing[f"mean_per_frame_{kind}"] = round(sum(values) / len(values), 3) if values else None

    out = Path(args.out)
    replaced = {(r.dataset, r.preset, r.method, r.reference) for r in records}
    kept = [r for r in read_records(out / "records.csv")
            if (r.dataset, r.preset, r.method, r.reference) not in replaced]
    write_records(out / "records.csv", kept + records)
    _write_run_json(out / "run.json", run_id, args, names, methods, reference_meta, timings, data_root,
                    plans[0][0].sentence())
    table = table_markdown(kept + records)
    (out / "table.md").write_text(table)
    print(table)
    print(f"wrote {out / 'records.csv'} ({len(records)} new records), run.json and table.md")
    return 0


def _write_run_json(path: Path, run_id: str, args: argparse.Namespace, names: list[str], methods: Mapping[str, Any],
                    reference_meta: dict[str, Any], timings: dict[str, Any], data_root: Path | None,
                    sentence: str) -> None:
    try:
        from bench.provenance import environment

        env = environment(args.device)
    except ImportError:  # the provenance helper is optional for this verb
        env = {"torch": torch.__version__}
    env["torch_threads"] = torch.get_num_threads()
    first_options = next(iter(reference_meta.values()))["options"]
    run = {
        "schema": RUN_JSON_SCHEMA,
        "run_id": run_id,
        "verb": "match",
        # Read by the report: which dataset/preset these records belong to and the sentence stating it.
        "protocol_spec": {"name": first_options["preset"], "kind": "matching", "matching_options": first_options},
        "protocol_sentence": sentence,
        "arguments": _json_ready({k: v for k, v in vars(args).items() if k != "handler"}),
        "dataset": args.dataset,
        "data_root": str(data_root) if data_root else None,
        "references": reference_meta,
        "methods": {name: _json_ready(asdict(methods[name].info)) for name in names},
        "timings": timings,
        "timing_note": "per frame: wall time (time.perf_counter) and process CPU time (time.process_time) of LR "
        "generation + match() + scoring on CPU; data loading excluded. Wall time depends on machine load.",
        "environment": env,
    }
    runs: list[dict[str, Any]] = []
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
            runs = [r for r in previous.get("runs", []) if r.get("run_id") != run_id]
        except (json.JSONDecodeError, AttributeError):
            runs = []
    runs.append(run)
    path.write_text(json.dumps({"runs": runs}, indent=2, sort_keys=True) + "\n")


def table_markdown(records: list[Record]) -> str:
    """The pooled (``ALL``) accuracy curve t = 0..7 px as a markdown table, one row per dataset/reference/method.

    CC-Net Table 2 prints the columns 0, 1, 2, 4, 5, 6 (marked *); 3 and 7 complete Fig. 3's curve.
    """
    pooled: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for record in records:
        if record.image == "ALL":
            key = (record.dataset, record.preset, record.reference, record.method)
            pooled.setdefault(key, {})[record.metric] = record.value
    marks = ["*" if t in TABLE2_THRESHOLDS_PX else "" for t in THRESHOLDS_PX]
    header = "| dataset | preset | reference | method | " + " | ".join(
        f"≤{t}px{mark}" for t, mark in zip(THRESHOLDS_PX, marks, strict=True)
    )
    header += " | positions |\n|" + "---|" * (len(THRESHOLDS_PX) + 5) + "\n"
    lines = []
    for (dataset, preset, reference, method), values in sorted(pooled.items()):
        cells = [f"{100 * values.get(metric_name(t), float('nan')):.1f}%" for t in THRESHOLDS_PX]
        cells.append(str(int(values.get("n_positions", 0))))
        lines.append(f"| {dataset} | {preset} | {reference} | {method} | " + " | ".join(cells) + " |")
    note = "\n(*) columns printed in CC-Net Table 2. Accuracy pooled over all evaluated positions (image ALL).\n"
    return header + "\n".join(lines) + "\n" + note
