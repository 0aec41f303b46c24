"""Matching accuracy (CC-Net Table 2 style) of matchers on a dataset with ground-truth correspondence: the typed
work of the ``match`` verb (``bench.commands.match``), also called by ``dataset-job``.

``match_accuracy(MatchConfig(...))`` writes ``OUT/records.csv`` (bench.results.records format; dataset = the dataset,
preset = ``ccnet2017`` or the changed options, reference = Sintel pass or HCI view pair, image = frame name,
``ALL`` (pooled over positions) or ``MEAN`` (mean over frames)), ``OUT/run.json`` (options, method parameters,
data, timings, environment) and ``OUT/table.md`` (the pooled Table-2 view). Running again into the same OUT
replaces the rows of the same dataset/preset/method/reference and keeps the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.engines import torchrun
from bench.results.records import RUN_JSON_SCHEMA, Record, read_records, write_records
from protocols.core import UserError
from protocols.datasets import get_dataset
from protocols.matching import (
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


@dataclass(frozen=True)
class MatchConfig:
    """One ``match`` job. Field names are the verb's option names (they are recorded in run.json)."""

    methods: tuple[str, ...]  # matcher names or fnmatch patterns
    dataset: str
    out: Path
    data: str | None = None  # dataset root (default: $REFSR_DATA)
    passes: tuple[str, ...] = ("clean",)  # render passes of datasets that have them (Sintel)
    scale: int = 8
    norm: str = "l2"
    gt_rounding: str = "nearest"
    direction: str = "forward"
    occlusion: str = "exclude"
    search_radius: int = 100  # Chebyshev radius in HR pixels
    lr_view: tuple[int, int] = (4, 4)  # HCI LR view (row, col)
    ref_view: tuple[int, int] = (1, 1)  # HCI Ref view (row, col)
    frames: tuple[str, ...] | None = None  # Sintel frames <scene>/frame_NNNN (default: all with GT)
    max_frames: int | None = None
    device: str = "cpu"
    threads: int | None = None
    weights: tuple[str, ...] | None = None  # FOLDER | FILE | METHOD=FILE items (methods.weights.parse_weights_option)


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
    """Apply ``--weights`` (methods.weights.parse_weights_option) to the built matchers."""
    if not values:
        return
    from methods.weights import parse_weights_option, try_load, weights_dir

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


# (frame accuracy, wall seconds, CPU seconds) of one matcher on one frame
FrameResult = tuple[FrameAccuracy, float, float]


