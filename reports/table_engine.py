"""The table engine: specs (plain frozen dataclasses), cells, best/second marks, and the builder that fills a
spec from run records and paper values.

A ``TableSpec`` says which rows (method ids, or presets for the protocol audit), which columns (dataset,
reference policy, metric; or a cost quantity), which preset fills our cells and which paper table to set
beside them. ``build_table`` turns a spec plus results into a ``TableModel``: every cell holds our value,
the paper's printed value and the difference where the paper printed one, or the reason it is empty.
Best / second-best marks follow each column's metric direction. The tables themselves are ``reports.tables``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bench.results.cost_csv import UNDER_LOAD
from bench.results.records import run_json_dataset
from protocols.datasets import DATASETS, DatasetLabels
from protocols.metrics import METRICS
from protocols.spec import PRESETS, ProtocolSpec
from reports.collect import CostRow, Mean, Results, means
from reports.paper_values import PaperValue, lookup

# ------------------------------------------------------------------------------------------------
# reasons a cell of ours is empty (shown instead of a blank)

REASON_NOT_IN_SUITE = "method not in the suite"
REASON_NO_WEIGHTS = "no weights: official weights not installed"
REASON_NO_OFFICIAL_WEIGHTS = "no official weights (bring your own)"
REASON_NO_DATASET = "no data: dataset not found"
REASON_NOT_RUN = "not run"
REASON_NOT_COMPUTED = "not computed in this run"  # a run of this method exists but lacks the metric/quantity
REASON_NO_MATCHING = "no matching step (FLOPS-M undefined)"
REASON_UNKNOWN_PEAK = "unknown peak"  # compute bound: the GPU is not in bench.results.gpu_specs.GPU_PEAKS
# short forms for LaTeX cells; the tabular's last line spells out those used
REASON_ABBREVIATIONS = {
    REASON_NOT_IN_SUITE: "n/s",
    REASON_NO_WEIGHTS: "n/w",
    REASON_NO_OFFICIAL_WEIGHTS: "n/o",
    REASON_NO_DATASET: "n/d",
    REASON_NOT_RUN: "n/r",
    REASON_NOT_COMPUTED: "n/c",
    REASON_NO_MATCHING: "n/a",
    REASON_UNKNOWN_PEAK: "u/p",
}

# Quality metrics (label, direction, decimals, unit) are the metric cards; dataset column labels and CUFED5's
# level names are on the dataset cards. Both registries are read live, so plugin cards appear in the tables.
QUALITY_METRICS = METRICS
DATASET_NAMES = DatasetLabels()
LEVEL_NAMES = dict(DATASETS["cufed5"].level_names)
DEFAULT_COST_SETTING = ("128x128", "512x512")  # MASA-SR Table 2 setting: LR 128², Ref 512²
LATENCY = "latency_ms_median"
COMPUTE_BOUND = "compute_bound_ms"  # derived: FLOPS-T x 2 / the GPU's plain-FP32 peak (bench.results.gpu_specs)
ACCURACY_METRIC = re.compile(r"^acc_le_(\d+)px$")


@dataclass(frozen=True)
class ColumnSpec:
    """One value column.

    ``source`` = ``quality`` / ``matching`` (records) or ``cost`` (cost.csv). For records, ``reference`` is the
    records' reference policy: None = the preset's default for the dataset (or the only one run), ``*`` = any
    single one. For cost, ``metric`` is the cost quantity, with ``part`` and ``convention``. Our values are
    multiplied by ``ours_scale`` into the displayed unit (fraction -> %, parameters -> M). ``paper_split`` /
    ``paper_metric`` name the paper value compared with (None: no paper value); ``compare`` False shows the
    paper value without a difference (latency measured on other hardware).
    """

    key: str
    group: str
    label: str
    source: str
    dataset: str
    metric: str
    higher_is_better: bool
    decimals: int
    reference: str | None = None  # the records' reference policy (see above)
    unit: str = ""
    ours_scale: float = 1.0
    paper_split: str | None = None
    paper_metric: str | None = None
    compare: bool = True
    part: str = "total"
    convention: str = "-"
    device: str | None = None  # cost: the device label (CostRow.device_label) of a latency/bound column; None: any


@dataclass(frozen=True)
class TableSpec:
    """One table: rows are method ids (presets for the protocol audit), columns ``ColumnSpec``s.

    ``preset`` fills our cells (None: any preset, e.g. matching runs); ``paper_table`` is the id in
    paper_values.csv compared with; ``row_labels`` / ``row_groups`` are the printed labels and groups.
    The audit table compares every row with ``baseline_row`` instead of a paper value.
    """

    id: str
    title: str
    caption: str
    rows: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    preset: str | None
    paper_table: str | None = None
    row_labels: tuple[str, ...] = ()
    row_groups: tuple[str, ...] = ()
    row_kind: str = "method"  # "method" or "preset"
    method: str | None = None  # audit: the method every row is
    baseline_row: str | None = None  # audit: rows are compared with this row (the suite default)
    mark_best: bool = True
    cost_setting: tuple[str, str] = DEFAULT_COST_SETTING
    kind: str = "paper"  # "paper" (a seed table) or "suite"

    def label_of(self, index: int) -> str:
        return self.row_labels[index] if self.row_labels else self.rows[index]

    def group_of(self, index: int) -> str:
        return self.row_groups[index] if self.row_groups else ""


@dataclass(frozen=True)
class Cell:
    ours: float | None  # in the column's displayed unit
    paper: float | None = None
    paper_text: str | None = None  # as printed
    delta: float | None = None  # ours - paper (or ours - baseline row in the audit)
    reason: str | None = None  # why ours is empty
    rank: int = 0  # 1 = best, 2 = second best (by the column's direction), 0 = unmarked
    count: int = 0  # images averaged (0: a pooled value or a cost number)
    note: str = ""  # e.g. which level was picked for a "*" column
    partial: str = ""  # "2/14": a mean over part of the dataset, or "unfinished"; no Δ to the paper then


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    group: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class TableModel:
    spec: TableSpec
    rows: tuple[Row, ...]
    sentences: tuple[str, ...]  # protocol sentences printed above the table
    compare_label: str  # "paper" or the audit's baseline row

    def has_groups(self) -> bool:
        return any(row.group for row in self.rows)


# ------------------------------------------------------------------------------------------------
# availability: why a cell of ours can be empty


@dataclass(frozen=True)
class Availability:
    """``method_problem(method_id)`` and ``dataset_problem(dataset)`` return a REASON_* string or None."""

    method_problem: Callable[[str], str | None]
    dataset_problem: Callable[[str], str | None]


def everything_available() -> Availability:
    return Availability(lambda _: None, lambda _: None)


def empty_reason(column: ColumnSpec, row_key: str, spec: TableSpec, availability: Availability,
                 datasets_with_records: frozenset[str] = frozenset()) -> str:
    """Why our cell is empty: the method is not in the suite, has no weights, the dataset was not found (only
    when no run has records for it: results read from elsewhere prove it exists), or it was simply not run."""
    if spec.row_kind == "preset":
        return REASON_NOT_RUN
    method_problem = availability.method_problem(row_key)
    if method_problem == REASON_NOT_IN_SUITE:
        return method_problem
    if column.source == "cost":  # cost needs neither weights nor data
        return REASON_NOT_RUN
    if method_problem:
        return method_problem
    if column.dataset in datasets_with_records:
        return REASON_NOT_RUN
    return availability.dataset_problem(column.dataset) or REASON_NOT_RUN


# ------------------------------------------------------------------------------------------------
# looking values up


def default_reference(preset: str, dataset: str) -> str | None:
    """The reference policy ``refsr-bench run`` uses for (preset, dataset) by default (``bench.engines.run.plan``)."""
    spec = PRESETS.get(preset)
    if spec is None:
        return None
    policy = spec.reference_policy_for(dataset)
    if policy != "auto":
        return policy
    dataset_def = DATASETS.get(dataset)
    if dataset_def is None:
        return None
    return "pair" if dataset_def.has_references else "self_lr"


class Values:
    """Dataset means of the records and the cost entries, indexed for the cells."""

    def __init__(self, results: Results) -> None:
        self.means = means(results.records, results.unfinished)
        self.references: dict[tuple[str, str, str, str], set[str]] = {}
        for dataset, preset, method, reference, metric in self.means:
            self.references.setdefault((dataset, preset, method, metric), set()).add(reference)
        self.cost = results.cost
        # cost runs that swept the reference size: shown in the sweep plot, not as tables of their own
        self.sweep_runs = {run.label for run in results.runs if run.kind == "cost"
                           and len((run.run_json.get("settings") or {}).get("ref_sizes") or []) > 1}
        self.datasets = frozenset(dataset for dataset, *_ in self.means)
        self.marks = results.marks  # records from bundles: "verified DATE on DEVICE" / "unverified bundle"

    def record_value(self, column: ColumnSpec, preset: str | None, method: str) -> tuple[Mean | None, str]:
        """(mean, note) for one cell; note says which preset/reference was picked when the spec left it open."""
        presets = [preset] if preset else sorted({p for (d, p, m, k) in self.references
                                                  if d == column.dataset and m == method and k == column.metric})
        for candidate in presets:
            references = self.references.get((column.dataset, candidate, method, column.metric), set())
            if not references:
                continue
            reference = column.reference
            note = ""
            if reference is None:
                # the preset's own default; a run's single reference policy only when the default cannot be known
                # (never silently show, e.g., a level-1 number in a stitched-reference column)
                wanted = default_reference(candidate, column.dataset)
                reference = wanted if wanted is not None else (next(iter(references)) if len(references) == 1 else None)
            elif reference == "*":
                reference = sorted(references)[0]
                note = f"level {reference}" + (f" of {len(references)} run" if len(references) > 1 else "")
            if reference is None or reference not in references:
                continue
            if not preset:
                note = ", ".join(n for n in (f"preset {candidate}", note) if n)
            mark = self.marks.get((column.dataset, candidate, method, reference), "")
            note = ", ".join(n for n in (note, mark) if n)
            return self.means[(column.dataset, candidate, method, reference, column.metric)], note
        return None, ""

    def has_cost(self, method: str, setting: tuple[str, str]) -> bool:
        return any(e.method == method and e.lr_hw == setting[0] and e.ref_hw in (setting[1], "-") for e in self.cost)

    def has_device_cost(self, method: str, setting: tuple[str, str], device_label: str) -> bool:
        return any(e.method == method and e.device_label == device_label and e.lr_hw == setting[0]
                   and e.ref_hw in (setting[1], "-") for e in self.cost)

    def latency_devices(self, setting: tuple[str, str]) -> list[tuple[str, bool]]:
        """(device label, is a GPU) of every device with a latency at ``setting``: GPUs first, then by label.
        One latency column per label: devices and thread counts are never mixed in a column."""
        found = {(e.device_label, e.device.startswith("cuda")) for e in self.cost
                 if e.quantity == LATENCY and e.lr_hw == setting[0] and e.ref_hw in (setting[1], "-")}
        return sorted(found, key=lambda d: (not d[1], d[0]))

    def cost_value(self, column: ColumnSpec, method: str, setting: tuple[str, str]) -> CostRow | None:
        """The entry of ``column``'s quantity for ``method`` at ``setting``; a column with a device label takes
        only that device's entries."""
        for entry in self.cost:
            if (entry.method, entry.quantity, entry.part, entry.convention) != (method, column.metric, column.part,
                                                                                column.convention):
                continue
            if entry.lr_hw != setting[0] or entry.ref_hw not in (setting[1], "-"):
                continue
            if column.device is not None and entry.device_label != column.device:
                continue
            return entry
        return None

    def compute_bound_ms(self, method: str, setting: tuple[str, str], device_label: str) -> tuple[float | None, str]:
        """FLOPS-T (GMACs, 'macs' convention preferred) x 2 / the plain-FP32 peak of ``device_label`` (a GPU
        name as torch reports it); (None, reason) when there is no count or no known peak."""
        from bench.results.gpu_specs import fp32_compute_bound_ms

        counts = {e.convention: e.value for e in self.cost if e.method == method and e.quantity == "flops_t"
                  and e.part == "total" and e.lr_hw == setting[0] and e.ref_hw in (setting[1], "-")}
        convention = "macs" if "macs" in counts else (sorted(counts)[0] if counts else None)
        if convention is None:
            return None, REASON_NOT_COMPUTED
        bound = fp32_compute_bound_ms(counts[convention], device_label.removesuffix(UNDER_LOAD))
        return (bound, "") if bound is not None else (None, REASON_UNKNOWN_PEAK)


