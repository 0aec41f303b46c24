"""The report page a person looks at (issue 15 item 5): every run in a table for its preset, crop grids of saved
images with the HR and each method's PSNR, pictures of matches coloured by error, the demo's cropped pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.engines.matching.pictures import ERROR_BANDS_PX, match_errors, save_match_picture
from bench.results.records import Record, write_records
from reports.collect import collect, means
from reports.page import render_report
from reports.paper_values import load_paper_values
from reports.tables import QUALITY_METRICS, build_all, everything_available

AUDIT_DIR = Path(__file__).resolve().parents[1] / "reports" / "results" / "audit"


def _write_run(folder: Path, records: list[Record], manifest: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_records(folder / "records.csv", records)
    (folder / "run.json").write_text(json.dumps(manifest))


def test_every_quality_run_appears_in_a_table_for_its_preset(tmp_path: Path) -> None:
    """The README's `run -p urban100:sisr_std -m bicubic_matlab carn_m` example (here as records) and every
    committed audit run show up with a value in a table whose rows or columns are that preset."""
    run = tmp_path / "runs" / "u100"
    values = {("bicubic_matlab", "img_001"): 23.1, ("bicubic_matlab", "img_002"): 24.3}
    _write_run(run, [Record("r1", "urban100", "sisr_std", m, "none", image, "psnr_y", v)
                     for (m, image), v in values.items()],
               {"dataset": "urban100", "protocol_spec": {"name": "sisr_std"}, "methods": [
                   {"record_name": "bicubic_matlab"}, {"record_name": "carn_m"}]})
    results = collect([tmp_path / "runs", AUDIT_DIR])
    models = build_all(results, load_paper_values(), everything_available())
    shown: set[tuple[str, str, str]] = set()  # (dataset, preset, method) with a value in a suite table
    for model in models:
        if model.spec.kind != "suite":
            continue
        for row in model.rows:
            for cell, column in zip(row.cells, model.spec.columns, strict=True):
                if cell.ours is None or column.source != "quality":
                    continue
                preset = row.key if model.spec.row_kind == "preset" else model.spec.preset
                method = model.spec.method if model.spec.row_kind == "preset" else row.key
                shown.add((column.dataset, str(preset), str(method)))
    ran = {(k[0], k[1], k[2]) for k in means(results.records) if k[4] in QUALITY_METRICS}
    assert ran - shown == set()
    sisr = next(m for m in models if m.spec.id == "preset_sisr_std")
    assert sisr.spec.title.startswith("SISR")
    cells = {row.key: row.cells for row in sisr.rows}
    urban = [i for i, c in enumerate(sisr.spec.columns) if c.dataset == "urban100" and c.metric == "psnr_y"][0]
    assert cells["bicubic_matlab"][urban].ours == pytest.approx((23.1 + 24.3) / 2)
    assert cells["carn_m"][urban].ours is not None  # the committed audit's carn_m run of the same preset


def test_crop_grid_of_saved_images_with_hr_and_psnr(tmp_path: Path) -> None:
    from bench.engines.run.execute import run
    from bench.engines.run.plan import RunConfig

    records = run(RunConfig(dataset="demo_stereo", preset="refsr", methods=("bicubic", "bicubic_matlab"),
                            out_dir=tmp_path / "runs" / "stereo", save_images=True, show_progress=False))
    out = tmp_path / "report"
    html = render_report([tmp_path / "runs"], out, availability=everything_available()).read_text()
    assert "Visual comparison" in html and "HR (ground truth)" in html
    tiles = {t.stem.split("_motorcycle_", 1)[1]: t for t in (out / "visuals").glob("crop_demo_stereo_*.png")}
    assert sorted(tiles) == ["bicubic", "bicubic_matlab", "hr"]
    sizes = {Image.open(t).size for t in tiles.values()}
    assert len(sizes) == 1  # the same crop from every image
    for method in ("bicubic", "bicubic_matlab"):
        psnr = next(r.value for r in records if r.method == method and r.metric == "psnr_y")
        assert f"{method}</span>PSNR-Y {psnr:.2f} dB" in html
    # the HR tile is the ground truth: bicubic's tile differs from it, but only a little
    hr = np.asarray(Image.open(tiles["hr"]), dtype=np.float64)
    bicubic = np.asarray(Image.open(tiles["bicubic"]), dtype=np.float64)
    assert 0 < np.abs(hr - bicubic).mean() < 40


def _item(shift_px: float) -> tuple[object, np.ndarray]:
    from protocols.matching import MatchingItem

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:32, 0:32].astype(np.float64)
    gt = np.stack([rows, cols], axis=-1)
    item = MatchingItem("x", image, image.copy(), gt, np.ones((32, 32), dtype=bool))
    predicted = gt[::4, ::4] + np.array([0.0, shift_px])
    return item, predicted


@pytest.mark.parametrize(("shift_px", "band"), [(0.0, 0), (3.0, 1), (9.0, 2)])
def test_match_picture_colours_lines_by_error(tmp_path: Path, shift_px: float, band: int) -> None:
    item, predicted = _item(shift_px)
    errors = match_errors(item, predicted, 4)  # type: ignore[arg-type]
    assert errors.usable.all() and np.allclose(errors.error_px[:, :-3], shift_px)
    save_match_picture(tmp_path / "m.png", item, predicted, 4)  # type: ignore[arg-type]
    pixels = {tuple(p) for p in np.asarray(Image.open(tmp_path / "m.png")).reshape(-1, 3)}
    colours = [colour for _, colour in ERROR_BANDS_PX]
    assert colours[band] in pixels
    assert all(c not in pixels for i, c in enumerate(colours) if i < band)


def test_report_shows_match_pictures_with_accuracy(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "matching_demo_stereo"
    metrics = {"acc_le_1px": 0.5, "acc_le_4px": 0.75, "n_positions": 64.0}
    _write_run(run, [Record("m", "demo_stereo", "ccnet2017[scale=4]", "zncc", "centre96", "ALL", k, v)
                     for k, v in metrics.items()],
               {"dataset": "demo_stereo", "protocol_spec": {"name": "ccnet2017[scale=4]", "kind": "matching"},
                "methods": ["zncc"]})
    item, predicted = _item(0.0)
    save_match_picture(run / "match_images" / "zncc" / "centre96" / "motorcycle.png", item, predicted, 4)  # type: ignore[arg-type]
    out = tmp_path / "report"
    html = render_report([tmp_path / "runs"], out, availability=everything_available()).read_text()
    assert '<section id="matches"' in html
    assert "zncc on demo_stereo motorcycle (centre96): accuracy ≤1 px 50.0%, ≤4 px 75.0%" in html
    assert len(list((out / "visuals").glob("match_*.png"))) == 1


def test_demo_crop_keeps_the_ground_truth_exact() -> None:
    """Independent check of the shifted ground truth: the cropped reference sampled at it reproduces the cropped
    input (the homography pair's reference is the input warped, bilinear, rounded to 8 bits)."""
    from bench.commands.demo import centre_crop_pair
    from protocols.embedded import bilinear_sample, demo_homography_pairs

    pair = demo_homography_pairs()[0]
    crop = centre_crop_pair(pair, 96)
    assert crop.image.shape == crop.ref.shape == (96, 96, 3)
    ys, xs = crop.gt_yx[..., 0][crop.valid], crop.gt_yx[..., 1][crop.valid]
    sampled, inside = bilinear_sample(crop.ref.astype(np.float64), ys, xs)
    assert inside.all() and crop.valid.mean() > 0.5
    # bilinear resampling twice (warp, then sampling back) blurs edges: a mean error of a few grey levels,
    # against ~60 for a wrong offset (measured: 3.9 here, 58 with the offset off by 8 px)
    assert np.abs(sampled - crop.image[crop.valid].astype(np.float64)).mean() < 8
