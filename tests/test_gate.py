"""Gate logic on small hand-made runs: pass, drift, missing, new, several violations in one report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.commands.cli import main
from bench.results.gate import accept
from bench.results.records import Record, write_records


def _records(
    shift: dict[tuple[str, str], float] | None = None, drop: tuple[str, str] | None = None, extra: bool = False
) -> list[Record]:
    shift = shift or {}
    rows = []
    for image, psnr, ssim in (("a", 30.0, 0.9), ("b", 28.5, 0.85), ("c", 25.25, 0.8)):
        for metric, value in (("psnr_y", psnr), ("ssim_y", ssim)):
            if drop == (image, metric):
                continue
            rows.append(
                Record(
                    "r1",
                    "urban100",
                    "refsr",
                    "bicubic",
                    "self_lr",
                    image,
                    metric,
                    value + shift.get((image, metric), 0.0),
                )
            )
    if extra:
        rows.append(Record("r1", "urban100", "refsr", "carn_m", "self_lr", "a", "psnr_y", 31.0))
    return rows


@pytest.fixture()
def golden(tmp_path: Path) -> Path:
    run = tmp_path / "reference_run"
    write_records(run / "records.csv", _records())
    path = tmp_path / "golden.csv"
    assert accept(run, path) == 8  # 6 per-image values + 2 means
    return path


def _gate(tmp_path: Path, records: list[Record], golden: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    run = tmp_path / "candidate"
    write_records(run / "records.csv", records)
    status = main(["gate", "--run", str(run), "--golden", str(golden)])
    return status, capsys.readouterr().out


def test_equal_run_passes(tmp_path: Path, golden: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _gate(tmp_path, _records(), golden, capsys)
    assert status == 0 and "8 golden keys checked: 0 failed" in out


def test_drift_of_002_db_on_one_image_fails_and_is_named(
    tmp_path: Path, golden: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _gate(tmp_path, _records(shift={("b", "psnr_y"): 0.02}), golden, capsys)
    assert status == 1
    assert "FAIL: bicubic/urban100/refsr/self_lr/b/psnr_y" in out
    assert "FAIL: bicubic/urban100/refsr/self_lr/MEAN/psnr_y" in out  # the level mean moved by 0.0067 dB
    assert "a/psnr_y" in out and "FAIL: bicubic/urban100/refsr/self_lr/a/psnr_y" not in out


def test_improvement_is_drift_too(tmp_path: Path, golden: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _ = _gate(tmp_path, _records(shift={("c", "ssim_y"): -0.001}), golden, capsys)
    assert status == 1
    status, _ = _gate(tmp_path, _records(shift={("c", "ssim_y"): +0.001}), golden, capsys)
    assert status == 1


def test_missing_key_fails_and_new_key_warns(tmp_path: Path, golden: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _gate(tmp_path, _records(drop=("a", "ssim_y")), golden, capsys)
    assert status == 1 and "MISSING: bicubic/urban100/refsr/self_lr/a/ssim_y" in out
    status, out = _gate(tmp_path, _records(extra=True), golden, capsys)
    assert status == 0 and "new" in out and "carn_m/urban100/refsr/self_lr/a/psnr_y" in out


def test_several_violations_are_listed_together(
    tmp_path: Path, golden: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _records(shift={("a", "psnr_y"): 0.5, ("c", "ssim_y"): 0.01}, drop=("b", "psnr_y"))
    status, out = _gate(tmp_path, records, golden, capsys)
    assert status == 1
    for fragment in (
        "FAIL: bicubic/urban100/refsr/self_lr/a/psnr_y",
        "FAIL: bicubic/urban100/refsr/self_lr/c/ssim_y",
        "MISSING: bicubic/urban100/refsr/self_lr/b/psnr_y",
    ):
        assert fragment in out