# ------------------------------------------------------------------------------------------------
# the builder


def _finite_or_inf(value: float) -> bool:
    return not math.isnan(value)


def mark_ranks(values: list[float | None], higher_is_better: bool, decimals: int | None = None) -> list[int]:
    """1 for the best value(s), 2 for the second best, 0 otherwise; ties share a rank; NaN and None are
    never marked; nothing is marked when fewer than two rows have a value. With ``decimals``, values are compared
    as displayed (rounded to that many decimals), so rows printed alike share the mark."""
    if decimals is not None:
        values = [_displayed(v, decimals) for v in values]
    present = sorted({v for v in values if v is not None and _finite_or_inf(v)}, reverse=higher_is_better)
    if sum(1 for v in values if v is not None and _finite_or_inf(v)) < 2:
        return [0] * len(values)
    best = present[0]
    second = present[1] if len(present) > 1 else None
    return [1 if v == best else 2 if (second is not None and v == second) else 0 for v in values]


def _displayed(value: float | None, decimals: int) -> float | None:
    """``value`` rounded as the tables print it (same formatting as reports.render.format_number)."""
    if value is None or math.isnan(value) or math.isinf(value):
        return value
    return float(f"{value:.{decimals}f}")


def make_cell(ours: float | None, paper: PaperValue | None, compare: bool, reason: str | None,
              count: int = 0, note: str = "", partial: str = "") -> Cell:
    """A cell: ours (displayed unit), the paper value as printed, Δ = ours − paper when both exist -- never for a
    partial value (a mean over part of the dataset is not the paper's number)."""
    paper_value = paper.value if paper is not None else None
    delta = ours - paper_value if (ours is not None and paper_value is not None and compare and not partial) else None
    return Cell(ours=ours, paper=paper_value, paper_text=paper.value_text if paper is not None else None,
                delta=delta, reason=None if ours is not None else (reason or REASON_NOT_RUN), count=count, note=note,
                partial=partial)


