"""``torchrun ... -m bench run`` on CPU/gloo/loopback (issue 17): the records of a distributed run are
byte-identical to the single-process run's, after a two-node rendezvous, a killed rank and an elastic
restart too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rundata import cli, make_cufed5, make_set5

from bench.engines.torchrun import balanced_split

ROOT = Path(__file__).resolve().parents[1]

# A method that sleeps a little per image and, on the rank and attempt named by the environment, kills its
# own process with SIGKILL after KILL_AFTER images: a real rank death in the middle of a run.
PLUGIN = '''
import os
import signal
import time
from methods.bicubic import bicubic
from methods.registry import register

done = [0]


def dying_bicubic(*, scale=4, device="cpu"):
    method = bicubic(scale=scale)
    predict = method.predict

    def slow_predict(lr, ref=None, ref_lr=None):
        time.sleep(0.3)
        done[0] += 1
        if (os.environ.get("RANK") == os.environ.get("KILL_RANK")
                and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
                and done[0] > int(os.environ.get("KILL_AFTER", "1000000"))):
            os.kill(os.getpid(), signal.SIGKILL)
        return predict(lr)

    method.predict = slow_predict
    return method


register("dying_bicubic", dying_bicubic)
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def _torchrun(*argv: str, launcher: tuple[str, ...] = ("--standalone", "--nproc-per-node", "2"),
              env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "bench", *argv]
    result = subprocess.run(command, env=env or _env(), capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _manifest(out: Path) -> str:
    """run.json with the output path normalised (the only field that names where it was written)."""
    return (out / "run.json").read_text().replace(str(out), "OUT")


def test_balanced_split_is_deterministic_and_balanced() -> None:
    costs = [5.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0, 2.0]
    shares = balanced_split(costs, 2)
    assert sorted(i for share in shares for i in share) == list(range(8))
    loads = [sum(costs[i] for i in share) for share in shares]
    assert loads == [8.0, 8.0]  # round-robin of images would give 12 vs 4
    assert balanced_split(costs, 2) == shares
    assert balanced_split([1.0], 3) == [[0], [], []]


def test_two_ranks_equal_one_process(tmp_path: Path, capsys, one_thread: None) -> None:
    """Set5 and Set14 replicas (bicubic_matlab + CARN-M, synthetic weights) and a CUFED5 replica at
    five levels: records.csv byte-identical, run.json identical but for its own path."""
    make_set5(tmp_path / "data", count=5)
    (tmp_path / "data" / "Set14").mkdir()
    make_set5(tmp_path / "s14", count=7, seed=1)
    for path in (tmp_path / "s14" / "Set5").iterdir():
        path.rename(tmp_path / "data" / "Set14" / path.name)
    make_cufed5(tmp_path / "data", groups=3)
    jobs = [
        ("set5:sisr_std", ("-m", "bicubic_matlab", "carn_m", "--allow-random-weights")),
        ("set14:sisr_std", ("-m", "bicubic_matlab", "carn_m", "--allow-random-weights")),
        ("cufed5", ("-m", "bicubic", "--level", "all")),
    ]
    for protocol, extra in jobs:
        name = protocol.split(":")[0]
        single, multi = tmp_path / f"{name}_single", tmp_path / f"{name}_multi"
        argv = ("run", "-p", protocol, *extra, "--data", str(tmp_path / "data"))
        assert cli(capsys, *argv, "--out", single)[0] == 0
        _torchrun(*argv, "--out", str(multi))
        assert (multi / "records.csv").read_bytes() == (single / "records.csv").read_bytes(), protocol
        assert _manifest(multi) == _manifest(single), protocol
        assert not (multi / "parts").exists()


def test_two_node_rendezvous_equals_one_process(tmp_path: Path, capsys, one_thread: None) -> None:
    make_set5(tmp_path / "data", count=6)
    argv = ["run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", str(tmp_path / "data")]
    assert cli(capsys, *argv, "--out", tmp_path / "single")[0] == 0
    port = _free_port()
    launcher = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "refsr-test"]
    command = [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "bench", *argv,
               "--out", str(tmp_path / "multi")]
    nodes = [subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    assert (tmp_path / "multi" / "records.csv").read_bytes() == (tmp_path / "single" / "records.csv").read_bytes()


@pytest.fixture()
def dying(tmp_path: Path, capsys, one_thread: None) -> tuple[list[str], Path]:
    """A plugin run over 8 images and its single-process records (one thread, as the ranks: OMP_NUM_THREADS=1)."""
    make_set5(tmp_path / "data", count=8)
    plugin = tmp_path / "dying.py"
    plugin.write_text(PLUGIN)
    argv = ["--plugin", str(plugin), "run", "-p", "set5:sisr_std", "-m", "dying_bicubic", "--data",
            str(tmp_path / "data")]
    assert cli(capsys, *argv, "--out", tmp_path / "single")[0] == 0
    return argv, tmp_path / "single" / "records.csv"


def test_a_killed_rank_fails_the_job_naming_it_and_a_rerun_completes(tmp_path: Path, dying) -> None:
    argv, expected = dying
    out = tmp_path / "multi"
    failed = _torchrun(*argv, "--out", str(out), env=_env(KILL_RANK="1", KILL_AFTER="2"), check=False)
    assert failed.returncode != 0
    assert "rank 1 was working on set5:sisr_std dying_bicubic none im" in failed.stderr, failed.stderr[-3000:]
    assert not (out / "records.csv").is_file() or (out / "records.csv").read_bytes() != expected.read_bytes()
    rerun = _torchrun(*argv, "--out", str(out))
    assert "previous attempt's rank1 stopped while working on" in rerun.stdout
    assert (out / "records.csv").read_bytes() == expected.read_bytes()


def test_elastic_restart_completes_without_a_manual_rerun(tmp_path: Path, dying) -> None:
    argv, expected = dying
    out = tmp_path / "multi"
    launcher = ("--standalone", "--nproc-per-node", "2", "--max-restarts", "1")
    _torchrun(*argv, "--out", str(out), launcher=launcher, env=_env(KILL_RANK="1", KILL_AFTER="2"))
    assert (out / "records.csv").read_bytes() == expected.read_bytes()
    assert json.loads((out / "run.json").read_text())["run_id"] == expected.read_text().splitlines()[1][:12]


def test_a_second_job_into_a_locked_directory_is_refused(tmp_path: Path, capsys) -> None:
    from bench.results.rundir import RunLock

    make_set5(tmp_path / "data", count=2)
    out = tmp_path / "out"
    argv = ["run", "-p", "set5:sisr_std", "-m", "bicubic", "--data", str(tmp_path / "data"), "--out", str(out)]
    assert cli(capsys, *argv)[0] == 0
    before = (out / "records.csv").read_bytes()
    with RunLock(out):
        refused = _torchrun(*argv, check=False)
    assert refused.returncode != 0
    assert f"being written by another refsr-bench process (PID {os.getpid()})" in refused.stderr
    assert (out / "records.csv").read_bytes() == before


def _same_runs(single: Path, multi: Path) -> list[str]:
    """The run folders under ``single`` (relative names), asserting each is byte-identical under ``multi``."""
    runs = sorted(str(r.parent.relative_to(single)) for r in single.rglob("records.csv"))
    assert runs == sorted(str(r.parent.relative_to(multi)) for r in multi.rglob("records.csv"))
    for run in runs:
        assert (multi / run / "records.csv").read_bytes() == (single / run / "records.csv").read_bytes(), run
        assert _manifest(multi / run).replace(str(multi), "OUT") == _manifest(single / run).replace(str(single), "OUT")
        assert not (multi / run / "parts").exists()
    return runs


def test_audit_under_torchrun_equals_one_process(tmp_path: Path, capsys, one_thread: None) -> None:
    """Every preset's run of the audit is distributed over both ranks; rank 0 alone writes audit.csv."""
    make_set5(tmp_path / "data", count=3)
    argv = ("audit", "-m", "bicubic", "-d", "set5", "--data", str(tmp_path / "data"))
    assert cli(capsys, *argv, "--out", tmp_path / "single")[0] == 0
    multi = _torchrun(*argv, "--out", str(tmp_path / "multi"))
    runs = _same_runs(tmp_path / "single", tmp_path / "multi")
    assert len(runs) >= 10  # every applicable preset ran (bicubic: 15 on set5)
    assert (tmp_path / "multi" / "audit.csv").read_bytes() == (tmp_path / "single" / "audit.csv").read_bytes()
    assert multi.stdout.count("wrote ") == 1  # printed by rank 0 only


