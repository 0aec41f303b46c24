"""Sun80 layout replica: seeded reference manifest, the manifest policy, and the missing-reference error."""

from __future__ import annotations

import csv
import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.commands.cli import main
from bench.commands.manifests import write_manifest
from bench.results.records import read_records
from methods.bicubic import bicubic
from methods.registry import register
from protocols import pipeline
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
            for k in range(5):  # match k is (40 + k) pixels high, so the chosen file can be told from its shape
                match = rng.integers(0, 256, (40 + k, 40, 3), dtype=np.uint8)
                Image.fromarray(match).save(matches / f"match_{k:02d}.jpg")
    return folder


def expected_match_index(image_name: str, seed: int, count: int) -> int:
    """Oracle for the documented rule, written out separately from ``seeded_choice``."""
    return int(np.random.default_rng([seed, zlib.crc32(image_name.encode("utf-8"))]).integers(0, count))


def test_manifest_is_seeded_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_replica(tmp_path)
    first, second = tmp_path / "m1.csv", tmp_path / "m2.csv"
    assert write_manifest("sun80", str(tmp_path), 0, first) == 2
    write_manifest("sun80", str(tmp_path), 0, second)
    assert first.read_bytes() == second.read_bytes()
    rows = list(csv.DictReader(open(first)))
    for row in rows:
        assert row["reference"] == f"match_{expected_match_index(row['image'], 0, 5):02d}.jpg"
        assert row["seed"] == "0" and row["candidates"] == "5" and len(row["hr_sha256"]) == 64
    items = load_items("sun80", tmp_path)
    # Without a committed manifest the policy applies the same rule ...
    monkeypatch.setattr(pipeline, "MANIFEST_DIR", tmp_path / "none")
    for item in items:
        ref = _reference_array(item, "manifest", "sun80", get_preset("refsr"))
        assert ref is not None and ref.shape == (40 + expected_match_index(item.name, 0, 5), 40, 3)
    # ... and a committed manifest wins over it.
    committed = tmp_path / "committed"
    committed.mkdir()
    (committed / "sun80.csv").write_text(
        "image,reference\n" + "".join(f"{item.name},match_04.jpg\n" for item in items)
    )
    monkeypatch.setattr(pipeline, "MANIFEST_DIR", committed)
    ref = _reference_array(items[0], "manifest", "sun80", get_preset("refsr"))
    assert ref is not None and ref.shape == (44, 40, 3)


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


def _ref_height_probe(*, scale: int = 4, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """Pillow bicubic brightened by (reference height - 40) levels, so each draw's choice shows in the metrics."""
    method = bicubic(scale=scale)
    method.info = dataclasses.replace(method.info, name="ref_height_probe", inputs=("lr", "ref"))
    upsample = method.predict

    def predict(lr, ref=None, ref_lr=None):  # type: ignore[no-untyped-def]
        return (upsample(lr) + (ref.shape[2] - 40) / 255.0).clamp(0, 1)

    method.predict = predict  # type: ignore[method-assign]
    return method


def test_reference_draws_report_mean_and_std(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_replica(tmp_path)
    register("ref_height_probe", _ref_height_probe)
    out = tmp_path / "run"
    argv = ["run", "-p", "sun80", "-m", "ref_height_probe", "--level", "draws:3", "--data", str(tmp_path)]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    frame = pd.DataFrame([r.__dict__ for r in read_records(out / "records.csv")])
    assert sorted(frame["reference"].unique()) == ["draw:0", "draw:1", "draw:2"]
    # each draw used the reference the documented rule picks for that seed
    for item in load_items("sun80", tmp_path):
        for seed in range(3):
            ref = _reference_array(item, f"draw:{seed}", "sun80", get_preset("refsr"))
            assert ref is not None and ref.shape[0] == 40 + expected_match_index(item.name, seed, 5)
    psnr = frame[frame["metric"] == "psnr_y"].groupby("reference")["value"].mean().to_numpy()
    assert psnr.std() > 0  # the draws differ, so the spread is informative
    assert f"ref_height_probe psnr_y: {psnr.mean():.4f} ± {psnr.std(ddof=1):.4f} (3 draws)" in printed
    bad_level = ["run", "-p", "sun80", "-m", "ref_height_probe", "--level", "draws:x", "--out", str(out)]
    assert main([*bad_level, "--data", str(tmp_path)]) == 2
    assert "draws:K" in capsys.readouterr().err
    bad_seed = ["run", "-p", "sun80", "-m", "bicubic", "--level", "draw:abc", "--out", str(out)]
    assert main([*bad_seed, "--data", str(tmp_path)]) == 2
    assert "draw:SEED" in capsys.readouterr().err
    (tmp_path / "committed").mkdir(exist_ok=True)
    (tmp_path / "committed" / "sun80.csv").write_text("name,ref\nabbey_sun_x,match_00.jpg\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "MANIFEST_DIR", tmp_path / "committed")
        assert main(["run", "-p", "sun80", "-m", "bicubic", "--data", str(tmp_path), "--out", str(out / "m")]) == 2
    assert "needs the columns image,reference" in capsys.readouterr().err