def build_table(spec: TableSpec, results: Results, paper_values: list[PaperValue],
                availability: Availability | None = None, values: Values | None = None) -> TableModel:
    availability = availability or everything_available()
    values = values or Values(results)
    paper_index = lookup(paper_values, spec.paper_table) if spec.paper_table else {}
    grid: list[list[Cell]] = []
    for row_key in spec.rows:
        cells = []
        for column in spec.columns:
            preset = row_key if spec.row_kind == "preset" else spec.preset
            method = spec.method if spec.row_kind == "preset" and spec.method else row_key
            paper = None
            if spec.paper_table and column.paper_metric and column.paper_split is not None:
                paper = paper_index.get((row_key, _paper_dataset(column), column.paper_split, column.paper_metric))
            ours: float | None = None
            count = 0
            note = ""
            partial = ""
            bound_reason = ""
            if column.source == "cost" and column.metric == COMPUTE_BOUND and column.device is not None:
                # only beside a latency this GPU measured for this network
                ours, bound_reason = (values.compute_bound_ms(method, spec.cost_setting, column.device)
                                      if values.has_device_cost(method, spec.cost_setting, column.device)
                                      else (None, REASON_NOT_RUN))
            elif column.source == "cost":
                entry = values.cost_value(column, method, spec.cost_setting)
                if entry is not None:
                    ours = entry.value * column.ours_scale
            else:
                mean, note = values.record_value(column, preset, method)
                if mean is not None:
                    ours, count, partial = mean.value * column.ours_scale, mean.count, mean.partial
            reason = None
            if ours is None:
                reason = empty_reason(column, row_key, spec, availability, values.datasets)
                if column.source == "cost" and values.has_cost(method, spec.cost_setting):
                    reason = REASON_NO_MATCHING if column.metric == "flops_m" else REASON_NOT_COMPUTED
                    if column.metric == COMPUTE_BOUND and bound_reason:
                        reason = bound_reason
                    elif column.device is not None and not values.has_device_cost(method, spec.cost_setting,
                                                                                  column.device):
                        reason = REASON_NOT_RUN  # measured elsewhere, not on this column's device
                elif spec.row_kind == "preset" and _ran_preset(values, column, preset, method):
                    reason = REASON_NOT_COMPUTED
            cells.append(make_cell(ours, paper, column.compare, reason, count, note, partial))
        grid.append(cells)
    if spec.baseline_row is not None and spec.baseline_row in spec.rows:
        base = grid[spec.rows.index(spec.baseline_row)]
        for i, row_key in enumerate(spec.rows):
            if row_key == spec.baseline_row:
                continue
            grid[i] = [replace(c, delta=(c.ours - b.ours) if (c.ours is not None and b.ours is not None) else None)
                       for c, b in zip(grid[i], base, strict=True)]
    if spec.mark_best:
        for j, column in enumerate(spec.columns):
            ranks = mark_ranks([grid[i][j].ours for i in range(len(grid))], column.higher_is_better,
                               column.decimals)
            for i, rank in enumerate(ranks):
                grid[i][j] = replace(grid[i][j], rank=rank)
    rows = tuple(Row(key, spec.label_of(i), spec.group_of(i), tuple(grid[i])) for i, key in enumerate(spec.rows))
    return TableModel(spec, rows, protocol_sentences(spec, results),
                      spec.baseline_row if spec.baseline_row else "paper")


