"""Regression gates: compare a run with committed golden values and fail on drift.

Golden files (CSV, ``reports/golden/*.csv``) hold one expected value per key
(method, dataset, preset, reference, image, metric) -- ``reference`` is the records' reference policy,
``image`` is ``MEAN`` for the dataset mean -- with a tolerance and a rule:
- ``two_sided``: |got - expected| <= atol (quality: an unexpected improvement is drift too);
- ``exact``: got == expected (parameter and MAC counts);
- ``relative_increase``: got <= expected * (1 + atol), checked only when the device matches (latency).
Any other rule name is an error. ``gate`` fails (exit 1) when no golden key applies (unless
``--allow-empty``), on a missing key, and on an image in the run that the golden file lists no row for
in a group it lists image by image.
Paper values are never gated. ``refsr-bench accept DIR`` writes golden rows from a run, on request only.
Version-1 golden files (the committed ones) name the dataset and reference columns ``protocol`` and ``level``;
they are read unchanged. ``accept`` always writes the current header.
The ``gate`` and ``accept`` verbs are ``bench.commands.gate``; ``dataset-job`` calls ``gate`` here.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.results.records import Record, format_value, is_journal, read_records
from protocols.core import UserError

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "reports" / "golden"
GOLDEN_COLUMNS = (
    "method",
    "dataset",
    "preset",
    "reference",
    "image",
    "metric",
    "expected",
    "atol",
    "rule",
    "device",
    "source_run",
)
DEFAULT_ATOL = {"psnr": 0.005, "ssim": 5e-5, "lpips": 1e-4, "acc": 1e-6, "n_positions": 0.0}
Key = tuple[str, str, str, str, str, str]


@dataclass(frozen=True)
class GoldenRow:
    key: Key
    expected: float
    atol: float
    rule: str
    device: str
    source_run: str


@dataclass(frozen=True)
class Verdict:
    key: Key
    expected: float | None
    got: float | None
    atol: float | None
    verdict: str  # pass, FAIL, MISSING, new, skipped

    @property
    def delta(self) -> float | None:
        if self.expected is None or self.got is None:
            return None
        return self.got - self.expected


def run_values(records: list[Record]) -> dict[Key, float]:
    """Per-image values and per-(method, dataset, preset, reference, metric) means of a run."""
    values: dict[Key, float] = {}
    groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for r in records:
        values[(r.method, r.dataset, r.preset, r.reference, r.image, r.metric)] = r.value
        if r.image != "ALL":
            groups[(r.method, r.dataset, r.preset, r.reference, r.metric)].append(r.value)
    for (method, dataset, preset, reference, metric), group in groups.items():
        values[(method, dataset, preset, reference, "MEAN", metric)] = sum(group) / len(group)
    return values


RULES = ("two_sided", "exact", "relative_increase")


def _golden_float(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise UserError(f"{path}:{line}: {column} {text!r} is not a number") from None


def _golden_dicts(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line, row) of a golden file; a header other than ``GOLDEN_COLUMNS`` or a short row is a UserError naming
    the line."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != GOLDEN_COLUMNS:
            raise UserError(f"{path}: expected columns {','.join(GOLDEN_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if None in row or any(v is None for v in row.values()):
                raise UserError(f"{path}:{line}: expected {len(GOLDEN_COLUMNS)} columns")
            rows.append((line, dict(row)))
    return rows


def read_golden(paths: list[Path]) -> list[GoldenRow]:
    """Golden rows of the given files; a bad header, value or rule name is a UserError naming the line."""
    rows = []
    first_seen: dict[Key, str] = {}
    for path in paths:
        if not path.is_file():
            raise UserError(f"golden file not found: {path}")
        for line, row in _golden_dicts(path):
            if row["rule"] not in RULES:
                raise UserError(f"{path}:{line}: unknown rule {row['rule']!r}; valid: {', '.join(RULES)}")
            key: Key = (row["method"], row["dataset"], row["preset"], row["reference"], row["image"], row["metric"])
            if key in first_seen:
                raise UserError(f"{path}:{line}: duplicate golden key {'/'.join(key)} (first at {first_seen[key]}); "
                                "keep one row per key")
            first_seen[key] = f"{path}:{line}"
            rows.append(
                GoldenRow(
                    key,
                    _golden_float(path, line, "expected", row["expected"]),
                    _golden_float(path, line, "atol", row["atol"]),
                    row["rule"],
                    row["device"],
                    row["source_run"],
                )
            )
    return rows


def _passes(row: GoldenRow, got: float) -> bool:
    if row.rule == "exact":
        return got == row.expected
    if row.rule == "relative_increase":
        return got <= row.expected * (1 + row.atol)
    if math.isinf(row.expected) or math.isinf(got):
        return got == row.expected
    return abs(got - row.expected) <= row.atol


def gate(records: list[Record], golden: list[GoldenRow], device: str = "") -> list[Verdict]:
    """Check every golden key that belongs to a (dataset, preset) present in the run."""
    values = run_values(records)
    scope = {(r.dataset, r.preset) for r in records}
    verdicts = []
    golden_keys = set()
    for row in golden:
        if (row.key[1], row.key[2]) not in scope:
            continue
        golden_keys.add(row.key)
        got = values.get(row.key)
        if got is None:
            verdicts.append(Verdict(row.key, row.expected, None, row.atol, "MISSING"))
        elif row.rule == "relative_increase" and row.device and row.device != device:
            verdicts.append(Verdict(row.key, row.expected, got, row.atol, "skipped (other device)"))
        else:
            verdicts.append(Verdict(row.key, row.expected, got, row.atol, "pass" if _passes(row, got) else "FAIL"))
    golden_images: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for key in golden_keys:
        if key[4] != "MEAN":
            golden_images[(*key[:4], key[5])].add(key[4])
    for key in sorted(set(values) - golden_keys):
        # an image the golden file does not know, in a group it lists image by image, is a failure
        extra = key[4] != "MEAN" and (*key[:4], key[5]) in golden_images
        verdicts.append(Verdict(key, None, values[key], None, "EXTRA" if extra else "new"))
    return verdicts


def format_table(verdicts: list[Verdict]) -> str:
    def show(value: float | None) -> str:
        return "-" if value is None else format_value(value)

    header = ("key", "expected", "got", "delta", "atol", "verdict")
    rows = [("/".join(v.key), show(v.expected), show(v.got), show(v.delta), show(v.atol), v.verdict) for v in verdicts]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *rows]]
    return "\n".join(lines)


def golden_rows_from_run(records: list[Record], run_id: str) -> list[dict[str, str]]:
    rows = []
    for key, value in sorted(run_values(records).items()):
        metric = key[5]
        atol = next((tol for prefix, tol in DEFAULT_ATOL.items() if metric.startswith(prefix)), 0.0)
        values = [*key, format_value(value), repr(atol), "two_sided", "", run_id]
        rows.append(dict(zip(GOLDEN_COLUMNS, values, strict=True)))
    return rows


def accept(run_dir: Path, golden_file: Path) -> int:
    """Replace the golden rows of the run's (dataset, preset) pairs with the run's values (the file is rewritten
    with the current header)."""
    path = run_dir / "records.csv"
    if path.is_file() and is_journal(path):
        raise UserError(f"{run_dir} is an unfinished run (records.csv is still a journal): its values cover only the "
                        "images done so far. Rerun its command to finish it, then accept")
    records = [r for r in read_records(path) if "[random-weights]" not in r.method]
    if not records:
        raise UserError(f"no records (with real weights) in {run_dir / 'records.csv'}")
    scope = {(r.dataset, r.preset) for r in records}
    kept: list[dict[str, str]] = []
    if golden_file.is_file():
        kept = [row for _, row in _golden_dicts(golden_file) if (row["dataset"], row["preset"]) not in scope]
    new_rows = golden_rows_from_run(records, records[0].run_id)
    golden_file.parent.mkdir(parents=True, exist_ok=True)
    with open(golden_file, "w", newline="") as handle:
        writer = csv.DictWriter(handle, GOLDEN_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(kept + new_rows, key=lambda row: tuple(row[c] for c in GOLDEN_COLUMNS[:6])))
    return len(new_rows)


def verdicts_json(verdicts: list[Verdict]) -> str:
    """The verdicts as a JSON list of {method, dataset, preset, reference, image, metric, expected, got, atol,
    verdict}."""
    import json

    def number(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else value

    rows = [
        {**dict(zip(GOLDEN_COLUMNS[:6], v.key, strict=True)), "expected": number(v.expected), "got": number(v.got),
         "atol": number(v.atol), "verdict": v.verdict}
        for v in verdicts
    ]
    return json.dumps(rows, indent=2)
