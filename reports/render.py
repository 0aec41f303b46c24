"""Render table models to one self-contained HTML page and to booktabs LaTeX tabulars (jinja2).

HTML: sortable tables (a few lines of inline JS); plots, crop grids of saved SR images and pictures of matches
as PNG files next to the page (``plots/``, ``visuals/``); the protocol of every table in one line with the
full sentences on demand; a provenance footer. LaTeX: one ``tabular`` per table,
deterministic bytes (no timestamps, fixed number formatting, rows in spec order), special characters escaped.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from typing import Any

import jinja2

from bench.results.records import run_json_dataset
from reports.collect import RANDOM_WEIGHTS_TAG, Results
from reports.plots import PlotFile
from reports.tables import REASON_ABBREVIATIONS, Cell, TableModel
from reports.visuals import CropGrid, MatchPicture

# the demo's match pictures (bench.engines.matching.pictures.ERROR_BANDS_PX), repeated: no matcher import
ERROR_LEGEND = (("#28aa3c", "≤ 1 px"), ("#f59614", "≤ 4 px"), ("#dc2828", "> 4 px or missed"))

TEMPLATES = Path(__file__).resolve().parent / "templates"

# ------------------------------------------------------------------------------------------------
# numbers


def format_number(value: float | None, decimals: int) -> str:
    """Fixed decimals; ``inf`` / ``nan`` spelled out; never ``-0.00``."""
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def format_delta(delta: float | None, decimals: int) -> str:
    """Signed difference, ``+0.45`` / ``-0.12`` (``+0.00`` when it rounds to zero)."""
    if delta is None:
        return ""
    text = format_number(delta, decimals)
    return text if text.startswith(("-", "n", "i")) else "+" + text


# ------------------------------------------------------------------------------------------------
# LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
# non-ASCII characters the tables use, spelled with LaTeX core commands (a minimal preamble loads only booktabs)
_LATEX_UNICODE = {
    "²": r"\textsuperscript{2}", "³": r"\textsuperscript{3}", "ℓ": r"$\ell$", "Δ": r"$\Delta$", "×": r"$\times$",
    "–": "--", "—": "---", "≤": r"$\leq$", "≥": r"$\geq$", "−": "-", "±": r"$\pm$", "α": r"$\alpha$",
    "₁": r"$_1$", "₂": r"$_2$", "₃": r"$_3$", "✓": "yes", "…": r"\ldots{}", "→": r"$\rightarrow$", "µ": r"$\mu$",
}


def latex_escape(text: str) -> str:
    """Escape & % $ # _ { } ~ ^ \\ (and < > |) and spell out non-ASCII characters; anything else non-ASCII is
    transliterated (NFKD) so the tabular compiles under a plain pdflatex preamble."""
    out = []
    for char in text:
        if char in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[char])
        elif char in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[char])
        elif ord(char) < 128:
            out.append(char)
        else:
            ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode("ascii")
            out.append("".join(_LATEX_SPECIAL.get(c, c) for c in ascii_form))
    return "".join(out)


def _latex_number(value: float | None, decimals: int) -> str:
    text = format_number(value, decimals)
    return {"inf": r"$\infty$", "-inf": r"$-\infty$"}.get(text, text)


def latex_cell(cell: Cell, decimals: int) -> str:
    """Ours (bold = best, underlined = second) and, in small type, the paper value (or, in the audit, the
    difference to the baseline row) with Δ; an empty cell shows its reason's abbreviation instead."""
    extra = []
    if cell.paper_text is not None:
        extra.append(latex_escape(cell.paper_text))
    if cell.delta is not None:
        signed = format_delta(cell.delta, decimals)
        extra.append(r"$\Delta$\," + ("$-$" + signed[1:] if signed.startswith("-") else signed))
    small = "(" + "; ".join(extra) + ")" if extra else ""
    if cell.ours is None:
        reason = latex_escape(REASON_ABBREVIATIONS.get(cell.reason or "", "?"))
        return rf"{{\scriptsize {reason}{' ' + small if small else ''}}}"
    main = _latex_number(cell.ours, decimals)
    if cell.rank == 1:
        main = rf"\textbf{{{main}}}"
    elif cell.rank == 2:
        main = rf"\underline{{{main}}}"
    if cell.partial:  # a mean over part of the dataset (or an unfinished run): said in the cell itself
        main += rf"\textsuperscript{{{latex_escape(cell.partial)}}}"
    return main + (rf" {{\scriptsize {small}}}" if small else "")


