"""``refsr-bench match``: matching accuracy (CC-Net Table 2 style) of matchers on a dataset with ground truth
(the work is ``bench.engines.matching.accuracy.match_accuracy``).

    refsr-bench match -m zncc zncc_blurry -d sintel --data ROOT --pass clean final --out DIR

writes ``DIR/records.csv`` (bench.results.records format; dataset = the dataset name, preset = ``ccnet2017`` or
the changed options, reference = the reference policy: Sintel pass or HCI view pair, image = frame name,
``ALL`` (pooled over positions) or ``MEAN`` (mean over frames)), ``DIR/run.json`` (options, method parameters,
data, timings, environment) and ``DIR/table.md`` (the pooled Table-2 view). Running again into the same DIR
replaces the rows of the same dataset/preset/method/reference and keeps the others.

Dataset roots: ``--data ROOT`` or ``$REFSR_DATA``. Sintel is looked up as ROOT/MPI-Sintel, then
ROOT/MPI-Sintel_subset (the shared subset), then ROOT itself (a folder holding ``training/``); HCI as
ROOT/LF_HCI4D/<group>/<scene>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.engines import torchrun
from bench.engines.matching.accuracy import MatchConfig, match_accuracy, table_markdown
from protocols.datasets import matching_datasets
from protocols.matching import SUPPORTED_SCALES


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
                        help="render pass(es) of datasets that have them (Sintel); each is a reference policy "
                        "(the records' reference column)")
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


def run_match(args: argparse.Namespace) -> int:
    config = MatchConfig(
        methods=tuple(args.methods), dataset=args.dataset, out=Path(args.out), data=args.data,
        passes=tuple(args.passes), scale=args.scale, norm=args.norm, gt_rounding=args.gt_rounding,
        direction=args.direction, occlusion=args.occlusion, search_radius=args.search_radius,
        lr_view=tuple(args.lr_view), ref_view=tuple(args.ref_view),
        frames=tuple(args.frames) if args.frames else None, max_frames=args.max_frames, device=args.device,
        threads=args.threads, weights=tuple(args.weights) if args.weights else None,
    )
    records = match_accuracy(config)
    if torchrun.context().rank != 0:
        return 0  # under torchrun only rank 0 reports
    print(table_markdown(records))
    print(f"wrote {config.out / 'records.csv'} ({len(records)} records), run.json and table.md")
    return 0
