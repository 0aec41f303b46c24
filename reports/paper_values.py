"""Paper-reported numbers, transcribed from the five seed papers into one long CSV.

``reports/paper_values.csv`` holds one row per printed number (columns ``PAPER_COLUMNS``). ``value`` keeps the
printed digits (``0.814``, not ``0.8140``; SSIM printed ``.805`` is stored ``0.805``; thousands separators are
dropped), so the report can show a paper value exactly as the paper printed it. ``notes`` is a ``; ``-joined
list of flags; a leading ``group: NAME`` flag carries the paper's row group (e.g. SISR / RefSR).
Paper values are shown next to ours in the report and are never gated.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from protocols.core import UserError
from protocols.datasets import DATASETS

PAPER_VALUES_CSV = Path(__file__).resolve().parent / "paper_values.csv"
PAPER_COLUMNS = ("paper", "table", "row_label", "method_id", "dataset", "split_or_level", "metric", "value", "unit",
                 "preset", "copied_from", "notes")
# A paper value's dataset is a dataset card's name (protocols.datasets) or "-" = not a dataset column
# (architecture rows, cost at a fixed input size).
NOT_A_DATASET = "-"
PAPER_METRICS = ("psnr", "ssim", "flops_m_g", "flops_t_g", "params_m", "runtime_ms", "feature_distance", "ref_branch",
                 "lr_branch", "kernel_px", "channels", "dilation", "receptive_field_px",
                 *(f"match_acc_le_{t}px" for t in range(8)))


@dataclass(frozen=True)
class PaperValue:
    """One printed number. ``value_text`` is the printed digits; ``value`` the same number as a float."""

    paper: str
    table: str
    row_label: str
    method_id: str
    dataset: str
    split_or_level: str
    metric: str
    value_text: str
    unit: str
    preset: str
    copied_from: str
    notes: str

    @property
    def value(self) -> float:
        return float(self.value_text)

    @property
    def group(self) -> str:
        """The paper's row group (``group: NAME`` note), or '' when the table has no groups."""
        first = self.notes.split("; ", 1)[0]
        return first[len("group: "):] if first.startswith("group: ") else ""

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(n for n in self.notes.split("; ") if n and not n.startswith("group: "))

    @property
    def decimals(self) -> int:
        """Printed precision (digits after the decimal point)."""
        return len(self.value_text.split(".", 1)[1]) if "." in self.value_text else 0


def load_paper_values(path: str | Path = PAPER_VALUES_CSV) -> list[PaperValue]:
    """Read and validate the paper-values CSV; rows keep the file order (= the printed row order)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"paper values file not found: {path}")
    values: list[PaperValue] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != PAPER_COLUMNS:
            raise UserError(f"{path}: columns {','.join(header)}; expected {','.join(PAPER_COLUMNS)}")
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(PAPER_COLUMNS):
                raise UserError(f"{path}:{line_number}: {len(row)} fields; expected {len(PAPER_COLUMNS)}")
            value = PaperValue(*row)
            _validate(value, f"{path}:{line_number}")
            values.append(value)
    seen: set[tuple[str, ...]] = set()
    for value in values:
        key = (value.table, value.row_label, value.dataset, value.split_or_level, value.metric)
        if key in seen:
            raise UserError(f"{path}: duplicate paper value {key}")
        seen.add(key)
    return values


def _validate(value: PaperValue, where: str) -> None:
    try:
        float(value.value_text)
    except ValueError as error:
        raise UserError(f"{where}: value {value.value_text!r} is not a number") from error
    if value.value_text != value.value_text.strip() or "," in value.value_text or value.value_text.startswith("."):
        raise UserError(f"{where}: value {value.value_text!r}: store the printed digits without separators")
    if value.dataset not in DATASETS and value.dataset != NOT_A_DATASET:
        raise UserError(f"{where}: dataset {value.dataset!r}; valid: {', '.join(DATASETS)}, {NOT_A_DATASET}")
    if value.metric not in PAPER_METRICS:
        raise UserError(f"{where}: metric {value.metric!r}; valid: {', '.join(PAPER_METRICS)}")


def table_ids(values: list[PaperValue]) -> list[str]:
    """Paper table ids in file order."""
    return list(dict.fromkeys(v.table for v in values))


def paper_table(values: list[PaperValue], table: str) -> list[PaperValue]:
    rows = [v for v in values if v.table == table]
    if not rows:
        raise UserError(f"no paper values for table {table!r}; valid: {', '.join(table_ids(values))}")
    return rows


@dataclass(frozen=True)
class PaperGrid:
    """A paper table rebuilt from the long format: printed row labels (in order), column keys
    (dataset, split_or_level, metric) in order of first appearance, and the printed strings."""

    table: str
    row_labels: tuple[str, ...]
    columns: tuple[tuple[str, str, str], ...]
    cells: dict[tuple[str, tuple[str, str, str]], str]


def rebuild(values: list[PaperValue], table: str) -> PaperGrid:
    rows = paper_table(values, table)
    labels = tuple(dict.fromkeys(v.row_label for v in rows))
    cells = {(v.row_label, (v.dataset, v.split_or_level, v.metric)): v.value_text for v in rows}
    return PaperGrid(table, labels, tuple(_merge_column_order(rows, labels)), cells)


def _merge_column_order(rows: list[PaperValue], labels: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """Printed column order from per-row orders: a column a first row leaves out ("–", e.g. CrossNet's
    FLOPS-M) is placed before the next column it precedes in a later row."""
    order: list[tuple[str, str, str]] = []
    for label in labels:
        sequence = list(dict.fromkeys((v.dataset, v.split_or_level, v.metric) for v in rows if v.row_label == label))
        for position, column in enumerate(sequence):
            if column in order:
                continue
            following = next((c for c in sequence[position + 1:] if c in order), None)
            order.insert(order.index(following) if following else len(order), column)
    return order


def lookup(values: list[PaperValue], table: str) -> dict[tuple[str, str, str, str], PaperValue]:
    """(method_id, dataset, split_or_level, metric) -> value for one table (first row wins for a method id
    printed twice, e.g. SSEN T4's full model)."""
    index: dict[tuple[str, str, str, str], PaperValue] = {}
    for v in values:
        if v.table == table:
            index.setdefault((v.method_id, v.dataset, v.split_or_level, v.metric), v)
    return index
