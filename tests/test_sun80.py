"""Sun80 layout replica: seeded reference manifest, the manifest policy, and the missing-reference error."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import main
from bench.manifests import write_manifest
from protocols.datasets import load_items
from protocols.pipeline import _reference_array
from protocols.spec import get_preset


def make_replica(root: Path, with_matches: bool = True) -> Path:
    folder = root / "Sun80"
    (folder / "Sun_Hays_SR_groundtruth").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("abbey_sun_x", "barn_sun_y"):
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(
            folder / "Sun_Hays_SR_groundtruth" / f"{name}.jpg"
        )
        if with_matches:
            matches = folder / "Sun_Hays_SR_scenematches" / f"{name}.jpg"  # the folder name keeps '.jpg'
            matches.mkdir(parents=True)
            for k in range(5):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(matches / f"match_{k:02d}.jpg")
    return folder


def test_manifest_is_seeded_and_used(tmp_path: Path) -> None:
    make_replica(tmp_path)
    first, second = tmp_path / "m1.csv", tmp_path / "m2.csv"
    assert write_manifest("sun80", str(tmp_path), 0, first) == 2
    write_manifest("sun80", str(tmp_path), 0, second)
    assert first.read_bytes() == second.read_bytes()
    rows = list(csv.DictReader(open(first)))
    expected = sorted(f"match_{k:02d}.jpg" for k in range(5))[int(np.random.default_rng(0).integers(5))]
    assert rows[0]["reference"] == expected and rows[0]["seed"] == "0" and len(rows[0]["hr_sha256"]) == 64
    item = load_items("sun80", tmp_path)[0]
    ref = _reference_array(item, "manifest", "sun80", get_preset("refsr"))
    assert ref is not None and ref.shape == (40, 40, 3)


def test_missing_scene_matches_need_self_lr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_replica(tmp_path, with_matches=False)
    status = main(["run", "-p", "sun80", "-m", "bicubic", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert status == 2 and "--ref-policy self_lr" in capsys.readouterr().err
    status = main(
        [
            "run",
            "-p",
            "sun80",
            "-m",
            "bicubic",
            "--ref-policy",
            "self_lr",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert status == 0
