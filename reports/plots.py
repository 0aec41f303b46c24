"""Report plots (matplotlib, Agg): PSNR vs CUFED5 similarity level, matching accuracy vs threshold, PSNR vs
GMACs, and cost vs reference size. Each plot is written as PNG and SVG with fixed metadata and a fixed SVG
hash salt, so the same records give the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.figure import Figure  # noqa: E402

from reports.collect import CostRow, Mean, MeanKey  # noqa: E402
from reports.tables import (  # noqa: E402
    ACCURACY_METRIC,
    DATASET_NAMES,
    DEFAULT_COST_SETTING,
    LATENCY,
    LEVEL_NAMES,
    SUITE_PRESET,
    default_reference,
    safe_id,
)

# Fixed hash salt: matplotlib otherwise derives SVG element ids from a random salt.
RC_PARAMS: dict[str, Any] = {"svg.hashsalt": "refsr-bench", "svg.fonttype": "path", "font.size": 8.0, "axes.grid": True,
             "grid.alpha": 0.3}
PNG_DPI = 110
LEGEND_PT = 8.0  # the smallest text of a plot: 12 px at PNG_DPI; the HTML page shows plots at their own size


def _style() -> Any:
    """The report's fixed matplotlib settings (deterministic SVG ids)."""
    return plt.rc_context(RC_PARAMS)  # type: ignore[arg-type]  # matplotlib types the keys as literals


@dataclass(frozen=True)
class PlotFile:
    stem: str
    title: str
    caption: str
    png: Path
    svg: Path


