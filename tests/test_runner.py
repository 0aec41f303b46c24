"""Runner: resumable after a kill, shards merge to the full run, plugins register in one file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.results.records import read_records

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""A user's own method in one file: Pillow bicubic that sleeps, so a test can interrupt a run."""
import time
from methods.bicubic import bicubic
from methods.registry import register


def slow_bicubic(*, scale=4, device="cpu"):
    method = bicubic(scale=scale)
    predict = method.predict

    def slow_predict(lr, ref=None, ref_lr=None):
        time.sleep(0.25)
        return predict(lr)

    method.predict = slow_predict
    return method


register("slow_bicubic", slow_bicubic)
'''


@pytest.fixture()
def replica(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "Set5"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(10):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(folder / f"im{index:02d}.png")
    (tmp_path / "plugin.py").write_text(PLUGIN)
    return tmp_path


def _command(replica: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "--plugin",
        str(replica / "plugin.py"),
        "run",
        "-p",
        "set5:refsr",
        "-m",
        "slow_bicubic",
        "--data",
        str(replica / "data"),
        "--out",
        str(out),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_interrupted_run_resumes_to_identical_records(replica: Path) -> None:
    clean = replica / "clean"
    subprocess.run(_command(replica, clean), check=True, env=_env(), capture_output=True, timeout=300)

    resumed = replica / "resumed"
    process = subprocess.Popen(
        _command(replica, resumed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if len({r.image for r in read_records(resumed / "records.csv")}) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_records(resumed / "records.csv")
    assert 0 < len({r.image for r in partial}) < 10, "the kill should land mid-run"

    subprocess.run(_command(replica, resumed), check=True, env=_env(), capture_output=True, timeout=300)
    assert (resumed / "records.csv").read_bytes() == (clean / "records.csv").read_bytes()


def test_shards_merge_to_the_full_run(replica: Path) -> None:
    for index in (0, 1):
        subprocess.run(
            _command(replica, replica / f"shard{index}", "--shard", f"{index}/2"),
            check=True,
            env=_env(),
            capture_output=True,
            timeout=300,
        )
    subprocess.run(_command(replica, replica / "full"), check=True, env=_env(), capture_output=True, timeout=300)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "merge",
            str(replica / "shard0"),
            str(replica / "shard1"),
            "--out",
            str(replica / "merged"),
        ],
        check=True,
        env=_env(),
        capture_output=True,
        timeout=120,
    )
    full = {r.sort_key(): r.value for r in read_records(replica / "full" / "records.csv")}
    merged = {r.sort_key(): r.value for r in read_records(replica / "merged" / "records.csv")}
    assert merged == full and len(full) == 20


def test_records_format(replica: Path) -> None:
    out = replica / "fmt"
    subprocess.run(_command(replica, out), check=True, env=_env(), capture_output=True, timeout=300)
    lines = (out / "records.csv").read_text().splitlines()
    assert lines[0] == "run_id,dataset,preset,method,reference,image,metric,value"  # records version 2
    first = lines[1].split(",")
    assert first[1:6] == ["set5", "refsr", "slow_bicubic", "self_lr", "im00"] and first[6] == "psnr_y"
    assert len(first[7].split(".")[1]) == 6
    run_json_text = (out / "run.json").read_text()
    assert '"crop_border": 4' in run_json_text and "git_sha" in run_json_text and "cudnn_deterministic" in run_json_text
    run_json = json.loads(run_json_text)
    assert run_json["schema"] == 3 and run_json["identity"]["schema"] == 3
    assert run_json["dataset"] == "set5" and "protocol" not in run_json
    assert run_json["reference_policies"] == ["self_lr"]
