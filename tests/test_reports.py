"""Reports: cell / Δ / best-marking logic, and rendering of the committed results fixture.

tests/data/report_fixture/ holds hand-written run folders (records.csv + run.json, cost.csv + run.json) whose
values only drive rendering; expected_tex/ holds the LaTeX the report must produce from them, byte for byte.
After an intended change of the LaTeX output, review and rewrite those files explicitly with
``python tests/test_reports.py --write-expected`` (tests never write tracked files themselves).
The pdflatex and Chromium checks skip when the tool is missing, except under CI=true where they fail.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.results.records import Record
from protocols.core import UserError
from protocols.datasets import DATASETS
from reports.collect import POOLED_IMAGE, Results, collect, means
from reports.paper_values import PaperValue, load_paper_values
from reports.render import format_delta, format_number, latex_cell, latex_escape
from reports.tables import (
    REASON_NO_DATASET,
    REASON_NO_MATCHING,
    REASON_NO_WEIGHTS,
    REASON_NOT_COMPUTED,
    REASON_NOT_IN_SUITE,
    REASON_NOT_RUN,
    Availability,
    ColumnSpec,
    TableSpec,
    build_table,
    make_cell,
    mark_ranks,
)

FIXTURE = Path(__file__).resolve().parent / "data" / "report_fixture"
EXPECTED_TEX = FIXTURE / "expected_tex"

# A fixed stand-in for this installation, so the expected LaTeX does not depend on installed weights/data.
SUITE_METHODS = {"bicubic", "carn_m", "masa_rec", "masa_gan", "ttsr_rec", "ttsr_gan", "srntt", "srntt_rec",
                 "c2_matching_rec", "c2_matching_gan", "crossnet", "ssen", "ssen_self", "ssen_baseline", "e2ent2",
                 "refsr_net", "zncc", "zncc_blurry", "patchmatch", "dense_sift", "dense_sift_blurry"}
NO_WEIGHTS = {"masa_gan", "ttsr_gan", "srntt", "srntt_rec", "c2_matching_rec", "c2_matching_gan"}
DATASETS_PRESENT = {"cufed5", "urban100", "sintel"}


def _method_problem(method_id: str) -> str | None:
    if method_id not in SUITE_METHODS:
        return REASON_NOT_IN_SUITE
    return REASON_NO_WEIGHTS if method_id in NO_WEIGHTS else None


STUB = Availability(_method_problem, lambda d: None if d in DATASETS_PRESENT else REASON_NO_DATASET)


# ------------------------------------------------------------------------------------------------
# unit tests: cells, Δ, ranks, formatting


def _paper(value_text: str, method: str = "m") -> PaperValue:
    return PaperValue("P", "P T1", method, method, "cufed5", "XH", "psnr", value_text, "dB", "x", "", "")


def test_cell_delta_is_ours_minus_paper() -> None:
    cell = make_cell(27.50, _paper("27.54"), compare=True, reason=None)
    assert cell.delta == pytest.approx(27.50 - 27.54)
    assert cell.paper_text == "27.54" and cell.reason is None
    assert make_cell(27.50, _paper("27.54"), compare=False, reason=None).delta is None  # other hardware
    empty = make_cell(None, _paper("27.54"), compare=True, reason=REASON_NO_WEIGHTS)
    assert empty.delta is None and empty.paper_text == "27.54" and empty.reason == REASON_NO_WEIGHTS
    assert make_cell(None, None, compare=True, reason=None).reason == REASON_NOT_RUN  # never blank
    assert make_cell(1.0, None, compare=True, reason=None).delta is None


def test_mark_ranks_follows_direction_and_shares_ties() -> None:
    assert mark_ranks([27.1, 27.5, 26.0], higher_is_better=True) == [2, 1, 0]
    assert mark_ranks([27.1, 27.5, 26.0], higher_is_better=False) == [2, 0, 1]  # e.g. GMACs, latency
    assert mark_ranks([26.3, 26.3, 24.2, 24.2], higher_is_better=True) == [1, 1, 2, 2]
    assert mark_ranks([None, 3.0, float("nan"), 1.0], higher_is_better=True) == [0, 1, 0, 2]
    assert mark_ranks([5.0, None], higher_is_better=True) == [0, 0]  # one value: nothing to compare
    assert mark_ranks([math.inf, 40.0, 30.0], higher_is_better=True) == [1, 2, 0]  # identical images: PSNR inf


def test_marks_are_tie_aware_at_the_displayed_precision() -> None:
    """Three rows printed 28.89 share the best mark (issue 15: they got bold / underline / plain)."""
    values = [28.8912, 28.8868, 28.8949, 28.5]
    assert [f"{v:.2f}" for v in values[:3]] == ["28.89"] * 3
    assert mark_ranks(values, higher_is_better=True) == [2, 0, 1, 0]  # raw values: no tie
    assert mark_ranks(values, higher_is_better=True, decimals=2) == [1, 1, 1, 2]
    records = _records([("set14", "sisr_std", m, "self_lr", "000", "psnr_y", v)
                        for m, v in zip(("bicubic", "bicubic_matlab", "bicubic_matlab_u8", "carn_m"), values,
                                        strict=True)])
    column = ColumnSpec("set14/psnr", "Set14", "PSNR-Y", "quality", "set14", "psnr_y", True, 2, reference="self_lr")
    spec = TableSpec("t", "T", "", ("bicubic", "bicubic_matlab", "bicubic_matlab_u8", "carn_m"), (column,),
                     "sisr_std")
    model = build_table(spec, Results(records=records), [])
    assert [row.cells[0].rank for row in model.rows] == [1, 1, 1, 2]
    # one image of Set14's 14: marked partial in the cell (issue 21)
    assert [latex_cell(row.cells[0], 2) for row in model.rows][:3] == [r"\textbf{28.89}\textsuperscript{1/14}"] * 3


def test_number_formatting() -> None:
    assert format_number(27.545, 2) in ("27.55", "27.54")  # binary rounding of the float itself
    assert format_number(-0.001, 2) == "0.00"
    assert format_delta(-0.001, 2) == "+0.00"
    assert format_delta(-0.04, 2) == "-0.04"
    assert format_delta(0.3, 3) == "+0.300"
    assert format_number(math.inf, 2) == "inf"


def test_latex_escape_specials() -> None:
    assert latex_escape("a&b%c$d#e_f{g}h~i^j\\k") == (
        r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k")
    assert latex_escape("E2ENT² ≤1 px ℓ2 Δ") == r"E2ENT\textsuperscript{2} $\leq$1 px $\ell$2 $\Delta$"
    assert latex_escape("é").isascii()


def _records(rows: list[tuple[str, str, str, str, str, str, float]]) -> list[Record]:
    return [Record("r", *row) for row in rows]


def test_build_table_cells_reasons_and_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    # a two-image CUFED5 stand-in, so that the two-image means below are complete (Δ to the paper shown)
    monkeypatch.setitem(DATASETS, "cufed5", dataclasses.replace(DATASETS["cufed5"], image_count=2))
    records = _records([
        ("cufed5", "refsr", "a", "level:1", "000", "psnr_y", 27.0),
        ("cufed5", "refsr", "a", "level:1", "001", "psnr_y", 28.0),
        ("cufed5", "refsr", "b", "level:1", "000", "psnr_y", 26.0),
        ("cufed5", "refsr", "b", "level:1", "001", "psnr_y", 26.5),
        ("cufed5", "refsr", "c", "level:1", "000", "psnr_y", 25.0),
        ("cufed5", "refsr", "a", "level:2", "000", "psnr_y", 99.0),  # another level: must not leak in
        ("cufed5", "masa2021", "b", "level:1", "000", "psnr_y", 99.0),  # another preset: must not leak in
    ])
    column = ColumnSpec("cufed5/psnr", "CUFED5", "PSNR-Y", "quality", "cufed5", "psnr_y", True, 2,
                        reference="level:1", paper_split="XH", paper_metric="psnr")
    spec = TableSpec("t", "T", "", ("a", "b", "c", "w", "x", "d"), (column,), "refsr", paper_table="P T1")
    paper = [_paper("27.00", "a"), _paper("25.00", "x")]
    availability = Availability(
        lambda m: {"x": REASON_NOT_IN_SUITE, "w": REASON_NO_WEIGHTS}.get(m),
        lambda d: None)
    model = build_table(spec, Results(records=records), paper, availability)
    cells = {row.key: row.cells[0] for row in model.rows}
    assert cells["a"].ours == pytest.approx(statistics.mean([27.0, 28.0]))
    assert cells["a"].delta == pytest.approx(statistics.mean([27.0, 28.0]) - 27.00)
    assert cells["a"].count == 2 and cells["a"].rank == 1
    assert cells["b"].ours == pytest.approx(26.25) and cells["b"].rank == 2 and cells["b"].delta is None
    assert cells["c"].rank == 0
    assert cells["w"].ours is None and cells["w"].reason == REASON_NO_WEIGHTS
    assert cells["x"].reason == REASON_NOT_IN_SUITE and cells["x"].paper_text == "25.00"
    assert cells["d"].reason == REASON_NOT_RUN
    # the dataset is missing here, but records of it were read: "no data" would contradict the values beside it
    no_data = build_table(spec, Results(records=records), paper,
                          Availability(lambda m: None, lambda d: REASON_NO_DATASET))
    assert {row.key: row.cells[0].reason for row in no_data.rows}["d"] == REASON_NOT_RUN
    # no record of the dataset anywhere: the reason is the missing data
    other = replace(column, key="sun80/psnr", dataset="sun80")
    no_data = build_table(replace(spec, columns=(column, other)), Results(records=records), paper,
                          Availability(lambda m: None, lambda d: REASON_NO_DATASET))
    assert {row.key: row.cells[1].reason for row in no_data.rows}["d"] == REASON_NO_DATASET


def test_lower_is_better_cost_column_and_pooled_matching() -> None:
    from reports.collect import CostRow

    cost = [CostRow(m, "total", "flops_t", v, "GMACs", "128x128", "512x512", "cpu", "macs", "run")
            for m, v in (("a", 300.0), ("b", 10.0), ("c", 50.0))]
    cost.append(CostRow("d", "total", "params", 5.0, "params", "128x128", "512x512", "cpu", "-", "run"))
    column = ColumnSpec("ft", "", "FLOPS-T", "cost", "-", "flops_t", False, 2, convention="macs")
    model = build_table(TableSpec("c", "C", "", ("a", "b", "c", "d"), (column,), None), Results(cost=cost), [])
    assert [row.cells[0].rank for row in model.rows] == [0, 1, 2, 0]
    assert model.rows[3].cells[0].reason == REASON_NOT_COMPUTED  # d has cost rows, not this quantity
    flops_m = ColumnSpec("fm", "", "FLOPS-M", "cost", "-", "flops_m", False, 2, part="matching", convention="macs")
    model = build_table(TableSpec("c", "C", "", ("a",), (flops_m,), None), Results(cost=cost), [])
    assert model.rows[0].cells[0].reason == REASON_NO_MATCHING

    records = _records([("sintel", "p", "z", "clean", "f1", "acc_le_0px", 0.2),
                        ("sintel", "p", "z", "clean", "f2", "acc_le_0px", 0.4),
                        ("sintel", "p", "z", "clean", POOLED_IMAGE, "acc_le_0px", 0.25)])
    accuracy = ColumnSpec("a0", "", "≤0", "matching", "sintel", "acc_le_0px", True, 1, reference="*", ours_scale=100.0)
    model = build_table(TableSpec("m", "M", "", ("z",), (accuracy,), None), Results(records=records), [])
    assert model.rows[0].cells[0].ours == pytest.approx(25.0)  # the pooled value, not the frame mean (30)


def test_audit_delta_against_refsr() -> None:
    records = _records([("cufed5", "refsr", "m", "level:1", "000", "psnr_y", 24.0),
                        ("cufed5", "masa2021", "m", "stitch5_masa", "000", "psnr_y", 24.5),
                        ("cufed5", "masa2021", "m", "stitch5_masa", "000", "ssim_y", 0.7)])
    columns = (ColumnSpec("p", "", "PSNR", "quality", "cufed5", "psnr_y", True, 3),
               ColumnSpec("s", "", "SSIM", "quality", "cufed5", "ssim_y", True, 4))
    spec = TableSpec("a", "A", "", ("refsr", "masa2021"), columns, None, row_kind="preset", method="m",
                     baseline_row="refsr", mark_best=False)
    model = build_table(spec, Results(records=records), [])
    refsr, masa = model.rows
    assert refsr.cells[0].ours == 24.0 and refsr.cells[0].delta is None
    assert masa.cells[0].delta == pytest.approx(0.5)
    assert refsr.cells[1].reason == REASON_NOT_COMPUTED  # refsr ran, without ssim_y
    assert all(c.rank == 0 for row in model.rows for c in row.cells)


def test_collect_drops_random_weights_and_reads_cost() -> None:
    results = collect([FIXTURE])
    assert not any("[random-weights]" in r.method for r in results.records)
    assert results.dropped_random_weight_records == 4
    assert {e.method for e in results.cost} == {"bicubic", "masa_rec", "ttsr_rec"}
    reading = "import sys, reports.collect; print(sorted({'torch', 'fvcore'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", reading], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    assert imported == "[]"  # the cost.csv format (bench.results.cost_csv) is shared without pulling in torch
    with pytest.raises(UserError, match="results folder not found"):
        collect([FIXTURE / "missing"])


# ------------------------------------------------------------------------------------------------
# rendering the committed fixture


def _write_saved_images(run: Path) -> None:
    rng = np.random.default_rng(0)
    for method in ("bicubic", "masa_rec", "carn_m[random-weights]"):
        folder = run / "images" / method / "level_1"
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "000.png")


def _render(out: Path, results_root: Path) -> Path:
    from reports.page import render_report

    return render_report([results_root], out, availability=STUB)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results") / "report_fixture"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("expected_tex"))
    _write_saved_images(root / "cufed5_refsr")
    out = tmp_path_factory.mktemp("report")
    index = _render(out, root)
    assert index == out / "index.html"
    return out


def test_latex_matches_committed_bytes(rendered: Path) -> None:
    written = sorted(p.name for p in (rendered / "tables").glob("*.tex"))
    expected = sorted(p.name for p in EXPECTED_TEX.glob("*.tex"))
    assert written == expected
    for name in expected:
        assert (rendered / "tables" / name).read_bytes() == (EXPECTED_TEX / name).read_bytes(), name


def _fixture_mean(folder: str, method: str, level: str, metric: str) -> float:
    with open(FIXTURE / folder / "records.csv", newline="") as handle:
        values = [float(r["value"]) for r in csv.DictReader(handle)
                  if (r["method"], r["reference"], r["metric"]) == (method, level, metric) and r["image"] != "ALL"]
    return sum(values) / len(values)


def _tex_row(table: str, label: str, rendered: Path) -> list[str]:
    """The value cells of the row labelled ``label`` (after the group and label columns)."""
    for line in (rendered / "tables" / f"{table}.tex").read_text().splitlines():
        cells = [c.strip() for c in line.removesuffix(r"\\").split(" & ")]
        for position in (0, 1):
            if len(cells) > position and cells[position] == label:
                return cells[position + 1:]
    raise AssertionError(f"row {label} not in {table}")


def test_values_in_the_tables_are_the_record_means(rendered: Path) -> None:
    """Independent of the expected bytes: means computed here from the fixture CSV appear in the cells."""
    row = _tex_row("robustness_cufed5_refsr", r"masa\_rec", rendered)
    for k in range(1, 6):
        psnr = _fixture_mean("cufed5_refsr", "masa_rec", f"level:{k}", "psnr_y")
        assert f"{psnr:.2f}" in row[2 * (k - 1)]
    row = _tex_row("masa_t1", "MASA-rec", rendered)
    psnr = _fixture_mean("cufed5_masa2021", "masa_rec", "stitch5_masa", "psnr_y")
    # the fixture holds 2 of CUFED5's 126 images: marked partial, the paper value shown without a Δ (issue 21)
    assert row[0] == rf"{psnr:.2f}\textsuperscript{{2/126}} {{\scriptsize (27.54)}}"
    assert round(psnr - 27.54, 2) == -0.04
    # matching: the pooled ALL value (23.1 %), not the mean of the frames
    assert _tex_row("ccnet_t2", "ZNCC", rendered)[0].startswith(r"\underline{23.1}")
    # cost: 4,028,291 parameters shown in millions; ranks by "lower is better"
    assert _tex_row("cost", r"masa\_rec", rendered)[4] == r"\underline{4.028}"
    # empty cells carry a reason, never a blank
    checked = 0
    for tex in (rendered / "tables").glob("*.tex"):
        lines = tex.read_text().splitlines()
        n_values = next(line for line in lines if line.startswith(r"\begin{tabular}")).split("}{")[1].count("r")
        for line in lines[lines.index(r"\midrule") + 1:]:
            if " & " in line:
                values = line.removesuffix(r"\\").split(" & ")[-n_values:]
                assert all(v.strip() for v in values), line
                checked += 1
    assert checked > 100


def test_random_weight_records_are_never_rendered(rendered: Path) -> None:
    html = (rendered / "index.html").read_text()
    assert "carn_m" not in html and "99.00" not in html
    for tex in (rendered / "tables").glob("*.tex"):
        assert "carn" not in tex.read_text()


def test_html_page_content(rendered: Path) -> None:
    html = (rendered / "index.html").read_text()
    assert html.count("<table class=\"report sortable\"") == len(list(EXPECTED_TEX.glob("*.tex")))
    assert "data:image/png;base64," not in html  # pictures are PNG files next to the page, not inlined
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert any(s.startswith("plots/") for s in sources) and any(s.startswith("visuals/crop_") for s in sources)
    assert all((rendered / s).is_file() for s in sources), sources
    assert "Visual comparison" in html and "image 000" in html
    assert html.count("<details class=\"protocol\">") >= 10  # protocol sentences collapsed, one line each
    assert "Preset masa2021: ×4, HR pad_center_replicate(32)" in html  # sentence from run.json's ProtocolSpec
    assert "0123456789abcdef0123456789abcdef01234567" in html  # git sha in the provenance footer
    assert "ab" * 32 in html  # weight sha256
    assert "no weights: official weights not installed" in html and "method not in the suite" in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_plots_are_written_and_deterministic(rendered: Path, tmp_path: Path) -> None:
    from reports.plots import make_plots

    names = sorted(p.name for p in (rendered / "plots").iterdir())
    stems = ("cost_vs_ref_size", "matching_sintel_ccnet2017_clean", "psnr_vs_gmacs_cufed5", "psnr_vs_level_refsr")
    assert names == sorted(f"{s}.{ext}" for s in stems for ext in ("png", "svg"))
    results = collect([FIXTURE])
    again = make_plots(means(results.records), results.cost, tmp_path)
    for plot in again:
        assert plot.png.read_bytes() == (rendered / "plots" / plot.png.name).read_bytes()
        assert plot.svg.read_bytes() == (rendered / "plots" / plot.svg.name).read_bytes()
        assert b"<dc:date>" not in plot.svg.read_bytes()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true (.ci/run installs it)")
        pytest.skip(f"{name} not installed")
    return path


def test_latex_compiles_with_pdflatex(rendered: Path, tmp_path: Path) -> None:
    pdflatex = _tool("pdflatex")
    tables = sorted((rendered / "tables").glob("*.tex"))
    body = "\n".join(rf"\noindent\input{{{t.as_posix()}}}\par\bigskip" for t in tables)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    result = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    assert "Missing character" not in (tmp_path / "doc.log").read_text(errors="replace")


def _chromium(args: list[str], page: Path, profile: Path) -> subprocess.CompletedProcess[str]:
    chromium = _tool("chromium")
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_html_opens_in_headless_chromium(rendered: Path, tmp_path: Path) -> None:
    page = rendered / "index.html"
    dom = _chromium(["--dump-dom"], page, tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr, dom.stderr
    body = dom.stdout.split("<body", 1)[1]
    assert len(body) > 1000
    assert body.count("<table") >= len(list(EXPECTED_TEX.glob("*.tex")))
    assert f'data-sortable-ready="{len(list(EXPECTED_TEX.glob("*.tex")))}"' in dom.stdout  # the inline JS ran
    n_images = (rendered / "index.html").read_text().count("<img ")
    assert n_images >= 5 and f'data-images="{n_images}/{n_images}"' in dom.stdout  # every picture loaded
    shot = tmp_path / "page.png"
    screenshot = _chromium([f"--screenshot={shot}", "--window-size=1280,2000"], page, tmp_path / "profile2")
    assert screenshot.returncode == 0 and shot.stat().st_size > 10_000
    # the console check can fail: a page that throws is reported
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>throw new Error('boom')</script></body></html>")
    assert "Uncaught" in _chromium(["--dump-dom"], bad, tmp_path / "profile3").stderr


def test_report_verb_on_an_empty_results_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No runs: every seed-paper table is still written, our cells empty with a reason."""
    import reports.page
    from bench.commands.cli import main

    monkeypatch.setattr(reports.page, "suite_availability", lambda data=None, weights=None: STUB)
    (tmp_path / "results").mkdir()
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.stem for p in (tmp_path / "out" / "tables").glob("*.tex"))
    assert written == sorted(["masa_t1", "masa_t2", "ssen_t1", "ssen_t2", "ssen_t3", "e2ent2_t1", "e2ent2_t2",
                              "c2_poster", "ccnet_t2", "ccnet_t3"])
    assert main(["report", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2")]) == 2


def test_suite_availability_reasons(tmp_path: Path) -> None:
    from reports.page import suite_availability

    availability = suite_availability(data=str(tmp_path), weights=str(tmp_path))
    assert availability.method_problem("rcan") == REASON_NOT_IN_SUITE
    assert availability.method_problem("bicubic") is None  # nothing to load
    assert availability.method_problem("masa_rec") == REASON_NO_WEIGHTS
    assert availability.dataset_problem("cufed5") == REASON_NO_DATASET
    assert availability.dataset_problem("demo_stereo") is None  # embedded
    assert availability.dataset_problem("lf_video") == REASON_NO_DATASET


def test_suite_availability_reads_cards_and_builds_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weight availability comes from the cards' file names and the weights folder: no factory is called."""
    from methods import registry
    from reports.page import suite_availability

    def no_build(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("suite_availability built a network")

    monkeypatch.setattr(registry, "factory_of", no_build)
    monkeypatch.setattr(registry, "create", no_build)
    card = registry.card("masa_rec")
    verified: dict[str, str] = {}  # present and verified once (issue 21): their sha256 recorded in sha256.json

    def install(file_name: str) -> None:
        content = b"PK\x03\x04" + file_name.encode()  # a zip header: not an obviously broken checkpoint
        (tmp_path / file_name).write_bytes(content)
        verified[file_name] = hashlib.sha256(content).hexdigest()
        (tmp_path / "sha256.json").write_text(json.dumps(verified))

    for weight in card.weights[:-1]:
        install(weight.file_name)
    assert suite_availability(weights=str(tmp_path)).method_problem("masa_rec") == REASON_NO_WEIGHTS
    install(card.weights[-1].file_name)  # every file of the card present and verified
    assert suite_availability(weights=str(tmp_path)).method_problem("masa_rec") is None
    assert suite_availability(weights=str(tmp_path)).method_problem("bicubic") is None


def test_paper_values_file_loads() -> None:
    assert len(load_paper_values()) > 600


def _write_expected() -> None:
    """Explicit regeneration of expected_tex/ (review the diff before committing)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        _render(out, FIXTURE)
        EXPECTED_TEX.mkdir(exist_ok=True)
        for old in EXPECTED_TEX.glob("*.tex"):
            old.unlink()
        for tex in sorted((out / "tables").glob("*.tex")):
            shutil.copyfile(tex, EXPECTED_TEX / tex.name)
            print(f"wrote {EXPECTED_TEX / tex.name}")


if __name__ == "__main__" and "--write-expected" in sys.argv:
    _write_expected()