def save_figure(fig: Figure, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg`` without timestamps or software tags; close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    with _style():
        fig.savefig(png, dpi=PNG_DPI, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return png, svg


def _figure(width_in: float = 5.0, height_in: float = 3.4) -> tuple[Figure, plt.Axes]:
    with _style():
        fig, axis = plt.subplots(figsize=(width_in, height_in))
    return fig, axis


def psnr_vs_level(values: dict[MeanKey, Mean], preset: str) -> Figure | None:
    """PSNR (dB) against CUFED5 reference level XH..XL, one line per method (records of ``preset``)."""
    metric = next((m for m in ("psnr_y", "psnr_rgb")
                   if any(k[0] == "cufed5" and k[1] == preset and k[4] == m and k[3] in LEVEL_NAMES for k in values)),
                  None)
    if metric is None:
        return None
    levels = list(LEVEL_NAMES)
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (dataset, key_preset, method, level, key_metric), mean in sorted(values.items()):
        if dataset == "cufed5" and key_preset == preset and key_metric == metric and level in LEVEL_NAMES:
            lines[method].append((levels.index(level), mean.value))
    with _style():
        fig, axis = _figure()
        for method in sorted(lines):
            points = sorted(lines[method])
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        axis.set_xticks(range(len(levels)), [LEVEL_NAMES[lv] for lv in levels])
        axis.set_xlabel("CUFED5 reference similarity (XH = most similar)")
        axis.set_ylabel(f"{'PSNR-Y' if metric == 'psnr_y' else 'PSNR-RGB'} [dB]")
        axis.set_title(f"Robustness to reference similarity (preset {preset})")
        axis.legend(fontsize=LEGEND_PT)
        fig.tight_layout()
    return fig


def matching_accuracy(values: dict[MeanKey, Mean], dataset: str, preset: str, reference: str) -> Figure | None:
    """Accuracy (%) against the threshold t (HR pixels), one line per matcher (one pass / view pair)."""
    lines: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for (key_dataset, key_preset, method, key_reference, metric), mean in sorted(values.items()):
        match = ACCURACY_METRIC.match(metric)
        if match and (key_dataset, key_preset, key_reference) == (dataset, preset, reference):
            lines[method].append((int(match.group(1)), 100.0 * mean.value))
    if not lines:
        return None
    with _style():
        fig, axis = _figure()
        for method in sorted(lines):
            points = sorted(lines[method])
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        axis.set_xlabel("threshold t [HR pixels]")
        axis.set_ylabel("positions matched within t [%]")
        axis.set_ylim(0, 100)
        axis.set_title(f"Matching accuracy on {DATASET_NAMES.get(dataset, dataset)}\n({reference}; preset {preset})")
        axis.legend(fontsize=LEGEND_PT)
        fig.tight_layout()
    return fig


def psnr_vs_gmacs(values: dict[MeanKey, Mean], cost: list[CostRow], dataset: str,
                  preset: str = SUITE_PRESET) -> Figure | None:
    """PSNR (dataset mean, ``preset``'s default reference policy) against FLOPS-T at the default cost setting."""
    reference = default_reference(preset, dataset)
    conventions = sorted({e.convention for e in cost if e.quantity == "flops_t"}, key=lambda c: (c != "macs", c))
    if not conventions:
        return None
    convention = conventions[0]
    gmacs = {e.method: e.value for e in cost
             if e.quantity == "flops_t" and e.convention == convention and e.lr_hw == DEFAULT_COST_SETTING[0]
             and e.ref_hw in (DEFAULT_COST_SETTING[1], "-")}
    points = []
    for (key_dataset, key_preset, method, key_reference, metric), mean in sorted(values.items()):
        wanted = (key_dataset, key_preset, key_reference, metric) == (dataset, preset, reference, "psnr_y")
        if wanted and method in gmacs:
            points.append((method, gmacs[method], mean.value))
    omitted = sorted(method for method, x, _ in points if x <= 0)  # no MACs to place on a log axis (bicubic)
    points = [p for p in points if p[1] > 0]
    if not points:
        return None
    with _style():
        fig, axis = _figure()
        if omitted:
            axis.text(0.01, 0.01, "not shown (0 GMACs): " + ", ".join(omitted), transform=axis.transAxes,
                      fontsize=LEGEND_PT)
        for method, x, y in points:
            axis.scatter([x], [y], label=method)
            axis.annotate(method, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=LEGEND_PT)
        axis.set_xscale("log")
        axis.ticklabel_format(axis="y", useOffset=False)  # plain dB values, no "+2.53e1" offset
        low, high = min(p[2] for p in points), max(p[2] for p in points)
        if high - low < 1.0:  # near-equal values (bicubic variants): a 1 dB window, not a magnified noise axis
            axis.set_ylim((low + high) / 2 - 0.5, (low + high) / 2 + 0.5)
        axis.set_xlabel(f"FLOPS-T [GMACs, {convention}], LR {DEFAULT_COST_SETTING[0]}, Ref {DEFAULT_COST_SETTING[1]}")
        axis.set_ylabel("PSNR-Y [dB]")
        axis.set_title(f"Quality vs cost on {DATASET_NAMES.get(dataset, dataset)} (preset {preset})")
        fig.tight_layout()
    return fig


# one (colour, marker) pair per method: tab20's dark shades, then its light ones; 13 markers -> 260 distinct pairs
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d")
LINE_STYLES = ("-", "--", ":", "-.")  # one per LR size within a plot


def method_styles(methods: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A distinct (hex colour, marker) per method, in sorted order (deterministic for a given set)."""
    from matplotlib.colors import to_hex

    palette = plt.get_cmap("tab20").colors  # type: ignore[attr-defined]
    colours = [to_hex(c) for c in palette[0::2] + palette[1::2]]
    return {m: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, m in enumerate(sorted(set(methods)))}


def legend_outside(fig: Figure, axes: Sequence[plt.Axes]) -> None:
    """One legend for the whole figure, right of the axes (never over data): every distinct label once, in as
    many columns as the figure's height needs. The figure must use the constrained layout, which makes room."""
    handles, labels = [], []
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if not labels:
        return
    per_column = max(1, int(fig.get_size_inches()[1] * 72 / (LEGEND_PT * 1.9)) - 1)  # 1.9 lines: marker + gap
    fig.legend(handles, labels, loc="outside right center", fontsize=LEGEND_PT, frameon=False,
               ncols=-(-len(labels) // per_column))


def cost_vs_ref_size(cost: list[CostRow]) -> Figure | None:
    """FLOPS-T and latency against the reference side length: one line per (method, LR size), measured at
    several reference sizes; one latency panel per device (and thread count), so no line mixes LR sizes or
    devices. Colour + marker name the method, the line style the LR size; the legend sits right of the axes."""
    def side(entry: CostRow) -> int:
        return int(entry.ref_hw.split("x")[0])

    sized = [e for e in cost if e.part == "total" and e.ref_hw != "-"]
    swept = sorted({(e.method, e.lr_hw) for e in sized
                    if len({x.ref_hw for x in sized if (x.method, x.lr_hw) == (e.method, e.lr_hw)}) > 1})
    if not swept:
        return None
    conventions = sorted({e.convention for e in sized if e.quantity == "flops_t"}, key=lambda c: (c != "macs", c))
    panels: list[tuple[str, str, str | None, str]] = []
    if conventions:
        panels.append(("flops_t", conventions[0], None, f"FLOPS-T [GMACs, {conventions[0]}]"))
    for label in sorted({e.device_label for e in sized if e.quantity == LATENCY and (e.method, e.lr_hw) in swept}):
        panels.append((LATENCY, "-", label, "latency median [ms]"))
    if not panels:
        return None
    styles = method_styles([m for m, _ in swept])
    lr_sizes = sorted({lr for _, lr in swept}, key=lambda t: tuple(int(v) for v in t.split("x")))
    columns = min(2, len(panels))  # at most two panels side by side: the PNG stays under the page width
    rows = -(-len(panels) // columns)
    with _style():
        fig, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows + 0.4), squeeze=False,
                                 layout="constrained")
        axes = [axis for row in grid for axis in row]
        for extra in axes[len(panels):]:
            extra.remove()
        axes = axes[:len(panels)]
        for axis, (quantity, convention, device, label) in zip(axes, panels, strict=True):
            for method, lr in swept:
                values: dict[int, float] = {}
                for e in sized:  # the first value per reference size (runs are read in sorted order)
                    if (e.method, e.lr_hw, e.quantity, e.convention) == (method, lr, quantity, convention) and (
                            device is None or e.device_label == device):
                        values.setdefault(side(e), e.value)
                if not values:
                    continue
                colour, marker = styles[method]
                sides = sorted(values)
                axis.plot(sides, [values[x] for x in sides], color=colour, marker=marker,
                          linestyle=LINE_STYLES[lr_sizes.index(lr) % len(LINE_STYLES)],
                          label=f"{method}, LR {lr.replace('x', '×')}", gid=f"{method}|{lr}")
            sides_seen = sorted({side(e) for e in sized if (e.method, e.lr_hw) in swept})
            axis.set_xscale("log", base=2)
            axis.set_xticks(sides_seen, [str(x) for x in sides_seen])
            axis.minorticks_off()
            axis.set_yscale("log")
            axis.set_xlabel("reference side [px]")
            axis.set_ylabel(label)
            axis.set_title(device or "FLOPS-T (same on every device)")
        fig.suptitle("Cost vs reference size (one line per method and LR size)", fontsize=10)
        legend_outside(fig, axes)
    return fig


def make_plots(values: dict[MeanKey, Mean], cost: list[CostRow], out_dir: Path) -> list[PlotFile]:
    """Every plot the data supports, written under ``out_dir``; sorted, deterministic file names."""
    written: list[PlotFile] = []

    def keep(fig: Figure | None, stem: str, title: str, caption: str) -> None:
        if fig is not None:
            png, svg = save_figure(fig, out_dir, stem)
            written.append(PlotFile(stem, title, caption, png, svg))

    presets = sorted({k[1] for k in values if k[0] == "cufed5" and k[3] in LEVEL_NAMES})
    for preset in sorted(presets, key=lambda p: (p != SUITE_PRESET, p)):
        keep(psnr_vs_level(values, preset), safe_id(f"psnr_vs_level_{preset}"), f"PSNR vs similarity level ({preset})",
             "Mean PSNR on CUFED5 with each single reference level.")
    for dataset, preset, reference in sorted({(k[0], k[1], k[3]) for k in values if ACCURACY_METRIC.match(k[4])}):
        keep(matching_accuracy(values, dataset, preset, reference),
             safe_id(f"matching_{dataset}_{preset}_{reference}"),
             f"Matching accuracy vs threshold ({dataset}, {reference}, {preset})",
             "Fraction of positions whose match lies within t HR pixels of the ground truth.")
    for dataset in sorted({k[0] for k in values if k[1] == SUITE_PRESET and k[4] == "psnr_y"}):
        keep(psnr_vs_gmacs(values, cost, dataset), safe_id(f"psnr_vs_gmacs_{dataset}"), f"PSNR vs GMACs ({dataset})",
             "Dataset-mean PSNR-Y under refsr against FLOPS-T at LR 128², Ref 512².")
    keep(cost_vs_ref_size(cost), "cost_vs_ref_size", "Cost vs reference size",
         "FLOPS-T and latency (one panel per device) for methods measured at several reference sizes; one line "
         "per method and LR size.")
    return written
