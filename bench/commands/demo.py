"""``refsr-bench demo``: the main job on a fresh machine, offline, on the data embedded in scikit-image.

1. quality (suite preset ``refsr``) on ``demo_stereo`` and ``demo_homography`` for every SR method that can
   run offline: bicubic, plus any method whose official weights are installed (never random weights); the SR
   images are saved so the report can show crops;
2. matching accuracy of the classical matchers on one pair of each set (×4), with a picture of the matches;
3. the cost (params, GMACs in both conventions, CPU latency) of every registered network;
4. the HTML report and LaTeX tables: ``OUT/index.html`` shows this demo's runs (the tables that hold its values;
   one line says how to fetch a trained network when none is installed) and links ``OUT/committed/index.html``,
   the full report of the committed results in reports/results (seed-paper tables included).

The default (quick) form scores the matchers on a centre crop of one pair per set and measures cost at a small
size with few timing iterations; ``--full`` keeps the whole pairs and the larger cost setting. Both write normal
run folders under ``OUT/runs`` (``quality_*``, ``matching_*``, ``cost_lr*_ref*``), which the report collects.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.engines.run.execute import run
from bench.engines.run.plan import RunConfig
from methods.registry import cards, create
from methods.weights import weight_status, weights_dir
from protocols.embedded import CorrespondencePair, demo_homography_pairs, demo_stereo_pairs
from reports.page import PageNote

ROOT = Path(__file__).resolve().parents[2]  # the checkout (bench/commands/demo.py)
COMMITTED_RESULTS = ROOT / "reports" / "results"
DEMO_DATASETS = ("demo_stereo", "demo_homography")
DEMO_SCALE = 4
DEMO_BASELINE = "bicubic"  # the one untrained SR method the demo scores (the MATLAB-resize variants print the same)
DEMO_NETWORK = "carn_m"  # the network the page suggests fetching when no trained SR network is installed

T = TypeVar("T")


@dataclass(frozen=True)
class DemoSettings:
    """How much work the demo does.

    ``match_crop_px``: side (HR px) of the centre window cut from each matching pair's input and reference (None
    = the whole pair); ``match_radius_px`` is the protocol's search window. Cost is measured at ``cost_lr_px`` /
    ``cost_ref_px`` (square, Ref at HR resolution), with ``cost_warmup`` + ``cost_repeat`` timed forwards after
    the tracing forward.
    """

    name: str
    match_crop_px: int | None
    match_radius_px: int
    cost_lr_px: int
    cost_ref_px: int
    cost_warmup: int
    cost_repeat: int
    conventions: tuple[str, ...] = ("macs", "masa2021")


QUICK = DemoSettings("quick", match_crop_px=96, match_radius_px=100, cost_lr_px=32, cost_ref_px=128, cost_warmup=0,
                     cost_repeat=1)
FULL = DemoSettings("full", match_crop_px=None, match_radius_px=100, cost_lr_px=64, cost_ref_px=256, cost_warmup=1,
                    cost_repeat=3)


@dataclass
class StepTiming:
    name: str
    what: str
    seconds: float = 0.0


@dataclass
class DemoResult:
    index: Path
    runs_dir: Path
    settings: DemoSettings
    steps: list[StepTiming] = field(default_factory=list)
    cost_dir: Path | None = None

    @property
    def total_s(self) -> float:
        return sum(step.seconds for step in self.steps)


def _timed(steps: list[StepTiming], name: str, what: str, work: Callable[[], T]) -> T:
    step = StepTiming(name, what)
    started = time.perf_counter()
    try:
        return work()
    finally:
        step.seconds = time.perf_counter() - started
        steps.append(step)


@dataclass(frozen=True)
class DemoMethods:
    """What the demo runs: SR methods with real weights (quality), matchers, networks with a cost graph."""

    sr: tuple[str, ...]
    matchers: tuple[str, ...]
    networks: tuple[tuple[str, int], ...]  # (name, scale): ×4 where the method supports it, else its own
    weight_problems: dict[str, str | None] = field(default_factory=dict)  # name -> reports.tables REASON_* or None
    other_baselines: tuple[str, ...] = ()  # untrained SR methods besides DEMO_BASELINE (not scored by the demo)


def survey_methods(weights: str | None) -> DemoMethods:
    """Sort the registered methods into the demo's three lists from their cards (no network is built). Quality
    scores one interpolation baseline (``DEMO_BASELINE``) and every trained method whose weights are installed."""
    from reports.tables import REASON_NO_OFFICIAL_WEIGHTS, REASON_NO_WEIGHTS

    folder = weights_dir(weights)
    sr: list[str] = []
    matchers: list[str] = []
    networks: list[tuple[str, int]] = []
    others: list[str] = []
    problems: dict[str, str | None] = {}
    for card in cards():
        if card.task == "matcher":
            matchers.append(card.name)
            problems[card.name] = None
            continue
        scale = DEMO_SCALE if card.supports(DEMO_SCALE) else card.default_scale  # refsr_net is x8: cost only
        networks.append((card.name, scale))
        status = weight_status(card, folder)
        problems[card.name] = (None if not card.trained or status == "installed"
                               else REASON_NO_OFFICIAL_WEIGHTS if status == "none" else REASON_NO_WEIGHTS)
        if scale == DEMO_SCALE and problems[card.name] is None:
            (sr if card.trained or card.name == DEMO_BASELINE else others).append(card.name)
    return DemoMethods(tuple(sr), tuple(matchers), tuple(networks), problems, tuple(others))


def offline_methods(weights: str | None) -> tuple[list[str], list[str]]:
    """(SR methods runnable with real weights, matchers) among the registered methods."""
    found = survey_methods(weights)
    return list(found.sr), list(found.matchers)


# ------------------------------------------------------------------------------------------------
# matching


def centre_crop_pair(pair: CorrespondencePair, side_px: int) -> CorrespondencePair:
    """The centre ``side_px`` square of the input and the same window of the reference (one origin for both, as
    the protocol's search window assumes); ground truth shifted into the window's pixels and invalid where it
    leaves the window. ``side_px`` should be a multiple of the matching scale."""
    height, width = pair.image.shape[:2]
    side = min(side_px, height, width, *pair.ref.shape[:2])
    top, left = (height - side) // 2, (width - side) // 2
    window = (slice(top, top + side), slice(left, left + side))
    gt = pair.gt_yx[window] - np.array([top, left], dtype=np.float64)
    inside = (gt[..., 0] >= 0) & (gt[..., 0] <= side - 1) & (gt[..., 1] >= 0) & (gt[..., 1] <= side - 1)
    valid = pair.valid[window] & inside
    gt = np.where(valid[..., None], gt, np.nan)
    return CorrespondencePair(pair.name, np.ascontiguousarray(pair.image[window]),
                              np.ascontiguousarray(pair.ref[window]), gt, valid)


def _matching_pairs(dataset: str, settings: DemoSettings) -> tuple[str, list[CorrespondencePair]]:
    """(reference name (the crop), the first pair of the set, cropped in the quick form)."""
    pair = (demo_stereo_pairs() if dataset == "demo_stereo" else demo_homography_pairs())[0]
    if settings.match_crop_px is None:
        return "whole", [pair]
    return (f"centre{settings.match_crop_px}",
            [centre_crop_pair(pair, settings.match_crop_px)])


def run_matching(matchers: list[str], out_root: Path, settings: DemoSettings) -> list[Path]:
    """Matching accuracy of ``matchers`` on one pair per demo set; one run folder per set (records.csv, run.json,
    match_images/<method>/<reference>/<pair>.png). Returns the run folders."""
    from tqdm import tqdm

    from bench.engines.matching.pictures import RecordingMatcher, save_match_picture
    from bench.results.provenance import environment
    from bench.results.records import RUN_JSON_SCHEMA, Record, write_records
    from protocols.matching import MatchingItem, MatchingOptions, accuracy_rows, evaluate_item

    options = MatchingOptions(scale=DEMO_SCALE, search_radius_px=settings.match_radius_px)
    plans = [(dataset, *_matching_pairs(dataset, settings)) for dataset in DEMO_DATASETS]
    total = sum(len(pairs) for _, _, pairs in plans) * len(matchers)
    folders = []
    with tqdm(total=total, desc="matching", unit="pair") as progress:
        for dataset, reference, pairs in plans:
            folder = out_root / f"matching_{dataset}"
            run_id = f"demo-match-{settings.name}-{dataset}"
            records: list[Record] = []
            timings: dict[str, float] = {}
            for name in matchers:
                method = create(name, scale=DEMO_SCALE)
                if hasattr(method, "with_search_radius"):
                    method = method.with_search_radius(settings.match_radius_px)
                recorder = RecordingMatcher(method)
                frames = []
                for pair in pairs:
                    progress.set_postfix_str(f"{dataset} {name}")
                    item = MatchingItem(pair.name, pair.image, pair.ref, pair.gt_yx, pair.valid, None, {})
                    started = time.perf_counter()
                    frames.append(evaluate_item(recorder, item, options))
                    timings[f"{name}/{pair.name}"] = round(time.perf_counter() - started, 3)
                    if recorder.last_ref_yx is not None:
                        save_match_picture(folder / "match_images" / name / reference / f"{pair.name}.png", item,
                                           recorder.last_ref_yx, DEMO_SCALE)
                    progress.update(1)
                records += [Record(run_id, dataset, options.preset_id(), name, reference, image, metric, float(value))
                            for image, metric, value in accuracy_rows(frames)]
            folder.mkdir(parents=True, exist_ok=True)
            write_records(folder / "records.csv", records)
            crop = ("whole pair" if settings.match_crop_px is None else
                    f"the centre {settings.match_crop_px}×{settings.match_crop_px} HR window of input and reference")
            run_json = {
                "schema": RUN_JSON_SCHEMA, "run_id": run_id, "verb": "demo match", "dataset": dataset,
                "protocol_spec": {"name": options.preset_id(), "kind": "matching",
                                  "matching_options": options.to_dict()},
                "protocol_sentence": f"{options.sentence()} Demo ({settings.name}): first pair, {crop}.",
                "methods": {name: {} for name in matchers}, "pairs": [p.name for p in pairs], "reference": reference,
                "timings_s": timings,
                "environment": environment("cpu"),
            }
            (folder / "run.json").write_text(json.dumps(run_json, indent=2, default=str) + "\n")
            folders.append(folder)
    return folders


# ------------------------------------------------------------------------------------------------
# cost


def run_cost(networks: tuple[tuple[str, int], ...], out_dir: Path, settings: DemoSettings) -> list[str]:
    """Cost of each network at the demo setting on CPU, through the one cost pipeline
    (``bench.engines.cost.run_folder.measure_costs``): ``out_dir/cost.csv`` + ``run.json`` (the
    ``refsr-bench cost`` format); the same network (``bench.engines.cost.network``) is measured once. Returns the
    methods that failed."""
    from bench.engines.cost.latency import LatencyConfig
    from bench.engines.cost.run_folder import CostConfig, measure_costs

    result = measure_costs(CostConfig(
        methods=tuple(name for name, _ in networks), out_dir=out_dir, lr_hw=(settings.cost_lr_px,) * 2,
        ref_sizes=((settings.cost_ref_px,) * 2,), scale=DEMO_SCALE, device="cpu", conventions=settings.conventions,
        latency=LatencyConfig(warmup=settings.cost_warmup, repeat=settings.cost_repeat), memory=False,
        command=("refsr-bench", "demo") + (("--full",) if settings.name == "full" else ()), share_networks=True,
        scale_of=tuple((name, scale) for name, scale in networks if scale != DEMO_SCALE)))
    return list(result.failures)


# ------------------------------------------------------------------------------------------------
# the demo


def demo(out_dir: Path, weights: str | None, settings: DemoSettings = QUICK) -> DemoResult:
    import torch

    from reports.page import suite_availability
    from reports.tables import Availability

    runs = out_dir / "runs"
    steps: list[StepTiming] = []
    found = _timed(steps, "setup", "read the method cards, look for installed weights",
                   lambda: survey_methods(weights))
    sr_methods, matchers, networks = list(found.sr), list(found.matchers), found.networks
    print(f"demo ({settings.name}): quality with {', '.join(sr_methods)}; "
          f"matching with {', '.join(matchers) or 'no matcher registered'}", flush=True)

    def quality() -> None:
        for dataset in DEMO_DATASETS:
            run(RunConfig(dataset=dataset, preset="refsr", methods=tuple(sr_methods),
                          out_dir=runs / f"quality_{dataset}", weights=weights, save_images=True))

    _timed(steps, "quality", f"{len(sr_methods)} methods on {' and '.join(DEMO_DATASETS)} (preset refsr)", quality)
    if matchers:
        crop = "whole first pair" if settings.match_crop_px is None else f"{settings.match_crop_px}px centre crop"
        _timed(steps, "matching", f"{len(matchers)} matchers ×{DEMO_SCALE}, {crop} of each set, "
                                  f"window ±{settings.match_radius_px} px",
               lambda: run_matching(matchers, runs, settings))
    cost_dir = runs / f"cost_lr{settings.cost_lr_px}_ref{settings.cost_ref_px}"
    failed = _timed(steps, "cost", f"{len(networks)} networks at LR {settings.cost_lr_px}², Ref "
                                   f"{settings.cost_ref_px}², CPU {torch.get_num_threads()} threads, "
                                   f"{settings.cost_warmup}+{settings.cost_repeat} timed forwards",
                    lambda: run_cost(networks, cost_dir, settings))
    if failed:
        print(f"warning: cost failed for {', '.join(failed)} (details in {cost_dir / 'run.json'})", flush=True)
    installed = suite_availability(None, weights)
    availability = Availability(  # the survey already built every method: do not build them again
        lambda m: found.weight_problems[m] if m in found.weight_problems else installed.method_problem(m),
        installed.dataset_problem)
    index = _timed(steps, "report", "this demo's page; the committed results on their own page",
                   lambda: render_pages(runs, out_dir, availability, found, weights))
    return DemoResult(index=index, runs_dir=runs, settings=settings, steps=steps, cost_dir=cost_dir)


COMMITTED_PAGE = "committed"  # OUT/committed/index.html: the committed results and the seed-paper tables


def page_notes(found: DemoMethods, weights: str | None, committed_runs: int) -> list[PageNote]:
    """The lines under the demo page's title: where the committed results are, which baseline was scored and
    why the others were not, and how to see a trained network when none is installed."""
    from methods.registry import card

    notes = []
    if committed_runs:
        notes.append(PageNote(f"This page shows this demo's runs only. The {committed_runs} committed run folders "
                              "(reports/results) and every seed-paper table are on their own page:",
                              f"{COMMITTED_PAGE}/index.html"))
    if found.other_baselines:
        notes.append(PageNote(f"Interpolation baseline: {DEMO_BASELINE}. {', '.join(found.other_baselines)} (the same "
                              "bicubic kernel through MATLAB imresize, other rounding) are not scored here; "
                              "`refsr-bench run -m 'bicubic*'` scores them."))
    if not any(card(name).trained for name in found.sr):
        folder = weights_dir(weights)
        notes.append(PageNote(f"No trained network ran: no official SR weights are installed in {folder}. "
                              f"`refsr-bench weights fetch {DEMO_NETWORK}` (or REFSR_WEIGHTS=FOLDER holding "
                              f"{card(DEMO_NETWORK).weights[0].file_name}) and rerun the demo to see "
                              f"{DEMO_NETWORK} in the table and the crops."))
    return notes


def render_pages(runs: Path, out_dir: Path, availability: Any, found: DemoMethods, weights: str | None) -> Path:
    """``out_dir/index.html`` from this demo's runs (tables that hold values of ours) and, when the checkout has
    committed results, ``out_dir/committed/index.html`` from them (the full report). Returns the first."""
    from reports.page import render_report

    committed = sorted(COMMITTED_RESULTS.rglob("run.json")) if COMMITTED_RESULTS.is_dir() else []
    if committed:
        render_report([COMMITTED_RESULTS], out_dir / COMMITTED_PAGE, availability=availability,
                      title="RefSR-Bench: committed results (reports/results)",
                      notes=[PageNote("The demo's own runs are on the demo page:", "../index.html")])
    return render_report([runs], out_dir, availability=availability, title="RefSR-Bench demo report",
                         only_filled_tables=True, notes=page_notes(found, weights, len(committed)))


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def summary(result: DemoResult) -> str:
    """The lines printed at the end of the demo: each step, its time, and where everything is."""
    width = max(len(step.name) for step in result.steps)
    lines = [f"demo ({result.settings.name}) finished in {format_seconds(result.total_s)}:"]
    lines += [f"  {step.name:<{width}}  {format_seconds(step.seconds):>12}  {step.what}" for step in result.steps]
    lines.append(f"report:  {result.index}  (open it in a browser; LaTeX tables in {result.index.parent / 'tables'})")
    lines.append(f"runs:    {result.runs_dir}" + (f"  (cost: {result.cost_dir})" if result.cost_dir else ""))
    if result.settings.name != "full":
        lines.append("more:    `refsr-bench demo --full` scores the whole pairs and measures cost at LR 64, Ref 256")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    settings = FULL if args.full else QUICK
    result = demo(Path(args.out), args.weights, settings)
    print(summary(result), flush=True)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: embedded data, matching, cost of every network, HTML report (offline, minutes)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="reports/build", help="report folder (default reports/build)")
    parser.add_argument("--weights", help="weights folder (default: $REFSR_WEIGHTS)")
    parser.add_argument("--full", action="store_true",
                        help="the long form: whole matching pairs, cost at LR 64 / Ref 256 (much longer)")
    parser.set_defaults(handler=_cmd_demo)
