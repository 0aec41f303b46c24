"""CUFED5 on a layout replica (the real set is not available here): discovery, levels, stitching
geometry, errors, and the five-level run end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.commands.cli import main
from bench.results.records import read_records
from protocols.core import UserError
from protocols.datasets import load_items
from protocols.pipeline import stitch5_masa, stitch5_zero500_topleft

SIZES = {0: (120, 160), 1: (100, 140), 2: (96, 96), 3: (128, 80), 4: (60, 100), 5: (500, 332)}


def make_replica(root: Path, groups: int = 3) -> Path:
    folder = root / "CUFED5"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for group in range(groups):
        for level, (h, w) in SIZES.items():
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{group:03d}_{level}.png")
    return folder


def test_discovery_and_levels(tmp_path: Path) -> None:
    make_replica(tmp_path)
    items = load_items("cufed5", tmp_path)
    assert [item.name for item in items] == ["000", "001", "002"]
    assert [level for level, _ in items[0].refs] == ["1", "2", "3", "4", "5"]
    assert Path(dict(items[1].refs)["3"]).name == "001_3.png"


def test_stitch5_masa_geometry_and_padding_values() -> None:
    rng = np.random.default_rng(0)
    refs = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in ((500, 332), (512, 512), (1, 7), (300, 500), (64, 64))
    ]
    canvas = stitch5_masa(refs)
    assert canvas.shape == (2560, 512, 3)
    first = refs[0]  # 500x332 -> top 6, bottom 6, left 90, right 90
    tile = canvas[0:512]
    assert np.array_equal(tile[6:506, 90:422], first)
    assert np.array_equal(tile[0, 90:422], first[0]) and np.array_equal(tile[511, 90:422], first[-1])
    assert np.array_equal(tile[6:506, 0], first[:, 0]) and np.array_equal(tile[6:506, 511], first[:, -1])
    assert np.array_equal(tile[0, 0], first[0, 0])  # corners replicate the corner pixel
    assert np.array_equal(canvas[512:1024], refs[1])
    tiny = canvas[1024:1536]  # 1x7 centred: top 255, left 252
    assert np.array_equal(tiny[255, 252:259], refs[2][0]) and np.array_equal(tiny[0, 252:259], refs[2][0])


def test_stitch5_zero500_topleft_geometry() -> None:
    refs = [
        np.full((h, w, 3), 10 * (k + 1), np.uint8)
        for k, (h, w) in enumerate(((500, 332), (100, 200), (500, 500), (7, 3), (20, 499)))
    ]
    canvas = stitch5_zero500_topleft(refs)
    assert canvas.shape == (2500, 500, 3)
    assert np.all(canvas[0:500, 0:332] == 10) and np.all(canvas[0:500, 332:] == 0)
    assert np.all(canvas[500:600, 0:200] == 20) and np.all(canvas[600:1000] == 0)
    assert np.all(canvas[2000:2020, 0:499] == 50) and np.all(canvas[2000:2020, 499] == 0)


def test_oversized_reference_is_rejected_by_masa_stitching() -> None:
    with pytest.raises(UserError, match="at most 512x512"):
        stitch5_masa([np.zeros((513, 10, 3), np.uint8)] * 5)


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda f: (f / "001_4.png").unlink(), r"001: missing 001_4.png"),
        (lambda f: (f / "002_0.png").rename(f / "002-0.png"), r"unexpected file names \['002-0.png'\]"),
        (lambda f: (f / "000_2.png").write_bytes(b"garbage"), r"cannot read image .*000_2.png"),
    ],
)
def test_broken_layouts_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], breakage, message: str) -> None:
    folder = make_replica(tmp_path)
    breakage(folder)
    status = main(
        [
            "run",
            "-p",
            "cufed5",
            "-m",
            "bicubic",
            "--level",
            "2",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_five_level_run_and_stitched_reference(tmp_path: Path) -> None:
    make_replica(tmp_path, groups=2)
    out = tmp_path / "out"
    assert (
        main(["run", "-p", "cufed5", "-m", "bicubic", "--level", "all", "--data", str(tmp_path), "--out", str(out)])
        == 0
    )
    records = read_records(out / "records.csv")
    assert sorted({r.reference for r in records}) == [f"level:{k}" for k in "12345"]
    assert len(records) == 5 * 2 * 2  # levels x groups x (psnr_y, ssim_y)
    # bicubic ignores the reference: every level gives the same numbers
    by_level = {lvl: sorted(r.value for r in records if r.reference == lvl) for lvl in {r.reference for r in records}}
    assert len({tuple(v) for v in by_level.values()}) == 1
    out2 = tmp_path / "stitched"
    assert main(["run", "-p", "cufed5:masa2021", "-m", "bicubic", "--data", str(tmp_path), "--out", str(out2)]) == 0
    assert {r.reference for r in read_records(out2 / "records.csv")} == {"stitch5_masa"}


def test_dataset_job_runs_gates_and_renders_on_a_replica(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What `tox -e cufed5` runs: five levels + stitched reference, gate, report."""
    make_replica(tmp_path, groups=1)
    out = tmp_path / "job"
    status = main(
        ["dataset-job", "cufed5", "--data", str(tmp_path), "--weights", str(tmp_path / "no_weights"), "--out", str(out)]
    )
    assert status == 0, capsys.readouterr().err
    levels = {r.reference for r in read_records(out / "cufed5_refsr" / "all" / "records.csv")}
    assert levels == {f"level:{k}" for k in "12345"}
    assert (out / "report" / "index.html").is_file()
