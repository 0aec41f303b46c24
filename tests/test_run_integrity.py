"""Run directories (issue 14): identity on resume, one writer, checksummed records that survive kills,
shards that merge byte-identically, strict gates, and saved images equal to the scored ones."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rundata import cli, make_cufed5, make_set5, register_gain_bicubic

from bench.results.records import CHECKSUM_FILE, read_records
from bench.results.rundir import RunLock
from protocols.datasets import load_items
from protocols.pipeline import make_sample
from protocols.scoring import score_levels
from protocols.spec import get_preset

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "set5:sisr_std"


def _run(capsys: pytest.CaptureFixture[str], data: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "run", "-p", PROTOCOL, "-m", "bicubic", "--data", data, "--out", out, *extra)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_set5(tmp_path / "data")


@pytest.fixture()
def clean(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """An uninterrupted run: the reference every resumed, locked or merged run must equal byte for byte."""
    out = tmp_path / "clean"
    assert _run(capsys, data, out)[0] == 0
    return out


# --- identity: stale and mixed resumes --------------------------------------------------------------


def test_rerun_of_the_same_command_is_a_no_op(tmp_path: Path, data: Path, clean: Path, capsys) -> None:
    before = (clean / "records.csv").read_bytes()
    assert _run(capsys, data, clean)[0] == 0
    assert (clean / "records.csv").read_bytes() == before


def test_resume_after_one_hr_byte_changed_is_refused(data: Path, clean: Path, capsys) -> None:
    path = data / "Set5" / "im2.png"
    array = np.asarray(Image.open(path)).copy()
    array[0, 0, 0] ^= 1
    Image.fromarray(array).save(path)
    before = (clean / "records.csv").read_bytes()
    status, _, err = _run(capsys, data, clean)
    assert status == 2 and "input files changed: im2.png" in err and "another --out" in err
    assert (clean / "records.csv").read_bytes() == before


def test_resume_with_another_data_root_is_refused(tmp_path: Path, data: Path, clean: Path, capsys) -> None:
    other = tmp_path / "copy"
    shutil.copytree(data, other)
    status, _, err = _run(capsys, other, clean)
    assert status == 2 and "data folder" in err and str(other) in err


def test_resume_with_another_preset_is_refused(data: Path, clean: Path, capsys) -> None:
    status, _, err = cli(capsys, "run", "-p", "set5:refsr", "-m", "bicubic", "--data", data, "--out", clean)
    assert status == 2 and "preset spec differs" in err and "name: 'sisr_std' -> 'refsr'" in err


def test_resume_with_other_weights_is_refused(tmp_path: Path, data: Path, capsys) -> None:
    register_gain_bicubic()
    first, second = tmp_path / "gain1.pth", tmp_path / "gain2.pth"
    torch.save({"gain": torch.tensor([1.0])}, first)
    torch.save({"gain": torch.tensor([0.9])}, second)
    out = tmp_path / "gain"
    argv = ("run", "-p", PROTOCOL, "-m", "gain_bicubic", "--data", data, "--out", out)
    assert cli(capsys, *argv, "--weights", first)[0] == 0
    status, _, err = cli(capsys, *argv, "--weights", second)
    assert status == 2 and "weights of gain_bicubic changed" in err


def test_added_method_and_level_are_recorded_and_equal_a_fresh_run(tmp_path: Path, data: Path, clean: Path, capsys):
    assert _run(capsys, data, clean, "-m", "bicubic_matlab")[0] == 0
    run_json = json.loads((clean / "run.json").read_text())
    assert run_json["extensions"] == [{"added_methods": ["bicubic_matlab"], "added_references": []}]
    fresh = tmp_path / "fresh"
    assert _run(capsys, data, fresh, "-m", "bicubic_matlab")[0] == 0
    # same identity (methods bicubic + bicubic_matlab), so the same run_id on every row
    assert (clean / "records.csv").read_bytes() == (fresh / "records.csv").read_bytes()
    assert _run(capsys, data, clean, "-m", "bicubic_matlab", "--ref-policy", "self_lr")[0] == 0
    run_json = json.loads((clean / "run.json").read_text())
    assert run_json["extensions"][-1] == {"added_methods": [], "added_references": ["self_lr"]}
    assert {r.reference for r in read_records(clean / "records.csv")} == {"none", "self_lr"}


# --- one writer ---------------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_writer_naming_the_holder(data: Path, clean: Path, capsys) -> None:
    before = (clean / "records.csv").read_bytes()
    with RunLock(clean):
        status, _, err = _run(capsys, data, clean)
    assert status == 2 and f"PID {os.getpid()}" in err
    assert (clean / "records.csv").read_bytes() == before
    assert _run(capsys, data, clean)[0] == 0  # released with the holder


SLOW_PLUGIN = '''
import os
import time
from methods.bicubic import bicubic
from methods.registry import register


def slow_bicubic(*, scale=4, device="cpu"):
    method = bicubic(scale=scale)
    predict = method.predict

    def slow_predict(lr, ref=None, ref_lr=None):
        time.sleep(float(os.environ.get("SLOW_BICUBIC_S", "0.2")))
        return predict(lr)

    method.predict = slow_predict
    return method


register("slow_bicubic", slow_bicubic)
'''


def _slow_command(plugin: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "--plugin", str(plugin), "run", "-p", PROTOCOL, "-m", "slow_bicubic",
            "--data", str(data), "--out", str(out)]


def _env(sleep_s: float = 0.2) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SLOW_BICUBIC_S": str(sleep_s)}


def test_two_writers_started_together_one_proceeds(tmp_path: Path, data: Path, capsys, one_thread: None) -> None:
    # one_thread: the reference computes with the writers' thread count (OMP_NUM_THREADS=1), part of the identity
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    reference = tmp_path / "reference"
    assert cli(capsys, "--plugin", plugin, "run", "-p", PROTOCOL, "-m", "slow_bicubic", "--data", data,
               "--out", reference)[0] == 0
    out = tmp_path / "shared"
    processes = [
        # 0.8 s per image: the winner holds the lock for 4 s, longer than the two start-ups can drift apart
        subprocess.Popen(_slow_command(plugin, data, out), env=_env(0.8), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]  # type: ignore[union-attr]
    assert sorted(status for status, _ in results) == [0, 2], results
    loser = next(err for status, err in results if status == 2)
    assert "being written by another refsr-bench process (PID " in loser and "Traceback" not in loser
    assert (out / "records.csv").read_bytes() == (reference / "records.csv").read_bytes()


# --- kills at any point -------------------------------------------------------------------------------


def _journal(tmp_path: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run stopped just before it finishes: records.csv is the full journal of every group."""
    from bench.results.records import RecordAppender

    def stop(self: RecordAppender) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "journal"
    with monkeypatch.context() as patch:
        patch.setattr(RecordAppender, "finish", stop)
        assert _run(capsys, data, out)[0] == 130
    return out


