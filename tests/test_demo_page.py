"""The demo's report page: this demo's runs on their own page (the committed results on a linked one), plots
shown at their own size with every label inside, a trained network when its weights are installed and one line
on how to get one when not, one interpolation baseline."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from bench.commands.demo import COMMITTED_RESULTS, DemoMethods, render_pages, survey_methods
from bench.engines.run.execute import run
from bench.engines.run.plan import RunConfig
from reports.page import suite_availability

PAGE_WIDTH_PX = 1400 - 2 * 16  # the template's body max-width less its 1em side padding (16 px default font)


def _demo_pages(tmp_path: Path, weights: Path) -> tuple[str, DemoMethods]:
    """The demo's quality step on demo_stereo (its methods for ``weights``) and its two pages."""
    found = survey_methods(str(weights))
    runs = tmp_path / "runs"
    run(RunConfig(dataset="demo_stereo", preset="refsr", methods=found.sr, out_dir=runs / "quality_demo_stereo",
                  weights=str(weights), save_images=True, show_progress=False))
    index = render_pages(runs, tmp_path / "page", suite_availability(None, str(weights)), found, str(weights))
    return index.read_text(), found


def _notes(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", note) for note in re.findall(r'<p class="note">(.*?)</p>', html, re.S)]


def test_without_weights_the_page_shows_this_demo_and_says_how_to_get_a_network(tmp_path: Path) -> None:
    empty = tmp_path / "no_weights"
    empty.mkdir()
    html, found = _demo_pages(tmp_path, empty)
    assert found.sr == ("bicubic",) and set(found.other_baselines) >= {"bicubic_matlab", "bicubic_matlab_u8"}
    assert "read from 1 run folder(s)" in html  # this demo's run only
    notes = _notes(html)
    committed = len(list(COMMITTED_RESULTS.rglob("run.json")))
    assert committed > 0 and any(f"The {committed} committed run folders" in n for n in notes)
    assert any("bicubic_matlab, bicubic_matlab_u8" in n and "bicubic*" in n for n in notes)
    fetch = [n for n in notes if "weights fetch carn_m" in n]
    assert len(fetch) == 1 and str(empty) in fetch[0]
    # only tables holding values of ours: no seed-paper table of datasets the demo did not run
    titles = re.findall(r"<h2>([^<]*)</h2>", html)
    assert not any(t.startswith(("MASA-SR Table 1", "SSEN", "E2ENT", "CC-Net")) for t in titles), titles
    committed_html = (tmp_path / "page" / "committed" / "index.html").read_text()
    assert f"read from {committed} run folder(s)" in committed_html
    assert "MASA-SR Table 1" in committed_html and 'href="../index.html"' in committed_html
    assert 'href="committed/index.html"' in html


def test_with_carn_m_weights_the_table_and_crop_grid_show_the_network(tmp_path: Path, shared: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "carn_m.pth").symlink_to(shared / "weights" / "carn_m.pth")
    html, found = _demo_pages(tmp_path, weights)
    assert "carn_m" in found.sr
    assert not [n for n in _notes(html) if "weights fetch" in n]
    table = html.split('id="table-', 1)[1].split("</table>", 1)[0]
    rows = {re.sub(r"<[^>]+>", " ", row).split()[0] for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]}
    assert rows == {"bicubic", "carn_m"}
    assert 'class="tile-name">carn_m</span>' in html and 'class="tile-name">HR (ground truth)' in html


def test_plots_show_at_their_own_size_with_every_label_inside(tmp_path: Path) -> None:
    """The committed results' plots (the cost-vs-reference-size sweep among them): each PNG fits the page width,
    so the page shows it unscaled, and its smallest text is 8 pt = 12 px; the cost sweep's texts lie inside it."""
    from matplotlib.text import Text

    from reports.collect import collect
    from reports.page import render_report
    from reports.plots import PNG_DPI, cost_vs_ref_size

    index = render_report([COMMITTED_RESULTS], tmp_path, availability=suite_availability())
    html = index.read_text()
    plots = re.findall(r'<figure style="max-width: (\d+)px"><img alt="[^"]*" src="(plots/[^"]+)" width="(\d+)" '
                       r'height="(\d+)">', html)
    assert any("cost_vs_ref_size" in src for _, src, _, _ in plots)
    for max_width, src, width, height in plots:
        size = Image.open(tmp_path / src).size
        assert size == (int(width), int(height)) and int(max_width) == size[0]
        assert size[0] <= PAGE_WIDTH_PX, src
    figure = cost_vs_ref_size(collect([COMMITTED_RESULTS]).cost)
    assert figure is not None
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert len(texts) > 10
    drawn = figure.get_tightbbox(renderer)  # every drawn artist (labels, titles, legend), in inches
    page = figure.bbox_inches
    assert page.x0 <= drawn.x0 and drawn.x1 <= page.x1 and page.y0 <= drawn.y0 and drawn.y1 <= page.y1, drawn
    for text in texts:
        assert text.get_fontsize() * PNG_DPI / 72 >= 12 - 1e-9, text.get_text()

