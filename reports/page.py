"""The report of run folders: tables, plots, one HTML page, LaTeX tabulars (``render_report``).

Reads every run folder under the given folders (records.csv + run.json, cost.csv + run.json) and writes
``OUT/index.html`` (no external resources; its pictures are PNG files beside it), ``OUT/tables/<table_id>.tex``
(booktabs tabulars), ``OUT/plots/<name>.png|svg`` and ``OUT/visuals/*.png`` (crop grids, match pictures).
Seed-paper tables are always written, with our cells empty-with-reason where nothing was run.
The ``report`` verb (``bench.commands.report``), ``demo`` and ``dataset-job`` call ``render_report``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from protocols.core import UserError
from reports.collect import collect, means
from reports.paper_values import PAPER_VALUES_CSV, load_paper_values
from reports.plots import make_plots
from reports.render import render_html, render_latex
from reports.tables import (
    REASON_NO_DATASET,
    REASON_NO_OFFICIAL_WEIGHTS,
    REASON_NO_WEIGHTS,
    REASON_NOT_IN_SUITE,
    Availability,
    build_all,
)
from reports.visuals import crop_grids, match_pictures

REPORT_TITLE = "RefSR-Bench report"


def suite_availability(data: str | None = None, weights: str | None = None) -> Availability:
    """Reasons from this installation: registered methods, installed official weights, dataset folders.

    Read from the method cards (their weight file names) and the weights folder; no network is built.
    """
    from methods.registry import card, list_methods
    from methods.weights import weight_status, weights_dir
    from protocols.datasets import DATASETS, data_root, locate

    registered = set(list_methods())
    folder = weights_dir(weights)

    @functools.cache
    def method_problem(method_id: str) -> str | None:
        if method_id not in registered:
            return REASON_NOT_IN_SUITE
        method_card = card(method_id)
        if not method_card.trained:
            return None  # nothing to load (bicubic, classical matchers)
        if not method_card.weights:
            return REASON_NO_OFFICIAL_WEIGHTS
        return None if weight_status(method_card, folder) == "installed" else REASON_NO_WEIGHTS

    @functools.cache
    def dataset_problem(dataset: str) -> str | None:
        definition = DATASETS.get(dataset)
        if definition is None:
            return REASON_NO_DATASET
        try:
            locate(definition, data_root(data))
        except UserError:
            return REASON_NO_DATASET
        return None

    return Availability(method_problem, dataset_problem)


@dataclass(frozen=True)
class PageNote:
    """One line at the top of the page, optionally ending in a link (``href`` relative to the page)."""

    text: str
    href: str | None = None


def render_report(result_dirs: list[Path], out_dir: Path, *, availability: Availability | None = None,
                  paper_values_csv: Path = PAPER_VALUES_CSV, data: str | None = None, title: str = REPORT_TITLE,
                  only_filled_tables: bool = False, notes: Sequence[PageNote] = ()) -> Path:
    """Write the report for the runs under ``result_dirs`` into ``out_dir``; returns ``out_dir/index.html``.

    ``availability`` explains empty cells (default: this installation's methods, weights and datasets);
    ``data`` is the dataset root the HR tiles of the crop grids are read from (default ``$REFSR_DATA``);
    ``only_filled_tables`` leaves out (HTML and LaTeX) the tables without any value of ours (the demo's page:
    the seed-paper tables of datasets it did not run); ``notes`` are lines shown under the title.
    """
    results = collect([Path(d) for d in result_dirs])
    paper_values = load_paper_values(paper_values_csv)
    availability = availability or suite_availability()
    models = build_all(results, paper_values, availability)
    if only_filled_tables:
        models = [m for m in models if any(cell.ours is not None for row in m.rows for cell in row.cells)]
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    for model in models:
        (out_dir / "tables" / f"{model.spec.id}.tex").write_text(render_latex(model), encoding="utf-8")
    plots = make_plots(means(results.records), results.cost, out_dir / "plots")
    grids = crop_grids(results, out_dir, data)
    matches = match_pictures(results, out_dir)
    index = out_dir / "index.html"
    index.write_text(render_html(models, plots, results, title=title, out_dir=out_dir, grids=grids,
                                 matches=matches, notes=[(n.text, n.href) for n in notes]), encoding="utf-8")
    return index