def _paper_dataset(column: ColumnSpec) -> str:
    return "-" if column.source == "cost" else column.dataset


def _ran_preset(values: Values, column: ColumnSpec, preset: str | None, method: str) -> bool:
    return any(d == column.dataset and p == preset and m == method for (d, p, m, _k) in values.references)


# ------------------------------------------------------------------------------------------------
# protocol sentences (from the runs' ProtocolSpec; from the preset table when nothing was run)


def spec_from_run_json(data: dict[str, Any]) -> ProtocolSpec | None:
    """Rebuild the ProtocolSpec a run recorded (JSON lists back to tuples); None if it no longer fits."""
    def as_tuple(value: Any) -> Any:
        return tuple(as_tuple(v) for v in value) if isinstance(value, list) else value

    try:
        return ProtocolSpec(**{k: as_tuple(v) for k, v in data.items()})
    except Exception:  # a run.json from another version must not stop the report: use its stored sentence
        return None


def _run_json_methods(run_json: dict[str, Any]) -> set[str]:
    """Record names of the methods a run.json says it ran (runner: list of dicts; match: dict or list of names)."""
    listed = run_json.get("methods") or []
    if isinstance(listed, dict):
        return set(listed)
    return {str(m.get("record_name", "")) if isinstance(m, dict) else str(m) for m in listed}


