"""``refsr-bench run --outputs NAME=DIR``: released SR images scored through the run engine (issue 23 item 1).

The oracle for every format is the run engine itself on a method: ``bicubic`` writes its scored PNGs with
``--save-images``; the same arrays, renamed to each official save name (or embedded in the padded canvas a
network would have returned), are scored back as outputs and must give the method's records byte for byte.
The suite's ``refsr`` preset and ``c2matching2021`` / ``masa2021`` clamp and round the SR, so a scored PNG holds
exactly the levels the metrics saw; a preset that does not round (``srntt_port``: clamp only; ``ttsr2020``:
round without clamp) would not survive the trip through an 8-bit PNG, so the equality is tested under rounding
presets only."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rundata import cli, make_cufed5, rgb16_png

from protocols.spec import center_pad_amounts

ROOT = Path(__file__).resolve().parents[1]


def rows_of(out: Path, method: str) -> list[str]:
    """records.csv rows of ``method`` with the method column blanked (the only column that may differ)."""
    with open(out / "records.csv", newline="") as handle:
        rows = [row for row in csv.reader(handle)][1:]
    return [",".join(row[:3] + ["-"] + row[4:]) for row in rows if row[3] == method]


def make_urban100(root: Path) -> Path:
    folder = root / "Urban100"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for k, (h, w) in enumerate(((44, 52), (41, 38)), start=1):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img_{k:03d}.png")
    return root


def make_wrsr(root: Path) -> Path:
    """WR-SR replica: HR 45x50 and a larger reference (60x56), so C²-Matching's zero padding makes a canvas."""
    folder = root / "WR-SR"
    (folder / "input").mkdir(parents=True)
    (folder / "ref").mkdir()
    rng = np.random.default_rng(6)
    lines = []
    for name in ("001", "002"):
        Image.fromarray(rng.integers(0, 256, (45, 50, 3), dtype=np.uint8)).save(folder / "input" / f"{name}.png")
        Image.fromarray(rng.integers(0, 256, (60, 56, 3), dtype=np.uint8)).save(folder / "ref" / f"{name}_ref.png")
        lines.append(f"{name}.png {name}_ref.png")
    (folder / "WR-SR_pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def make_sun80(root: Path) -> Path:
    """Sun80 replica: HR 48x40 (MASA pads Sun80 to a multiple of 64: a 64x64 canvas) with scene matches."""
    folder = root / "Sun80"
    rng = np.random.default_rng(8)
    for name in ("abbey_sun_x", "barn_sun_y"):
        (folder / "Sun_Hays_SR_groundtruth").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(
            folder / "Sun_Hays_SR_groundtruth" / f"{name}.png")
        matches = folder / "Sun_Hays_SR_scenematches" / f"{name}.png"
        matches.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(matches / f"m{k}.jpg")
    return root


def saved_run(capsys, data: Path, protocol: str, out: Path, *extra: str) -> Path:
    """bicubic with --save-images; returns the folder of its scored PNGs."""
    status, _, err = cli(capsys, "run", "-p", protocol, "-m", "bicubic", "--data", data, "--out", out,
                         "--save-images", *extra)
    assert status == 0, err
    return out / "images" / "bicubic"


def test_cufed5_five_levels_saved_ttsr_mmagic_resume_and_changed_file(tmp_path: Path, capsys) -> None:
    data = make_cufed5(tmp_path / "data", groups=2)
    out = tmp_path / "run"
    saved = saved_run(capsys, data, "cufed5", out, "--level", "all")
    assert len(list(saved.rglob("*.png"))) == 10
    argv = ["run", "-p", "cufed5", "-m", "bicubic", "--level", "all", "--data", data, "--out", out,
            "--save-images", "--outputs", f"back={saved}", "--outputs-format", "saved"]
    status, _, err = cli(capsys, *argv)
    assert status == 0, err
    assert len(rows_of(out, "bicubic")) == 20 and rows_of(out, "back") == rows_of(out, "bicubic")
    run_json = (out / "run.json").read_text()
    assert '"released_outputs"' in run_json and "level_3/001.png" in run_json  # provenance and file hashes
    before = (out / "records.csv").read_bytes()
    status, _, err = cli(capsys, *argv)  # resume: nothing to do, nothing changes
    assert status == 0, err
    assert (out / "records.csv").read_bytes() == before
    # TTSR's save_results/<5-digit index>.png (dataset order) and mmagic's <HR stem>.png, level 1, one run
    ttsr, mmagic = tmp_path / "ttsr", tmp_path / "mmagic"
    (ttsr / "save_results").mkdir(parents=True)
    mmagic.mkdir()
    for index, image in enumerate(("000", "001")):
        shutil.copy(saved / "level_1" / f"{image}.png", ttsr / "save_results" / f"{index:05d}.png")
        shutil.copy(saved / "level_1" / f"{image}.png", mmagic / f"{image}_0.png")
    (ttsr / "save_results" / "log.txt").write_text("ignored: matches no template\n")
    status, _, err = cli(capsys, "run", "-p", "cufed5", "--level", "1", "--data", data, "--out", tmp_path / "l1",
                         "--outputs", f"t={ttsr}", "--outputs", f"m={mmagic}", "--outputs-format", "ttsr",
                         "--outputs-format", "mmagic")
    assert status == 0, err
    level1 = [row for row in rows_of(out, "bicubic") if ",level:1," in row]  # other run_id: compare the rest
    assert [r.split(",", 1)[1] for r in rows_of(tmp_path / "l1", "t")] == [r.split(",", 1)[1] for r in level1]
    assert rows_of(tmp_path / "l1", "m") == rows_of(tmp_path / "l1", "t")
    # a changed output file refuses the resume, naming the file
    image = np.asarray(Image.open(saved / "level_2" / "000.png")).copy()
    image[0, 0] ^= 1
    Image.fromarray(image).save(saved / "level_2" / "000.png")
    status, _, err = cli(capsys, *argv)
    assert status == 2 and "SR output files of back changed: level_2/000.png" in err, err


def _embed(image: Path, canvas_hw: tuple[int, int], top: int, left: int, target: Path, seed: int) -> None:
    """``image`` placed at (top, left) of a random-noise canvas: whatever the official crop discards is noise."""
    array = np.asarray(Image.open(image).convert("RGB"))
    canvas = np.random.default_rng(seed).integers(0, 256, (*canvas_hw, 3), dtype=np.uint8)
    canvas[top : top + array.shape[0], left : left + array.shape[1]] = array
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(target)


def test_wrsr_c2matching_names_and_zero_padded_canvas(tmp_path: Path, capsys) -> None:
    """C²-Matching saves <image>_<experiment>.png cropped to the mod-cropped HR; a canvas output (HR and Ref
    zero-padded to their common size, here 60x56 over a 44x48 HR) is cropped at the bottom/right."""
    data = make_wrsr(tmp_path / "data")
    saved = saved_run(capsys, data, "wrsr:c2matching2021", tmp_path / "run")
    folder = tmp_path / "c2"
    folder.mkdir()
    for image in ("001", "002"):
        shutil.copy(saved / "pair" / f"{image}.png", folder / f"{image}_C2_matching_mse.png")
        _embed(saved / "pair" / f"{image}.png", (60, 56), 0, 0, folder / f"{image}_C2_matching_gan.png", seed=1)
    status, _, err = cli(capsys, "run", "-p", "wrsr:c2matching2021", "--data", data, "--out", tmp_path / "run",
                         "--outputs", f"mse={folder}", "--outputs", f"canvas={folder}",
                         "--outputs-format", "c2matching:C2_matching_mse",
                         "--outputs-format", "c2matching:C2_matching_gan")
    assert status == 0, err
    method = rows_of(tmp_path / "run", "bicubic")
    assert len(method) == 4 and rows_of(tmp_path / "run", "mse") == method
    assert rows_of(tmp_path / "run", "canvas") == method
    status, _, err = cli(capsys, "run", "-p", "wrsr:c2matching2021", "--data", data, "--out", tmp_path / "x",
                         "--outputs", f"c2={folder}", "--outputs-format", "c2matching")
    assert status == 2 and "needs the experiment name" in err
    # a canvas larger than the scored size but not the padded one passes the header check, fails at scoring
    _embed(saved / "pair" / "002.png", (64, 56), 0, 0, folder / "002_C2_matching_gan.png", seed=2)
    status, _, err = cli(capsys, "run", "-p", "wrsr:c2matching2021", "--data", data, "--out", tmp_path / "y",
                         "--outputs", f"canvas={folder}", "--outputs-format", "c2matching:C2_matching_gan")
    assert status == 2 and "002_C2_matching_gan.png: SR image is 56x64 px" in err, err


def test_sun80_masa_centred_canvas_is_cropped_like_masa(tmp_path: Path, capsys) -> None:
    """MASA-SR pads the HR centred to a multiple of 64 (Sun80) and crops its output back by the same amounts:
    a 64x64 canvas holding the scored 48x40 image at (top, left) = (8, 12) scores exactly like the image."""
    data = make_sun80(tmp_path / "data")
    saved = saved_run(capsys, data, "sun80:masa2021", tmp_path / "run")
    top, bottom, left, right = center_pad_amounts(48, 40, 64)
    assert (top, left) == (8, 12)
    canvas, plain = tmp_path / "canvas", tmp_path / "plain"
    for k, image in enumerate(("abbey_sun_x", "barn_sun_y")):
        _embed(saved / "manifest" / f"{image}.png", (64, 64), top, left, canvas / f"{image}.png", seed=k)
        plain.mkdir(exist_ok=True)
        shutil.copy(saved / "manifest" / f"{image}.png", plain / f"{image}.png")
    status, _, err = cli(capsys, "run", "-p", "sun80:masa2021", "--data", data, "--out", tmp_path / "run",
                         "--outputs", f"canvas={canvas}", "--outputs", f"scored={plain}", "--outputs-format", "masa")
    assert status == 0, err
    method = rows_of(tmp_path / "run", "bicubic")
    assert len(method) == 4
    assert rows_of(tmp_path / "run", "canvas") == method and rows_of(tmp_path / "run", "scored") == method


@pytest.fixture()
def urban(tmp_path: Path, capsys) -> tuple[Path, Path, Path]:
    """Urban100 replica, bicubic's scored PNGs under refsr, and a plain-format copy of them."""
    data = make_urban100(tmp_path / "data")
    saved = saved_run(capsys, data, "urban100", tmp_path / "run")
    folder = tmp_path / "plain"
    shutil.copytree(saved / "self_lr", folder)
    return data, tmp_path / "run", folder


def test_urban100_plain_equals_method(urban: tuple[Path, Path, Path], capsys) -> None:
    data, run, folder = urban
    status, _, err = cli(capsys, "run", "-p", "urban100", "--data", data, "--out", run, "--outputs", f"p={folder}")
    assert status == 0, err
    assert len(rows_of(run, "bicubic")) == 4 and rows_of(run, "p") == rows_of(run, "bicubic")


def _palette(path: Path) -> None:
    Image.open(path).convert("RGB").quantize(16).save(path)


def _rgba(path: Path) -> None:
    Image.open(path).convert("RGBA").save(path)


def _grey16(path: Path) -> None:
    h, w = np.asarray(Image.open(path)).shape[:2]
    Image.fromarray(np.full((h, w), 40000, np.uint16)).save(path)


def _rgb16(path: Path) -> None:
    h, w = np.asarray(Image.open(path)).shape[:2]
    path.write_bytes(rgb16_png(h, w))


def _wrong_size(path: Path) -> None:
    Image.open(path).crop((0, 0, 40, 40)).save(path)


@pytest.mark.parametrize("break_it,message", [
    (lambda f: (f / "img_002.png").unlink(), r"missing SR file\(s\) .*img_002.png"),
    (lambda f: shutil.copy(f / "img_001.png", f / "img_101.png"), r"img_101.png: matches the --outputs template "
                                                                  r"'\{image\}.png' for image 'img_101'"),
    (lambda f: _wrong_size(f / "img_001.png"), r"img_001.png: SR image is 40x40 px; the preset scores 52x44"),
    (lambda f: _grey16(f / "img_002.png"), r"img_002.png is a 16-bit image"),
    (lambda f: _rgb16(f / "img_002.png"), r"img_002.png is a 16-bit colour image"),
    (lambda f: _palette(f / "img_001.png"), r"img_001.png is a palette image"),
    (lambda f: _rgba(f / "img_001.png"), r"img_001.png is a mode-RGBA image"),
])
def test_bad_output_folders_exit_2_naming_the_file(urban: tuple[Path, Path, Path], capsys, break_it,
                                                   message: str) -> None:
    data, _, folder = urban
    break_it(folder)
    out = folder.parent / "bad"
    status, _, err = cli(capsys, "run", "-p", "urban100", "--data", data, "--out", out, "--outputs", f"p={folder}")
    assert status == 2 and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()  # refused before anything is written


@pytest.mark.parametrize("pattern", ["{image:05d}.png", "{index:zz}.png", "{image!q}.png"])
def test_a_template_that_cannot_be_filled_is_exit_2(urban: tuple[Path, Path, Path], capsys, pattern: str) -> None:
    data, _, folder = urban
    status, _, err = cli(capsys, "run", "-p", "urban100", "--data", data, "--out", folder.parent / "t",
                         "--outputs", f"p={folder}", "--outputs-pattern", pattern)
    assert status == 2 and "Traceback" not in err and pattern in err, err


def test_torchrun_outputs_equal_one_process(urban: tuple[Path, Path, Path], capsys) -> None:
    data, _, folder = urban
    argv = ["run", "-p", "urban100", "--data", str(data), "--outputs", f"p={folder}"]
    single, multi = folder.parent / "single", folder.parent / "multi"
    assert cli(capsys, *argv, "--out", single)[0] == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "bench", *argv, "--out", str(multi)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (multi / "records.csv").read_bytes() == (single / "records.csv").read_bytes()


def test_released_job_regenerates_the_paper_rows(tmp_path: Path, capsys) -> None:
    """``released-job c2matching`` on a WR-SR replica: the released folder's rec row is scored under the
    paper's preset, its metric-quirk variant and the fair preset, beside the paper's printed value; the GAN row
    has no files and is skipped; the report is written."""
    data = make_wrsr(tmp_path / "data")
    saved = saved_run(capsys, data, "wrsr:c2matching2021", tmp_path / "method")
    released = tmp_path / "released" / "WR-SR"
    released.mkdir(parents=True)
    for image in ("001", "002"):
        shutil.copy(saved / "pair" / f"{image}.png", released / f"{image}_C2_matching_mse.png")
    status, out, err = cli(capsys, "released-job", "c2matching", "--outputs", released.parent, "--data", data,
                           "--out", tmp_path / "job")
    assert status == 0, err
    assert "row c2_matching_gan skipped" in out and "no released cufed5 folder" in out
    line = next(row for row in out.splitlines() if row.startswith("c2_matching_rec"))
    assert "28.07 / 0.802" in line and "psnr_rgb_uint8wrap_c2m" in line  # the paper's printed WR-SR values
    paper_run = tmp_path / "job" / "wrsr_c2matching2021"
    assert [r.split(",", 1)[1] for r in rows_of(paper_run, "c2_matching_rec")] == \
        [r.split(",", 1)[1] for r in rows_of(tmp_path / "method", "bicubic")]
    for preset in ("c2matching2021_official", "refsr"):
        assert rows_of(tmp_path / "job" / f"wrsr_{preset}", "c2_matching_rec")
    assert "released outputs: " in (tmp_path / "job" / "report" / "index.html").read_text()  # provenance footer
