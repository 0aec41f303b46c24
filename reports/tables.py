"""The catalogue of tables: the seed-paper table specs and the suite's own tables, built by the table engine
(``reports.table_engine``, whose names are re-exported here for the modules that import them from this one).

Seed tables regenerated: MASA T1, T2; SSEN T1, T2, T3; E2ENT² T1, T2; the C² poster table; CC-Net T2, T3.
Suite tables: fair-protocol quality, five-level robustness, matching accuracy, cost, protocol audit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reports.collect import Results
from reports.paper_values import PaperValue
from reports.table_engine import (  # noqa: F401  (re-exported: the engine's names, as before the split)
    ACCURACY_METRIC,
    DATASET_NAMES,
    DEFAULT_COST_SETTING,
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
    Availability,
    Cell,
    ColumnSpec,
    Row,
    TableModel,
    TableSpec,
    Values,
    build_table,
    cost_sentence,
    default_level,
    empty_reason,
    everything_available,
    make_cell,
    mark_ranks,
    protocol_sentences,
    safe_id,
    spec_from_manifest,
)

# ------------------------------------------------------------------------------------------------
# the seed-paper table specs


def quality_columns(datasets: list[tuple[str, str | None, str | None]], metrics: list[tuple[str, str | None]],
                    label_with_level: bool = False) -> tuple[ColumnSpec, ...]:
    """Columns for (dataset, our level, paper split) x (our metric, paper metric)."""
    columns = []
    for dataset, level, paper_split in datasets:
        group = DATASET_NAMES.get(dataset, dataset)
        if label_with_level:
            group = LEVEL_NAMES.get(level or "", level or group)
        for metric, paper_metric in metrics:
            card = QUALITY_METRICS[metric]
            columns.append(ColumnSpec(
                key=f"{dataset}/{level or 'default'}/{metric}", group=group, label=card.label, source="quality",
                dataset=dataset, level=level, metric=metric, higher_is_better=card.higher_is_better,
                decimals=card.decimals, unit=card.unit, paper_split=paper_split, paper_metric=paper_metric))
    return tuple(columns)


def accuracy_column(dataset: str, threshold: int, level: str | None = "*", paper: bool = False) -> ColumnSpec:
    name = DATASET_NAMES.get(dataset, dataset)
    return ColumnSpec(key=f"{dataset}/acc_le_{threshold}px", group=f"accuracy (%) {name}",
                      label=f"≤{threshold} px", source="matching", dataset=dataset, level=level,
                      metric=f"acc_le_{threshold}px", higher_is_better=True, decimals=1, unit="%", ours_scale=100.0,
                      paper_split="val85" if paper else None,
                      paper_metric=f"match_acc_le_{threshold}px" if paper else None)


def cost_columns(conventions: tuple[str, ...], paper: bool, devices: tuple[str | None, ...] = (None,)
                 ) -> tuple[ColumnSpec, ...]:
    columns = []
    for convention in conventions:
        group = f"GMACs ({convention})"
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
    for device in devices:
        name = f" {device}" if device and len(devices) > 1 else ""
        columns.append(ColumnSpec(key=f"latency/{device or 'any'}", group="", label=f"Latency{name} (ms)",
                                  source="cost", dataset="-", metric="latency_ms_median", higher_is_better=False,
                                  decimals=1, unit="ms", device=device,
                                  paper_split="lr128_ref512" if paper else None,
                                  paper_metric="runtime_ms" if paper else None, compare=False))
    return tuple(columns)


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
        "masa2021 convention). The paper's runtime hardware is not stated: no difference is computed for it.",
        None,
        cost_columns(("masa2021",), paper=True),
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
        (ColumnSpec("sintel/psnr_rgb", "Sintel", "PSNR-RGB", "quality", "sintel", "psnr_rgb", True, 2, level="*",
                    unit="dB", paper_split="test552", paper_metric="psnr"),
         ColumnSpec("lf_video/psnr_rgb", "LF video", "PSNR-RGB", "quality", "lf_video", "psnr_rgb", True, 2, level="*",
                    unit="dB", paper_split="test268", paper_metric="psnr")),
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
    """One table per (dataset, matching preset, level); the level is the Sintel pass or the view pair."""
    groups: dict[tuple[str, str, str], set[int]] = {}
    methods: dict[tuple[str, str, str], set[str]] = {}
    for dataset, preset, method, level, metric in values.means:
        match = ACCURACY_METRIC.match(metric)
        if match:
            groups.setdefault((dataset, preset, level), set()).add(int(match.group(1)))
            methods.setdefault((dataset, preset, level), set()).add(method)
    specs = []
    for (dataset, preset, level), thresholds in sorted(groups.items()):
        columns = tuple(accuracy_column(dataset, t, level=level) for t in sorted(thresholds))
        specs.append(TableSpec(
            id=f"matching_{dataset}_{preset}_{level}",
            title=f"Matching accuracy on {DATASET_NAMES.get(dataset, dataset)} ({level}; preset {preset})",
            caption="Fraction (%) of evaluated LR positions whose matched reference position lies within t HR "
                    "pixels of the ground truth (pooled over all positions where the run wrote a pooled value).",
            rows=tuple(sorted(methods[(dataset, preset, level)])), columns=columns, preset=preset, kind="suite"))
    return specs


def cost_spec(values: Values) -> TableSpec | None:
    if not values.cost:
        return None
    settings = sorted({(e.lr_hw, e.ref_hw) for e in values.cost if e.ref_hw != "-"}
                      | {(e.lr_hw, DEFAULT_COST_SETTING[1]) for e in values.cost if e.ref_hw == "-"})
    setting = DEFAULT_COST_SETTING if DEFAULT_COST_SETTING in settings else settings[0]
    conventions = tuple(sorted({e.convention for e in values.cost if e.convention != "-"},
                               key=lambda c: (c != "macs", c)))
    devices = tuple(sorted({e.device for e in values.cost if e.quantity == "latency_ms_median"},
                           key=lambda d: (d != "cuda", d)))
    methods = sorted({e.method for e in values.cost if e.lr_hw == setting[0] and e.ref_hw in (setting[1], "-")})
    return TableSpec(
        id="cost", title="Cost: parameters, FLOPS-M / FLOPS-T (GMACs), latency",
        caption="FLOPS-M = multiply-accumulates of the method's matching part; FLOPS-T = the whole forward. "
                "Latency only compares within one device.",
        rows=tuple(methods), columns=cost_columns(conventions, paper=False, devices=devices or (None,)),
        preset=None, cost_setting=setting, kind="suite")


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


def suite_table_specs(values: Values) -> list[TableSpec]:
    specs: list[TableSpec] = []
    fair = fair_quality_spec(values)
    if fair is not None:
        specs.append(fair)
    specs += robustness_specs(values)
    specs += matching_specs(values)
    cost = cost_spec(values)
    if cost is not None:
        specs.append(cost)
    specs += audit_specs(values)
    return specs


def build_all(results: Results, paper_values: list[PaperValue],
              availability: Availability | None = None) -> list[TableModel]:
    """Suite tables that have data, then every seed-paper table (our cells empty-with-reason where nothing ran)."""
    values = Values(results)
    specs = suite_table_specs(values) + paper_table_specs(paper_values)
    return [build_table(replace(s, id=safe_id(s.id)), results, paper_values, availability, values) for s in specs]