def _evaluate_frames(methods: Mapping[str, Any], dataset: Any, options: MatchingOptions,
                     entries: list[str]) -> dict[str, dict[str, FrameResult]]:
    """entry -> matcher -> result for ``entries`` of ``dataset``; one progress line per (entry, matcher)."""
    results: dict[str, dict[str, FrameResult]] = {}
    for entry in entries:
        item = dataset.load(entry)
        for name, method in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            frame = evaluate_item(method, item, options)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
            results.setdefault(entry, {})[name] = (frame, seconds, cpu_seconds)
            acc = frame.accuracy()
            print(f"[{dataset.level}] {entry} {name}: acc<=0 {acc[0]:.3f} acc<=1 {acc[1]:.3f} "
                  f"n={frame.n_positions} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    return results


def _gather(results: dict[str, dict[str, FrameResult]], ctx: torchrun.Context) -> dict[str, dict[str, FrameResult]]:
    """Every rank's results on rank 0 (other ranks: their own); a no-op outside torchrun."""
    if ctx.world_size == 1:
        return results
    import torch.distributed as dist

    shares: list[Any] | None = [None] * ctx.world_size if ctx.rank == 0 else None
    dist.gather_object(results, shares, dst=0)
    return {entry: row for share in shares for entry, row in share.items()} if shares is not None else results


def match_accuracy(config: MatchConfig) -> list[Record]:
    """Evaluate ``config`` and write ``config.out`` (records.csv, run.json, table.md); returns every record of
    ``records.csv`` afterwards (the kept rows of other levels/methods first, then this run's). Under torchrun the
    frames are dealt round-robin to the ranks and rank 0 writes the same files one process would (run.json's
    timings aside); other ranks return an empty list."""
    torchrun.apply_threads(config.threads)  # under torchrun: the threads one process would use
    if config.max_frames is not None and config.max_frames < 1:
        raise UserError(f"--max-frames must be >= 1; got {config.max_frames}")
    if config.search_radius < 0:
        raise UserError(f"--search-radius must be >= 0; got {config.search_radius}")
    names, methods = _matchers(config)
    data_root = _data_root(config.data)
    plans = _level_plans(config, data_root)
    identity = {
        "dataset": config.dataset,
        "levels": {d.level: [o.to_dict(), list(e)] for o, d, e in plans},
        "methods": names,
    }
    run_id = "match-" + hashlib.sha1(json.dumps(_json_ready(identity), sort_keys=True).encode()).hexdigest()[:10]

    records: list[Record] = []
    timings: dict[str, dict[str, Any]] = {}
    reference_meta: dict[str, Any] = {}
    with torchrun.process_group() as ctx:  # gloo: only the per-frame results travel between ranks
        for options, dataset, entries in plans:
            share = list(entries[ctx.rank :: ctx.world_size])
            results = _gather(_evaluate_frames(methods, dataset, options, share), ctx)
            if ctx.rank != 0:
                continue
            per_method: dict[str, list[FrameAccuracy]] = {name: [] for name in names}
            for entry in entries:  # the single-process order, whichever rank evaluated the frame
                for name in names:
                    frame, seconds, cpu_seconds = results[entry][name]
                    per_method[name].append(frame)
                    timing = timings.setdefault(name, {"per_frame_s": {}, "per_frame_cpu_s": {}})
                    timing["per_frame_s"][f"{dataset.level}/{entry}"] = round(seconds, 3)
                    timing["per_frame_cpu_s"][f"{dataset.level}/{entry}"] = round(cpu_seconds, 3)
            for name, accuracies in per_method.items():
                for image, metric, value in accuracy_rows(accuracies):
                    records.append(Record(run_id, dataset.name, options.preset_id(), name, dataset.level, image,
                                          metric, float(value)))
            reference_meta[dataset.level] = {"options": options.to_dict(), "frames": list(entries),
                                         "dataset": _json_ready(dataset.meta)}
    if ctx.rank != 0:
        return []  # rank 0 writes
    _add_totals(timings)

    out = Path(config.out)
    replaced = {(r.dataset, r.preset, r.method, r.reference) for r in records}
    kept = [r for r in read_records(out / "records.csv")
            if (r.dataset, r.preset, r.method, r.reference) not in replaced]
    write_records(out / "records.csv", kept + records)
    _write_run_json(out / "run.json", run_id, config, names, methods, reference_meta, timings, data_root,
                    plans[0][0].sentence())
    (out / "table.md").write_text(table_markdown(kept + records))
    return kept + records


def _matchers(config: MatchConfig) -> tuple[list[str], dict[str, Any]]:
    """The matcher names ``config.methods`` selects and the built matchers, with ``--weights`` applied and the
    protocol's search window set where a matcher's window is configurable (recorded in its info)."""
    from methods.registry import create

    names = matcher_names(list(config.methods))
    methods = {name: create(name, scale=config.scale, device=config.device) for name in names}
    _load_match_weights(methods, list(config.weights) if config.weights else None)
    for name, method in methods.items():
        if hasattr(method, "with_search_radius"):
            methods[name] = method.with_search_radius(config.search_radius)
    return names, methods


def _level_plans(config: MatchConfig, data_root: Path | None) -> list[tuple[MatchingOptions, Any, list[str]]]:
    """(options, loaded dataset, frames) per pass of ``config``; loading validates each layout."""
    card_passes = get_dataset(config.dataset).matching_passes
    unsupported = [p for p in config.passes if card_passes and p not in card_passes]
    if unsupported:
        raise UserError(f"{config.dataset} has no pass {', '.join(unsupported)}; passes: {', '.join(card_passes)}")
    passes = list(config.passes) if card_passes else [MatchingOptions().sintel_pass]
    plans = []
    for pass_name in passes:
        options = MatchingOptions(  # the CLI's choices are MatchingOptions' literals
            scale=config.scale, norm=config.norm, gt_rounding=config.gt_rounding,  # type: ignore[arg-type]
            sintel_pass=pass_name, direction=config.direction,  # type: ignore[arg-type]
            search_radius_px=config.search_radius, occlusion=config.occlusion,  # type: ignore[arg-type]
            lf_lr_view=config.lr_view, lf_ref_view=config.ref_view,
        )
        frames = list(config.frames) if config.frames else None
        dataset = load_dataset(config.dataset, data_root, options, frames=frames)
        plans.append((options, dataset, list(dataset.entries[: config.max_frames])))
    return plans


def _add_totals(timings: dict[str, dict[str, Any]]) -> None:
    """Per matcher: total and mean wall / CPU seconds over its frames."""
    for timing in timings.values():
        for kind in ("s", "cpu_s"):
            values = list(timing[f"per_frame_{kind}"].values())
            timing[f"total_{kind}"] = round(sum(values), 3)
            timing[f"mean_per_frame_{kind}"] = round(sum(values) / len(values), 3) if values else None


def _write_run_json(path: Path, run_id: str, config: MatchConfig, names: list[str], methods: Mapping[str, Any],
                    reference_meta: dict[str, Any], timings: dict[str, Any], data_root: Path | None,
                    sentence: str) -> None:
    try:
        from bench.results.provenance import environment

        env = environment(config.device)
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
        "arguments": _json_ready({k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}),
        "dataset": config.dataset,
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