def _run_sentence(
    results: Results, dataset: str, preset: str, kind: str = "quality", method: str | None = None
) -> str | None:
    """The protocol sentence of a run of (dataset, preset) -- preferring runs of ``kind`` (``quality`` or
    ``matching``: a dataset such as Sintel has both under ``ccnet2017``) and, if given, runs that ran ``method``
    -- prefixed with the dataset and the run folder it came from."""
    candidates = []
    for run in results.runs:
        for run_json in run.run_json.get("runs") or [run.run_json]:
            spec_data = run_json.get("protocol_spec") or {}
            if run_json_dataset(run_json) != dataset or spec_data.get("name") != preset:
                continue
            if method is not None and method not in _run_json_methods(run_json):
                continue
            candidates.append((spec_data.get("kind", "quality") != kind, run, run_json, spec_data))
    for _, run, run_json, spec_data in sorted(candidates, key=lambda c: c[0]):  # stable: run order otherwise
        spec = spec_from_run_json(spec_data)
        sentence = spec.sentence(dataset) if spec is not None else run_json.get("protocol_sentence")
        policies = run_json.get("reference_policies") or []
        if sentence and policies and spec is not None and policies != [default_reference(spec.name, dataset)]:
            sentence += f" Reference policies run: {', '.join(str(p) for p in policies)}."
        if sentence:
            return f"{DATASET_NAMES.get(dataset, dataset)} ({run.label}): {sentence}"
    return None


