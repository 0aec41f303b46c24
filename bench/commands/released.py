"""``refsr-bench released-job RELEASE``: a paper's own table rows regenerated from its released SR images
(``tox -e c2matching_released``). For every dataset found both in the released folder (``--outputs`` or
``REFSR_OUTPUTS``: one subfolder per dataset, named like the dataset folder) and in the data root, the released
images are scored with ``run --outputs`` under the paper's preset, its metric-quirk variant and the suite's fair
preset; the report puts them beside the paper's printed values (``reports/paper_values.csv``), and a terminal
table shows paper vs paper preset vs fair preset, so the protocol effect is visible on real images."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from bench.engines import torchrun
from bench.engines.run.execute import run
from bench.engines.run.outputs import OutputsSource, count_matches, resolve_template
from bench.engines.run.plan import RunConfig
from bench.results.records import Record
from protocols.core import UserError
from protocols.datasets import get_dataset, load_items
from protocols.errors import unknown_name
from reports.page import render_report
from reports.paper_values import load_paper_values


@dataclass(frozen=True)
class ReleasedRow:
    """One released method variant: its record name (= the paper's ``method_id`` in paper_values.csv, so the
    paper table shows it) and the ``--outputs-format`` of its files."""

    record_name: str
    output_format: str


@dataclass(frozen=True)
class ReleaseCard:
    """A paper's released SR images, as data."""

    name: str
    paper_table: str  # the ``table`` column of reports/paper_values.csv
    source: str
    paper_preset: str
    extra_presets: tuple[str, ...]
    rows: tuple[ReleasedRow, ...]
    datasets: tuple[str, ...]
    fair_preset: str = "refsr"


RELEASES: dict[str, ReleaseCard] = {
    "c2matching": ReleaseCard(
        name="c2matching",
        paper_table="C² poster",
        source="yumingj/C2-Matching README: Drive folder 1-WE-f8XyG_MEZY77IGyS2le-UmDwhou9 (shared docs/sources.md); "
               "experiment names C2_matching_mse (sources.md example) and C2_matching_gan (assumed; override with "
               "--row c2_matching_gan=c2matching:NAME)",
        paper_preset="c2matching2021",
        extra_presets=("c2matching2021_official",),
        rows=(ReleasedRow("c2_matching_rec", "c2matching:C2_matching_mse"),
              ReleasedRow("c2_matching_gan", "c2matching:C2_matching_gan")),
        datasets=("cufed5", "sun80", "urban100", "manga109", "wrsr"),
    ),
}


def _released_folder(root: Path, dataset: str) -> Path | None:
    card = get_dataset(dataset)
    return next((root / name for name in (*card.folders, dataset) if (root / name).is_dir()), None)


def _sources(card: ReleaseCard, folder: Path, formats: dict[str, str]) -> list[OutputsSource]:
    """The rows whose files are in ``folder`` (a row with no file at all is skipped with a note)."""
    sources = []
    for row in card.rows:
        output_format = formats.get(row.record_name, row.output_format)
        template, label = resolve_template(output_format, None)
        if count_matches(folder, template) == 0:
            print(f"note: no {template!r} files in {folder}; row {row.record_name} skipped")
            continue
        sources.append(OutputsSource(row.record_name, str(folder), template, label))
    return sources


def _plan_datasets(card: ReleaseCard, root: Path, data: str | None, formats: dict[str, str]
                   ) -> list[tuple[str, list[OutputsSource]]]:
    planned = []
    for dataset in card.datasets:
        folder = _released_folder(root, dataset)
        if folder is None:
            print(f"note: no released {dataset} folder under {root}; skipped")
            continue
        try:
            load_items(dataset, data)
        except UserError as error:
            print(f"note: {dataset} skipped: {error}")
            continue
        sources = _sources(card, folder, formats)
        if sources:
            planned.append((dataset, sources))
    if not planned:
        raise UserError(f"no dataset of {card.name} found both under {root} and in the data root; expected "
                        f"subfolders named like the datasets ({', '.join(card.datasets)})")
    return planned