def test_dataset_job_under_torchrun_equals_one_process(tmp_path: Path) -> None:
    """`dataset-job cufed5` on a replica (bicubic variants: no weights installed): both steps distributed,
    then one gate and one report from rank 0."""
    make_cufed5(tmp_path / "data", groups=2)
    (tmp_path / "weights").mkdir()
    env = _env(REFSR_WEIGHTS=str(tmp_path / "weights"))
    argv = ("dataset-job", "cufed5", "--data", str(tmp_path / "data"))
    # a fresh process: the job runs every registered method that can run, and other tests register plugins here
    single = subprocess.run([sys.executable, "-m", "bench", *argv, "--out", str(tmp_path / "single")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = _torchrun(*argv, "--out", str(tmp_path / "multi"), env=env)
    assert _same_runs(tmp_path / "single", tmp_path / "multi") == ["cufed5_refsr/all", "cufed5_refsr/stitch5_masa"]
    assert (tmp_path / "multi" / "report" / "index.html").is_file() and multi.stdout.count("report: ") == 1


def test_match_under_torchrun_equals_one_process(tmp_path: Path, capsys, one_thread: None) -> None:
    """Three embedded homography pairs dealt to two ranks (0 and 2 | 1): the same records.csv and table.md as one
    process."""
    argv = ("match", "-m", "zncc", "-d", "demo_homography", "--max-frames", "3", "--scale", "4", "--search-radius", "2")
    assert cli(capsys, *argv, "--out", tmp_path / "single")[0] == 0
    multi = _torchrun(*argv, "--out", str(tmp_path / "multi"))
    for name in ("records.csv", "table.md"):
        assert (tmp_path / "multi" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    assert multi.stdout.count("wrote ") == 1
    assert len({line.split()[1] for line in multi.stderr.splitlines() if line.startswith("[")}) == 3  # 3 frames


def test_verbs_that_are_not_distributed_are_refused_under_torchrun(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    status, _, err = cli(capsys, "demo", "--out", tmp_path / "demo", "--weights", tmp_path)
    assert status == 2
    assert "only `run`, `audit`, `dataset-job`, `match` and `cost` are distributed under torchrun" in err
    assert not (tmp_path / "demo" / "runs").exists()