def protocol_sentences(spec: TableSpec, results: Results) -> tuple[str, ...]:
    sentences: list[str] = []
    if spec.row_kind == "preset":
        for preset in spec.rows:
            dataset = spec.columns[0].dataset if spec.columns else ""
            sentence = _run_sentence(results, dataset, preset, method=spec.method)
            if sentence:
                sentences.append(sentence)
        return tuple(sentences)
    record_datasets = list(dict.fromkeys(c.dataset for c in spec.columns if c.source != "cost"))
    for dataset in record_datasets:
        kind = "matching" if any(c.source == "matching" for c in spec.columns if c.dataset == dataset) else "quality"
        if spec.preset is None:
            presets = sorted({r.preset for r in results.records if r.dataset == dataset})
            found = [s for s in (_run_sentence(results, dataset, p, kind) for p in presets) if s]
            sentences += found or [f"{DATASET_NAMES.get(dataset, dataset)}: not run."]
            continue
        sentence = _run_sentence(results, dataset, spec.preset, kind)
        if sentence is None and spec.preset in PRESETS:
            sentence = (f"{DATASET_NAMES.get(dataset, dataset)} (not run; the preset would be): "
                        f"{PRESETS[spec.preset].sentence(dataset)}")
        if sentence:
            sentences.append(sentence)
    if any(c.source == "cost" for c in spec.columns):
        sentences.append(cost_sentence(results, spec.cost_setting))
    return tuple(sentences)


def cost_sentence(results: Results, setting: tuple[str, str]) -> str:
    devices = Values(Results(cost=results.cost)).latency_devices(setting)
    where = "; ".join(label for label, _ in devices) if devices else "not measured at this size"
    return (f"Cost at LR {_size(setting[0])}, Ref {_size(setting[1])} (HR pixels): MACs in "
            f"GMACs (1 fused multiply-add = 1, G = 1e9) counted by fvcore with the suite's handlers ('macs') or "
            f"the MASA-SR counter ('masa2021'); parameters in millions; latency = median per forward in ms "
            f"(CUDA events on GPU, CPU wall time otherwise), one column per device and thread count, measured on: "
            f"{where}. FP32 bound = FLOPS-T × 2 / the GPU's plain-FP32 peak (NVIDIA datasheet, TF32 off): the "
            f"time the arithmetic alone needs.")


def _size(hw: str) -> str:
    return hw.replace("x", "×")


def safe_id(text: str) -> str:
    """A file-name-safe table id."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
