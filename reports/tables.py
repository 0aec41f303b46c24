"""The catalogue of tables: the papers' tables to regenerate and the suite's own, as ``TableSpec``s for the table
engine (``reports.table_engine``), and ``build_all`` which fills them all.

Seed tables regenerated: MASA T1, T2; SSEN T1, T2, T3; E2ENT² T1, T2; the C² poster table; CC-Net T2, T3.
Suite tables: fair-protocol quality, five-level robustness, matching accuracy, cost, protocol audit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from reports.collect import Results
from reports.paper_values import PaperValue
from reports.table_engine import (
    ACCURACY_METRIC,
    COMPUTE_BOUND,
    DATASET_NAMES,
    DEFAULT_COST_SETTING,
    LATENCY,
    LEVEL_NAMES,
    QUALITY_METRICS,
    REASON_ABBREVIATIONS,
    REASON_NO_DATASET,
    REASON_NO_MATCHING,
    REASON_NO_OFFICIAL_WEIGHTS,
    REASON_NO_WEIGHTS,
    REASON_NOT_COMPUTED,
    REASON_NOT_IN_SUITE,
    REASON_NOT_RUN,
    REASON_UNKNOWN_PEAK,
    Availability,
    Cell,
    ColumnSpec,
    Row,
    TableModel,
    TableSpec,
    Values,
    _size,
    build_table,
    cost_sentence,
    default_reference,
    empty_reason,
    everything_available,
    make_cell,
    mark_ranks,
    protocol_sentences,
    safe_id,
    spec_from_run_json,
)

# the engine's names are part of this module's interface (tables, plots and tests import them from here)
__all__ = [
    "ACCURACY_METRIC",
    "Availability",
    "COMPUTE_BOUND",
    "Cell",
    "ColumnSpec",
    "DATASET_NAMES",
    "DEFAULT_COST_SETTING",
    "LATENCY",
    "LEVEL_NAMES",
    "QUALITY_METRICS",
    "REASON_ABBREVIATIONS",
    "REASON_NOT_COMPUTED",
    "REASON_NOT_IN_SUITE",
    "REASON_NOT_RUN",
    "REASON_NO_DATASET",
    "REASON_NO_MATCHING",
    "REASON_NO_OFFICIAL_WEIGHTS",
    "REASON_NO_WEIGHTS",
    "REASON_UNKNOWN_PEAK",
    "Row",
    "TableModel",
    "TableSpec",
    "Values",
    "build_table",
    "cost_sentence",
    "default_reference",
    "empty_reason",
    "everything_available",
    "make_cell",
    "mark_ranks",
    "protocol_sentences",
    "safe_id",
    "spec_from_run_json",
]


# ------------------------------------------------------------------------------------------------
# the seed-paper table specs


def quality_columns(datasets: list[tuple[str, str | None, str | None]], metrics: list[tuple[str, str | None]],
                    label_with_level: bool = False) -> tuple[ColumnSpec, ...]:
    """Columns for (dataset, our reference policy, paper split) x (our metric, paper metric)."""
    columns = []
    for dataset, reference, paper_split in datasets:
        group = DATASET_NAMES.get(dataset, dataset)
        if label_with_level:
            group = LEVEL_NAMES.get(reference or "", reference or group)
        for metric, paper_metric in metrics:
            card = QUALITY_METRICS[metric]
            columns.append(ColumnSpec(
                key=f"{dataset}/{reference or 'default'}/{metric}", group=group, label=card.label, source="quality",
                dataset=dataset, reference=reference, metric=metric, higher_is_better=card.higher_is_better,
                decimals=card.decimals, unit=card.unit, paper_split=paper_split, paper_metric=paper_metric))
    return tuple(columns)


def accuracy_column(dataset: str, threshold: int, reference: str | None = "*", paper: bool = False) -> ColumnSpec:
    name = DATASET_NAMES.get(dataset, dataset)
    return ColumnSpec(key=f"{dataset}/acc_le_{threshold}px", group=f"accuracy (%) {name}",
                      label=f"≤{threshold} px", source="matching", dataset=dataset, reference=reference,
                      metric=f"acc_le_{threshold}px", higher_is_better=True, decimals=1, unit="%", ours_scale=100.0,
                      paper_split="val85" if paper else None,
                      paper_metric=f"match_acc_le_{threshold}px" if paper else None)


def cost_columns(conventions: tuple[str, ...], paper: bool, devices: tuple[tuple[str, bool], ...] = (),
                 setting: tuple[str, str] = DEFAULT_COST_SETTING, paper_device: str = "") -> tuple[ColumnSpec, ...]:
    """FLOPS-M / FLOPS-T per convention (the group names the LR / Ref size), parameters, then one latency
    column per (device label, is GPU) in ``devices`` (each GPU followed by its FP32 compute bound); no
    ``devices``: one device-less latency column (``expand_latency_columns`` splits it once results are known).
    ``paper_device``: what the paper says about its own runtime hardware (paper tables)."""
    columns = []
    for convention in conventions:
        group = f"GMACs ({convention}), LR {_size(setting[0])} / Ref {_size(setting[1])}"
        columns.append(ColumnSpec(key=f"flops_m/{convention}", group=group, label="FLOPS-M", source="cost", dataset="-",
                                  metric="flops_m", part="matching", convention=convention, higher_is_better=False,
                                  decimals=2, unit="GMACs", paper_split="lr128_ref512" if paper else None,
                                  paper_metric="flops_m_g" if paper else None))
        columns.append(ColumnSpec(key=f"flops_t/{convention}", group=group, label="FLOPS-T", source="cost", dataset="-",
                                  metric="flops_t", convention=convention, higher_is_better=False, decimals=2,
                                  unit="GMACs", paper_split="lr128_ref512" if paper else None,
                                  paper_metric="flops_t_g" if paper else None))
    columns.append(ColumnSpec(key="params", group="", label="Params (M)", source="cost", dataset="-", metric="params",
                              higher_is_better=False, decimals=3, unit="M", ours_scale=1e-6,
                              paper_split="lr128_ref512" if paper else None,
                              paper_metric="params_m" if paper else None))
    group = f"Runtime (ms); {paper_device}" if paper_device else "Latency median (ms)"
    columns.append(ColumnSpec(key="latency/any", group=group, label="ours" if paper else "", source="cost",
                              dataset="-",
                              metric=LATENCY, higher_is_better=False, decimals=1, unit="ms",
                              paper_split="lr128_ref512" if paper else None,
                              paper_metric="runtime_ms" if paper else None, compare=False))
    return expand_latency_columns(tuple(columns), devices)


def expand_latency_columns(columns: tuple[ColumnSpec, ...], devices: Sequence[tuple[str, bool]]
                           ) -> tuple[ColumnSpec, ...]:
    """Replace each device-less latency column by one column per (device label, is GPU), labelled with the
    device ("ours: <device>"), each GPU column followed by its FP32 compute-bound column. Unchanged when no
    device measured a latency."""
    if not devices:
        return columns
    out: list[ColumnSpec] = []
    for column in columns:
        if column.source != "cost" or column.metric != LATENCY or column.device is not None:
            out.append(column)
            continue
        for label, is_gpu in devices:
            named = f"{column.label}: {label}" if column.label else label
            out.append(replace(column, key=f"latency/{label}", label=named, device=label))
            if is_gpu:
                out.append(replace(column, key=f"bound/{label}", label=f"FP32 bound: {label}", metric=COMPUTE_BOUND,
                                   device=label, decimals=2, paper_split=None, paper_metric=None))
    return tuple(out)


PS_Y: list[tuple[str, str | None]] = [("psnr_y", "psnr"), ("ssim_y", "ssim")]
PS_RGB: list[tuple[str, str | None]] = [("psnr_rgb", "psnr"), ("ssim_rgb", "ssim")]


@dataclass(frozen=True)
class PaperTableDef:
    """The static part of a seed-table spec; rows come from paper_values.csv in printed order."""

    id: str
    paper_table: str
    title: str
    caption: str
    preset: str | None
    columns: tuple[ColumnSpec, ...]


PAPER_TABLES: tuple[PaperTableDef, ...] = (
    PaperTableDef(
        "masa_t1", "MASA T1", "MASA-SR Table 1: PSNR / SSIM on CUFED5, Sun80, Urban100",
        "Ours under masa2021 (CUFED5 five stitched references, Sun80 manifest reference, Urban100 self-reference). "
        "Most non-MASA paper rows are quoted from other papers and follow other protocols.",
        "masa2021",
        quality_columns([("cufed5", None, "stitch5"), ("sun80", None, "random_ref"), ("urban100", None, "self_lr")],
                        PS_Y),
    ),
    PaperTableDef(
        "masa_t2", "MASA T2", "MASA-SR Table 2: matching FLOPs, total FLOPs, parameters, runtime",
        "LR 128×128 and Ref 512×512. Paper 'FLOPS' are MACs of MASA-SR's jit counter (compared with our "
        "masa2021 convention). The paper's runtime hardware is not stated: no difference is computed for it; "
        "ours is one column per device that measured it.",
        None,
        cost_columns(("masa2021",), paper=True, paper_device="paper: hardware not stated"),
    ),
    PaperTableDef(
        "ssen_t1", "SSEN T1", "SSEN Table 1: CUFED5 at similarity level XH",
        "Ours under ssen2020 with reference level 1 (XH). Most paper rows are quoted from the SRNTT paper.",
        "ssen2020",
        quality_columns([("cufed5", "level:1", "XH")], PS_Y),
    ),
    PaperTableDef(
        "ssen_t2", "SSEN T2", "SSEN Table 2: self-similarity SR vs SISR (×4)",
        "Ours under ssen2020_sisr (= sisr_std: MATLAB bicubic, Y, crop 4).",
        "ssen2020_sisr",
        quality_columns([("urban100", None, "test"), ("set5", None, "test"), ("set14", None, "test"),
                         ("b100", None, "test")], PS_Y),
    ),
    PaperTableDef(
        "ssen_t3", "SSEN T3", "SSEN Table 3: robustness across the five CUFED5 similarity levels",
        "Each level evaluated with its single reference (XH = level 1 … XL = level 5), ours under ssen2020.",
        "ssen2020",
        quality_columns([("cufed5", level, name) for level, name in LEVEL_NAMES.items()], PS_Y, label_with_level=True),
    ),
    PaperTableDef(
        "e2ent2_t1", "E2ENT² T1", "E2ENT² Table 1: CUFED5 and Sun80 (SUN Hays)",
        "The paper's colour space is inferred to be RGB: ours are RGB PSNR/SSIM under e2ent2_2020.",
        "e2ent2_2020",
        quality_columns([("cufed5", None, "unstated"), ("sun80", None, "unstated")], PS_RGB),
    ),
    PaperTableDef(
        "e2ent2_t2", "E2ENT² T2", "E2ENT² Table 2: Flickr1024 test set (112 pairs)",
        "Left view = LR input, right view = reference; RGB PSNR/SSIM under e2ent2_2020 (colour space inferred).",
        "e2ent2_2020",
        quality_columns([("flickr1024", None, "test")], PS_RGB),
    ),
    PaperTableDef(
        "c2_poster", "C² poster", "C²-Matching poster table: PSNR / SSIM on five test sets",
        "Ours under c2matching2021 (CUFED5 level 1, crop 4). Other paper rows mix protocols (stitched references, "
        "RGB numbers of E2ENT²).",
        "c2matching2021",
        quality_columns([("cufed5", "level:1", "XH"), ("sun80", None, "random_ref"), ("urban100", None, "self_lr"),
                         ("manga109", None, "random_ref"), ("wrsr", None, "pair")], PS_Y),
    ),
    PaperTableDef(
        "ccnet_t2", "CC-Net T2", "CC-Net Table 2: cross-scale matching accuracy on MPI Sintel (85 frames)",
        "Fraction of evaluated positions whose match lies within t HR pixels of the ground truth (×8); "
        "see protocols.md §6 for the unstated choices.",
        None,
        tuple(accuracy_column("sintel", t, paper=True) for t in (0, 1, 2, 4, 5, 6)),
    ),
    PaperTableDef(
        "ccnet_t3", "CC-Net T3", "CC-Net Table 3: average PSNR (×8) on Sintel and LF video",
        "Colour space not stated by the paper; ours are RGB PSNR under ccnet2017.",
        "ccnet2017",
        (ColumnSpec("sintel/psnr_rgb", "Sintel", "PSNR-RGB", "quality", "sintel", "psnr_rgb", True, 2, reference="*",
                    unit="dB", paper_split="test552", paper_metric="psnr"),
         ColumnSpec("lf_video/psnr_rgb", "LF video", "PSNR-RGB", "quality", "lf_video", "psnr_rgb", True, 2,
                    reference="*", unit="dB", paper_split="test268", paper_metric="psnr")),
    ),
)


def paper_table_spec(definition: PaperTableDef, paper_values: list[PaperValue]) -> TableSpec:
    rows = [v for v in paper_values if v.table == definition.paper_table]
    labels = list(dict.fromkeys((v.row_label, v.method_id, v.group) for v in rows))
    return TableSpec(
        id=definition.id, title=definition.title, caption=definition.caption,
        rows=tuple(m for _, m, _ in labels), row_labels=tuple(label for label, _, _ in labels),
        row_groups=tuple(g for _, _, g in labels), columns=definition.columns, preset=definition.preset,
        paper_table=definition.paper_table, kind="paper",
    )


def paper_table_specs(paper_values: list[PaperValue]) -> list[TableSpec]:
    return [paper_table_spec(d, paper_values) for d in PAPER_TABLES]


# ------------------------------------------------------------------------------------------------
# the suite's own tables (rows and columns from what was run)

SUITE_PRESET = "refsr"


def _quality_metrics_present(keys: set[str]) -> list[str]:
    return [m for m in QUALITY_METRICS if m in keys]


def fair_quality_spec(values: Values) -> TableSpec | None:
    keys = [k for k in values.means if k[1] == SUITE_PRESET and k[4] in QUALITY_METRICS]
    if not keys:
        return None
    datasets = sorted({k[0] for k in keys})
    metrics = _quality_metrics_present({k[4] for k in keys})
    methods = sorted({k[2] for k in keys})
    columns = quality_columns([(d, None, None) for d in datasets], [(m, None) for m in metrics])
    return TableSpec(
        id="fair_quality", title="Fair protocol: quality per dataset (preset refsr)",
        caption="Every method under the suite's one protocol (refsr), each dataset with the preset's default "
                "reference policy.",
        rows=tuple(methods), columns=columns, preset=SUITE_PRESET, kind="suite")


def robustness_specs(values: Values) -> list[TableSpec]:
    specs = []
    presets = sorted({k[1] for k in values.means if k[0] == "cufed5" and k[3] in LEVEL_NAMES},
                     key=lambda p: (p != SUITE_PRESET, p))
    for preset in presets:
        keys = [k for k in values.means if k[0] == "cufed5" and k[1] == preset and k[4] in QUALITY_METRICS]
        candidates = (*LEVEL_NAMES, "stitch5_masa", "stitch5_zero500_topleft")
        levels = [lv for lv in candidates if any(k[3] == lv for k in keys)]
        if not any(lv in LEVEL_NAMES for lv in levels):
            continue
        metrics = [m for m in ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb") if any(k[4] == m for k in keys)]
        methods = sorted({k[2] for k in keys if k[3] in LEVEL_NAMES})
        columns = quality_columns([("cufed5", lv, None) for lv in levels], [(m, None) for m in metrics],
                                  label_with_level=True)
        specs.append(TableSpec(
            id=f"robustness_cufed5_{preset}", title=f"CUFED5 five-level robustness (preset {preset})",
            caption="One run per reference level with that single reference (XH = most similar … XL); stitched "
                    "five-reference columns where run.",
            rows=tuple(methods), columns=columns, preset=preset, kind="suite"))
    return specs


def matching_specs(values: Values) -> list[TableSpec]:
    """One table per (dataset, matching preset, reference); the reference is the Sintel pass or the view pair."""
    groups: dict[tuple[str, str, str], set[int]] = {}
    methods: dict[tuple[str, str, str], set[str]] = {}
    for dataset, preset, method, reference, metric in values.means:
        match = ACCURACY_METRIC.match(metric)
        if match:
            groups.setdefault((dataset, preset, reference), set()).add(int(match.group(1)))
            methods.setdefault((dataset, preset, reference), set()).add(method)
    specs = []
    for (dataset, preset, reference), thresholds in sorted(groups.items()):
        columns = tuple(accuracy_column(dataset, t, reference=reference) for t in sorted(thresholds))
        specs.append(TableSpec(
            id=f"matching_{dataset}_{preset}_{reference}",
            title=f"Matching accuracy on {DATASET_NAMES.get(dataset, dataset)} ({reference}; preset {preset})",
            caption="Fraction (%) of evaluated LR positions whose matched reference position lies within t HR "
                    "pixels of the ground truth (pooled over all positions where the run wrote a pooled value).",
            rows=tuple(sorted(methods[(dataset, preset, reference)])), columns=columns, preset=preset, kind="suite"))
    return specs


def cost_settings(values: Values) -> list[tuple[str, str]]:
    """(LR, Ref) sizes with a cost table: every size a non-sweep run measured, plus the MASA Table 2 size when
    any run has it; sizes only a reference sweep visited are left to the sweep plot. SISR rows (Ref "-")
    join the tables of their LR size (the MASA Table 2 Ref when alone)."""
    kept = {(e.lr_hw, e.ref_hw) for e in values.cost if e.ref_hw != "-" and e.run not in values.sweep_runs}
    kept |= {(e.lr_hw, e.ref_hw) for e in values.cost if (e.lr_hw, e.ref_hw) == DEFAULT_COST_SETTING}
    sisr_lr = {e.lr_hw for e in values.cost if e.ref_hw == "-"}
    kept |= {(lr, DEFAULT_COST_SETTING[1]) for lr in sisr_lr if not any(k[0] == lr for k in kept)}

    def area(setting: tuple[str, str]) -> tuple[int, ...]:
        return tuple(int(v) for part in setting for v in part.split("x"))

    return sorted(kept, key=lambda s: (s != DEFAULT_COST_SETTING, area(s)))


def cost_specs(values: Values) -> list[TableSpec]:
    """One cost table per (LR, Ref) size; its latency columns are one per device and thread count."""
    specs = []
    for setting in cost_settings(values):
        at_setting = [e for e in values.cost if e.lr_hw == setting[0] and e.ref_hw in (setting[1], "-")]
        conventions = tuple(sorted({e.convention for e in at_setting if e.convention != "-"},
                                   key=lambda c: (c != "macs", c)))
        methods = sorted({e.method for e in at_setting})
        size = f"LR {_size(setting[0])}, Ref {_size(setting[1])}"
        specs.append(TableSpec(
            id="cost" if setting == DEFAULT_COST_SETTING else f"cost_lr{setting[0]}_ref{setting[1]}",
            title=f"Cost at {size}: parameters, FLOPS-M / FLOPS-T (GMACs), latency per device",
            caption=f"{size} (HR pixels). FLOPS-M = multiply-accumulates of the method's matching part; FLOPS-T = "
                    "the whole forward. Latency: one column per device and thread count, never mixed; the FP32 "
                    "bound beside a GPU's latency is the time its arithmetic alone needs at the datasheet peak.",
            rows=tuple(methods), columns=cost_columns(conventions, paper=False,
                                                      devices=tuple(values.latency_devices(setting)), setting=setting),
            preset=None, cost_setting=setting, kind="suite"))
    return specs


def audit_specs(values: Values) -> list[TableSpec]:
    """One method under every preset it was run with, on one dataset; Δ against the suite default refsr."""
    presets_by: dict[tuple[str, str], set[str]] = {}
    metrics_by: dict[tuple[str, str], set[str]] = {}
    for dataset, preset, method, _level, metric in values.means:
        if metric in QUALITY_METRICS:
            presets_by.setdefault((method, dataset), set()).add(preset)
            metrics_by.setdefault((method, dataset), set()).add(metric)
    specs = []
    for (method, dataset), presets in sorted(presets_by.items()):
        if len(presets) < 2 or SUITE_PRESET not in presets:
            continue
        rows = tuple(sorted(presets, key=lambda p: (p != SUITE_PRESET, p)))
        cards = [QUALITY_METRICS[m] for m in _quality_metrics_present(metrics_by[(method, dataset)])]
        columns = tuple(
            ColumnSpec(key=f"{dataset}/{card.name}", group=DATASET_NAMES.get(dataset, dataset), label=card.label,
                       source="quality", dataset=dataset, metric=card.name, higher_is_better=card.higher_is_better,
                       decimals=card.decimals + 1, unit=card.unit)
            for card in cards)
        specs.append(TableSpec(
            id=f"audit_{method}_{dataset}", title=f"Protocol audit: {method} on {DATASET_NAMES.get(dataset, dataset)}",
            caption="The same method under each paper preset, each with its own default reference policy; Δ is "
                    "the difference to the suite default refsr, i.e. how much of a gap is protocol, not method.",
            rows=rows, columns=columns, preset=None, row_kind="preset", method=method, baseline_row=SUITE_PRESET,
            mark_best=False, kind="suite"))
    return specs


RunKey = tuple[str, str, str, str]  # (dataset, preset, method, reference) of quality records


def covered_runs(values: Values, specs: list[TableSpec]) -> set[RunKey]:
    """Quality record groups the suite tables in ``specs`` show (a column of their preset and reference)."""
    covered: set[RunKey] = set()
    for spec in specs:
        for column in spec.columns:
            if column.source != "quality":
                continue
            for row in spec.rows:
                preset = row if spec.row_kind == "preset" else spec.preset
                method = spec.method if spec.row_kind == "preset" and spec.method else row
                if preset is None:
                    continue
                reference = (column.reference if column.reference not in (None, "*")
                             else default_reference(preset, column.dataset))
                covered.add((column.dataset, preset, method, reference or ""))
    return covered


def preset_quality_specs(values: Values, covered: set[RunKey]) -> list[TableSpec]:
    """One table per preset that has quality records no other suite table shows (e.g. a ``sisr_std`` run):
    every method and dataset run under that preset, one column group per (dataset, reference) run."""
    keys = [k for k in values.means if k[4] in QUALITY_METRICS]
    uncovered = {k[1] for k in keys if (k[0], k[1], k[2], k[3]) not in covered}
    specs = []
    for preset in sorted(uncovered, key=lambda p: (p != SUITE_PRESET, p)):
        mine = [k for k in keys if k[1] == preset]
        datasets: list[tuple[str, str | None, str | None]] = []
        for dataset in sorted({k[0] for k in mine}):
            references = sorted({k[3] for k in mine if k[0] == dataset})
            if references == [default_reference(preset, dataset)]:
                datasets.append((dataset, None, None))
            else:
                datasets += [(dataset, reference, None) for reference in references]
        metrics = _quality_metrics_present({k[4] for k in mine})
        columns = list(quality_columns(datasets, [(m, None) for m in metrics]))
        for i, column in enumerate(columns):  # name the reference in the group when a dataset has several
            if column.reference is not None:
                columns[i] = replace(column, group=f"{column.group} ({column.reference})")
        sisr = preset.startswith("sisr")
        kind = "SISR" if sisr else "Quality"
        specs.append(TableSpec(
            id=f"preset_{preset}", title=f"{kind} under preset {preset}",
            caption=("Single-image SR methods (and bicubic) under the SISR preset" if sisr else
                     "Every method run under this preset") + f" {preset}, each dataset with the reference policy run.",
            rows=tuple(sorted({k[2] for k in mine})), columns=tuple(columns), preset=preset, kind="suite"))
    return specs


def suite_table_specs(values: Values) -> list[TableSpec]:
    specs: list[TableSpec] = []
    fair = fair_quality_spec(values)
    if fair is not None:
        specs.append(fair)
    specs += robustness_specs(values)
    audits = audit_specs(values)
    specs += preset_quality_specs(values, covered_runs(values, specs + audits))
    specs += matching_specs(values)
    specs += cost_specs(values)
    specs += audits
    return specs


def build_all(results: Results, paper_values: list[PaperValue],
              availability: Availability | None = None) -> list[TableModel]:
    """Suite tables that have data, then every seed-paper table (our cells empty-with-reason where nothing ran)."""
    values = Values(results)
    paper = [replace(s, columns=expand_latency_columns(s.columns, values.latency_devices(s.cost_setting)))
             for s in paper_table_specs(paper_values)]
    specs = suite_table_specs(values) + paper
    return [build_table(replace(s, id=safe_id(s.id)), results, paper_values, availability, values) for s in specs]