def released_job(name: str, outputs: Path, out: Path, data: str | None, formats: dict[str, str]) -> int:
    if name not in RELEASES:
        raise unknown_name("release", name, RELEASES)
    card = RELEASES[name]
    unknown = set(formats) - {row.record_name for row in card.rows}
    if unknown:
        raise UserError(f"--row {', '.join(sorted(unknown))}: {name} rows are "
                        f"{', '.join(row.record_name for row in card.rows)}")
    planned = _plan_datasets(card, outputs, data, formats)
    presets = (card.paper_preset, *card.extra_presets, card.fair_preset)
    records: list[Record] = []
    with torchrun.process_group() as ctx:
        for dataset, sources in planned:
            for preset in presets:
                config = RunConfig(dataset=dataset, preset=preset, methods=(), out_dir=out / f"{dataset}_{preset}",
                                   data_root=data, outputs=tuple(sources))
                records += run(config, allow_distributed=True)
    if ctx.rank != 0:
        return 0
    print(comparison_text(card, records))
    print(f"report: {render_report([out], out / 'report')}")
    return 0


def comparison_text(card: ReleaseCard, records: list[Record]) -> str:
    """Rows x datasets: the paper's PSNR/SSIM, ours under the paper's preset, ours under the fair preset, and
    every other metric the extra presets computed (e.g. the official script's wrapped RGB PSNR)."""
    means: dict[tuple[str, str, str, str], list[float]] = {}
    for record in records:
        means.setdefault((record.method, record.dataset, record.preset, record.metric), []).append(record.value)
    paper = {(v.method_id, v.dataset, v.metric): v.value_text for v in load_paper_values()
             if v.table == card.paper_table}
    lines = [f"{'row':18s} {'dataset':9s} {'paper':>14s} {card.paper_preset:>22s} {card.fair_preset:>16s}  extra"]
    def pair(method: str, dataset: str, preset: str) -> str:
        values = [means.get((method, dataset, preset, m)) for m in ("psnr_y", "ssim_y")]
        return " / ".join(f"{sum(v) / len(v):.4f}" if v else "-" for v in values)

    for method, dataset in sorted({(k[0], k[1]) for k in means}):
        printed = f"{paper.get((method, dataset, 'psnr'), '-')} / {paper.get((method, dataset, 'ssim'), '-')}"
        extra = [f"{metric} {sum(v) / len(v):.4f}" for (m, d, preset, metric), v in sorted(means.items())
                 if (m, d) == (method, dataset) and preset in card.extra_presets and metric not in ("psnr_y", "ssim_y")]
        lines.append(f"{method:18s} {dataset:9s} {printed:>14s} {pair(method, dataset, card.paper_preset):>22s} "
                     f"{pair(method, dataset, card.fair_preset):>16s}  {'; '.join(extra)}")
    return "\n".join(lines)


def _cmd_released(args: argparse.Namespace) -> int:
    root = args.outputs or os.environ.get("REFSR_OUTPUTS")
    if not root:
        raise UserError("released-job needs the released images: --outputs DIR or REFSR_OUTPUTS "
                        "(one subfolder per dataset, named like the dataset folder, e.g. CUFED5/, WR-SR/)")
    formats = {}
    for text in args.row or []:
        row, sep, value = text.partition("=")
        if not sep:
            raise UserError(f"--row {text!r}: expected ROW=FORMAT, e.g. c2_matching_gan=c2matching:C2_matching_gan")
        formats[row] = value
    return released_job(args.release, Path(root), Path(args.out or f"runs/{args.release}_released"), args.data,
                        formats)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("released-job", help="a paper's table rows from its released SR images")
    parser.add_argument("release", help=f"one of: {', '.join(RELEASES)}")
    parser.add_argument("--outputs", help="the released images (default: $REFSR_OUTPUTS)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<release>_released)")
    parser.add_argument("--data", help="dataset root (default: $REFSR_DATA)")
    parser.add_argument("--row", action="append", metavar="ROW=FORMAT",
                        help="another --outputs-format for one row (e.g. its experiment name)")
    parser.set_defaults(handler=_cmd_released)