def test_kill_at_twelve_byte_offsets_then_rerun_is_byte_identical(
    tmp_path: Path, data: Path, clean: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal(tmp_path, data, capsys, monkeypatch)
    text = (journal / "records.csv").read_bytes()
    assert text.count(b"\n#end,") == 5
    first_value = text.index(b",psnr_y,") + len(b",psnr_y,")
    end_line = text.index(b"#end,")
    offsets = {
        0,  # nothing written
        text.index(b"\n") + 1,  # header only
        first_value + 2,  # a value cut to a still-parseable prefix ("15.810437" -> "15")
        first_value + 5,
        end_line - 1,  # a group without its end line
        end_line + 6,  # an end line cut in its checksum
        end_line + 20,
        len(text) // 3,
        len(text) // 2,
        2 * len(text) // 3,
        len(text) - 30,
        len(text) - 1,  # the last newline missing
    }
    assert len(offsets) >= 10
    expected = (clean / "records.csv").read_bytes()
    for offset in sorted(offsets):
        trial = tmp_path / f"cut{offset}"
        shutil.copytree(journal, trial)
        with open(trial / "records.csv", "r+b") as handle:
            handle.truncate(offset)
        status, _, err = _run(capsys, data, trial)
        assert status == 0, err
        assert (trial / "records.csv").read_bytes() == expected, f"offset {offset}"


def test_a_changed_value_is_recomputed_not_kept(tmp_path: Path, data: Path, clean: Path, capsys, monkeypatch) -> None:
    expected = (clean / "records.csv").read_bytes()
    journal = _journal(tmp_path, data, capsys, monkeypatch)
    text = (journal / "records.csv").read_text()
    value = text.split(",psnr_y,")[1].split("\n")[0]
    (journal / "records.csv").write_text(text.replace(value, value[:4], 1))  # end line left intact
    status, out, _ = _run(capsys, data, journal)
    assert status == 0 and "1 incomplete record group" in out
    assert (journal / "records.csv").read_bytes() == expected
    # a finished file edited afterwards no longer matches records.sha256: every record is recomputed
    (clean / "records.csv").write_text(expected.decode().replace(value, value[:4], 1))
    status, out, _ = _run(capsys, data, clean)
    assert status == 0 and "changed after its run finished" in out
    assert (clean / "records.csv").read_bytes() == expected and (clean / CHECKSUM_FILE).is_file()


def test_real_sigkill_at_two_points_then_rerun(tmp_path: Path, data: Path, capsys, one_thread: None) -> None:
    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_PLUGIN)
    reference = tmp_path / "reference"
    assert cli(capsys, "--plugin", plugin, "run", "-p", PROTOCOL, "-m", "slow_bicubic", "--data", data,
               "--out", reference)[0] == 0
    for groups_before_kill in (1, 3):
        out = tmp_path / f"killed{groups_before_kill}"
        process = subprocess.Popen(_slow_command(plugin, data, out), env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            path = out / "records.csv"
            if path.is_file() and path.read_bytes().count(b"#end,") >= groups_before_kill:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert (out / "records.csv").read_bytes().count(b"#end,") < 5, "the kill should land mid-run"
        rerun = subprocess.run(_slow_command(plugin, data, out), env=_env(), capture_output=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert (out / "records.csv").read_bytes() == (reference / "records.csv").read_bytes()


# --- shards and merge ---------------------------------------------------------------------------------


def test_three_shards_merge_byte_identical_and_a_missing_shard_is_named(
    tmp_path: Path, data: Path, clean: Path, capsys
) -> None:
    shards = [tmp_path / f"shard{i}" for i in range(3)]
    for index, shard in enumerate(shards):
        assert _run(capsys, data, shard, "--shard", f"{index}/3")[0] == 0
    merged = tmp_path / "merged"
    assert cli(capsys, "merge", *shards, "--out", merged)[0] == 0
    assert (merged / "records.csv").read_bytes() == (clean / "records.csv").read_bytes()
    run_id = json.loads((clean / "run.json").read_text())["run_id"]
    assert json.loads((merged / "run.json").read_text())["run_id"] == run_id
    status, _, err = cli(capsys, "merge", shards[0], shards[2], "--out", tmp_path / "two")
    assert status == 2 and "missing shard(s) 1/3" in err and not (tmp_path / "two").exists()
    assert cli(capsys, "merge", shards[0], shards[2], "--out", tmp_path / "two", "--partial")[0] == 0
    status, _, err = cli(capsys, "merge", shards[0], shards[0], shards[1], shards[2], "--out", tmp_path / "dup")
    assert status == 2 and "0/3 given more than once" in err


# --- gate ---------------------------------------------------------------------------------------------


def _golden(tmp_path: Path, run: Path, capsys, rule: str = "two_sided") -> Path:
    golden = tmp_path / "golden.csv"
    assert cli(capsys, "accept", run, "--golden", golden)[0] == 0
    if rule != "two_sided":
        golden.write_text(golden.read_text().replace(",two_sided,", f",{rule},"))
    return golden


def test_gate_fails_when_nothing_applies_and_rejects_unknown_rules(tmp_path: Path, clean: Path, capsys) -> None:
    golden = _golden(tmp_path, clean, capsys)
    assert cli(capsys, "gate", "--run", clean, "--golden", golden)[0] == 0
    other = tmp_path / "other.csv"
    other.write_text(golden.read_text().replace(",sisr_std,", ",refsr,"))
    status, out, _ = cli(capsys, "gate", "--run", clean, "--golden", other)
    assert status == 1 and "no golden keys apply" in out
    assert cli(capsys, "gate", "--run", clean, "--golden", other, "--allow-empty")[0] == 0
    status, _, err = cli(capsys, "gate", "--run", clean, "--golden", _golden(tmp_path, clean, capsys, "two_sidd"))
    assert status == 2 and "unknown rule 'two_sidd'" in err


def test_gate_lists_extra_and_missing_images(tmp_path: Path, data: Path, clean: Path, capsys) -> None:
    golden = _golden(tmp_path, clean, capsys)
    lines = golden.read_text().splitlines()
    without_im3 = [line for line in lines if ",im3," not in line]
    (tmp_path / "g_extra.csv").write_text("\n".join(without_im3) + "\n")
    status, out, _ = cli(capsys, "gate", "--run", clean, "--golden", tmp_path / "g_extra.csv")
    assert status == 1 and "EXTRA: bicubic/set5/sisr_std/none/im3/psnr_y (image not in the golden file)" in out
    renamed = [line.replace(",im3,", ",im9,") for line in lines]
    (tmp_path / "g_missing.csv").write_text("\n".join(renamed) + "\n")
    status, out, _ = cli(capsys, "gate", "--run", clean, "--golden", tmp_path / "g_missing.csv")
    assert status == 1 and "MISSING: bicubic/set5/sisr_std/none/im9/psnr_y" in out and "EXTRA: " in out


# --- saved images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "method"), [("masa2021", "masa_rec"), ("c2matching2021", "c2_matching_rec")])
def test_saved_images_are_the_scored_images(tmp_path: Path, capsys, one_thread: None, preset: str, method: str):
    make_cufed5(tmp_path)
    out = tmp_path / "out"
    status, _, err = cli(capsys, "run", "-p", f"cufed5:{preset}", "-m", method, "--level", "1", "--data", tmp_path,
                         "--out", out, "--allow-random-weights", "--save-images")
    assert status == 0, err
    spec = get_preset(preset)
    records = read_records(out / "records.csv")
    assert len(records) == 2 * len(spec.metrics)
    for item in load_items("cufed5", tmp_path):
        sample = make_sample(item, spec, "cufed5", "level:1")
        assert sum(sample.sr_crop) > 0, "the preset pads this HR, so the saved image must be cropped back"
        png = out / "images" / f"{method}[random-weights]" / "level_1" / f"{item.name}.png"
        levels = np.asarray(Image.open(png), dtype=np.float64)
        assert levels.shape[:2] == tuple(sample.hr.shape[2:])  # cropped to the HR size, not the padded canvas
        values = score_levels(levels, sample, spec)
        for record in (r for r in records if r.image == item.name):
            assert f"{record.value:.6f}" == f"{values[record.metric]:.6f}"
