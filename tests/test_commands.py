"""The commands SR users expect: ``predict`` (real weights, output equal to what ``run`` scores), "did you mean"
on every registry, ``run --metrics``, and the help texts. Command-line behaviour runs in real processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from protocols.core import UserError

ROOT = Path(__file__).resolve().parents[1]


def _bench(*argv: str, env: dict[str, str] | None = None, timeout_s: int = 600) -> subprocess.CompletedProcess[str]:
    """``refsr-bench ARGV`` as a user runs it: a new process importing this checkout."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout_s)


def _weights_folder(tmp_path: Path, shared: Path) -> Path:
    """A weights folder holding a link to the shared CARN-M checkpoint (nothing is copied)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "carn_m.pth").symlink_to(shared / "weights" / "carn_m.pth")
    return folder


# ------------------------------------------------------------------------------------------------
# predict


def test_predict_writes_the_png_run_scores_for_carn_m_on_set5(tmp_path: Path, shared: Path) -> None:
    """``run --save-images`` and ``predict`` on the LR that run made: byte-identical PNGs (CARN-M, real weights)."""
    from protocols.datasets import load_items
    from protocols.imageio import levels_png_bytes
    from protocols.pipeline import make_sample
    from protocols.resize import from_uint8_array, to_uint8_array
    from protocols.spec import get_preset

    weights = _weights_folder(tmp_path, shared)
    data = tmp_path / "data"
    (data / "Set5").mkdir(parents=True)
    (data / "Set5" / "butterfly.png").symlink_to(shared / "data" / "Set5" / "butterfly.png")
    env = {"REFSR_WEIGHTS": str(weights)}
    done = _bench("run", "-p", "set5:refsr", "-m", "carn_m", "--data", str(data), "--save-images",
                  "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 0, done.stderr
    scored = tmp_path / "run" / "images" / "carn_m" / "self_lr" / "butterfly.png"
    # the LR run fed the network (refsr on Set5: Pillow bicubic, 8-bit), written losslessly as PNG
    sample = make_sample(load_items("set5", data)[0], get_preset("refsr"), "set5", "self_lr")
    lr_levels = to_uint8_array(sample.lr)
    assert np.array_equal(from_uint8_array(lr_levels).numpy(), sample.lr.numpy())  # uint8-exact: a PNG holds it
    (tmp_path / "lr.png").write_bytes(levels_png_bytes(lr_levels.astype(np.float64)))
    done = _bench("predict", "-m", "carn_m", "--lr", str(tmp_path / "lr.png"), "--out", str(tmp_path / "sr.png"),
                  env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sr.png").read_bytes() == scored.read_bytes()
    assert Image.open(tmp_path / "sr.png").size == (256, 256)


def test_predict_refuses_random_weights_unless_allowed(tmp_path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    argv = ("predict", "-m", "carn_m", "--lr", str(tmp_path / "in.png"), "--out", str(tmp_path / "sr.png"),
            "--weights", str(empty))
    refused = _bench(*argv)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "carn_m.pth" in refused.stderr and "--allow-random-weights" in refused.stderr
    assert not (tmp_path / "sr.png").exists()
    allowed = _bench(*argv, "--allow-random-weights")
    assert allowed.returncode == 0, allowed.stderr
    assert "random weights" in allowed.stdout
    assert Image.open(tmp_path / "sr.png").size == (40, 48)  # ×4 of 10×12


def test_predict_needs_a_png_output_and_an_sr_method(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    jpeg = _bench("predict", "-m", "bicubic", "--lr", str(tmp_path / "in.png"), "--out", str(tmp_path / "sr.jpg"))
    assert jpeg.returncode == 2 and ".png" in jpeg.stderr
    matcher = _bench("predict", "-m", "zncc", "--lr", str(tmp_path / "in.png"), "--out", str(tmp_path / "sr.png"))
    assert matcher.returncode == 2 and "matcher" in matcher.stderr


# ------------------------------------------------------------------------------------------------
# did you mean


@pytest.mark.parametrize(
    ("lookup", "typo", "suggestion"),
    [
        ("method", "carnm", "carn_m"),
        ("method", "MASA_REC", "masa_rec"),
        ("methods", "ttsr_recc", "ttsr_rec"),
        ("dataset", "urban10", "urban100"),
        ("matching dataset", "sintell", "sintel"),
        ("preset", "masa2012", "masa2021"),
        ("metric", "ssimy", "ssim_y"),
        ("spec metric", "lpip", "lpips"),
    ],
)
def test_mistyped_names_get_a_suggestion(lookup: str, typo: str, suggestion: str) -> None:
    from methods.registry import card, resolve
    from protocols.datasets import get_dataset
    from protocols.matching import MatchingOptions, load_dataset
    from protocols.metrics import get_metric
    from protocols.spec import get_preset

    calls = {
        "method": lambda: card(typo),
        "methods": lambda: resolve(["bicubic", typo]),
        "dataset": lambda: get_dataset(typo),
        "matching dataset": lambda: load_dataset(typo, None, MatchingOptions()),
        "preset": lambda: get_preset(typo),
        "metric": lambda: get_metric(typo),
        "spec metric": lambda: get_preset("refsr").with_metrics(("psnr_y", typo)),
    }
    with pytest.raises(UserError) as raised:
        calls[lookup]()
    assert f"'{typo}' (did you mean '{suggestion}'" in str(raised.value)
    assert "; valid: " in str(raised.value)


def test_no_suggestion_for_a_name_close_to_nothing() -> None:
    from protocols.errors import unknown_name

    message = str(unknown_name("preset", "zzzz", ["refsr", "masa2021"]))
    assert message == "unknown preset 'zzzz'; valid: refsr, masa2021"


def test_weights_fetch_of_an_unknown_name_says_unknown_method(tmp_path: Path) -> None:
    done = _bench("weights", "fetch", "nonexistent", "--weights", str(tmp_path))
    assert done.returncode == 2 and done.stderr.startswith("error: unknown method 'nonexistent'")
    typo = _bench("weights", "fetch", "carn-m", "--weights", str(tmp_path))
    assert typo.returncode == 2 and "did you mean 'carn_m'" in typo.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------
# run --metrics


def _metrics_run(out: Path, *metrics: str) -> tuple[subprocess.CompletedProcess[str], dict, set[str]]:
    """``run -p demo_stereo -m bicubic [--metrics ...]`` as a process; (result, run.json, metrics recorded)."""
    done = _bench("run", "-p", "demo_stereo", "-m", "bicubic", "--out", str(out),
                  *(("--metrics", *metrics) if metrics else ()))
    if done.returncode != 0:
        return done, {}, set()
    run_json = json.loads((out / "run.json").read_text())
    with open(out / "records.csv", newline="") as handle:
        recorded = {row["metric"] for row in csv.DictReader(handle)}
    return done, run_json, recorded


def test_metrics_option_replaces_the_presets_metrics_in_records_and_identity(tmp_path: Path) -> None:
    _, default_json, default_metrics = _metrics_run(tmp_path / "default")
    done, chosen_json, chosen_metrics = _metrics_run(tmp_path / "chosen", "psnr_rgb", "psnr_y", "psnr_rgb")
    assert done.returncode == 0, done.stderr
    assert default_metrics == {"psnr_y", "ssim_y"} and chosen_metrics == {"psnr_rgb", "psnr_y"}
    assert default_json["identity"]["preset"]["metrics"] == ["psnr_y", "ssim_y"]
    assert chosen_json["identity"]["preset"]["metrics"] == ["psnr_rgb", "psnr_y"]
    assert chosen_json["run_id"] != default_json["run_id"]
    assert "metrics psnr_rgb, psnr_y" in chosen_json["protocol_sentence"]
    # a different identity is not mixed into an existing run folder
    mixed, _, _ = _metrics_run(tmp_path / "default", "psnr_rgb")
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr


def test_metrics_lpips_without_its_backbone_names_the_file_and_where(tmp_path: Path) -> None:
    hub = tmp_path / "torch_home"
    done = _bench("run", "-p", "demo_stereo", "-m", "bicubic", "--metrics", "psnr_y", "lpips", "--out",
                  str(tmp_path / "out"), env={"TORCH_HOME": str(hub)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "alexnet-owt-7be5be79.pth" in done.stderr and str(hub / "hub" / "checkpoints") in done.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


# ------------------------------------------------------------------------------------------------
# help texts


def test_help_texts() -> None:
    match_help = _bench("match", "--help").stdout
    assert "protocol" not in match_help and "level" not in match_help
    assert "reference" in match_help and "dataset" in match_help
    run_help = " ".join(_bench("run", "--help").stdout.split())
    assert "(default: runs/latest)" in run_help
    demo_help = _bench("demo", "--help").stdout
    assert "quality" in demo_help and "matching" in demo_help and "report" in demo_help
    assert "--lr" in _bench("predict", "--help").stdout


def test_predict_refuses_a_folder_as_out_and_scale_zero(tmp_path: Path) -> None:
    lr = tmp_path / "lr.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(lr)
    (tmp_path / "taken.png").mkdir()
    for extra in (["--out", str(tmp_path / "taken.png")], ["--out", str(tmp_path / "sr.png"), "--scale", "0"]):
        result = _bench("predict", "-m", "bicubic", "--lr", str(lr), *extra)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