def render_latex(model: TableModel) -> str:
    """One booktabs tabular; bytes depend only on the model."""
    spec = model.spec
    has_groups = model.has_groups()
    lead = 2 if has_groups else 1
    column_groups = [c.group for c in spec.columns]
    spans = column_spans(model)
    rules = []
    position = lead + 1
    for group, width in spans:
        if group:
            rules.append((position, position + width - 1))
        position += width
    header_top = None
    if any(column_groups):
        tops = []
        for group, width in spans:
            if not group:
                tops += [""] * width
            else:
                text = latex_escape(group)
                tops.append(rf"\multicolumn{{{width}}}{{c}}{{{text}}}" if width > 1 else text)
        header_top = " & ".join([""] * lead + tops)
    first_header = (["Group"] if has_groups else []) + ["Preset" if spec.row_kind == "preset" else "Method"]
    header = " & ".join(first_header + [latex_escape(c.label) for c in spec.columns])
    body: list[str] = []
    previous_group = None
    for row in model.rows:
        if has_groups and previous_group is not None and row.group != previous_group:
            body.append(r"\midrule")
        group_cell = [latex_escape(row.group) if row.group != previous_group else ""] if has_groups else []
        previous_group = row.group
        cells = [latex_cell(cell, column.decimals)
                 for cell, column in zip(row.cells, spec.columns, strict=True)]
        body.append(" & ".join(group_cell + [latex_escape(row.label)] + cells) + r" \\")
    used = sorted({c.reason for row in model.rows for c in row.cells if c.reason},
                  key=lambda r: list(REASON_ABBREVIATIONS).index(r) if r in REASON_ABBREVIATIONS else 99)
    legend = ["ours"]
    if spec.mark_best:
        legend += [r"\textbf{best}", r"\underline{second}"]
    if any(c.paper_text is not None for row in model.rows for c in row.cells):
        legend.append(r"(paper value; $\Delta$ = ours $-$ paper)")
    if any(c.partial for row in model.rows for c in row.cells):
        legend.append(r"$^{k/n}$ = partial: mean of $k$ of the dataset's $n$ images (or an unfinished run); "
                      r"no $\Delta$ to the paper for it")
    if model.compare_label != "paper":
        legend.append(rf"($\Delta$ = row $-$ {latex_escape(model.compare_label)})")
    legend += [f"{latex_escape(REASON_ABBREVIATIONS.get(r, '?'))} = {latex_escape(r)}" for r in used]
    return _environment(latex=True).get_template("table.tex.j2").render(
        table_id=latex_escape(spec.id), title=latex_escape(spec.title),
        column_spec="l" * lead + "r" * len(spec.columns),
        header_top=header_top, rules=rules, header=header, body=body, total_columns=lead + len(spec.columns),
        legend="; ".join(legend),
    )


# ------------------------------------------------------------------------------------------------
# HTML


def _environment(latex: bool = False) -> jinja2.Environment:
    if latex:
        # LaTeX braces clash with jinja's defaults: use ((* *)) / ((( ))) delimiters, no autoescape.
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined, autoescape=False,
            block_start_string="((*", block_end_string="*))", variable_start_string="(((",
            variable_end_string=")))", comment_start_string="((#", comment_end_string="#))",
            keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def html_table(model: TableModel) -> dict[str, Any]:
    """Plain data for the HTML template (all strings already formatted; jinja escapes them)."""
    spec = model.spec
    rows = []
    for row in model.rows:
        cells = []
        for cell, column in zip(row.cells, spec.columns, strict=True):
            ours = format_number(cell.ours, column.decimals) if cell.ours is not None else ""
            classes = ["best" if cell.rank == 1 else "second" if cell.rank == 2 else "", "" if ours else "missing"]
            title = []
            if cell.partial:
                title.append(f"partial ({cell.partial}): not the full dataset, so no Δ to the paper")
            if cell.count:
                title.append(f"mean of {cell.count} images")
            if cell.note:
                title.append(cell.note)
            cells.append({
                "sort": _sort_value(cell.ours),
                "ours": ours, "reason": short_reason(cell.reason), "reason_full": cell.reason or "",
                "partial": cell.partial,
                "paper": cell.paper_text or "",
                "delta": format_delta(cell.delta, column.decimals), "classes": " ".join(c for c in classes if c),
                "title": "; ".join(title),
            })
        rows.append({"label": row.label, "key": row.key, "group": row.group, "cells": cells})
    return {
        "id": spec.id, "title": spec.title, "caption": spec.caption, "sentences": list(model.sentences),
        "protocol_line": protocol_summary(list(model.sentences)),
        "paper_table": spec.paper_table or "", "kind": spec.kind, "has_groups": model.has_groups(),
        "row_header": "Preset" if spec.row_kind == "preset" else "Method",
        "columns": [{"group": c.group, "label": c.label, "unit": c.unit,
                     "direction": "higher is better" if c.higher_is_better else "lower is better"}
                    for c in spec.columns],
        "compare_label": model.compare_label, "rows": rows, "spans": column_spans(model),
        "show_spans": any(c.group for c in spec.columns),
    }


