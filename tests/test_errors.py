"""Bad input reaches the user as one clear message (exit status 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.commands.cli import main
from methods.base import check_image_tensor
from protocols.core import UserError
from protocols.imageio import read_image


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.err


def _wrsr_replica(root: Path, count: int = 2) -> Path:
    folder = root / "WR-SR"
    (folder / "input").mkdir(parents=True)
    (folder / "ref").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for index in range(1, count + 1):
        Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(folder / "input" / f"{index:03d}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "ref" / f"{index:03d}_ref.png")
        lines.append(f"{index:03d}.png {index:03d}_ref.png")
    (folder / "WR-SR_pairs.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_missing_dataset_folder_names_expected_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_cli(
        capsys, "run", "-p", "urban100", "-m", "bicubic", "--data", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert status == 2
    assert "Urban100" in err and "img_NNN.png" in err and "Traceback" not in err


def test_missing_reference_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _wrsr_replica(tmp_path)
    (folder / "ref" / "002_ref.png").unlink()
    status, err = run_cli(
        capsys, "run", "-p", "wrsr", "-m", "bicubic", "--data", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert status == 2 and "002_ref.png" in err and "missing" in err


def test_corrupt_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _wrsr_replica(tmp_path)
    (folder / "input" / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    status, err = run_cli(
        capsys, "run", "-p", "wrsr", "-m", "bicubic", "--data", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert status == 2 and "001.png" in err and "corrupt" in err


def test_single_channel_png_is_replicated_and_16bit_is_rejected(tmp_path: Path) -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    rgb = read_image(tmp_path / "grey.png")
    assert rgb.shape == (6, 8, 3) and np.array_equal(rgb[..., 0], grey) and np.array_equal(rgb[..., 2], grey)
    assert np.array_equal(read_image(tmp_path / "grey.png", grey="keep"), grey)
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(UserError, match="16-bit"):
        read_image(tmp_path / "deep.png")
    assert read_image(tmp_path / "deep.png", high_bit_depth="to_8bit")[0, 0, 0] == round(40000 / 257)


def test_unknown_names_list_valid_choices(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, err = run_cli(capsys, "run", "-p", "set5:nope", "-m", "bicubic", "--out", str(tmp_path))
    assert status == 2 and "unknown preset 'nope'" in err and "sisr_std" in err
    status, err = run_cli(capsys, "run", "-p", "nope", "-m", "bicubic", "--out", str(tmp_path))
    assert status == 2 and "unknown dataset 'nope'" in err and "urban100" in err
    status, err = run_cli(capsys, "run", "-p", "demo_stereo", "-m", "no_such_method", "--out", str(tmp_path))
    assert status == 2 and "unknown method 'no_such_method'" in err and "bicubic" in err


def test_missing_weights_refuse_quality_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, err = run_cli(
        capsys, "run", "-p", "demo_stereo", "-m", "carn_m", "--weights", str(tmp_path), "--out", str(tmp_path / "o")
    )
    assert status == 2 and "carn_m.pth" in err and "weights fetch" in err


def test_image_constraints_are_checked() -> None:
    with pytest.raises(UserError, match=r"\(1, 3, H, W\)"):
        check_image_tensor("lr", torch.zeros(3, 8, 8))
    with pytest.raises(UserError, match=r"\(1, 3, H, W\)"):
        check_image_tensor("lr", torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_too_small_image_for_the_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "Set5"
    folder.mkdir()
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(folder / "tiny.png")
    status, err = run_cli(
        capsys,
        "run",
        "-p",
        "set5:sisr_std",
        "-m",
        "bicubic_matlab",
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    )
    assert status == 2 and "tiny" in err


def test_shard_syntax(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, err = run_cli(capsys, "run", "-p", "demo_stereo", "-m", "bicubic", "--shard", "3/2", "--out", str(tmp_path))
    assert status == 2 and "--shard" in err


def test_weights_fetch_offline_is_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error
    import urllib.request

    def offline(*_args: object, **_kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    status, err = run_cli(capsys, "weights", "fetch", "carn_m", "--weights", str(tmp_path))
    assert status == 2 and "could not download" in err and str(tmp_path / "carn_m.pth") in err
    assert not list(tmp_path.iterdir())  # no partial file left behind
    status, err = run_cli(capsys, "weights", "fetch", "nope", "--weights", str(tmp_path))
    assert status == 2 and "unknown method 'nope'" in err and "carn_m" in err
    status, err = run_cli(capsys, "weights", "fetch", "bicubic", "--weights", str(tmp_path))
    assert status == 2 and "bicubic has no official weights" in err
