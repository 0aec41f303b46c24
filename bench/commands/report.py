"""``refsr-bench report --results DIR [DIR...] --out DIR``: tables, plots, one HTML page, LaTeX tabulars.

Reads every run folder under the given folders (records.csv + run.json, cost.csv + run.json) and writes
``OUT/index.html`` (no external resources; its pictures are PNG files beside it), ``OUT/tables/<table_id>.tex``
(booktabs tabulars), ``OUT/plots/<name>.png|svg`` and ``OUT/visuals/*.png`` (crop grids, match pictures).
Seed-paper tables are always written, with our cells empty-with-reason where nothing was run.
The work is ``reports.page.render_report``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reports import page


def _cmd_report(args: argparse.Namespace) -> int:
    index = page.render_report([Path(d) for d in args.results], Path(args.out),
                               availability=page.suite_availability(args.data, args.weights), data=args.data)
    tables = sorted((Path(args.out) / "tables").glob("*.tex"))
    print(f"wrote {index} and {len(tables)} LaTeX tables under {Path(args.out) / 'tables'}")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("report", help="HTML page, LaTeX tables and plots from run folders",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", nargs="+", required=True, metavar="DIR",
                        help="folders holding run folders (searched recursively)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (index.html, tables/, plots/)")
    parser.add_argument("--data", help="dataset root, to explain empty cells (default: $REFSR_DATA)")
    parser.add_argument("--weights", help="weights folder, to explain empty cells (default: $REFSR_WEIGHTS)")
    parser.set_defaults(handler=_cmd_report)