def short_reason(reason: str | None) -> str:
    """What an empty HTML cell shows (the full reason is its tooltip): the part before a colon or bracket,
    e.g. "no weights" for "no weights: official weights not installed"."""
    if not reason:
        return ""
    return reason.split(":", 1)[0].split(" (", 1)[0]


def column_spans(model: TableModel) -> list[tuple[str, int]]:
    """Runs of equal column groups: (group text, number of columns)."""
    spans: list[tuple[str, int]] = []
    for column in model.spec.columns:
        if spans and spans[-1][0] == column.group:
            spans[-1] = (column.group, spans[-1][1] + 1)
        else:
            spans.append((column.group, 1))
    return spans


def _sort_value(value: float | None) -> str:
    """What the inline JS sorts by (``Number()`` parses it; empty sorts last)."""
    if value is None or math.isnan(value):
        return ""
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def provenance(results: Results) -> list[dict[str, Any]]:
    """Per run: git sha, versions, device, weights sha256 (from run.json)."""
    out = []
    for run in results.runs:
        for run_json in run.run_json.get("runs") or [run.run_json]:
            environment = run_json.get("environment", {}) or {}
            versions = {k: environment[k] for k in ("python", "torch", "torchvision", "numpy", "pillow",
                                                    "scikit_image", "fvcore", "cuda", "cudnn") if environment.get(k)}
            weights = []
            for method in run_json.get("methods", []) if isinstance(run_json.get("methods"), list) else []:
                if not isinstance(method, dict):
                    continue  # a plain list of names (matching runs): no weights to list
                if RANDOM_WEIGHTS_TAG in str(method.get("record_name", "")):
                    continue  # never rendered, not even in the footer
                released = method.get("released_outputs")
                if isinstance(released, dict):  # a `run --outputs` row: the folder stands in for weights
                    weights.append({"method": method.get("record_name", ""),
                                    "file": f"released outputs: {released.get('folder', '?')} "
                                            f"({released.get('files', '?')} files, {released.get('pattern', '')})",
                                    "sha256": released.get("sha256_of_list", "")})
                for weight in method.get("weights", []):
                    weights.append({"method": method.get("record_name", ""), "file": weight.get("file", ""),
                                    "sha256": weight.get("sha256") or "not installed"})
            out.append({
                "run": run.label, "kind": run.kind, "run_id": run_json.get("run_id", ""),
                "dataset": run_json_dataset(run_json),
                "preset": (run_json.get("protocol_spec") or {}).get("name", ""),
                "git_sha": environment.get("git_sha", "unknown"),
                "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
                "device": environment.get("device_name") or environment.get("device") or "unknown",
                "weights": weights,
                "verification": run.verification,
            })
    return out


def protocol_summary(sentences: list[str], limit: int = 110) -> str:
    """One line for a table's protocol: the first sentence's start, and how many more there are."""
    if not sentences:
        return ""
    first = sentences[0]
    short = first if len(first) <= limit else first[:limit].rsplit(" ", 1)[0] + " …"
    more = len(sentences) - 1
    return short + (f" (+{more} more)" if more else "")


def render_html(models: list[TableModel], plots: list[PlotFile], results: Results, *, title: str,
                out_dir: Path, grids: list[CropGrid] | None = None,
                matches: list[MatchPicture] | None = None, notes: list[tuple[str, str | None]] | None = None) -> str:
    """The page; ``out_dir`` is where it is written (plots are linked relative to it). Plots are shown at their
    own pixel size (narrower only in a narrower window); ``notes`` are (text, link or None) lines under the title."""
    from PIL import Image

    tables = [html_table(m) for m in models]

    def plot_entry(plot: PlotFile) -> dict[str, Any]:
        with Image.open(plot.png) as image:
            width, height = image.size
        return {"stem": plot.stem, "title": plot.title, "caption": plot.caption, "width": width, "height": height,
                "src": plot.png.resolve().relative_to(out_dir.resolve()).as_posix()}

    return _environment().get_template("report.html.j2").render(
        title=title, tables=tables, notes=[{"text": t, "href": h} for t, h in notes or []],
        plots=[plot_entry(p) for p in plots],
        grids=grids or [], matches=matches or [], error_bands=ERROR_LEGEND,
        runs=provenance(results), warnings=list(results.warnings),
        n_records=len(results.records), n_cost=len(results.cost), dropped=results.dropped_random_weight_records,
        reasons=[{"short": short, "text": text} for text, short in REASON_ABBREVIATIONS.items()],
    )
